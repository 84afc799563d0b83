"""What an image is called: cancer or benign first, the carcinoma's subtype only where it can be trusted.

Cancer vs benign holds on other labs' tissue; the subtype (adenocarcinoma vs squamous cell carcinoma) is what fails
there. So every caller (page, CLI, reports, batch and region summaries) leads with this verdict, and the subtype is
marked uncertain when the models disagree on it, or when the ensemble's subtype margin is below the level chosen on
validation tiles (choose_subtype_margin_for_budget), or, for tissue unlike LC25000's, below the stricter level chosen
on shifted validation tiles (choose_subtype_rule). SubtypeRule holds both, fitted by `evaluate`; never on external
images.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lungfake.classes import CLASS_NAMES, display_name, is_cancer

SUBTYPES = tuple(name for name in CLASS_NAMES if is_cancer(name))
BENIGN_CLASS = next(name for name in CLASS_NAMES if not is_cancer(name))
REFUSED, CANCER, BENIGN = "Not scored", "Carcinoma", "Benign lung tissue"
SHIFTED = ("the tissue is unlike LC25000's, where subtype calls fail most, and the models' lean between the subtypes is "
           "below the level such tissue needs")
DISAGREE = "the models disagree on the subtype"
SMALL_MARGIN = "the models' lean between the two subtypes is small"


@dataclass(frozen=True)
class SubtypeRule:
    """The subtype margin below which a carcinoma's subtype is uncertain, chosen on validation tiles; and a second,
    for tissue the screen calls unlike LC25000's, chosen on validation tiles moved by the named shifts (another
    stain, blur, JPEG, magnification; never on external images). 1.0 withholds every subtype of such tissue."""
    min_margin: float = 0.0
    val_coverage: float | None = None  # share of validation carcinoma calls with a subtype given
    val_accuracy: float | None = None  # subtype accuracy of those
    shifted_min_margin: float = 1.0
    shifted_val_coverage: float | None = None
    shifted_val_accuracy: float | None = None
    val_uncertain_bound: float | None = None  # upper bound (BUDGET_CONFIDENCE) of the share withheld on unseen families

    def to_json(self) -> dict:
        return {"min_margin": round(self.min_margin, 6), "val_coverage": self.val_coverage, "val_accuracy": self.val_accuracy,
                "shifted_min_margin": round(self.shifted_min_margin, 6), "shifted_val_coverage": self.shifted_val_coverage,
                "shifted_val_accuracy": self.shifted_val_accuracy, "val_uncertain_bound": self.val_uncertain_bound}

    def with_shifted(self, shifted: SubtypeRule) -> SubtypeRule:
        """This rule with the margin for shifted tissue taken from a rule chosen on shifted validation tiles."""
        return replace(self, shifted_min_margin=shifted.min_margin, shifted_val_coverage=shifted.val_coverage,
                       shifted_val_accuracy=shifted.val_accuracy)

    @staticmethod
    def from_json(payload: dict | None) -> SubtypeRule:
        return SubtypeRule(**payload) if payload else SubtypeRule()


def subtype_margin(probabilities) -> np.ndarray:
    """How far the probabilities lean to one subtype, given cancer: |p(aca) - p(scc)| / (p(aca) + p(scc)), 0 to 1.
    probabilities: (n, classes) in CLASS_NAMES order, or one dict of class -> probability."""
    if isinstance(probabilities, dict):
        probabilities = [[probabilities[c] for c in CLASS_NAMES]]
    p = np.asarray(probabilities, np.float64)
    first, second = (p[:, CLASS_NAMES.index(name)] for name in SUBTYPES)
    return np.abs(first - second) / np.maximum(first + second, 1e-12)


def subtype_of(probabilities) -> np.ndarray:
    """The subtype each row leans to (an index into CLASS_NAMES), whatever its cancer probability."""
    p = np.asarray(probabilities, np.float64)
    columns = [CLASS_NAMES.index(name) for name in SUBTYPES]
    return np.asarray(columns)[p[:, columns].argmax(axis=1)]


@dataclass(frozen=True)
class Verdict:
    refused: bool
    cancer: bool | None  # None when refused
    subtype: str | None  # a class name, when a carcinoma's subtype is given
    subtype_uncertain: bool
    reasons: tuple[str, ...] = ()  # why refused, or why the subtype is uncertain

    @property
    def headline(self) -> str:
        if self.refused:
            return REFUSED
        if not self.cancer:
            return BENIGN
        return display_name(self.subtype) if self.subtype else f"{CANCER}, subtype uncertain"

    @property
    def explanation(self) -> str:
        """One sentence: why nothing is said, or why the subtype is withheld (empty when neither)."""
        if self.refused:
            return f"Not scored: {'; '.join(self.reasons)}."
        if self.subtype_uncertain:
            return f"Subtype uncertain: {'; and '.join(self.reasons)}. Cancer vs benign holds on other labs' tissue."
        return ""

    def to_json(self) -> dict:
        return {"verdict": self.headline, "cancer": self.cancer, "subtype": self.subtype,
                "subtype_uncertain": self.subtype_uncertain, "verdict_reasons": list(self.reasons)}


def verdict_of(lead_probabilities: dict[str, float], member_probabilities: list[dict[str, float]], refused_because: str | None,
               domain_shift: bool, rule: SubtypeRule) -> Verdict:
    """The verdict from the leading scores (the ensemble's, or a single model's), every member's, and the screen."""
    if refused_because is not None:
        return Verdict(True, None, None, False, (refused_because,))
    if sum(p for name, p in lead_probabilities.items() if is_cancer(name)) < 0.5:
        return Verdict(False, False, None, False)
    reasons, margin = [], float(subtype_margin(lead_probabilities)[0])
    if domain_shift and margin < rule.shifted_min_margin:
        reasons.append(SHIFTED)
    leanings = {int(subtype_of([[m[c] for c in CLASS_NAMES]])[0]) for m in member_probabilities}
    if len(leanings) > 1:
        reasons.append(DISAGREE)
    if margin < rule.min_margin:
        reasons.append(SMALL_MARGIN)
    subtype = CLASS_NAMES[int(subtype_of([[lead_probabilities[c] for c in CLASS_NAMES]])[0])]
    return Verdict(False, True, None if reasons else subtype, bool(reasons), tuple(reasons))


def verdicts_of(ensemble: np.ndarray, members: list[np.ndarray], domain_shift, rule: SubtypeRule) -> list[Verdict]:
    """The verdict of each row of probabilities (CLASS_NAMES order), as ImageScore.verdict gives it."""
    shifted = np.zeros(len(ensemble), bool) if domain_shift is None else np.asarray(domain_shift, bool)

    def named(row):
        return dict(zip(CLASS_NAMES, map(float, row)))

    return [verdict_of(named(ensemble[i]), [named(m[i]) for m in members], None, bool(shifted[i]), rule)
            for i in range(len(ensemble))]


