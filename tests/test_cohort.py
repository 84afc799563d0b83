"""A cohort of slides on Dask distributed: the same outputs as `lungfake slide` gives each slide alone, failures as
rows, reruns that skip finished slides, and a worker killed mid-run."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lungfake.cohort.run import OUTPUT_FILES, SUMMARY_FILE, run_cohort, slides_in
from lungfake.data.mosaic import write_mosaic
from lungfake.errors import SlideReadError
from tests.helpers import REPO, cells

SLIDES = REPO.parent / "shared" / "data" / "slides"
needs_slides = pytest.mark.skipif(not (SLIDES / "cmu_small_region.svs").is_file(), reason=f"no shared slides at {SLIDES}")
pytestmark = pytest.mark.slow  # each test starts a LocalCluster of worker processes
FIXED_TIME = "1796601600"  # SOURCE_DATE_EPOCH: the reports' "generated" time, so that two runs can match byte for byte


def _mosaics(folder, count: int, tiles: int = 12):
    return [write_mosaic(folder / f"mosaic_{k}.svs", [cells(100 * k + i) for i in range(tiles)], 4, 184 / 224).path
            for k in range(count)]


def _lungfake(*args, weights):
    env = {**os.environ, "SOURCE_DATE_EPOCH": FIXED_TIME}
    return subprocess.run([sys.executable, "-m", "lungfake", *map(str, args), "--weights-dir", str(weights)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)


@needs_slides
def test_a_cohort_on_two_workers_writes_what_lungfake_slide_writes_for_each_and_reports_a_failure(tmp_path, tiny_weights):
    folder = tmp_path / "cohort"
    folder.mkdir()
    for name in ("cmu_small_region.svs", "tcga_frozen_no_mpp.svs"):
        (folder / name).symlink_to(SLIDES / name)
    _mosaics(folder, 2)
    run = _lungfake("slides", folder, "--out", tmp_path / "out", "--workers", 2, weights=tiny_weights)
    assert run.returncode == 1, run.stderr[-3000:]  # one slide failed, the rest were mapped
    assert "3 of 4 slides mapped" in run.stdout and "4/4 slides" not in run.stdout
    assert "failed: tcga_frozen_no_mpp.svs" in run.stderr and "--mpp" in run.stderr and "Traceback" not in run.stderr
    table = (tmp_path / "out" / "cohort.csv").read_text().splitlines()
    assert len(table) == 5 and sum(",failed," in line for line in table) == 1
    for slide in ("cmu_small_region", "mosaic_0", "mosaic_1"):
        alone = tmp_path / "alone" / slide
        alone.mkdir(parents=True)
        single = _lungfake("slide", folder / f"{slide}.svs", *[x for kind, name in OUTPUT_FILES.items()
                                                                 for x in (f"--{kind}", alone / name)], weights=tiny_weights)
        assert single.returncode == 0, single.stderr[-2000:]
        for name in OUTPUT_FILES.values():
            assert (tmp_path / "out" / slide / name).read_bytes() == (alone / name).read_bytes(), (slide, name)
    assert not (tmp_path / "out" / "tcga_frozen_no_mpp").exists()  # nothing written half for the failed slide


def test_a_rerun_skips_finished_slides_and_redoes_an_unfinished_one(tmp_path, tiny_weights):
    slides = _mosaics(tmp_path, 2)
    first = run_cohort(slides, tmp_path / "out", tiny_weights, workers=1)
    assert [row["status"] for row in first] == ["done", "done"]
    kept = (tmp_path / "out" / "mosaic_0" / "tiles.csv").stat().st_mtime_ns
    (tmp_path / "out" / "mosaic_1" / SUMMARY_FILE).unlink()  # as if the run had stopped while writing it
    second = run_cohort(slides, tmp_path / "out", tiny_weights, workers=1)
    assert [row["status"] for row in second] == ["complete already", "done"]
    assert (tmp_path / "out" / "mosaic_0" / "tiles.csv").stat().st_mtime_ns == kept
    assert second[0]["tissue_tiles"] == first[0]["tissue_tiles"]


def test_a_worker_killed_mid_run_loses_no_finished_slide_and_the_run_completes(tmp_path, tiny_weights):
    slides = _mosaics(tmp_path, 4, tiles=40)
    killed = {}

    def kill_a_busy_worker(client):
        def kill():
            deadline = time.time() + 60
            while time.time() < deadline and not killed:
                busy = [address for address, keys in client.processing().items() if keys]
                if busy:
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    killed["task"] = client.processing()[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed["pid"] = pid
                time.sleep(0.05)
        threading.Thread(target=kill, daemon=True).start()

    rows = run_cohort(slides, tmp_path / "out", tiny_weights, workers=2, on_start=kill_a_busy_worker)
    assert killed.get("pid") and killed["task"]  # a worker died with a slide in hand
    assert [row["status"] for row in rows] == ["done"] * 4
    for slide in slides:
        assert all((tmp_path / "out" / slide.stem / name).is_file() for name in (*OUTPUT_FILES.values(), SUMMARY_FILE))


def test_a_cohort_is_a_folder_of_slides_or_a_list_of_them(tmp_path):
    slides = _mosaics(tmp_path, 2, tiles=4)
    (tmp_path / "notes.txt").write_text("not a slide")
    assert slides_in(tmp_path) == sorted(slides)
    (tmp_path / "list.txt").write_text(f"# the cohort\n{slides[1].name}\n{slides[0]}\n")
    assert slides_in(tmp_path / "list.txt") == [slides[1].resolve(), slides[0]]
    with pytest.raises(SlideReadError, match="neither a folder"):
        slides_in(tmp_path / "missing")


def test_a_cohort_runs_on_a_cluster_started_with_dask_scheduler_and_dask_worker(tmp_path, tiny_weights):
    """The documented way (docs/cohort.md): a scheduler and a worker of their own, on loopback."""
    import json

    dask = str(REPO / ".venv" / "bin" / "dask") if (REPO / ".venv" / "bin" / "dask").exists() else "dask"
    address_file = tmp_path / "scheduler.json"
    started = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(address_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not address_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        started.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(address_file), "--nthreads", "1",
                                         "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        slides = _mosaics(tmp_path, 2, tiles=8)
        run = _lungfake("slides", tmp_path, "--out", tmp_path / "out", "--scheduler",
                        json.loads(address_file.read_text())["address"], weights=tiny_weights)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "2 of 2 slides mapped" in run.stdout
        assert all((tmp_path / "out" / s.stem / SUMMARY_FILE).is_file() for s in slides)
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(timeout=30)
