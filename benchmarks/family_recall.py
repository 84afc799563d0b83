"""How well the family detector finds copies, and how rarely it joins different tissue.

From one tile of each of many different families per class, build synthetic copies (any rotation,
mirror, magnification 1.0-2.5x by centred or off-centre crop, JPEG quality 60-95, mild colour jitter)
and report, per class and magnification band:

- pair recall: the copy verified against its original (``families.match_pair``);
- search recall: the search finds and verifies the original in a pool of the originals plus thousands of
  other real tiles of the class, as family detection searches (the 30 nearest by visual words) and as
  the audit does (the 30 most voted for by nearest descriptors, then the 120 nearest by visual words);
- false matches: copies against every other original of the class (same class, different families),
  and against tiles of the other classes (different tissue for certain).

    python benchmarks/family_recall.py [--originals 60 --copies 5 --distractors 3000]
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import time

import numpy as np

from lungfake.classes import CLASS_NAMES
from lungfake.data.families import MATCH_THRESHOLD, N_CANDIDATES, best_matches, keypoints_of_all, match_scores
from lungfake.data.splits import load_split
from lungfake.data.synthetic import CopyTransform, effective_magnification, make_copy
from lungfake.data.tiles import read_rgb, resolve_data_root
from lungfake.serving.store import WeightsStore

BANDS = ((1.0, 1.5), (1.5, 2.5), (2.5, 4.0))
# The detection's search (visual words only, its depth) and the audit's (best_matches' defaults).
SEARCHES = {"detection": {"n_candidates": N_CANDIDATES, "n_voted": 0}, "audit": {}}


def _band(magnification: float) -> str:
    for lo, hi in BANDS:
        if lo <= magnification < hi or (hi == 2.5 and magnification == 2.5):
            return f"{lo}-{hi}x"
    return "other"


def _pick(rows, class_name: str, n_originals: int, n_distractors: int, rng) -> tuple[list[str], list[str]]:
    by_family = collections.defaultdict(list)
    for row in rows:
        if row.label == class_name:
            by_family[row.family].append(row.path)
    families = sorted(by_family)
    rng.shuffle(families)
    originals = [by_family[f][rng.integers(len(by_family[f]))] for f in families[:n_originals]]
    others = [p for f in families[n_originals:] for p in by_family[f]]
    distractors = list(rng.choice(others, min(n_distractors, len(others)), replace=False))
    return originals, distractors


def _rate(hits: list[bool]) -> dict:
    return {"n": len(hits), "rate": round(float(np.mean(hits)), 4) if hits else None}


def measure_class(root, rows, class_name: str, args, rng, foreign_keys=None) -> dict:
    originals, distractors = _pick(rows, class_name, args.originals, args.distractors, rng)
    original_pixels = np.stack([read_rgb(root / p) for p in originals])
    copies, owners, bands = [], [], []
    for k, rgb in enumerate(original_pixels):
        for _ in range(args.copies):
            transform = CopyTransform.random(rng)
            copies.append(make_copy(rgb, transform, rng))
            owners.append(k)
            bands.append(_band(effective_magnification(rgb.shape[0], transform)))
    owners = np.array(owners)
    keys_originals = keypoints_of_all(original_pixels)
    keys_copies = keypoints_of_all(np.stack(copies))
    keys_distractors = keypoints_of_all(np.stack([read_rgb(root / p) for p in distractors]))

    own_pairs = np.stack([np.arange(len(owners)), owners], axis=1)
    own_scores = match_scores(keys_copies, keys_originals, own_pairs)
    verified = own_scores >= MATCH_THRESHOLD

    pool = keys_originals + keys_distractors  # originals first: index k is original k
    retrieved = {}
    for search, options in SEARCHES.items():
        scores, index = best_matches(keys_copies, pool, **options)
        retrieved[search] = (scores >= MATCH_THRESHOLD) & (index == owners)

    others = np.array([(c, o) for c in range(len(owners)) for o in range(len(originals)) if o != owners[c]])
    false_same_class = match_scores(keys_copies, keys_originals, others) >= MATCH_THRESHOLD
    result = {
        "originals": len(originals), "copies": len(owners), "distractors": len(distractors),
        "pair_recall": {}, **{f"search_recall_{search}": {} for search in SEARCHES},
        "false_matches_same_class": {"pairs": len(others), "matches": int(false_same_class.sum())},
        "missed_examples": [],
    }
    for band in sorted(set(bands)) + ["all"]:
        chosen = np.array([band in ("all", b) for b in bands])
        result["pair_recall"][band] = _rate(list(verified[chosen]))
        for search in SEARCHES:
            result[f"search_recall_{search}"][band] = _rate(list(retrieved[search][chosen]))
    # What the search itself loses: copies that verify as a pair but that the search does not reach.
    result["search_found_of_verifiable"] = {s: {"verifiable": int(verified.sum()), "found": int((retrieved[s] & verified).sum())}
                                            for s in SEARCHES}
    result["missed_examples"] = [
        {"original": originals[owners[c]], "band": bands[c], "score": int(own_scores[c])} for c in np.flatnonzero(~verified)[:10]
    ]
    if foreign_keys:
        pairs = np.array([(c, f) for c in range(0, len(owners), 2) for f in range(len(foreign_keys))])
        foreign = match_scores(keys_copies, foreign_keys, pairs)
        result["false_matches_other_classes"] = {"pairs": len(pairs), "matches": int((foreign >= MATCH_THRESHOLD).sum()),
                                                 "highest_score": int(foreign.max())}
    return result, keys_originals


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--split", help="split CSV whose families the originals come from (default: the committed grouped split)")
    parser.add_argument("--originals", type=int, default=60, help="originals per class, each from its own family")
    parser.add_argument("--copies", type=int, default=5, help="synthetic copies per original")
    parser.add_argument("--distractors", type=int, default=3000, help="other real tiles of the class in the search pool")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = resolve_data_root(args.data_dir)
    rows = load_split(args.split or WeightsStore.resolve().split_csv("grouped"))
    rng = np.random.default_rng(args.seed)
    started, report, previous = time.perf_counter(), {}, None
    for class_name in CLASS_NAMES:
        report[class_name], previous_keys = measure_class(root, rows, class_name, args, rng, previous)
        previous = previous_keys
        print(f"{class_name}: {json.dumps(report[class_name])}", flush=True)
    print(_summary(report, time.perf_counter() - started))


def _summary(report: dict, seconds: float) -> str:
    lines = [f"threshold {MATCH_THRESHOLD} consistent keypoints; {seconds:.0f} s", "",
             "| class | band | pair recall | search recall, detection | search recall, audit |", "|---|---|---|---|---|"]
    totals = collections.defaultdict(lambda: [0, 0])
    for class_name, r in report.items():
        for band, pair in r["pair_recall"].items():
            wide, audit = r["search_recall_detection"][band], r["search_recall_audit"][band]
            lines.append(f"| {class_name} | {band} | {pair['rate']:.2%} of {pair['n']} | {wide['rate']:.2%} | {audit['rate']:.2%} |")
            totals[band][0] += round(audit["rate"] * audit["n"])
            totals[band][1] += audit["n"]
    lines.append("")
    for band, (hit, n) in totals.items():
        lines.append(f"all classes, {band}: audit-depth search recall {hit}/{n} = {hit / n:.2%}")
    for search in SEARCHES:
        found = sum(r["search_found_of_verifiable"][search]["found"] for r in report.values())
        verifiable = sum(r["search_found_of_verifiable"][search]["verifiable"] for r in report.values())
        lines.append(f"{search} search: found {found} of the {verifiable} copies that verify as a pair = {found / verifiable:.2%}")
    same = sum(r["false_matches_same_class"]["matches"] for r in report.values())
    same_n = sum(r["false_matches_same_class"]["pairs"] for r in report.values())
    lines.append(f"false matches, same class, different families: {same}/{same_n} = {same / same_n:.3%}")
    other = [r["false_matches_other_classes"] for r in report.values() if "false_matches_other_classes" in r]
    if other:
        hit, n = sum(o["matches"] for o in other), sum(o["pairs"] for o in other)
        highest = max(o["highest_score"] for o in other)
        lines.append(f"false matches, different classes: {hit}/{n} = {hit / n:.3%} (highest score {highest})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
