"""Cold start and warm time-to-result of the scoring page's work, and memory with every served model loaded.

Usage: python benchmarks/app_latency.py [TILE] [--repeats N]
Prints: cold start (verify + load every model + build Grad-CAM + first score), warm scoring (every model's
prediction and Grad-CAM heatmap, overlays rendered), the same with test-time augmentation, the same upload
through Streamlit's AppTest, and peak RSS.
"""
import argparse
import os
import resource
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    default_tile = REPO.parent / "shared" / "data" / "lc25000_lung" / "lung_aca" / "lungaca1.jpeg"
    parser.add_argument("tile", nargs="?", default=str(default_tile))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    data = Path(args.tile).read_bytes()

    started = time.perf_counter()
    from lungfake.cam import overlay
    from lungfake.images import decode_image
    from lungfake.scoring import Scorer

    scorer = Scorer.load()
    scorer.score([decode_image(data)], explain=True)  # first call builds Grad-CAM and traces the graphs
    cold = time.perf_counter() - started

    def timed(tta: bool) -> list[float]:
        seconds = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            report = scorer.score([decode_image(data, "tile.jpeg")], ["tile.jpeg"], explain=True, tta=tta)[0]
            for result in report.models.values():
                overlay(report.rgb, result.heatmap, 0.45)
            seconds.append(time.perf_counter() - t0)
        return seconds

    warm, warm_tta = timed(False), timed(True)

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.file_uploader[0].upload("first.jpeg", data, "image/jpeg").run()  # loads the models into the cache
    app_warm = []
    for i in range(min(args.repeats, 5)):
        t0 = time.perf_counter()
        at.file_uploader[0].upload(f"tile{i}.jpeg", data + bytes([i]), "image/jpeg").run()
        app_warm.append(time.perf_counter() - t0)
        assert not at.exception and len([m for m in at.metric if m.label == "Prediction"]) >= len(scorer.served)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"models: {', '.join(m.name for m in scorer.served)}")
    print(f"cold start (load, verify, Grad-CAM build, first score): {cold:.2f} s")
    print(f"warm scoring + Grad-CAM + overlays: median {statistics.median(warm):.3f} s, max {max(warm):.3f} s over {len(warm)}")
    print(f"the same with test-time augmentation (8 views): median {statistics.median(warm_tta):.3f} s")
    print(f"warm upload through AppTest (full page rerun): median {statistics.median(app_warm):.3f} s, max {max(app_warm):.3f} s")
    print(f"peak RSS with every served model loaded: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
