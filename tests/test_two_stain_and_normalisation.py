"""The screen's two-stain check (issue 52) and the stain normalisations the screen is tested and fitted against."""
import dataclasses

import numpy as np
import pytest

from lungfake.data.synthetic import recoloured_as_he
from lungfake.evaluation.colour import ColourTarget, lab_statistics
from lungfake.evaluation.ood_fitting import TWO_STAIN_QUANTILE, TWO_STAIN_SAFETY, two_stain_limit
from lungfake.evaluation.stain_normalisation import MacenkoTarget, macenko, reinhard
from lungfake.serving.ood import GaussianReference, OodReference, two_stain_spread
from tests.helpers import cells, texture


def test_two_stains_varying_apart_score_high_and_a_recoloured_image_low():
    tissue = [two_stain_spread(cells(seed)) for seed in range(4)]
    recoloured = [two_stain_spread(recoloured_as_he(texture(seed))) for seed in range(4)]
    assert min(tissue) > 0.3 and max(recoloured) < 0.1
    assert np.isnan(two_stain_spread(np.full((200, 200, 3), 245, np.uint8)))  # no stain: nothing to say


def test_a_small_image_is_measured_as_it_is_not_interpolated_up():
    small = recoloured_as_he(texture(1, 64))
    assert two_stain_spread(small) < 0.1  # interpolating to 128 px would invent mixed colours off the palette's line


def _reference(two_stain_limit):
    """A reference whose other checks pass everything: only the two-stain check can refuse."""
    anything = GaussianReference(np.zeros(1), np.zeros((1, 1)), np.inf, np.eye(1))
    everything = GaussianReference(np.zeros(28), np.zeros((28, 28)), np.inf)
    return OodReference(everything, anything, "probe", 0.99, everything, two_stain_limit=two_stain_limit)


def test_the_two_stain_check_refuses_below_its_limit_and_says_why():
    fake, tissue = recoloured_as_he(texture(2)), cells(2)
    spread = two_stain_spread(fake)
    refused = _reference(spread + 1e-6).assess(fake, np.zeros(1))
    assert refused.ood and "single line" in refused.reason and "two stains" in refused.reason
    assert not _reference(spread).assess(fake, np.zeros(1)).ood  # at the limit is not below it
    assert not _reference(None).assess(fake, np.zeros(1)).ood  # a reference without the check
    assert not _reference(spread + 1e-6).assess(tissue, np.zeros(1)).ood


def test_the_limit_is_kept_in_the_reference_file_and_an_older_file_has_none(tmp_path):
    reference = _reference(0.0934)
    (tmp_path / "ref.npz").write_bytes(reference.to_bytes())
    assert OodReference.from_file(tmp_path / "ref.npz").two_stain_limit == 0.0934
    (tmp_path / "old.npz").write_bytes(dataclasses.replace(reference, two_stain_limit=None).to_bytes())
    assert OodReference.from_file(tmp_path / "old.npz").two_stain_limit is None


def test_the_limit_is_a_safety_share_of_a_low_quantile_of_the_spread_on_validation_views():
    views = [cells(seed) for seed in range(5)] + [recoloured_as_he(texture(9))]  # one view all but one stain
    spreads = sorted(two_stain_spread(v) for v in views)
    limit = two_stain_limit(views + [np.full((64, 64, 3), 245, np.uint8)])  # a blank view says nothing
    expected = TWO_STAIN_SAFETY * (spreads[0] + TWO_STAIN_QUANTILE * (len(spreads) - 1) * (spreads[1] - spreads[0]))
    assert limit == pytest.approx(expected, abs=1e-4) and limit < TWO_STAIN_SAFETY * spreads[1]


def test_reinhard_gives_each_tile_the_targets_colour_statistics():
    target = ColourTarget.of(cells(7)[None])
    stats = lab_statistics(reinhard(cells(3), target))[0]
    assert np.allclose(stats[:3], target.mean, atol=1.0) and np.allclose(stats[3:], target.std, atol=1.0)


def _stained(haematoxylin_amount: float = 1.0, eosin_amount: float = 1.0, seed: int = 0) -> np.ndarray:
    """A tile made from two independent stain concentration fields and Ruifrok and Johnston's stain vectors."""
    rng = np.random.default_rng(seed)
    fields = [np.kron(rng.random((16, 16)), np.ones((8, 8))) for _ in range(2)]
    stains = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]) / np.linalg.norm([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]],
                                                                                   axis=1, keepdims=True)
    density = (haematoxylin_amount * fields[0][..., None] * stains[0] + eosin_amount * fields[1][..., None] * stains[1])
    return np.clip(256 * np.exp(-density) - 1, 0, 255).astype(np.uint8)


def test_macenko_finds_the_stains_and_undoes_a_change_of_stain_amounts():
    original = _stained()
    target = MacenkoTarget.of([original])
    assert np.abs(macenko(original, target).astype(int) - original).mean() < 3  # itself, nearly unchanged
    restained = _stained(1.6, 0.6)
    back = macenko(restained, target)
    assert back.shape == original.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - original).mean() < 0.2 * np.abs(restained.astype(int) - original).mean()
    blank = np.full((50, 50, 3), 250, np.uint8)
    assert (macenko(blank, target) == blank).all()  # too little stain to normalise: left as it is
