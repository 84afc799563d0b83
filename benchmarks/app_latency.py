"""Cold start and warm time-to-result of the scoring page's work, and memory with every served model loaded.

Usage: python benchmarks/app_latency.py [TILE] [--repeats N] [--cold-repeats K] [--compare REV] [--models A,B]
Prints: cold start (import + verify and load every model + first score with Grad-CAM, each step timed) and the
peak resident memory of that alone (one copy of the models, as the app holds them), both in a fresh process; warm scoring (every
model's prediction and Grad-CAM heatmap, overlays rendered), the same with test-time augmentation, the same
upload through Streamlit's AppTest (the app's models in their own process, as in production), the precise overlays
offered on request (directly and through the page's button), and the peak RSS of this process (its own scorer; the
app's models' process is not counted).
"""
import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_at_revision(revision: str, tile: str, repeats: int, runs: int = 1) -> None:
    """The same benchmark at another revision, runs times, in a detached worktree that is removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=REPO, check=True, capture_output=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(tree), "LUNGFAKE_WEIGHTS_DIR": str(tree / "weights")}
            for run in range(runs):
                print(f"=== revision {revision}, run {run + 1} of {runs}", flush=True)
                subprocess.run([sys.executable, str(tree / "benchmarks" / "app_latency.py"), tile, "--repeats", str(repeats)],
                               cwd=tree, env=env, check=False)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False, capture_output=True)


def peak_rss_mb() -> float:
    """This process's high-water resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_cold_starts(tile: str, models: str, repeats: int) -> None:
    """The cold start in repeats fresh processes, one after another, and their median: on this shared machine
    one run can be several seconds off the others."""
    seconds = []
    for _ in range(repeats):
        run = subprocess.run([sys.executable, __file__, tile, "--cold-only", "--models", models], check=True,
                             capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.strip()]
        print("\n".join(lines), flush=True)
        seconds.append(float(lines[0].rsplit(":", 1)[1].rstrip(" s")))
    if repeats > 1:
        print(f"cold start over {repeats} fresh processes: median {statistics.median(seconds):.2f} s, "
              f"range {min(seconds):.2f}-{max(seconds):.2f} s")


def cold_start(tile: str, models: str) -> None:
    """What the app's models' process does once: import, verify and load every model, score a tile with Grad-CAM;
    each step timed."""
    started = time.perf_counter()
    from lungfake.scoring.scoring import Scorer
    from lungfake.serving.images import decode_image

    imported = time.perf_counter()
    scorer = Scorer.load(models)
    loaded = time.perf_counter()
    scorer.score([decode_image(Path(tile).read_bytes())], explain=True)
    scored = time.perf_counter()
    print(f"cold start (import, verify and load, first score with Grad-CAM), fresh process: {scored - started:.2f} s")
    print(f"  import {imported - started:.2f} s, verify and load {loaded - imported:.2f} s, first tile {scored - loaded:.2f} s; "
          f"TensorFlow imported: {'tensorflow' in sys.modules}")
    print(f"peak RSS of that process (one copy of every served model, one tile scored with Grad-CAM): {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    default_tile = REPO.parent / "shared" / "data" / "lc25000_lung" / "lung_aca" / "lungaca1.jpeg"
    parser.add_argument("tile", nargs="?", default=str(default_tile))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compare", metavar="REV", help="first run this benchmark as it was at a git revision, with that "
                        "revision's code and weights (a temporary worktree), for a side-by-side comparison")
    parser.add_argument("--compare-runs", type=int, default=1, help="how many times to run the --compare revision's benchmark")
    parser.add_argument("--cold-repeats", type=int, default=3, help="fresh processes to time the cold start in")
    parser.add_argument("--models", default="all", help="the served models to load (comma-separated), e.g. the ones a "
                        "--compare revision served, for a like-for-like cold start; the AppTest part always has all")
    parser.add_argument("--cold-only", action="store_true", help=argparse.SUPPRESS)  # the fresh process above
    args = parser.parse_args()
    if args.cold_only:
        return cold_start(args.tile, args.models)
    if args.compare:
        run_at_revision(args.compare, args.tile, args.repeats, args.compare_runs)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        print(f"=== this checkout ({head})", flush=True)
    data = Path(args.tile).read_bytes()
    fresh_cold_starts(args.tile, args.models, args.cold_repeats)

    started = time.perf_counter()
    from lungfake.explain.cam import overlay
    from lungfake.scoring.scoring import Scorer
    from lungfake.serving.images import decode_image

    scorer = Scorer.load(args.models)
    scorer.score([decode_image(data)], explain=True)  # the first call (earlier revisions traced their graphs in it)
    cold = time.perf_counter() - started

    def timed(tta: bool, precise: bool = False, repeats: int = args.repeats) -> list[float]:
        seconds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            report = scorer.score([decode_image(data, "tile.jpeg")], ["tile.jpeg"], explain=True, tta=tta, precise=precise)[0]
            for result in report.models.values():
                overlay(report.rgb, result.heatmap, 0.45)
            seconds.append(time.perf_counter() - t0)
        return seconds

    warm, warm_tta = timed(False), timed(True)
    precise = timed(False, precise=True, repeats=min(args.repeats, 5))

    from streamlit.testing.v1 import AppTest

    # This process holds its own scorer (~440,000 Python objects) that the app's server never holds: out of the sight
    # of the garbage collection Streamlit runs after every script run, so the page rerun is timed as the server has it.
    gc.freeze()
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.file_uploader[0].upload("first.jpeg", data, "image/jpeg").run()  # waits for the app's models' process
    app_warm = []
    for i in range(min(args.repeats, 5)):
        t0 = time.perf_counter()
        at.file_uploader[0].upload(f"tile{i}.jpeg", data + bytes([i]), "image/jpeg").run()
        app_warm.append(time.perf_counter() - t0)
        assert not at.exception and len([m for m in at.metric if m.label == "Prediction"]) >= len(scorer.served)
    app_precise = []
    for i in range(min(args.repeats, 3)):
        at.file_uploader[0].upload(f"precise{i}.jpeg", data + bytes([100 + i]), "image/jpeg").run()
        t0 = time.perf_counter()
        at.button(key="precise_overlays").click().run()
        app_precise.append(time.perf_counter() - t0)
        assert not at.exception

    print(f"models: {', '.join(m.name for m in scorer.served)}")
    print(f"cold start in this process (after the fresh one above, so with warm file caches): {cold:.2f} s")
    print(f"warm scoring + Grad-CAM + overlays: median {statistics.median(warm):.3f} s, max {max(warm):.3f} s over {len(warm)}")
    print(f"the same with test-time augmentation (8 views): median {statistics.median(warm_tta):.3f} s")
    print(f"warm upload through AppTest (full page rerun): median {statistics.median(app_warm):.3f} s, max {max(app_warm):.3f} s")
    print(f"precise overlays of every model on request: median {statistics.median(precise):.2f} s over {len(precise)}; "
          f"through the page's button (AppTest): median {statistics.median(app_precise):.2f} s, max {max(app_precise):.2f} s")
    print(f"peak RSS of this process (its own scorer; the app's models are in their own process): {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
