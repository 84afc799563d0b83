"""The verdict every caller leads with: cancer vs benign, the subtype only where it can be trusted."""
import numpy as np
import pytest

from lungfake.evaluation.subtype_rule import FamilyResamples, choose_subtype_margin_for_budget, choose_subtype_rule
from lungfake.serving.verdict import DISAGREE, SHIFTED, SMALL_MARGIN, SubtypeRule, subtype_margin, verdict_of, verdicts_of


def probabilities(n, aca, scc):
    return {"lung_n": n, "lung_aca": aca, "lung_scc": scc}


RULE = SubtypeRule(0.5)


def test_a_confident_carcinoma_gets_its_subtype():
    lead = probabilities(0.02, 0.9, 0.08)
    verdict = verdict_of(lead, [lead, lead], None, False, RULE)
    assert (verdict.cancer, verdict.subtype, verdict.subtype_uncertain) == (True, "lung_aca", False)
    assert verdict.headline == "Lung adenocarcinoma" and verdict.explanation == ""
    assert verdict.to_json() == {"verdict": "Lung adenocarcinoma", "cancer": True, "subtype": "lung_aca",
                                 "subtype_uncertain": False, "verdict_reasons": []}


def test_benign_tissue_has_no_subtype_to_doubt():
    lead = probabilities(0.7, 0.2, 0.1)
    verdict = verdict_of(lead, [lead, probabilities(0.1, 0.1, 0.8)], None, True, RULE)
    assert (verdict.cancer, verdict.subtype, verdict.subtype_uncertain, verdict.headline) == (False, None, False, "Benign lung tissue")


@pytest.mark.parametrize(("members", "shifted", "lead", "reasons"), [
    ([probabilities(0, 0.9, 0.1)] * 2, True, probabilities(0, 0.9, 0.1), (SHIFTED,)),
    ([probabilities(0, 0.9, 0.1), probabilities(0, 0.4, 0.6)], False, probabilities(0, 0.9, 0.1), (DISAGREE,)),
    ([probabilities(0, 0.7, 0.3)] * 2, False, probabilities(0, 0.7, 0.3), (SMALL_MARGIN,)),  # margin 0.4 < 0.5
    ([probabilities(0, 0.7, 0.3), probabilities(0, 0.3, 0.7)], True, probabilities(0, 0.7, 0.3), (SHIFTED, DISAGREE, SMALL_MARGIN)),
])
def test_the_subtype_is_uncertain_for_each_reason(members, shifted, lead, reasons):
    verdict = verdict_of(lead, members, None, shifted, RULE)
    assert verdict.cancer and verdict.subtype is None and verdict.subtype_uncertain and verdict.reasons == reasons
    assert verdict.headline == "Carcinoma, subtype uncertain"
    assert verdict.explanation.startswith("Subtype uncertain: ") and all(r in verdict.explanation for r in reasons)


def test_the_margin_boundary_gives_the_subtype():
    lead = probabilities(0.0, 0.75, 0.25)  # margin exactly 0.5
    assert verdict_of(lead, [lead], None, False, RULE).subtype == "lung_aca"
    assert subtype_margin(lead)[0] == pytest.approx(0.5)
    assert subtype_margin(probabilities(0.5, 0.0, 0.0))[0] == 0.0  # no carcinoma at all: no lean


def test_a_refused_image_gets_no_class():
    lead = probabilities(0.01, 0.01, 0.98)
    verdict = verdict_of(lead, [lead], "colours unlike H&E", False, RULE)
    assert (verdict.refused, verdict.cancer, verdict.subtype, verdict.headline) == (True, None, None, "Not scored")
    assert verdict.explanation == "Not scored: colours unlike H&E."


def test_the_rule_is_the_smallest_margin_whose_calls_reach_the_target():
    # ten carcinoma tiles by falling margin; the 7th and 9th subtype calls are wrong
    aca = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55])
    ensemble = np.stack([np.zeros(10), aca, 1 - aca], axis=1)
    truth = np.array([1, 1, 1, 1, 1, 1, 2, 1, 2, 1])
    rule = choose_subtype_rule(ensemble, [ensemble], truth, target=0.85)
    # the first 8 calls are 7/8 = 0.875 right, all 10 are 0.8: the rule stops at the 8th (margin 0.3), half-way to the 9th
    assert rule.min_margin == pytest.approx(0.25) and rule.val_coverage == pytest.approx(0.8)
    assert rule.val_accuracy == pytest.approx(0.875)
    assert choose_subtype_rule(ensemble, [ensemble], truth, target=1.0).min_margin == pytest.approx(0.45)


def test_the_rule_leaves_out_benign_calls_and_tiles_the_models_disagree_on():
    ensemble = np.array([[0.0, 0.9, 0.1], [0.0, 0.8, 0.2], [0.9, 0.1, 0.0]])
    other = np.array([[0.0, 0.9, 0.1], [0.0, 0.2, 0.8], [0.9, 0.1, 0.0]])
    rule = choose_subtype_rule(ensemble, [ensemble, other], np.array([1, 2, 0]), target=1.0)
    assert rule.min_margin == pytest.approx(0.8) and rule.val_coverage == pytest.approx(0.5) and rule.val_accuracy == 1.0
    nothing = choose_subtype_rule(ensemble, [ensemble], np.array([2, 2, 0]), target=1.0)
    assert nothing == SubtypeRule(1.0, 0.0, None)
    assert SubtypeRule.from_json(rule.to_json()) == rule and SubtypeRule.from_json(None) == SubtypeRule()


