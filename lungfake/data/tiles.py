"""Finding and reading the LC25000 lung tiles under a data root."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lungfake.classes import CLASS_NAMES
from lungfake.errors import DatasetError

DATA_DIR_ENV = "LC25000_DIR"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class Tile:
    path: str  # relative to the data root, with forward slashes
    label: str


SHARED_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lc25000_lung"


def optional_data_root() -> Path | None:
    """The tiles when this machine has them ($LC25000_DIR, else ../shared/data/lc25000_lung beside the
    checkout); None where it does not (e.g. on Community Cloud)."""
    for candidate in (os.environ.get(DATA_DIR_ENV), SHARED_DATA_DIR):
        if candidate and (Path(candidate) / CLASS_NAMES[0]).is_dir():
            return Path(candidate)
    return None


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root from the argument, else from $LC25000_DIR."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not chosen:
        raise DatasetError(
            f"No data folder given: pass --data-dir or set {DATA_DIR_ENV} "
            "(for example ../shared/data/lc25000_lung)."
        )
    root = Path(chosen).expanduser()
    if not root.is_dir():
        raise DatasetError(f"Data folder {root} does not exist.")
    return root


def find_class_folders(root: Path) -> dict[str, Path]:
    """Each class folder (lung_n, lung_aca, lung_scc), found at any depth under root."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        for name in dirnames:
            if name in CLASS_NAMES and name not in found:
                found[name] = Path(dirpath) / name
    missing = [name for name in CLASS_NAMES if name not in found]
    if missing:
        raise DatasetError(
            f"Class folder(s) {', '.join(missing)} not found under {root}; "
            f"expected one folder per class: {', '.join(CLASS_NAMES)}."
        )
    return found


def list_tiles(root: Path) -> list[Tile]:
    """Every image file of every class, sorted, with paths relative to root."""
    tiles: list[Tile] = []
    for label, folder in find_class_folders(root).items():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"Class folder {folder} holds no .jpeg/.jpg/.png images.")
        tiles.extend(Tile(p.relative_to(root).as_posix(), label) for p in files)
    tiles.sort(key=lambda t: (CLASS_NAMES.index(t.label), _natural_key(t.path)))
    return tiles


def _natural_key(path: str) -> tuple:
    stem = Path(path).stem
    digits = "".join(ch for ch in stem if ch.isdigit())
    return (stem.rstrip("0123456789"), int(digits) if digits else -1, path)


def read_rgb(path: Path, size: int | None = None) -> np.ndarray | None:
    """An RGB uint8 array, resized to size x size if given; None (with a warning) if unreadable."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        warnings.warn(f"Skipping unreadable image {path}: {exc}", stacklevel=2)
        return None
    if size is not None and rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def read_split_pixels(root: Path, rows, size: int | None = None) -> np.ndarray:
    """Pixels (n, size, size, 3 uint8) of split rows, in row order. A split names every tile it needs,
    so an unreadable one is an error (naming the files), never a silently shorter array."""
    arrays = [read_rgb(root / row.path, size) for row in rows]
    missing = [row.path for row, a in zip(rows, arrays) if a is None]
    if missing:
        raise DatasetError(
            f"{len(missing)} tile(s) named by the split cannot be read under {root} (first: {', '.join(missing[:3])}); "
            "restore them, or re-split with `python -m lungfake split`."
        )
    if not arrays:
        side = size or 224
        return np.zeros((0, side, side, 3), np.uint8)
    return np.stack(arrays)


def load_readable_tiles(root: Path, size: int) -> tuple[list[Tile], np.ndarray]:
    """All readable tiles and their pixels at size x size; unreadable ones are skipped with a warning."""
    kept, arrays = [], []
    for tile in list_tiles(root):
        pixels = read_rgb(root / tile.path, size)
        if pixels is not None:
            kept.append(tile)
            arrays.append(pixels)
    if not kept:
        raise DatasetError(f"No readable images under {root}.")
    return kept, np.stack(arrays)
