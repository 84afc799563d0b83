"""The family detector on synthetic tiles: every kind of copy is found, different tissue is kept apart."""
import numpy as np
import pytest

from lungfake.data.families import MATCH_THRESHOLD, best_matches, detect_families, keypoints_of, keypoints_of_all, match_pair
from lungfake.data.synthetic import CopyTransform, effective_magnification, make_copy
from tests.helpers import cells

COPIES = {
    "turned 37 degrees": CopyTransform(37, False, 1.0, False, 90),
    "turned 200 degrees": CopyTransform(200, False, 1.0, False, 90),
    "mirrored": CopyTransform(0, True, 1.0, False, 90),
    "mirrored and turned": CopyTransform(123, True, 1.0, False, 85),
    "magnified 1.5x, centred": CopyTransform(0, False, 1.5, False, 90),
    "magnified 2.5x, off centre": CopyTransform(15, False, 2.5, True, 90),
    "magnified 2x, turned, mirrored": CopyTransform(250, True, 2.0, True, 80),
    "JPEG quality 60, recoloured": CopyTransform(10, False, 1.2, False, 60, brightness=1.06, hue_shift=3),
}


@pytest.mark.parametrize("name", list(COPIES))
def test_each_kind_of_copy_matches_its_original(name):
    original = cells(1)
    copy = make_copy(original, COPIES[name], np.random.default_rng(0))
    match = match_pair(keypoints_of(copy), keypoints_of(original))
    assert match.score >= MATCH_THRESHOLD, match
    assert match.mirrored == COPIES[name].mirrored


def test_the_fit_recovers_the_magnification():
    transform = COPIES["magnified 2x, turned, mirrored"]
    original = cells(2)
    match = match_pair(keypoints_of(make_copy(original, transform, np.random.default_rng(1))), keypoints_of(original))
    assert match.scale == pytest.approx(1 / effective_magnification(original.shape[0], transform), rel=0.1)


def test_different_tissue_never_matches():
    keys = keypoints_of_all(np.stack([cells(seed) for seed in range(10, 18)]), workers=1)
    scores = [match_pair(a, b).score for i, a in enumerate(keys) for b in keys[i + 1 :]]
    assert max(scores) < MATCH_THRESHOLD


def test_families_gather_copies_and_keep_originals_apart():
    rng = np.random.default_rng(3)
    originals = [cells(seed) for seed in (20, 21, 22)]
    tiles, truth = [], []
    for k, original in enumerate(originals):
        for _ in range(4):
            tiles.append(make_copy(original, CopyTransform.random(rng, (1.0, 2.0)), rng))
            truth.append(k)
    report = detect_families(np.stack(tiles))
    assert report.n_families == 3
    for k in range(3):
        assert len({report.family_ids[i] for i, t in enumerate(truth) if t == k}) == 1


def test_best_matches_finds_the_copy_among_references():
    rng = np.random.default_rng(4)
    references = [cells(seed) for seed in (30, 31, 32, 33)]
    query = make_copy(references[2], CopyTransform(77, True, 1.8, True, 75), rng)
    scores, index = best_matches(keypoints_of_all([query, cells(34)], workers=1), keypoints_of_all(references, workers=1))
    assert index[0] == 2 and scores[0] >= MATCH_THRESHOLD
    assert scores[1] < MATCH_THRESHOLD


def test_descriptor_votes_rank_a_strongly_magnified_copy_first():
    from lungfake.data.families import DescriptorVotes

    rng = np.random.default_rng(9)
    references = keypoints_of_all([cells(seed) for seed in range(40, 52)], workers=1)
    copy = make_copy(cells(47), CopyTransform(131, True, 2.4, True, 70), rng)  # a sixth of the original, mirrored
    votes, view = DescriptorVotes(references).votes_and_view(keypoints_of_all([copy, cells(99)], workers=1))
    assert votes.shape == (2, 12) and int(votes[0].argmax()) == 7
    assert votes[0, 7] > 3 * np.delete(votes[0], 7).max()
    assert view[0, 7] in (1, -1)  # the copy is mirrored: its mirror view is the one that matches
