"""The app served by `streamlit run` on loopback, for browser tests, benchmarks and screenshots (they share it,
so it lives here rather than in tests/ or benchmarks/); it starts the server as a process and never imports
streamlit."""
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(port: int | None = None, start_timeout_s: float = 60, log_path: Path | None = None):
    """The app served by `streamlit run` on 127.0.0.1; yields its base URL and stops it afterwards.
    The server's output goes to log_path when given."""
    with app_server(port, start_timeout_s, log_path) as (url, _process):
        yield url


@contextlib.contextmanager
def app_server(port: int | None = None, start_timeout_s: float = 60, log_path: Path | None = None, repo: Path = REPO):
    """As running_app, yielding the base URL and the server process (for memory measurements); repo is the checkout
    whose app is served (another revision's, for a before-and-after benchmark)."""
    port = port or free_port()
    streamlit = os.path.join(os.path.dirname(sys.executable), "streamlit")
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "wb")) if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            [streamlit, "run", str(repo / "streamlit_app.py"), "--server.address", "127.0.0.1",
             "--server.port", str(port), "--server.headless", "true"],
            cwd=repo, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(repo), "LUNGFAKE_WEIGHTS_DIR": str(repo / "weights")},
        )
        stack.callback(_stop, process)
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url, process, start_timeout_s)
        yield url, process


def _stop(process: subprocess.Popen, grace_s: float = 20) -> None:
    """Ask the server to stop, and end it if it has not within grace_s (after a load test with many open
    sessions, streamlit's shutdown has been seen to take longer)."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace_s)


def _wait_until_healthy(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"streamlit did not start on {url} within {timeout_s} s") from None
            time.sleep(0.5)
