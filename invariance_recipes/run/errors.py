"""How a run ends when it does not finish: each kind maps to one exit code and one line.

0 finished, 1 failed run (:class:`RunFailed`), 2 usage error (:class:`UsageError`),
130 stopped by SIGINT, 143 stopped by SIGTERM (:class:`StoppedEarly`).
"""

from __future__ import annotations

import signal

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in the command line, reported as one line without a traceback."""


class RunFailed(Exception):
    """The run started but cannot give valid results; its folder is marked failed."""


class Diverged(RunFailed):
    """The loss or the parameters stopped being finite numbers."""


class Interrupted(Exception):
    """A signal asked the run to stop now (raised at a batch boundary)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StoppedEarly(Exception):
    """A signal stopped the run; what it saved is in the message, the exit code in
    ``exit_code`` (128 + the signal number, as a shell reports it)."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)
