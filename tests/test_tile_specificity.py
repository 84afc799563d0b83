"""The tile-specific overlay measures (issue 53) on toy models whose answers are known."""
import numpy as np
import pytest

from lungfake.explain.faithfulness import (
    derangement,
    mean_map_correlations,
    smooth_random_map,
    tile_specificity,
    top_fifth_drops,
)

SIZE = 64


def _tiles(count: int, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Flat grey tiles, each with a small patch of fine texture at a place of its own."""
    rng = np.random.default_rng(seed)
    tiles, places = np.full((count, SIZE, SIZE, 3), 128.0, np.float32), []
    for i in range(count):
        y, x = (int(v) for v in rng.integers(4, SIZE - 20, 2))
        tiles[i, y : y + 16, x : x + 16] += rng.choice([-60.0, 60.0], (16, 16, 1))
        places.append((y, x))
    return tiles, places


def _detail_model(images: np.ndarray) -> np.ndarray:
    """Class 1's probability rises with the fine detail anywhere in the tile (blurring a part removes its detail)."""
    grey = np.asarray(images, np.float64).mean(axis=-1)
    detail = np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))
    p = 1 / (1 + np.exp(-(detail - 2.0)))
    return np.stack([1 - p, p], axis=1)


def _quadrant_model(images: np.ndarray) -> np.ndarray:
    """Reads the top-left quadrant only."""
    return _detail_model(np.asarray(images)[:, : SIZE // 2, : SIZE // 2])


def _own_maps(places) -> list[np.ndarray]:
    maps = []
    for y, x in places:
        relevance = np.zeros((SIZE, SIZE), np.float32)
        relevance[y : y + 16, x : x + 16] = 1.0
        maps.append(relevance)
    return maps


def _centre_prior() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.exp(-((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) / (2 * 10.0**2)).astype(np.float32)


def test_blurring_what_a_map_ranks_highest_costs_what_the_model_read_there():
    tiles, places = _tiles(6)
    own = top_fifth_drops(_detail_model, tiles, _own_maps(places), [1] * 6)
    elsewhere = top_fifth_drops(_detail_model, tiles, [1 - m for m in _own_maps(places)], [1] * 6)
    assert (own > 0.1).all() and (np.abs(elsewhere) < 0.02).all()


def test_a_derangement_gives_no_tile_its_own_map():
    order = derangement(7)
    assert sorted(order) == list(range(7)) and not (order == np.arange(7)).any()


def test_smooth_random_maps_keep_the_maps_smoothness_but_not_its_place():
    rng = np.random.default_rng(0)
    blob = _centre_prior()
    surrogate = smooth_random_map(blob, rng)
    def roughness(m):
        return np.abs(np.diff(m, axis=0)).mean() / (m.std() + 1e-9)
    assert roughness(surrogate) == pytest.approx(roughness(blob), rel=0.5)
    assert roughness(surrogate) < 0.2 * roughness(rng.random((SIZE, SIZE)))  # far smoother than scattered noise
    assert abs(np.corrcoef(surrogate.ravel(), blob.ravel())[0, 1]) < 0.5


def test_a_fixed_centre_prior_fails_the_other_tile_and_mean_map_tests_a_tile_specific_map_passes():
    tiles, places = _tiles(24)
    families = np.arange(24) // 2
    specific = tile_specificity(_detail_model, tiles, _own_maps(places), [1] * 24, families)
    prior = tile_specificity(_detail_model, tiles, [_centre_prior()] * 24, [1] * 24, families)
    assert specific.own_vs_other_ratio >= 2 and specific.own_vs_other_ratio_ci95[0] > 1
    assert specific.mean_map_correlation < 0.5
    assert prior.own_vs_other_ratio == pytest.approx(1.0)  # another tile's map is the same map
    assert prior.mean_map_correlation == pytest.approx(1.0) and not prior.passes
    assert mean_map_correlations([_centre_prior()] * 3) == pytest.approx([1.0] * 3)


def test_for_a_model_that_reads_one_quadrant_only_maps_on_that_quadrant_cost_anything():
    tiles, places = _tiles(12, seed=3)
    in_quadrant = [m for m, (y, x) in zip(_own_maps(places), places) if y + 16 <= SIZE // 2 and x + 16 <= SIZE // 2]
    chosen = [i for i, (y, x) in enumerate(places) if y + 16 <= SIZE // 2 and x + 16 <= SIZE // 2]
    outside = [i for i, (y, x) in enumerate(places) if y >= SIZE // 2 or x >= SIZE // 2]
    assert chosen and outside  # both kinds of tile are there
    assert (top_fifth_drops(_quadrant_model, tiles[chosen], in_quadrant, [1] * len(chosen)) > 0.05).all()
    drops = top_fifth_drops(_quadrant_model, tiles[outside], [_own_maps(places)[i] for i in outside], [1] * len(outside))
    assert (np.abs(drops) < 0.02).all()  # the model never read there
