import numpy as np
import pytest

from lungfake.families import best_match_scores, detect_families
from tests.conftest import augmentor_copy, texture


@pytest.mark.parametrize("degrees,flip_lr,flip_ud", [(0, True, False), (25, False, False), (-25, False, True), (17, True, True)])
def test_rotated_and_flipped_copy_share_a_family(degrees, flip_lr, flip_ud):
    original = texture(1)
    copy = augmentor_copy(original, degrees, flip_lr, flip_ud)
    report = detect_families(np.stack([original, copy, texture(2), texture(3)]))
    assert report.labels[0] == report.labels[1]


def test_different_tiles_are_different_families():
    tiles = np.stack([texture(seed) for seed in range(6)])
    report = detect_families(tiles)
    assert report.n_families == 6


def test_two_copies_rotated_opposite_ways_match():
    original = texture(7)
    a, b = augmentor_copy(original, -25), augmentor_copy(original, 24, flip_lr=True)
    scores = best_match_scores(np.stack([a, texture(8)]), np.stack([b, texture(9), texture(10)]))
    assert scores[0] > 0.8
    assert scores[1] < 0.45
