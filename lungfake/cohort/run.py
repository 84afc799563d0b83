"""Mapping many slides on Dask distributed.

A slide is one task: on two cores a slide of a few hundred tissue tiles keeps a worker busy for tens of seconds, far
more than the scheduler's overhead, and a slide's tiles must come together for its outputs anyway
(docs/cohort.md has the measured figures). Each worker process loads the served models once (worker_scorer) and
keeps them for every slide it is given. Outputs go to OUT/<slide stem>/ as each slide finishes, summary.json last, so
a folder holding summary.json is complete and a rerun skips it. A slide that fails gets a row with its error and the
rest go on; a worker that dies has its slide scheduled again (Dask's own rescheduling), and nothing a finished slide
wrote is lost.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lungfake.errors import LungfakeError, SlideReadError
from lungfake.reports.case_report import CaseReport
from lungfake.reports.slide import SLIDE_SUFFIXES, map_slide, plan_slide, write_all
from lungfake.scoring.scoring import Scorer
from lungfake.serving.registry import load_registry
from lungfake.serving.slides import SlideFile
from lungfake.serving.store import WeightsStore

log = logging.getLogger(__name__)

OUTPUT_FILES = {"map": "map.png", "csv": "tiles.csv", "geojson": "tiles.geojson", "report": "report.html"}
SUMMARY_FILE = "summary.json"  # written last: its presence means the slide's folder is complete
TABLE_COLUMNS = ("slide", "status", "tissue_tiles", "tiles_by_verdict", "cancer_found", "subtype", "subtype_withheld_tiles",
                 "refused_tiles", "seconds", "error")
_scorers: dict[str, Scorer] = {}  # per worker process: the served models, loaded once


def worker_scorer(weights: str) -> Scorer:
    """The served models of this weights folder, loaded once per worker process and kept for every slide."""
    if weights not in _scorers:
        _scorers[weights] = Scorer.load("all", Path(weights))
    return _scorers[weights]


def slides_in(source: str | Path) -> list[Path]:
    """The slides a cohort names: every slide file in a folder, or the paths listed in a text file (one a line)."""
    source = Path(source)
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES)
    if source.is_file():
        lines = [line.strip() for line in source.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return [(source.parent / line).resolve() if not Path(line).is_absolute() else Path(line) for line in lines]
    raise SlideReadError(f"{source.name} is neither a folder of slides nor a list of them; give a folder or a text file "
                         "with one slide path a line.")


def output_folder(out: Path, slide: Path) -> Path:
    return out / slide.stem


def is_complete(folder: Path) -> bool:
    return (folder / SUMMARY_FILE).is_file() and all((folder / name).is_file() for name in OUTPUT_FILES.values())


def map_one(slide: str, folder: str, weights: str, mpp: float | None = None) -> dict:
    """Run on a worker: map one slide as `lungfake slide` does and write its outputs; its cohort row, with the error in
    words where the slide could not be mapped (nothing is then written for it)."""
    started = time.perf_counter()
    try:
        scorer = worker_scorer(weights)
        with SlideFile(slide) as opened:
            result = map_slide(scorer, opened, plan_slide(opened, mpp))
        outputs = result.outputs([s.entry for s in scorer.served])
    except LungfakeError as exc:
        return {"slide": Path(slide).name, "status": "failed", "error": str(exc),
                "seconds": round(time.perf_counter() - started, 1)}
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    write_all({target / OUTPUT_FILES[kind]: data for kind, data in outputs.items()})
    row = {**result.summary(), "status": "done", "error": ""}
    write_all({target / SUMMARY_FILE: (json.dumps(row, indent=1) + "\n").encode()})
    return row


@dataclass
class CohortProgress:
    done: int
    total: int
    tiles: int
    seconds: float

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        return self.seconds / self.done * (self.total - self.done) if self.done else None


def run_cohort(slides: list[Path], out: Path, weights: Path | None = None, scheduler: str | None = None, workers: int = 2,
               mpp: float | None = None, on_progress: Callable[[CohortProgress], None] | None = None,
               on_start: Callable[[object], None] | None = None) -> list[dict]:
    """Map every slide not already complete under out, on the cluster at scheduler or a LocalCluster of workers
    processes; the cohort table (CSV and HTML) is rewritten as each slide finishes. Returns the rows, in slide order.
    on_start(client) is called once the work is submitted (a test kills a worker from it)."""
    from dask.distributed import Client, LocalCluster, as_completed

    out.mkdir(parents=True, exist_ok=True)
    weights = str(WeightsStore.resolve(weights).root)
    models = list(load_registry(Path(weights)).values())
    rows = {slide.name: _finished_row(output_folder(out, slide)) for slide in slides
            if is_complete(output_folder(out, slide))}
    todo = [slide for slide in slides if slide.name not in rows]
    log.info("cohort: %d slides, %d complete already, %d to map", len(slides), len(rows), len(todo))
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                   dashboard_address=None)
    started, tiles = time.perf_counter(), 0
    with Client(scheduler or cluster) as client:
        futures = {client.submit(map_one, str(slide), str(output_folder(out, slide)), weights, mpp, pure=False,
                                 key=f"slide-{i}-{slide.name}"): slide for i, slide in enumerate(todo)}
        if on_start:
            on_start(client)
        for future in as_completed(futures):
            slide = futures[future]
            rows[slide.name] = _row_of(future, slide)
            tiles += int(rows[slide.name].get("tissue_tiles") or 0)
            _write_table(out, [rows[s.name] for s in slides if s.name in rows], models)
            if on_progress:
                on_progress(CohortProgress(len(rows) - (len(slides) - len(todo)), len(todo), tiles,
                                           time.perf_counter() - started))
    if cluster is not None:
        cluster.close()
    ordered = [rows[slide.name] for slide in slides]
    _write_table(out, ordered, models)
    return ordered


def _row_of(future, slide: Path) -> dict:
    try:
        return future.result()
    except Exception as exc:
        log.warning("slide %s failed: %s", slide.name, exc)
        return {"slide": slide.name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _finished_row(folder: Path) -> dict:
    return {**json.loads((folder / SUMMARY_FILE).read_text()), "status": "complete already"}


def _cells(row: dict) -> list[str]:
    def cell(column: str) -> str:
        value = row.get(column, "")
        if isinstance(value, dict):
            return "; ".join(f"{name} {count}" for name, count in value.items())
        return "" if value is None else str(value)
    return [cell(column) for column in TABLE_COLUMNS]


def _write_table(out: Path, rows: list[dict], models: list) -> None:
    """cohort.csv and cohort.html, one row a slide, replaced whole (never half-written)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(TABLE_COLUMNS)
    writer.writerows(_cells(row) for row in rows)
    report = CaseReport("Cohort report", f"{len(rows)} slides", models)
    failed = [row for row in rows if row.get("status") == "failed"]
    report.add_text(f"{len(rows) - len(failed)} slides mapped, {len(failed)} failed. Each slide's map, tiles (CSV, "
                    "QuPath GeoJSON) and report are in its own folder beside this file.")
    report.add_table(list(TABLE_COLUMNS), [_cells(row) for row in rows])
    write_all({out / "cohort.csv": text.getvalue().encode(), out / "cohort.html": report.html().encode()})


def cluster_workers(client) -> dict[str, int]:
    """Each worker's address and process id (for measuring or stopping one)."""
    return client.run(os.getpid)
