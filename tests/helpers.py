"""What several test modules share: where the real data is, and synthetic tiles."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LC25000_DIR", REPO.parent / "shared" / "data" / "lc25000_lung"))
HAS_DATA = (DATA_DIR / "lung_n").is_dir()
needs_data = pytest.mark.skipif(not HAS_DATA, reason=f"LC25000 lung data not found at {DATA_DIR} (set LC25000_DIR)")


def texture(seed: int, size: int = 224) -> np.ndarray:
    """A smooth random colour texture, standing in for an H&E tile."""
    rng = np.random.default_rng(seed)
    noise = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    big = np.asarray(Image.fromarray((noise * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC))
    fine = rng.integers(0, 40, (size, size, 3))
    return np.clip(big.astype(int) + fine - 20, 0, 255).astype(np.uint8)


def cells(seed: int, size: int = 224) -> np.ndarray:
    """An H&E-like tile: pink stroma with fibres, purple nuclei of many sizes and red blood cells,
    each seed its own arrangement (enough distinct keypoints for the family detector)."""
    rng = np.random.default_rng(seed)
    tile = np.full((size, size, 3), (232, 190, 215), np.uint8)
    for _ in range(12):
        start, end = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(tile, tuple(map(int, start)), tuple(map(int, end)), (215, 150, 190), int(rng.integers(2, 6)))
    for _ in range(int(rng.integers(40, 70))):
        centre = tuple(map(int, rng.integers(0, size, 2)))
        axes = (int(rng.integers(3, 10)), int(rng.integers(3, 8)))
        colour = tuple(int(c) for c in rng.integers((60, 30, 110), (110, 70, 170)))
        cv2.ellipse(tile, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    for _ in range(int(rng.integers(10, 25))):
        centre = tuple(map(int, rng.integers(0, size, 2)))
        cv2.circle(tile, centre, int(rng.integers(3, 5)), (200, 40, 70), -1)
    noise = rng.normal(0, 6, tile.shape)
    return np.clip(cv2.GaussianBlur(tile, (0, 0), 0.8) + noise, 0, 255).astype(np.uint8)


def he_like(seed: int, size: int = 96) -> np.ndarray:
    """Pink-and-purple blobs on a pale background: a crude stand-in for an H&E tile."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((size // 8, size // 8)) * 255).astype(np.uint8))
    mix = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC)) / 255.0
    purple, pink = np.array([120, 70, 160]), np.array([235, 150, 200])
    pixels = purple * mix[..., None] + pink * (1 - mix[..., None]) + rng.normal(0, 8, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def register_tiny_model(folder: Path) -> Path:
    """A weights store holding an (untrained) tiny model and an out-of-distribution reference fitted on
    H&E-like images, registered with their sha256s."""
    from lungfake.evaluation.ood_fitting import fit_reference
    from lungfake.serving.inference import LoadedModel
    from lungfake.serving.registry import OodEntry, load_registry, register_ood, sha256_of
    from lungfake.training.architectures import build_model
    from lungfake.training.trainer import Recipe, export_trained

    export_trained(build_model("tiny", 32), Recipe("tiny", train_size=32, epochs=1), "grouped", {"loss": [1.0]}, 1.0, folder=folder)
    model = LoadedModel.load(load_registry(folder)["tiny"], folder)
    train, val = [he_like(s) for s in range(200)], [he_like(s) for s in range(200, 300)]
    reference = fit_reference(train, model.features_of(train), val, model.features_of(val), "tiny", 0.99)
    (folder / "ood.npz").write_bytes(reference.to_bytes())
    register_ood(OodEntry("ood.npz", sha256_of(folder / "ood.npz"), "tiny", 0.99), folder)
    return folder


def store_with_ood_limits(source: Path, folder: Path, tissue: float, stain: float, features: float) -> Path:
    """A copy of a weights store whose out-of-distribution reference has the given limits (registered with its
    sha256): a negative limit fails every image on that check, infinity passes every one."""
    import shutil

    from lungfake.serving.ood import GaussianReference, OodReference
    from lungfake.serving.registry import OodEntry, load_ood_entry, register_ood, sha256_of

    shutil.copytree(source, folder)
    entry = load_ood_entry(folder)
    fitted = OodReference.from_file(folder / entry.file)

    def limited(reference: GaussianReference, limit: float) -> GaussianReference:
        return GaussianReference(reference.mean, reference.precision, limit, reference.projection)

    reference = OodReference(limited(fitted.stain, stain), limited(fitted.features, features), fitted.feature_model,
                             fitted.quantile, limited(fitted.stain, tissue), fitted.blur_sigma)
    (folder / entry.file).write_bytes(reference.to_bytes())
    register_ood(OodEntry(entry.file, sha256_of(folder / entry.file), entry.feature_model, entry.quantile), folder)
    return folder


def metrics_of(**fields):
    """An EvaluationMetrics of a served model on the grouped split, with empty figures except those given."""
    from lungfake.evaluation.metrics import SCHEMA_VERSION, EvaluationMetrics

    base = dict(schema_version=SCHEMA_VERSION, kind="model", arch="densenet121", protocol="grouped", display_name="M",
                class_names=["lung_n", "lung_aca", "lung_scc"], split_sha256=None, n_test=0, n_test_families=0,
                accuracy=0.0, accuracy_ci95=[0.0, 0.0], macro_f1=0.0, macro_f1_ci95=[0.0, 0.0], classification_report={},
                confusion_matrix=[], binary_accuracy=0.0, binary_sensitivity=0.0, binary_specificity=0.0, roc_auc={},
                roc_curves={}, expected_calibration_error=0.0, reliability={}, predictions=[], true_labels=[])
    return EvaluationMetrics(**{**base, **fields})
