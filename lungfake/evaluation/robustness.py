"""Named shifts of a tile: what another lab, camera or microscope does to it, each applied alone.

Used by ``python -m lungfake evaluate`` (the ``robustness`` table of each model's metrics) and by
``benchmarks/robustness.py``. The external colour target is measured on ``external_dev`` tiles: they
are used to measure here, never to train or choose anything.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.color import hed2rgb, rgb2hed

from lungfake.evaluation.colour import ColourTarget, match_colour
from lungfake.serving.scale import magnified  # the magnification shifts are scale.py's own operation


def _to_uint8(rgb_float: np.ndarray) -> np.ndarray:
    return np.clip(rgb_float * 255 + 0.5, 0, 255).astype(np.uint8)


def hed_scaled(rgb: np.ndarray, haematoxylin: float = 1.0, eosin: float = 1.0) -> np.ndarray:
    """More or less of each stain: its concentration in HED space scaled."""
    hed = rgb2hed(rgb)
    hed[..., 0] *= haematoxylin
    hed[..., 1] *= eosin
    return _to_uint8(hed2rgb(hed))


def gamma(rgb: np.ndarray, value: float) -> np.ndarray:
    return _to_uint8((rgb / 255.0) ** value)


def blurred(rgb: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def sharpened(rgb: np.ndarray, amount: float = 1.0, radius: float = 1.0) -> np.ndarray:
    """An unsharp mask, as many scanners and cameras apply: LC25000's tiles are soft, other labs' often are not."""
    # OpenCV's saturating uint8 arithmetic: skimage 0.26's unsharp_mask returned garbage for a 3-channel float tile here.
    return cv2.addWeighted(rgb, 1.0 + amount, cv2.GaussianBlur(rgb, (0, 0), radius), -amount, 0)


def jpeg(rgb: np.ndarray, quality: int = 30) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def another_lab(rgb: np.ndarray, rng: np.random.Generator, training: ColourTarget) -> np.ndarray:
    """A tile as another lab, scanner or microscope might show it, drawn at random: another magnification
    (0.5-2x), other amounts of each stain (0.5-2x: thinner or thicker sections, shorter or longer staining),
    restained towards colour statistics varied around LC25000's own (never another lab's), another gamma,
    focus blur and JPEG. Used to teach the out-of-distribution check what H&E tissue that merely differs from
    LC25000 looks like. Not sharpening: sharpened tissue has a photograph's sharp edges, and a tissue check
    fitted on it let photographs through (in tests/test_ood.py a photograph fell from 4x the limit to below it)."""
    tile = magnified(rgb, _log_uniform(rng, 0.5, 2.0))
    tile = hed_scaled(tile, _log_uniform(rng, 0.5, 2.0), _log_uniform(rng, 0.5, 2.0))
    if rng.random() < 0.7:
        mean = np.asarray(training.mean) + rng.normal(0.0, (8.0, 6.0, 6.0))
        std = np.asarray(training.std) * rng.uniform(0.7, 1.4, 3)
        tile = match_colour(tile, ColourTarget(tuple(mean), tuple(std)))
    tile = gamma(tile, float(rng.uniform(0.7, 1.5)))
    if rng.random() < 0.3:
        tile = blurred(tile, float(rng.uniform(0.5, 2.0)))
    return jpeg(tile, int(rng.integers(30, 96))) if rng.random() < 0.5 else tile


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def external_colour_target(external_dir: Path) -> ColourTarget | None:
    """The average colour statistics of the external development tiles, where present."""
    files = sorted(Path(external_dir).rglob("*.png")) if external_dir and Path(external_dir).is_dir() else []
    if not files:
        return None
    return ColourTarget.of_many([np.asarray(Image.open(f).convert("RGB")) for f in files])


def named_shifts(external: ColourTarget | None, training: ColourTarget | None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    shifts: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "haematoxylin x0.7": lambda x: hed_scaled(x, haematoxylin=0.7),
        "haematoxylin x1.3": lambda x: hed_scaled(x, haematoxylin=1.3),
        "eosin x0.7": lambda x: hed_scaled(x, eosin=0.7),
        "eosin x1.3": lambda x: hed_scaled(x, eosin=1.3),
        "gamma 0.7": lambda x: gamma(x, 0.7),
        "gamma 1.5": lambda x: gamma(x, 1.5),
        "blur 1.5 px": blurred,
        "sharpened (unsharp mask x1.5)": lambda x: sharpened(x, 1.5),
        "JPEG q30": jpeg,
        "magnification 0.6x": lambda x: magnified(x, 0.6),
        "magnification 1.6x": lambda x: magnified(x, 1.6),
    }
    if external is not None:
        shifts["restained to external colours"] = lambda x: match_colour(x, external)
    if training is not None:
        shifts["colour-neutral"] = lambda x: match_colour(x, training)
    return shifts
