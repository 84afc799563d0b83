"""Choosing the subtype rule (serving.verdict.SubtypeRule) on validation tiles, and measuring what the verdict withholds."""
from __future__ import annotations

import numpy as np

from lungfake.classes import CLASS_NAMES
from lungfake.serving.verdict import BENIGN_CLASS, SUBTYPES, SubtypeRule, Verdict, subtype_margin, subtype_of

TARGET_SUBTYPE_ACCURACY = 0.99  # of the subtype calls made on shifted validation tiles
UNCERTAIN_BUDGET = 0.10  # at most this share of LC25000's own tiles has its subtype withheld
# ...on tissue the rule has not seen, with this confidence: the budget is met by the upper bound of the withheld share
# over resampled validation families, not by the validation share itself, which unseen families miss half the time
BUDGET_CONFIDENCE = 0.90
FAMILY_RESAMPLES = 1000


def _subtype_calls(ensemble: np.ndarray, members: list[np.ndarray], y_true) -> tuple[np.ndarray, ...]:
    """Per tile: the ensemble calls cancer; every member leans to its subtype; its margin; its subtype is the truth."""
    cancer = np.isin(ensemble.argmax(1), [CLASS_NAMES.index(s) for s in SUBTYPES])
    agree = np.all([subtype_of(m) == subtype_of(ensemble) for m in members], axis=0)
    return cancer, agree, subtype_margin(ensemble), subtype_of(ensemble) == np.asarray(y_true)


def choose_subtype_rule(ensemble: np.ndarray, members: list[np.ndarray], y_true: np.ndarray,
                        target: float = TARGET_SUBTYPE_ACCURACY) -> SubtypeRule:
    """The smallest margin at which the subtype calls of validation tiles the ensemble calls cancer, where the models
    agree on the subtype, are at least target right (each wrong cancer-vs-benign call counts as a wrong subtype)."""
    cancer, agree, margin, correct = _subtype_calls(ensemble, members, y_true)
    candidates = np.flatnonzero(cancer & agree)
    order = candidates[np.argsort(-margin[candidates])]
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    meets = np.flatnonzero(running >= target)
    if not len(meets):
        return SubtypeRule(1.0, 0.0, None)
    last = meets[-1]
    # half-way to the next margin down, as for the budget (no lower: below the calls measured nothing is known)
    kept = margin[order]
    min_margin = float((kept[last] + kept[last + 1]) / 2 if last + 1 < len(kept) else kept[last])
    return SubtypeRule(min_margin, float((last + 1) / max(cancer.sum(), 1)), float(running[last]))


class FamilyResamples:
    """Validation tiles resampled by whole families (tiles cut from one original field are not independent): the
    share of tiles a rule withholds in each resample, and its upper bound, for judging what unseen families will see."""

    def __init__(self, families, resamples: int = FAMILY_RESAMPLES, seed: int = 0):
        _, self.family_of = np.unique(np.asarray(families), return_inverse=True)
        count = self.family_of.max() + 1 if len(self.family_of) else 0
        drawn = np.random.default_rng(seed).integers(0, count, (resamples, count))
        self.draws = np.stack([np.bincount(row, minlength=count) for row in drawn]).astype(np.float64)
        self.tiles = self.draws @ np.bincount(self.family_of, minlength=count)

    def share_bound(self, withheld: np.ndarray, confidence: float = BUDGET_CONFIDENCE) -> float:
        """The confidence-level upper bound of the share of tiles withheld, over the resamples."""
        per_family = np.bincount(self.family_of, weights=np.asarray(withheld, np.float64), minlength=self.draws.shape[1])
        return float(np.percentile(self.draws @ per_family / self.tiles, 100 * confidence))


