"""Recipe runs forked from one interpreter that has already imported the training stack.

A recipe in a fresh interpreter spends seconds importing Lightning, torchmetrics, torchvision
and albumentations before its first line of work, and the tests start about a hundred of them.
This server imports those libraries once per test worker and runs each recipe in a fork of
itself: a process of its own, with its own working folder, environment, arguments, standard
streams and exit status, that runs the script as ``python recipes/SCRIPT`` does (as
``__main__``, then the interpreter's exit sequence: thread joins and ``atexit`` handlers). The
project's own modules are imported by each run, as in a fresh interpreter, and whatever the
preloaded imports printed heads each run's stderr, as a fresh interpreter would print it. The
server never runs a torch operation, so a fork starts with no thread pool to inherit.

Runs that a test signals or times from outside, and the checks of what a fresh interpreter
imports, start real interpreters instead (``subprocess``).

Protocol, one connection per run: the client sends one JSON line (script, args, cwd, env,
stdout and stderr file paths); the server answers the run's pid, then its exit status, each
as a line (a negative status is the signal that ended it, as ``subprocess`` reports it).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

#: third-party imports every recipe makes, in the order the recipes make them
PRELOADED = (
    "torch",
    "numpy",
    "torchvision",
    "torchmetrics",
    "albumentations",
    "lightning.pytorch",
    "jsonargparse",
)


def _run_script(request: dict, preamble: str) -> int:
    """In the forked run: become ``python SCRIPT ARGS`` in ``cwd`` with ``env``; the status."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.stderr.write(preamble)
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit():  # read by torch at import in a fresh interpreter
        import torch

        torch.set_num_threads(int(threads))
    script = request["script"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = str(Path(script).parent)
    status = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            status = stop.code or 0
        else:  # sys.exit("message"): printed, status 1
            print(stop.code, file=sys.stderr)
            status = 1
    except BaseException:  # what the interpreter prints for an uncaught exception
        traceback.print_exc()
        status = 1
    threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's exit sequence
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def _serve_one(connection: socket.socket, server: socket.socket, preamble: str) -> None:
    """In a forked monitor: fork the run, report its pid, wait for it, report its status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    with connection.makefile("r") as lines:
        request = json.loads(lines.readline())
    pid = os.fork()
    if pid == 0:
        server.close()
        connection.close()
        os._exit(_run_script(request, preamble))
    connection.sendall(f"{pid}\n".encode())
    _, wait_status = os.waitpid(pid, 0)
    with contextlib.suppress(BrokenPipeError):  # the client timed out and killed the run
        connection.sendall(f"{os.waitstatus_to_exitcode(wait_status)}\n".encode())


def serve(address: str) -> None:
    """Import the stack, say ``ready`` on stdout, then fork a monitor per connection."""
    with tempfile.TemporaryFile("w+") as printed:
        saved = os.dup(1), os.dup(2)
        os.dup2(printed.fileno(), 1)
        os.dup2(printed.fileno(), 2)
        for name in PRELOADED:
            __import__(name)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        printed.seek(0)
        preamble = printed.read()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        if os.fork() == 0:
            _serve_one(connection, server, preamble)
            os._exit(0)
        connection.close()


class PreloadedPython:
    """A client of one server process, started on first use and stopped with the tests."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="preloaded-")
        self.address = os.path.join(self._folder.name, "socket")
        self._server = subprocess.Popen(
            [sys.executable, __file__, self.address],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._server.stdout is not None
        if self._server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the preloaded interpreter did not start: {self._server.wait()}")
        atexit.register(self.close)

    def run(
        self, script: Path, args: list[str], *, cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``subprocess.run([python, script, *args], capture_output=True, text=True)``, in a
        fork of the preloaded interpreter."""
        with tempfile.TemporaryDirectory(prefix="run-") as streams:
            paths = {name: os.path.join(streams, name) for name in ("stdout", "stderr")}
            request = {"script": str(script), "args": args, "cwd": str(cwd), "env": env, **paths}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.connect(self.address)
                connection.sendall((json.dumps(request) + "\n").encode())
                connection.settimeout(timeout)
                with connection.makefile("r") as lines:
                    pid = int(lines.readline())
                    try:
                        status = int(lines.readline())
                    except TimeoutError:
                        os.kill(pid, signal.SIGKILL)
                        raise subprocess.TimeoutExpired(
                            [sys.executable, str(script), *args],
                            timeout,
                            output=Path(paths["stdout"]).read_text(),
                            stderr=Path(paths["stderr"]).read_text(),
                        ) from None
            stdout, stderr = (Path(paths[name]).read_text() for name in ("stdout", "stderr"))
        return subprocess.CompletedProcess(
            [sys.executable, str(script), *args], status, stdout, stderr
        )

    def close(self) -> None:
        if self._server.poll() is None:
            self._server.kill()
            self._server.wait()
        self._folder.cleanup()


if __name__ == "__main__":
    serve(sys.argv[1])
