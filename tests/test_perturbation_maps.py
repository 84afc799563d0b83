"""The perturbation overlays (cam.py: occlusion and RISE) on toy networks whose answer is known, and how the app
says what an overlay is worth once the tile-specific test has been run (issue 53)."""
from dataclasses import dataclass

import numpy as np
import pytest

from lungfake.explain import faithfulness as F
from lungfake.explain.cam import (
    OCCLUSION_CELLS,
    OCCLUSION_SPAN,
    PERTURBATION_BATCH,
    RISE_CELLS,
    RISE_MASKS,
    RISE_SHARE,
    cells_per_side,
    heatmaps,
    occlusion_cells,
    occlusion_views,
    rise_masks,
    run_explained,
)
from lungfake.serving.model_file import PROBABILITIES
from lungfake.serving.registry import OCCLUSION, RISE, OverlayTrust

SIZE = 64
PATCH = 16


@dataclass
class ToyEntry:
    input_size: int
    explanation_method: str
    temperature: float = 1.0


def _detail(pixels: np.ndarray) -> np.ndarray:
    grey = np.asarray(pixels, np.float64).mean(axis=-1)
    return np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))


class DetailToy:
    """A served-file stand-in: class 1's probability rises with the fine detail it reads (anywhere, or in the
    top-left quadrant only); it records the size of every call."""

    def __init__(self, method: str, quadrant_only: bool = False):
        self.entry, self.quadrant_only, self.calls = ToyEntry(SIZE, method), quadrant_only, []

    def run(self, pixels):
        pixels = np.asarray(pixels, np.float32)
        self.calls.append(len(pixels))
        read = pixels[:, : SIZE // 2, : SIZE // 2] if self.quadrant_only else pixels
        # the quadrant holds four times the detail per pixel of the whole tile with the same patch: scaled alike
        p = 1 / (1 + np.exp(-(_detail(read) / (4 if self.quadrant_only else 1) - 2.0)))
        return {PROBABILITIES: np.stack([1 - p, p], axis=1)}


def _tile_with_patch(y: int, x: int, seed: int = 0) -> np.ndarray:
    """A flat grey tile with one patch of fine texture at (y, x)."""
    tile = np.full((SIZE, SIZE, 3), 128.0, np.float32)
    tile[y : y + PATCH, x : x + PATCH] += np.random.default_rng(seed).choice([-60.0, 60.0], (PATCH, PATCH, 1))
    return tile


def _mean_in(relevance: np.ndarray, y: int, x: int) -> float:
    return float(relevance[y : y + PATCH, x : x + PATCH].mean())


def test_rise_masks_are_fixed_smooth_and_blur_the_chosen_share():
    masks = rise_masks(SIZE)
    assert masks.shape == (RISE_MASKS, SIZE, SIZE) and not masks.flags.writeable
    assert masks.min() >= 0 and masks.max() <= 1
    assert masks.mean() == pytest.approx(RISE_SHARE, abs=0.05)
    rise_masks.cache_clear()
    np.testing.assert_array_equal(rise_masks(SIZE), masks)  # the same masks after a restart: the same overlay
    steps = np.abs(np.diff(masks, axis=2)).mean()
    assert steps < 0.5 * np.abs(np.diff(np.random.default_rng(0).random(masks.shape) > 0.5, axis=2)).mean()
    assert steps < 2.0 / (SIZE / RISE_CELLS)  # smooth blobs about a RISE_CELLS-th of the side across


def test_occlusion_blurs_one_patch_a_view_and_shares_its_fall_among_the_cells_it_covers():
    tile = _tile_with_patch(0, 0)
    views = occlusion_views(tile)
    positions = OCCLUSION_CELLS - OCCLUSION_SPAN + 1
    assert views.shape == (positions**2, SIZE, SIZE, 3)
    cell, base = SIZE // OCCLUSION_CELLS, F.blurred(tile)
    np.testing.assert_allclose(views[0][: 2 * cell, : 2 * cell], base[: 2 * cell, : 2 * cell])
    np.testing.assert_allclose(views[0][2 * cell :], tile[2 * cell :])
    falls = np.zeros((positions**2, 2))
    falls[0] = 1.0  # only the top-left patch costs anything
    cells = occlusion_cells(falls)
    assert cells.shape == (OCCLUSION_CELLS, OCCLUSION_CELLS, 2)
    assert cells[0, 0, 0] == 1.0 and cells[0, 1, 0] == 0.5 and cells[1, 1, 0] == 0.25 and cells[2, 2, 0] == 0
    assert cells_per_side(OCCLUSION, 4) == OCCLUSION_CELLS and cells_per_side(RISE, 4) == RISE_CELLS


@pytest.mark.parametrize("method", [OCCLUSION, RISE])
def test_a_perturbation_map_follows_the_evidence_to_where_it_lies_on_each_tile(method):
    """The same network, the evidence in a different place on each tile: each map peaks where its tile's evidence is
    (not where the model tends to look), which a Grad-CAM-style prior cannot do."""
    places = [(4, 6), (40, 44), (6, 42), (42, 4)]
    toy = DetailToy(method)
    tiles = np.stack([_tile_with_patch(y, x, seed) for seed, (y, x) in enumerate(places)])
    maps = heatmaps(toy, tiles, [1] * len(tiles))
    for relevance, (y, x) in zip(maps, places):
        others = [_mean_in(relevance, *other) for other in places if other != (y, x)]
        assert _mean_in(relevance, y, x) > 3 * max(others)
    assert F.mean_map_correlations(maps).mean() < 0.5


@pytest.mark.parametrize("method", [OCCLUSION, RISE])
def test_a_perturbation_map_shows_only_what_the_network_reads(method):
    """Texture in two places, a network that reads the top-left quadrant only: the map lights that patch, not the other."""
    tile = _tile_with_patch(8, 8) + _tile_with_patch(40, 40, seed=1) - 128.0
    (relevance,) = heatmaps(DetailToy(method, quadrant_only=True), tile[None], [1])
    # RISE estimates from 96 random masks, so some noise lies where the network never reads
    assert _mean_in(relevance, 8, 8) > 3 * max(_mean_in(relevance, 40, 40), 1e-6)


@pytest.mark.parametrize("method, views", [(OCCLUSION, (OCCLUSION_CELLS - OCCLUSION_SPAN + 1) ** 2), (RISE, RISE_MASKS)])
def test_a_perturbation_map_runs_its_views_in_bounded_batches(method, views):
    """The interpreter keeps buffers for the largest batch it has run: views go PERTURBATION_BATCH at a time."""
    toy = DetailToy(method)
    tiles = np.stack([_tile_with_patch(8, 8), _tile_with_patch(30, 30)])
    outputs, class_maps = run_explained(toy, tiles)
    assert toy.calls[0] == 2 and sum(toy.calls[1:]) == 2 * views and max(toy.calls[1:]) == PERTURBATION_BATCH
    assert class_maps.shape[0] == 2 and class_maps.shape[-1] == 2 and outputs[PROBABILITIES].shape == (2, 2)


def _trust(**changes) -> OverlayTrust:
    base = dict(method="gradcam-stitched", tiles=100, cells=8, top_fifth_ratio=3.7, deletion_margin=0.1,
                deletion_margin_ci95=[0.08, 0.13], border_peak_share=0.2, passes=True, own_vs_other_ratio=3.1,
                own_vs_other_ratio_ci95=[2.1, 6.0], mean_map_correlation=0.14, tile_specific=True,
                milliseconds_per_map=90.0)
    return OverlayTrust(**{**base, **changes})


def test_a_caption_says_in_plain_words_whether_the_map_is_about_this_tile():
    specific = _trust()
    assert specific.is_evidence
    assert "3.1 times as much as blurring the fifth highlighted on another tile" in specific.caption()
    assert "Caution" not in specific.caption()
    generic = _trust(own_vs_other_ratio=1.1, own_vs_other_ratio_ci95=[0.96, 1.3], mean_map_correlation=0.79,
                     tile_specific=False)
    assert not generic.is_evidence
    assert "Caution, not evidence about this tile" in generic.caption()
    assert "1.1 times as much as blurring the fifth highlighted on another tile" in generic.caption()
    assert "tends to look on any tile" in generic.caption() and "correlation with their average was 0.79" in generic.caption()
    unmeasured = _trust(own_vs_other_ratio=None, own_vs_other_ratio_ci95=None, mean_map_correlation=None,
                        tile_specific=None)
    assert not unmeasured.is_evidence and "was not measured" in unmeasured.caption()
    unfaithful = _trust(passes=False, top_fifth_ratio=0.8)
    assert not unfaithful.is_evidence and "Not evidence" in unfaithful.caption()


def test_a_map_that_fails_the_tile_specific_test_is_not_shown_as_evidence():
    from lungfake.scoring.scoring import ModelScore

    score = ModelScore("resnet50", "ResNet50", {"lung_n": 0.1, "lung_aca": 0.8, "lung_scc": 0.1}, "0" * 64, 0.5,
                       np.zeros((8, 8), np.float32), _trust(tile_specific=False))
    assert not score.overlay_is_evidence and score.overlay_caption.startswith("Overlay for")
    assert replace_trust(score, _trust()).overlay_is_evidence


def replace_trust(score, trust):
    from dataclasses import replace

    return replace(score, overlay_trust=trust)


def test_the_registry_records_a_precise_overlay_and_refuses_one_it_does_not_know(tiny_weights, tmp_path):
    import shutil

    from lungfake.errors import RegistryError
    from lungfake.serving.registry import load_registry, update_explanation

    store = tmp_path / "w"
    shutil.copytree(tiny_weights, store)
    with pytest.raises(RegistryError, match="Unknown explanation method 'magic'"):
        update_explanation("tiny", "gradcam", {}, store, precise=("magic", {}))
    assert load_registry(store)["tiny"].as_precise() == load_registry(store)["tiny"]  # none yet: the default stays
    update_explanation("tiny", "gradcam", _trust(method="gradcam").to_json(), store, precise=(RISE, _trust(method=RISE).to_json()))
    entry = load_registry(store)["tiny"]
    assert entry.explanation_method == "gradcam" and entry.precise_method == RISE
    assert entry.as_precise().explanation_method == RISE and entry.as_precise().trust == _trust(method=RISE)


def test_the_precise_overlays_note_says_what_they_are_and_how_long_they_take(tiny_weights):
    from dataclasses import replace

    from lungfake.scoring.scoring import precise_overlay_note
    from lungfake.serving.registry import load_registry

    entry = load_registry(tiny_weights)["tiny"]
    assert precise_overlay_note([entry]) is None  # no precise overlay registered: nothing offered
    timed = [replace(entry, precise_method=RISE, precise_overlay_trust=_trust(method=RISE, milliseconds_per_map=ms).to_json())
             for ms in (1500.0, 900.0, 1000.0)]
    note = precise_overlay_note(timed)
    assert "blurring lowered its confidence most" in note and note.endswith("About 3 s for 3 models.")
    untimed = replace(timed[0], precise_overlay_trust=_trust(method=RISE, milliseconds_per_map=None).to_json())
    assert "About" not in precise_overlay_note([untimed, *timed[1:]])  # no guess where one was not measured
