"""The test tiles behind each cell of a confusion matrix, and a small committed sprite of the misclassified
ones, so the dashboard's error browser can show them where the LC25000 folder is absent (e.g. on Community
Cloud). The metrics files hold predictions in the committed grouped split's test order.
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lungfake.data.splits import SplitRow, load_split, rows_on, split_sha256
from lungfake.data.tiles import read_rgb
from lungfake.errors import MetricsError, SplitError
from lungfake.evaluation.metrics import EvaluationMetrics
from lungfake.serving.store import WeightsStore

log = logging.getLogger(__name__)

SPRITE_IMAGE, SPRITE_INDEX = "misclassified.jpg", "misclassified.json"
SPRITE_TILE = 112  # pixels a side: enough to see the tissue and to re-score it; the sprite stays ~2 MB
SPRITE_COLUMNS = 16


def held_out_rows(store: WeightsStore, metrics: EvaluationMetrics) -> list[SplitRow]:
    """The committed grouped split's test rows, in the order of the metrics' predictions; SplitError when
    the metrics were computed on another split."""
    csv_path = store.split_csv(metrics.protocol)
    if metrics.split_sha256 != split_sha256(csv_path):
        raise SplitError(f"{metrics.display_name}'s metrics were computed on another split than the committed one; "
                         "rerun python -m lungfake evaluate.")
    rows = rows_on(load_split(csv_path), "test")
    if len(rows) != len(metrics.predictions):
        raise MetricsError(f"{metrics.display_name}'s metrics hold {len(metrics.predictions)} predictions for "
                           f"{len(rows)} test tiles; rerun python -m lungfake evaluate.")
    return rows


def cell_rows(metrics: EvaluationMetrics, rows: list[SplitRow], true_label: str, predicted_label: str) -> list[SplitRow]:
    """The test tiles of one confusion-matrix cell: true class true_label, predicted predicted_label."""
    names = list(metrics.class_names)
    truth, predicted = np.asarray(metrics.true_labels), np.asarray(metrics.predictions)
    chosen = np.flatnonzero((truth == names.index(true_label)) & (predicted == names.index(predicted_label)))
    return [rows[i] for i in chosen]


def by_family(chosen: list[SplitRow], rows: list[SplitRow]) -> list[tuple[str, int, int]]:
    """(family, tiles of it among chosen, its test tiles), most chosen first: a cell's errors usually come from a few
    original fields, each seen in ~20 copies, which is why one field can move accuracy by a point or more."""
    sizes = Counter(row.family for row in rows)
    return [(family, n, sizes[family]) for family, n in Counter(row.family for row in chosen).most_common()]


def misclassified_paths(all_metrics: list[EvaluationMetrics], rows: list[SplitRow]) -> list[str]:
    """Every test tile some model (or the ensemble) gets wrong, in split order."""
    wrong = np.zeros(len(rows), bool)
    for metrics in all_metrics:
        wrong |= np.asarray(metrics.true_labels) != np.asarray(metrics.predictions)
    return [rows[i].path for i in np.flatnonzero(wrong)]


def write_sprite(root: Path, paths: list[str], store: WeightsStore) -> Path:
    """A JPEG grid of the tiles at SPRITE_TILE px and a JSON index (path -> position); returns the image path."""
    columns = min(SPRITE_COLUMNS, max(1, len(paths)))
    sheet = Image.new("RGB", (columns * SPRITE_TILE, max(1, math.ceil(len(paths) / columns)) * SPRITE_TILE), "white")
    for i, path in enumerate(paths):
        rgb = read_rgb(root / path, SPRITE_TILE)
        if rgb is not None:
            sheet.paste(Image.fromarray(rgb), ((i % columns) * SPRITE_TILE, (i // columns) * SPRITE_TILE))
    image_path = store.sprite(SPRITE_IMAGE)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(image_path, "JPEG", quality=85, optimize=True)
    store.sprite(SPRITE_INDEX).write_text(json.dumps({"tile": SPRITE_TILE, "columns": columns, "paths": paths}, indent=0))
    log.info("sprite of %d misclassified test tiles: %s (%.1f MB)", len(paths), image_path, image_path.stat().st_size / 2**20)
    return image_path


@dataclass
class TileSource:
    """Test tiles by split path: from the LC25000 folder when present, else from the committed sprite."""
    data_root: Path | None
    store: WeightsStore
    _sheet: np.ndarray | None = None
    _index: dict | None = None

    @property
    def from_sprite(self) -> bool:
        return self.data_root is None or not self.data_root.is_dir()

    def tile(self, path: str) -> np.ndarray | None:
        if not self.from_sprite:
            return read_rgb(self.data_root / path)
        self._load_sprite()
        if self._index is None or path not in self._index["positions"]:
            return None
        i, side, columns = self._index["positions"][path], self._index["tile"], self._index["columns"]
        top, left = (i // columns) * side, (i % columns) * side
        return self._sheet[top : top + side, left : left + side]

    def _load_sprite(self) -> None:
        if self._index is not None or not self.store.sprite(SPRITE_INDEX).exists():
            return
        index = json.loads(self.store.sprite(SPRITE_INDEX).read_text())
        self._index = {**index, "positions": {p: i for i, p in enumerate(index["paths"])}}
        self._sheet = np.asarray(Image.open(self.store.sprite(SPRITE_IMAGE)).convert("RGB"))
