"""W&B never costs a run: against a local stub server that rejects the key (401) or accepts
connections and never answers, a run falls back to offline in bounded time with one warning."""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from recipe_runs import QUICK, ROOT, read_test_metrics, recipe_env, run_recipe, run_recipes

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, like a real key
INIT_TIMEOUT_S = 8  # WANDB_INIT_TIMEOUT for the tests; the default is 30
WARNING = "W&B: cannot log online"


class _Rejects(BaseHTTPRequestHandler):
    def _reject(self) -> None:
        body = b'{"errors": [{"message": "invalid api key"}]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _reject

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def rejecting_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def silent_server() -> Iterator[str]:
    """Accepts every connection and never sends a byte (a hung server or proxy)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


def _env(url: str, home: Path) -> dict[str, str]:
    return recipe_env(
        WANDB_MODE="",
        WANDB_BASE_URL=url,
        WANDB_API_KEY=FAKE_KEY,
        WANDB_INIT_TIMEOUT=str(INIT_TIMEOUT_S),
        HOME=str(home),
        NETRC=str(home / "none"),
    )


START_LOGGER = """
import sys, time
from pathlib import Path
from typing import ClassVar
from invariance_recipes.run.loggers import make_logger
run_dir = Path(sys.argv[1]); run_dir.mkdir()
start = time.monotonic()
logger = make_logger("wandb", run_dir=run_dir, name="stub", project="p", group=None,
                     tags=[], config={"a": 1})
logger.experiment.log({"x": 1.0})
print("mode:", logger.experiment.settings.mode)
print("start_s:", time.monotonic() - start)
logger.experiment.finish()
"""


@pytest.mark.slow
@pytest.mark.parametrize("server", ["rejecting_server", "silent_server"])
def test_broken_server_falls_back_to_offline_in_bounded_time(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(server)
    proc = subprocess.run(
        [sys.executable, "-c", START_LOGGER, str(tmp_path / "run")],
        cwd=ROOT,
        env=_env(url, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mode: offline" in proc.stdout
    assert proc.stderr.count(WARNING) == 1, proc.stderr[-3000:]
    assert "wandb sync" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert glob.glob(str(tmp_path / "run/wandb/offline-run-*/run-*.wandb"))
    start_s = float(proc.stdout.split("start_s:")[1].split()[0])
    assert start_s < INIT_TIMEOUT_S + 30  # the online attempt is bounded, then offline


@pytest.mark.slow
def test_training_against_a_rejecting_server_finishes(
    rejecting_server: str, tmp_path: Path
) -> None:
    proc = run_recipe(
        "train.py",
        *QUICK,
        "--logger",
        "wandb",
        "--run_name",
        "w",
        cwd=tmp_path,
        env=_env(rejecting_server, tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count(WARNING) == 1
    assert "Traceback" not in proc.stderr
    assert read_test_metrics(tmp_path / "runs/w")["test/acc"] >= 0
    assert glob.glob(str(tmp_path / "runs/w/wandb/offline-run-*/run-*.wandb"))


class _Records(BaseHTTPRequestHandler):
    """Answers 200 to anything and remembers every request (a W&B server that would accept)."""

    seen: ClassVar[list[str]] = []
    url: ClassVar[str] = ""

    def _record(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PUT = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[list[str]]:
    _Records.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Records)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Records.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield _Records.seen
    server.shutdown()


@pytest.mark.slow
def test_wandb_disabled_sends_nothing_from_train_evaluate_and_compare(
    recording_server: list[str], tmp_path: Path
) -> None:
    """A key and a reachable server, but WANDB_MODE=disabled: not one request, no W&B files."""
    env = {**_env(_Records.url, tmp_path), "WANDB_MODE": "disabled"}
    # batches of 10 learn enough in one epoch for evaluate.py to accept the model; the
    # comparison is independent of that run, so the two go side by side
    compare_args = [
        "--experiment", "small-shift", "--dataset", "digits", "--quick", "--variants",
        "baseline", "--logger", "wandb", "--out", "results", "--", "--data.max_samples", "100",
        "--trainer.max_epochs", "1", "--on_collapse", "warn",
    ]  # fmt: skip
    runs = run_recipes(
        {
            "train": (
                "train.py",
                [*QUICK, "--data.max_samples", "200", "--data.batch_size", "10",
                 "--on_collapse", "fail", "--logger", "wandb", "--run_name", "d"],
                env,
            ),
            "compare": ("compare.py", compare_args, env),
        },
        cwd=tmp_path,
    )  # fmt: skip
    trained, compared = runs["train"], runs["compare"]
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "WANDB_MODE=disabled" in trained.stdout + trained.stderr
    assert compared.returncode == 0, compared.stderr[-3000:]
    evaluated = run_recipe(
        "evaluate.py",
        "--ckpt",
        "runs/d/checkpoints/last.ckpt",
        "--logger",
        "wandb",
        "--max_shifts",
        "1",
        cwd=tmp_path,
        env=env,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert recording_server == []
    assert not list(tmp_path.rglob("wandb")) and not list(tmp_path.rglob("wandb_id"))
    assert (tmp_path / "results/results.md").is_file()


@pytest.fixture(scope="module")
def finished_comparison(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick one-arm comparison whose runs and summary logged offline: a rerun of it trains
    nothing and goes straight to the closing W&B summary."""
    folder = tmp_path_factory.mktemp("comparison")
    proc = run_recipe("compare.py", *COMPARE_ONE_ARM, cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


COMPARE_ONE_ARM = [
    "--experiment", "small-shift", "--dataset", "digits", "--quick", "--variants", "baseline",
    "--logger", "wandb", "--out", "results", "--", "--on_collapse", "warn",
    "--data.max_samples", "120", "--trainer.max_epochs", "1",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("server", ["rejecting_server", "silent_server"])
def test_compare_summary_falls_back_offline_against_a_broken_server(
    server: str, finished_comparison: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """All training done, the comparison's closing W&B summary meets a server that rejects the
    key or never answers: it goes offline like a run does, in bounded time, and exits 0."""
    url = request.getfixturevalue(server)
    shutil.copytree(finished_comparison / "results", tmp_path / "results")
    offline_runs = "results/wandb/offline-run-*/run-*.wandb"
    before = set(glob.glob(str(tmp_path / offline_runs)))
    start = time.monotonic()
    proc = run_recipe("compare.py", *COMPARE_ONE_ARM, cwd=tmp_path, env=_env(url, tmp_path))
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "finished before, skipped" in proc.stdout  # nothing trained: the summary alone
    assert proc.stderr.count(WARNING) == 1, proc.stderr[-3000:]  # the summary's, only
    assert len(set(glob.glob(str(tmp_path / offline_runs))) - before) == 1
    assert elapsed < INIT_TIMEOUT_S + 60  # no minute of retries at exit
