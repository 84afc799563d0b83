"""Copies across a split: the audit, its montage, and the repair that folds leaking families into train.

The audit looks for each val/test tile's copies among the train tiles of its class: the
``AUDIT_VOTED_CANDIDATES`` train tiles most voted for by nearest descriptors and the ``AUDIT_CANDIDATES``
nearest by visual words, each verified geometrically (``families.best_matches``);
``benchmarks/family_recall.py`` measures that search's recall.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lungfake.classes import CLASS_NAMES
from lungfake.data.families import AUDIT_CANDIDATES, AUDIT_VOTED_CANDIDATES, MATCH_THRESHOLD, Keypoints, best_matches, keypoints_of_all
from lungfake.data.splits import SplitRow
from lungfake.data.tiles import read_split_pixels

log = logging.getLogger(__name__)
AUDITED_SIDES = ("test", "val")


@dataclass(frozen=True)
class Leak:
    tile: SplitRow  # on val or test
    train_tile: SplitRow
    score: int


def keypoints_by_path(root: Path, rows: list[SplitRow]) -> dict[str, Keypoints]:
    pixels = read_split_pixels(root, rows)
    keys = keypoints_of_all(pixels, lambda done, total: log.info("keypoints %d/%d", done, total))
    return {row.path: key for row, key in zip(rows, keys)}


def leaks_into_train(
    rows: list[SplitRow], keys: dict[str, Keypoints], side: str, threshold: int = MATCH_THRESHOLD,
    train_families: set[str] | None = None,
) -> list[Leak]:
    """Every tile on `side` with a copy in train (train limited to train_families when given), best match first."""
    found = []
    for class_name in CLASS_NAMES:
        queries = [r for r in rows if r.side == side and r.label == class_name]
        train = [r for r in rows if r.side == "train" and r.label == class_name
                 and (train_families is None or r.family in train_families)]
        scores, index = best_matches([keys[r.path] for r in queries], [keys[r.path] for r in train])
        found.extend(Leak(queries[i], train[index[i]], int(scores[i])) for i in np.flatnonzero(scores >= threshold))
        log.info("audit %s %s: %d of %d tiles have a copy in train", side, class_name, int((scores >= threshold).sum()), len(queries))
    return sorted(found, key=lambda leak: -leak.score)


def audit(rows: list[SplitRow], keys: dict[str, Keypoints], split_name: str, threshold: int = MATCH_THRESHOLD,
          sides: tuple[str, ...] = AUDITED_SIDES) -> tuple[dict, list[Leak]]:
    """The audit report (JSON-ready) and the leaks it found on the given sides."""
    leaks = [leak for side in sides for leak in leaks_into_train(rows, keys, side, threshold)]
    return audit_report(rows, leaks, split_name, threshold, sides), leaks


def audit_report(rows: list[SplitRow], leaks: list[Leak], split_name: str, threshold: int = MATCH_THRESHOLD,
                 sides: tuple[str, ...] = AUDITED_SIDES) -> dict:
    report = {"split": split_name, "threshold": threshold, "score": "keypoints consistent with one similarity transform",
              "candidates_searched": {"by_descriptor_votes": AUDIT_VOTED_CANDIDATES, "by_visual_words": AUDIT_CANDIDATES}}
    for side in sides:
        per_class = {
            c: {"tiles": sum(r.side == side and r.label == c for r in rows),
                "with_copy_in_train": sum(leak.tile.side == side and leak.tile.label == c for leak in leaks)}
            for c in CLASS_NAMES
        }
        report[side] = {"tiles": sum(v["tiles"] for v in per_class.values()),
                        "with_copy_in_train": sum(v["with_copy_in_train"] for v in per_class.values()), "per_class": per_class}
    report["pairs"] = [{"tile": k.tile.path, "side": k.tile.side, "train_tile": k.train_tile.path, "score": k.score} for k in leaks]
    return report


def montage(root: Path, leaks: list[Leak], path: Path, n: int = 12, tile_px: int = 160) -> None:
    """A PNG of the n best-matching leaks: each row the val/test tile beside its train copy, score written on it."""
    import cv2

    shown = leaks[:n]
    if not shown:
        canvas = np.full((60, 2 * tile_px, 3), 255, np.uint8)
        cv2.putText(canvas, "no copies found", (10, 38), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
    else:
        rows = []
        for leak in shown:
            pair = read_split_pixels(root, [leak.tile, leak.train_tile], tile_px)
            row = np.concatenate([pair[0], np.full((tile_px, 6, 3), 255, np.uint8), pair[1]], axis=1)
            label = f"{leak.tile.side} {Path(leak.tile.path).name} ~ train {Path(leak.train_tile.path).name}: {leak.score}"
            cv2.putText(row, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3)
            cv2.putText(row, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 0), 1)
            rows.append(row)
        canvas = np.concatenate(rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def fold_leaks_into_train(rows: list[SplitRow], keys: dict[str, Keypoints], threshold: int = MATCH_THRESHOLD,
                          max_rounds: int = 5, first_leaks: list[Leak] | None = None) -> tuple[list[SplitRow], list[Leak], bool]:
    """Move every val/test family with a copy in train into train (merged with it), until none is left.
    Returns the rows, the leaks folded, and whether the last round found none (the split is then clean).

    Family detection can miss a copy; this closes the gap with the audit's own search. The first round is
    a full audit (or first_leaks, a full audit's findings on these rows); after it only the families just
    moved can create new matches, so only they are searched (keys need hold only val/test and those tiles).
    """
    searched: set[str] | None = None
    folded: list[Leak] = []
    for round_number in range(max_rounds):
        if round_number == 0 and first_leaks is not None:
            leaks = first_leaks
        else:
            leaks = [leak for side in AUDITED_SIDES for leak in leaks_into_train(rows, keys, side, threshold, searched)]
        moves = {leak.tile.family: leak.train_tile.family for leak in leaks}
        if not moves:
            return rows, folded, True
        log.info("folding %d leaking families into train", len(moves))
        folded.extend(leaks)
        rows = [replace(r, family=moves[r.family], side="train") if r.family in moves else r for r in rows]
        searched = set(moves.values())
    return rows, folded, False


def leaks_from_report(rows: list[SplitRow], report: dict) -> list[Leak]:
    """The pairs of a saved audit of these rows, as leaks (refused if the audit was of another split)."""
    from lungfake.errors import SplitError

    by_path = {r.path: r for r in rows}
    leaks = []
    for pair in report.get("pairs", []):
        tile, train_tile = by_path.get(pair["tile"]), by_path.get(pair["train_tile"])
        if tile is None or train_tile is None or tile.side not in AUDITED_SIDES or train_tile.side != "train":
            raise SplitError(f"The saved audit pairs {pair['tile']} with {pair['train_tile']}, which this split does not put on "
                             "val/test and train; audit this split again (without --leaks-from).")
        leaks.append(Leak(tile, train_tile, int(pair["score"])))
    return leaks


def rows_to_describe(rows: list[SplitRow], leaks: list[Leak]) -> list[SplitRow]:
    """The rows a fold after these leaks searches: every val/test tile and the train tiles of the families moved."""
    moved = {leak.train_tile.family for leak in leaks} | {leak.tile.family for leak in leaks}
    return [r for r in rows if r.side in AUDITED_SIDES or r.family in moved]
