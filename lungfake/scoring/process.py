"""The served models in a process of their own, scored through the one scoring path (scoring.Scorer).

The app keeps its models here rather than in the Streamlit server's process: loading runs beside the server,
which keeps answering (and says how far loading has gone) instead of blocking the first visitor's page, and a
model that runs out of memory ends this process, not the server. (It also once kept TensorFlow out of the server,
whose after-run ``keras.backend.clear_session()`` emptied the kernel cache; served files no longer need
TensorFlow at all, see model_file.py.)

A ScoringProcess looks like a Scorer to its callers (``score``, ``served``). Requests are served one at a
time, in order; images travel to the process and their scores back, without the images, which the caller
still holds.
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lungfake.errors import LungfakeError, ScoringProcessError
from lungfake.serving.registry import ModelEntry

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ServedModelInfo:
    """What callers read of a served model in another process: its registry entry and its name."""
    entry: ModelEntry
    name: str


@dataclass(frozen=True)
class LoadingStatus:
    """How far the process has got with loading the models."""
    loaded: int  # models loaded so far
    total: int  # models to load (0 until the registry has been read)
    loading: str = ""  # the model being loaded now
    ready: bool = False

    @property
    def fraction(self) -> float:
        return 1.0 if self.ready else (self.loaded / self.total if self.total else 0.0)

    @property
    def text(self) -> str:
        if self.ready:
            return f"{self.total} models loaded."
        if not self.loading:
            return "Starting the models' process..."
        return f"Loading {self.loading} ({self.loaded + 1} of {self.total})..."


def _serve(connection, which: str, folder: str | None) -> None:
    """The process's body: load the models, say so as it goes, then score requests until told to stop."""
    from lungfake.scoring.scoring import Scorer

    try:
        scorer = Scorer.load(which, Path(folder) if folder else None,
                             on_model=lambda i, total, name: connection.send(("loading", i, total, name)))
        connection.send(("ready", [ServedModelInfo(s.entry, s.name) for s in scorer.served]))
    except LungfakeError as exc:
        connection.send(("failed", exc))
        return
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request[0] == "stop":
            return
        connection.send(_answer(scorer, *request[1:]))


def _answer(scorer, images: list[np.ndarray], names: list[str] | None, explain: bool, tta: bool, precise: bool) -> tuple:
    try:
        return "scores", [replace(score, rgb=None) for score in scorer.score(images, names, explain, tta, precise)]
    except LungfakeError as exc:
        return "error", exc
    except Exception as exc:  # the process keeps serving; the caller gets the failure, logged with its traceback
        log.exception("scoring failed in the models' process")
        return "crash", f"{type(exc).__name__}: {exc}"


class ScoringProcess:
    """The models loading and then serving in a child process; ``score`` and ``served`` as a Scorer's."""

    def __init__(self, which: str = "all", folder: Path | None = None):
        context = multiprocessing.get_context("spawn")  # a fork would copy the server's threads
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, which, str(folder) if folder else None),
                                        name="lungfake-models", daemon=True)
        self._process.start()
        child.close()
        self._lock = threading.Lock()
        self._status = LoadingStatus(0, 0)
        self._served: list[ServedModelInfo] | None = None
        self._failure: LungfakeError | None = None

    @property
    def alive(self) -> bool:
        return self._process.is_alive() or self._failure is not None

    def status(self) -> LoadingStatus:
        """The loading status now (never waits); raises the loading's error if it failed."""
        if self._served is None and self._failure is None:
            with self._lock:
                self._read_loading_messages()
        if self._failure is not None:
            raise self._failure
        return self._status

    def _read_loading_messages(self) -> None:
        try:
            while self._served is None and self._failure is None and self._connection.poll():
                kind, *payload = self._connection.recv()
                if kind == "loading":
                    self._status = LoadingStatus(*payload)
                elif kind == "ready":
                    self._served = payload[0]
                    self._status = LoadingStatus(len(self._served), len(self._served), ready=True)
                else:
                    self._failure = payload[0]
        except (EOFError, OSError):
            self._failure = ScoringProcessError("The models' process stopped while loading (out of memory?); "
                                                "reload the page to start it again.")
        if self._served is None and self._failure is None and not self._process.is_alive():
            self._failure = ScoringProcessError("The models' process stopped while loading; reload the page.")

    def wait_until_ready(self, on_status: Callable[[LoadingStatus], None] | None = None) -> None:
        """Block until the models are loaded, calling on_status whenever the status changes."""
        shown = None
        while True:
            status = self.status()
            if status != shown and on_status:
                on_status(status)
            shown = status
            if status.ready:
                return
            time.sleep(POLL_SECONDS)

    @property
    def served(self) -> list[ServedModelInfo]:
        self.wait_until_ready()
        return list(self._served)

    def score(self, images: list[np.ndarray], names: list[str] | None = None, explain: bool = False,
              tta: bool = False, precise: bool = False) -> list:
        """Scorer.score, run in the models' process: a list of ImageScore."""
        self.wait_until_ready()
        with self._lock:
            try:
                self._connection.send(("score", list(images), names, explain, tta, precise))
                kind, payload = self._connection.recv()
            except (EOFError, OSError):
                raise ScoringProcessError("The models' process stopped (out of memory?); reload the page to start "
                                          "it again.") from None
        if kind == "error":
            raise payload
        if kind == "crash":
            raise ScoringProcessError(f"Scoring failed in the models' process ({payload}); try another image.")
        return [replace(score, rgb=rgb) for score, rgb in zip(payload, images)]

    def close(self) -> None:
        """Ask the process to stop, and end it if it does not."""
        with self._lock:
            try:
                self._connection.send(("stop",))
            except (OSError, ValueError):
                log.debug("the models' process had already closed its end")
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
        self._connection.close()