def test_the_margin_withholds_the_subtype_of_at_most_the_budget_of_tiles():
    aca = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55])  # margins 0.98 down to 0.1
    ensemble = np.stack([np.zeros(10), aca, 1 - aca], axis=1)
    truth = np.array([1, 1, 1, 1, 1, 1, 2, 1, 2, 1])
    rule = choose_subtype_margin_for_budget(ensemble, [ensemble], truth, budget=0.3)
    # three of ten may be withheld: the three smallest margins (0.1, 0.2, 0.3); the rule lies half-way to the fourth
    assert rule.min_margin == pytest.approx(0.35) and rule.val_coverage == pytest.approx(0.7)
    assert rule.val_accuracy == pytest.approx(6 / 7)
    verdicts = [verdict_of(dict(zip(("lung_n", "lung_aca", "lung_scc"), row)), [dict(zip(("lung_n", "lung_aca", "lung_scc"), row))],
                           None, False, rule) for row in ensemble]
    assert sum(v.subtype_uncertain for v in verdicts) == 3
    # a tile the models disagree on uses up the budget first
    other = ensemble.copy()
    other[0] = [0.0, 0.01, 0.99]
    assert choose_subtype_margin_for_budget(ensemble, [ensemble, other], truth, budget=0.3).min_margin == pytest.approx(0.25)
    assert choose_subtype_margin_for_budget(ensemble, [ensemble], truth, budget=0.0).min_margin == 0.0
    assert choose_subtype_margin_for_budget(ensemble, [ensemble], truth, budget=1.0).min_margin == 1.0
    # shifted tissue under the shifted rule's margin is withheld whatever the margin: it uses up the budget too
    shifted = SubtypeRule(min_margin=0.5)
    screen = np.zeros(10, bool)
    screen[[0, 6]] = True  # margins 0.98 (kept by the shifted rule) and 0.4 (withheld by it)
    rule = choose_subtype_margin_for_budget(ensemble, [ensemble], truth, budget=0.3, shifted=shifted, domain_shift=screen)
    assert rule.min_margin == pytest.approx(0.25) and rule.shifted_min_margin == 0.5
    verdicts = verdicts_of(ensemble, [ensemble], screen, rule)
    assert sum(v.subtype_uncertain for v in verdicts) == 3 and verdicts[0].subtype == "lung_aca"


def _carcinomas_by_margin(margins) -> np.ndarray:
    """Ensemble rows (benign, aca, scc) whose subtype margin is each of margins, leaning to adenocarcinoma."""
    aca = (1 + np.asarray(margins, np.float64)) / 2
    return np.stack([np.zeros(len(aca)), aca, 1 - aca], axis=1)


def test_the_budget_holds_on_unseen_families_not_only_on_validation_tiles():
    # 100 carcinoma tiles in 10 families of 10; the 10 smallest margins all lie in one family
    margins = np.linspace(0.01, 0.99, 100)
    ensemble, truth = _carcinomas_by_margin(margins), np.ones(100, int)
    families = np.repeat(np.arange(10), 10)
    by_share = choose_subtype_margin_for_budget(ensemble, [ensemble], truth, budget=0.1)
    by_families = choose_subtype_margin_for_budget(ensemble, [ensemble], truth, budget=0.1, families=families)
    withheld = [sum(v.subtype_uncertain for v in verdicts_of(ensemble, [ensemble], None, rule)) for rule in (by_share, by_families)]
    # a tenth of validation tiles is that one family; drawn twice among ten (one resample in seven), it is a fifth of
    # the tiles, so the bound allows half of it: 5 tiles
    assert withheld == [10, 5]
    assert by_share.val_uncertain_bound is None
    assert by_families.val_uncertain_bound == pytest.approx(0.1)
    assert FamilyResamples(families).share_bound(np.arange(100) < 10) == pytest.approx(0.2)
    # spread over every family, the same ten tiles are a tenth in every resample: the bound is the share
    spread = np.isin(np.arange(100), np.arange(0, 100, 10))
    assert FamilyResamples(families).share_bound(spread) == pytest.approx(0.1)


def test_the_registry_rounding_of_the_margin_moves_no_tile_across_it():
    # the first tile the budget leaves called has margin 0.4000006: a rule set at that margin and rounded to six places
    # (0.400001) would withhold it too
    margins = np.array([0.1, 0.2, 0.3, 0.4000006, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    ensemble, truth = _carcinomas_by_margin(margins), np.ones(10, int)
    rule = SubtypeRule.from_json(choose_subtype_margin_for_budget(ensemble, [ensemble], truth, budget=0.3).to_json())
    assert sum(v.subtype_uncertain for v in verdicts_of(ensemble, [ensemble], None, rule)) == 3
