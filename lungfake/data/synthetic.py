"""Synthetic copies of a tile: the transforms LC25000's copies went through, with known parameters.

Used to measure the family detector (``benchmarks/family_recall.py``) and to test it; and images recoloured
as H&E, to test the out-of-distribution check.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CopyTransform:
    degrees: float
    mirrored: bool
    magnification: float  # requested; the rotation may force a tighter crop
    off_centre: bool
    jpeg_quality: int
    brightness: float = 1.0
    hue_shift: float = 0.0

    @staticmethod
    def random(rng: np.random.Generator, magnification: tuple[float, float] = (1.0, 2.5)) -> CopyTransform:
        return CopyTransform(
            degrees=float(rng.uniform(0, 360)), mirrored=bool(rng.integers(2)),
            magnification=float(rng.uniform(*magnification)), off_centre=bool(rng.integers(2)),
            jpeg_quality=int(rng.integers(60, 96)), brightness=float(rng.uniform(0.92, 1.08)),
            hue_shift=float(rng.uniform(-4, 4)),
        )


def crop_side(size: int, transform: CopyTransform) -> float:
    """Side, in source pixels, of the turned square cut out (the largest that fits, at most size/magnification)."""
    theta = np.radians(transform.degrees)
    fit = size / (abs(np.cos(theta)) + abs(np.sin(theta)))
    return float(min(size / transform.magnification, fit))


def effective_magnification(size: int, transform: CopyTransform) -> float:
    return size / crop_side(size, transform)


def make_copy(rgb: np.ndarray, transform: CopyTransform, rng: np.random.Generator | None = None) -> np.ndarray:
    """rgb turned, cut out (centred or not), rescaled to its own size, mirrored, recoloured and JPEG'd."""
    size = rgb.shape[0]
    side = crop_side(size, transform)
    theta = np.radians(transform.degrees)
    reach = side / 2 * (abs(np.cos(theta)) + abs(np.sin(theta)))
    centre = np.array([size / 2, size / 2])
    if transform.off_centre:
        rng = rng or np.random.default_rng(0)
        centre = rng.uniform(reach, size - reach, 2) if size - 2 * reach > 0 else centre
    step = side / size
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) * step
    # Output pixel p samples the source at centre + rotation @ (p - size/2).
    offset = centre - rotation @ np.array([size / 2, size / 2])
    matrix = np.hstack([rotation, offset[:, None]])
    out = cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (size, size), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    if transform.mirrored:
        out = out[:, ::-1]
    hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + transform.hue_shift) % 180
    hsv[..., 2] = np.clip(hsv[..., 2] * transform.brightness, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    buffer = io.BytesIO()
    Image.fromarray(out).save(buffer, format="JPEG", quality=transform.jpeg_quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def recoloured_as_he(rgb: np.ndarray) -> np.ndarray:
    """Any image mapped onto an H&E palette: dark = haematoxylin purple, light = eosin pink to white. The hardest
    case for a colour check: a photograph or document in H&E's colours (benchmarks/nonhistology.py, tests)."""
    grey = rgb.astype(np.float32).mean(axis=2, keepdims=True) / 255.0
    purple, pink, white = np.array([90, 40, 130]), np.array([225, 130, 185]), np.array([245, 235, 240])
    lower = purple + (pink - purple) * np.clip(grey * 2, 0, 1)
    return np.where(grey < 0.5, lower, pink + (white - pink) * np.clip(grey * 2 - 1, 0, 1)).astype(np.uint8)