def choose_subtype_margin_for_budget(ensemble: np.ndarray, members: list[np.ndarray], y_true: np.ndarray,
                                     budget: float = UNCERTAIN_BUDGET, shifted: SubtypeRule | None = None,
                                     domain_shift=None, families=None) -> SubtypeRule:
    """The largest margin at which the verdict withholds the subtype on at most budget of the validation tiles, with
    the subtype accuracy of the calls it still makes there. Tiles withheld whatever the margin count first: those the
    models disagree on, and, given the rule for shifted tissue (choose_subtype_rule) and the screen's verdict on each
    tile, shifted tissue under that rule's margin. The rule returned carries the shifted one.

    Given each tile's family, the budget must hold on unseen families: the upper bound of the withheld share over
    resampled families (FamilyResamples, BUDGET_CONFIDENCE) stays within it, not only the validation share.

    Why a budget and not an accuracy target: LC25000's validation errors sit in a few original fields whose label the
    tissue does not show, and the models are confidently wrong on them; no margin removes those errors, so a 99% target
    climbs to a margin that withholds the subtype of a fifth of all tiles (docs/decisions.md, "Subtype abstention")."""
    cancer, agree, margin, correct = _subtype_calls(ensemble, members, y_true)
    shift = np.zeros(len(ensemble), bool) if domain_shift is None else np.asarray(domain_shift, bool)
    shifted_min_margin = shifted.min_margin if shifted is not None else SubtypeRule().shifted_min_margin
    open_to_margin = cancer & agree & ~(shift & (margin < shifted_min_margin))
    always = cancer & ~open_to_margin
    candidates = np.sort(margin[open_to_margin])
    resamples = FamilyResamples(families) if families is not None else None

    def withheld_under(count: int) -> np.ndarray:
        """Tiles withheld when the margin withholds the count smallest margins open to it."""
        return always | (open_to_margin & (margin < _margin_withholding(candidates, count)))

    def fits(count: int) -> bool:
        if resamples is None:
            return always.sum() + count <= int(np.floor(budget * len(ensemble)))
        return resamples.share_bound(withheld_under(count)) <= budget

    count = _largest_fitting(fits, len(candidates))
    min_margin = _margin_withholding(candidates, count)
    called = open_to_margin & (margin >= min_margin)
    rule = SubtypeRule(min_margin, float(called.sum() / max(cancer.sum(), 1)),
                       float(correct[called].mean()) if called.any() else None,
                       val_uncertain_bound=resamples.share_bound(withheld_under(count)) if resamples is not None else None)
    return rule.with_shifted(shifted) if shifted is not None else rule


def _margin_withholding(sorted_margins: np.ndarray, count: int) -> float:
    """A margin under which exactly the count smallest of sorted_margins fall (fewer where they tie): half-way to the
    next, so the registry's rounding to six places moves no tile across it (unless two margins lie within a
    millionth)."""
    if count <= 0:
        return 0.0
    if count >= len(sorted_margins):
        return 1.0
    return float((sorted_margins[count - 1] + sorted_margins[count]) / 2)


def _largest_fitting(fits, most: int) -> int:
    """The largest count in 0..most that fits, for a test that holds up to some count and fails beyond (0 if none)."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def subtype_figures(verdicts: list[Verdict], y_true) -> dict:
    """How often the subtype is withheld and how right the verdicts given are: share of all images marked subtype
    uncertain, and the accuracy (three classes) of the rest, whose verdict is benign or a subtype."""
    y_true = np.asarray(y_true)
    uncertain = np.array([v.subtype_uncertain for v in verdicts], bool)
    called = np.array([CLASS_NAMES.index(v.subtype) if v.subtype else CLASS_NAMES.index(BENIGN_CLASS) if v.cancer is False
                       else -1 for v in verdicts])
    rest = ~uncertain & (called >= 0)
    right = int((called[rest] == y_true[rest]).sum())
    return {"images": len(verdicts), "subtype_uncertain": int(uncertain.sum()),
            "subtype_uncertain_share": float(uncertain.mean()) if len(verdicts) else None,
            "called": int(rest.sum()), "called_right": right,
            "called_accuracy": float(right / rest.sum()) if rest.sum() else None}
