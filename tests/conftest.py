import os
from pathlib import Path

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


def augmentor_copy(rgb: np.ndarray, degrees: float, flip_lr: bool = False, flip_ud: bool = False) -> np.ndarray:
    """What Augmentor did to make LC25000: rotate, crop the largest upright square, scale back, flip."""
    size = rgb.shape[0]
    image = Image.fromarray(rgb).rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    theta = np.radians(abs(degrees))
    side = size / (np.cos(theta) + np.sin(theta))
    cx, cy = image.size[0] / 2, image.size[1] / 2
    image = image.crop((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)).resize((size, size), Image.Resampling.BICUBIC)
    if flip_lr:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if flip_ud:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return np.asarray(image)


@pytest.fixture
def tiny_dataset(tmp_path):
    """An LC25000-shaped folder of synthetic tiles: 3 families of 4 copies per class."""
    root = tmp_path / "lc"
    for k, label in enumerate(("lung_n", "lung_aca", "lung_scc")):
        folder = root / "nested" / label
        folder.mkdir(parents=True)
        n = 0
        for family in range(3):
            base = texture(100 * k + family)
            for degrees, lr, ud in ((0, False, False), (12, True, False), (-20, False, True), (25, True, True)):
                n += 1
                Image.fromarray(augmentor_copy(base, degrees, lr, ud)).save(folder / f"{label.replace('_', '')}{n}.jpeg", quality=90)
    return root
