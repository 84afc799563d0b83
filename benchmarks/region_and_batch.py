"""Time and memory of the region, batch and slide pages' work, with every served model, on real LC25000 tiles.

Usage: python benchmarks/region_and_batch.py [--skip-large] [--slides] [--slides-only]
Prints, in this order (each figure from this process, models loaded once and warmed up first):
  * region 2048x1536 at LC25000's own pixel scale (a tile = 224 px: ~220 tiles) and at 40x (a tile = 736 px):
    tiles, seconds for tiling + scoring + Grad-CAM of the 4 most suspicious tiles;
  * batch of 100 tiles (encoded JPEG bytes in, no Grad-CAM): seconds;
  * a 40-megapixel region (7300x5470 JPEG) decoded and scored at 40x in a fresh process: seconds and the
    process's peak resident memory (VmHWM), models included: the server-side cost of the largest upload;
  * with --slides: synthetic Aperio slides of glass with patches of real tiles (lungfake.data.mosaic), written to a
    temporary folder: 100,000 px a side with 320 and 1,280 tissue tiles, and 25,000 px a side with 320, each mapped
    as `lungfake slide` maps it (plan, every tissue tile, overlays of the 4 most suspicious) in a fresh process:
    tissue tiles, seconds, tiles per second of the whole run, peak resident memory. Time should follow the tissue
    tiles, not the area; memory should not grow with either;
  * with --cohort: six slides (glass with 8 patches of 16 real tiles each) mapped by `lungfake slides`' run_cohort on a
    LocalCluster of 1 and of 2 workers: seconds, tiles per second, each worker's peak resident memory.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA = Path(os.environ.get("LC25000_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lc25000_lung"))


def mosaic(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A region of that size tiled with real 224-px tiles of all three classes, in random order."""
    paths = sorted(p for label in ("lung_n", "lung_aca", "lung_scc") for p in (DATA / label).glob("*.jpeg"))
    rng = np.random.default_rng(seed)
    rows, cols = -(-height // 224), -(-width // 224)
    picks = rng.choice(len(paths), rows * cols, replace=False)
    tiles = [np.asarray(Image.open(paths[i]).convert("RGB")) for i in picks]
    grid = np.concatenate([np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0)
    return np.ascontiguousarray(grid[:height, :width])


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def large_region_child(path: str) -> None:
    """Run in a fresh process: load the models, decode and score a 40 MP JPEG at 40x; print JSON."""
    from lungfake.reports.region import RegionScale, decode_region, explain_tiles, score_region
    from lungfake.scoring.scoring import Scorer

    data = Path(path).read_bytes()
    scorer = Scorer.load()
    loaded_mb = peak_rss_mb()
    started = time.perf_counter()
    rgb, scale, factor = decode_region(data, "large.jpg", RegionScale.from_magnification(40))
    del data
    result = score_region(scorer, rgb, scale, pixel_factor=factor)
    explain_tiles(scorer, rgb, result, result.most_suspicious(4))
    print(json.dumps({"tiles": len(result.grid), "seconds": round(time.perf_counter() - started, 1),
                      "models_loaded_mb": round(loaded_mb), "peak_mb": round(peak_rss_mb())}))


SLIDE_MPP = 184 / 224  # LC25000's own scale: one 224-px tile a model tile
PATCH_TILES = 4  # a patch is 4 x 4 real tiles


def sparse_slide(path: Path, side: int, patches: int, seed: int = 0) -> None:
    """A slide side x side of glass with patches of real tiles spread evenly over it."""
    from lungfake.data.mosaic import write_sparse_slide

    placed, grid = [], int(np.ceil(np.sqrt(patches)))
    spacing = (side - 4000) // grid
    for k in range(patches):
        block = mosaic(224 * PATCH_TILES, 224 * PATCH_TILES, seed=seed + k)
        x, y = 2000 + (k % grid) * spacing, 2000 + (k // grid) * spacing
        placed.append((x - x % 224, y - y % 224, block))
    write_sparse_slide(path, side, placed, SLIDE_MPP)


def slide_child(path: str) -> None:
    """Run in a fresh process: load the models, plan and map a slide as `lungfake slide` does; print JSON."""
    from lungfake.reports.slide import map_slide, plan_slide
    from lungfake.scoring.scoring import Scorer
    from lungfake.serving.slides import SlideFile

    scorer = Scorer.load()
    loaded_mb = peak_rss_mb()
    started = time.perf_counter()
    with SlideFile(path) as slide:
        plan = plan_slide(slide)
        planned = time.perf_counter() - started
        result = map_slide(scorer, slide, plan)
    seconds = time.perf_counter() - started
    print(json.dumps({"tiles": len(plan.grid), "plan_seconds": round(planned, 1), "seconds": round(seconds, 1),
                      "tiles_per_second": round(len(plan.grid) / result.tiles.seconds, 1),
                      "models_loaded_mb": round(loaded_mb), "peak_mb": round(peak_rss_mb())}))


def slides() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for side, patches in ((100_000, 20), (100_000, 80), (25_000, 20)):
            path = Path(folder) / f"slide_{side}_{patches}.svs"
            started = time.perf_counter()
            sparse_slide(path, side, patches)
            written = time.perf_counter() - started
            child = subprocess.run([sys.executable, __file__, "--slide-child", str(path)], capture_output=True, text=True,
                                   check=True)
            run = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"slide {side:,} px a side, {patches * PATCH_TILES**2} tiles in patches ({path.stat().st_size // 2**20} MB, "
                  f"written in {written:.0f} s): {run['tiles']} tissue tiles, planned in {run['plan_seconds']} s, mapped "
                  f"in {run['seconds']} s in all ({run['tiles_per_second']} tiles/s scoring); peak RSS {run['peak_mb']} MB "
                  f"(models loaded: {run['models_loaded_mb']} MB)", flush=True)
            path.unlink()


def worker_peak_mb() -> float:
    return peak_rss_mb()


def cohort() -> None:
    from lungfake.cohort.run import run_cohort

    with tempfile.TemporaryDirectory() as folder:
        slides = []
        for k in range(6):
            slides.append(Path(folder) / f"slide_{k}.svs")
            sparse_slide(slides[-1], 12_000, 8, seed=100 * k)
        for workers in (1, 2):
            peaks, clients = {}, []

            def measure(progress, peaks=peaks, clients=clients):
                if progress.done == progress.total:
                    peaks.update(clients[0].run(worker_peak_mb))

            started = time.perf_counter()
            rows = run_cohort(slides, Path(folder) / f"out_{workers}", workers=workers, on_start=clients.append,
                              on_progress=measure)
            seconds = time.perf_counter() - started
            tiles = sum(row["tissue_tiles"] for row in rows)
            print(f"cohort of {len(rows)} slides, {tiles} tissue tiles, {workers} worker(s): {seconds:.1f} s including the "
                  f"cluster's start and each worker's model load, {tiles / seconds:.1f} tiles/s; worker peak RSS "
                  f"{', '.join(f'{mb:.0f}' for mb in peaks.values())} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--slides", action="store_true", help="also map three large synthetic slides (about 10 minutes)")
    parser.add_argument("--slides-only", action="store_true")
    parser.add_argument("--cohort", action="store_true", help="only the cohort on 1 and 2 workers (about 5 minutes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--slide-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return large_region_child(args.child)
    if args.slide_child:
        return slide_child(args.slide_child)
    if args.slides_only:
        return slides()
    if args.cohort:
        return cohort()

    from lungfake.reports.batch import score_batch
    from lungfake.reports.region import RegionScale, decode_region, explain_tiles, score_region
    from lungfake.scoring.scoring import Scorer

    scorer = Scorer.load()
    print(f"models: {', '.join(s.name for s in scorer.served)}")
    field = jpeg_bytes(mosaic(2048, 1536))
    score_region(scorer, *decode_region(field, "warm-up", RegionScale.from_magnification(40))[:2])
    for label, scale in (("LC25000 pixel scale", RegionScale.like_lc25000_tiles()), ("40x", RegionScale.from_magnification(40))):
        started = time.perf_counter()
        rgb, working, factor = decode_region(field, "field.jpg", scale)
        result = score_region(scorer, rgb, working, pixel_factor=factor)
        explain_tiles(scorer, rgb, result, result.most_suspicious(4))
        print(f"region 2048x1536 at {label}: {len(result.grid)} tiles of {result.in_file_pixels(result.grid.tile)} px, "
              f"{time.perf_counter() - started:.1f} s (decode, tiling, scoring, Grad-CAM of 4 tiles)")

    paths = sorted((DATA / "lung_aca").glob("*.jpeg"))[:50] + sorted((DATA / "lung_n").glob("*.jpeg"))[:50]
    files = [(p.name, p.read_bytes()) for p in paths]
    started = time.perf_counter()
    rows = score_batch(scorer, files)
    print(f"batch of {len(rows)} tiles, no Grad-CAM: {time.perf_counter() - started:.1f} s")
    print(f"this process's peak RSS: {peak_rss_mb():.0f} MB")

    if not args.skip_large:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "large.jpg"
            path.write_bytes(jpeg_bytes(mosaic(7300, 5470, seed=1)))
            child = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True)
        large = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"region 7300x5470 (40 MP) at 40x in a fresh process: {large['tiles']} tiles, {large['seconds']} s; "
              f"peak RSS {large['peak_mb']} MB (models loaded: {large['models_loaded_mb']} MB)")
    if args.slides:
        slides()


if __name__ == "__main__":
    main()
