"""The overlay measures (faithfulness.py) and methods (cam.py) on toy networks whose answer is known."""
from dataclasses import dataclass, replace

import numpy as np
import pytest

from lungfake.explain import faithfulness as F
from lungfake.explain.cam import SCORECAM_CHANNELS, cells_per_side, heatmaps, run_explained, scorecam_views, stitch_offsets
from lungfake.serving.model_file import ACTIVATIONS, CLASS_MAPS, POOLED, PROBABILITIES
from lungfake.serving.registry import GRADCAM, SCORECAM, STITCHED, OverlayTrust
from tests.helpers import texture

SIZE = 64


def top_left_texture(pixels: np.ndarray) -> np.ndarray:
    """Per image, how much fine texture its top-left quadrant has: the mean step between neighbouring pixels, which
    blurring removes."""
    quadrant = np.asarray(pixels, np.float32)[:, : SIZE // 2, : SIZE // 2]
    return np.abs(np.diff(quadrant, axis=2)).mean(axis=(1, 2, 3))


def looks_at_top_left(pixels: np.ndarray) -> np.ndarray:
    """A network that calls a tile class 0 by the texture of its top-left quadrant and ignores the rest."""
    p = 1 / (1 + np.exp(-(top_left_texture(pixels) - 6) / 1.5))
    return np.stack([p, (1 - p) / 2, (1 - p) / 2], axis=1)


def ignores_its_input(pixels: np.ndarray) -> np.ndarray:
    return np.tile([0.7, 0.2, 0.1], (len(pixels), 1))


def quadrant_map(row: slice, column: slice) -> np.ndarray:
    relevance = np.zeros((SIZE, SIZE), np.float32)
    relevance[row, column] = 1.0
    return relevance


HALF = slice(0, SIZE // 2), slice(SIZE // 2, SIZE)
TILES = [texture(seed, SIZE) for seed in range(6)]


def curves_of(predict, relevance):
    return [F.tile_curves(predict, tile, relevance, 0, cells=4, seed=i) for i, tile in enumerate(TILES)]


def test_a_map_on_the_quadrant_the_network_reads_beats_random_maps():
    curves = curves_of(looks_at_top_left, quadrant_map(HALF[0], HALF[0]))
    figures = F.summarise("toy", curves, [F.border_figures(quadrant_map(HALF[0], HALF[0]))] * 6, np.arange(6), 4, 1.0)
    assert figures.deletion_margin > 0.1 and figures.insertion_margin > 0.1
    assert figures.top_fifth_ratio >= 2 and figures.passes
    assert figures.deletion_margin_ci95[0] > 0


def test_a_map_on_a_quadrant_the_network_ignores_does_worse_than_random():
    curves = curves_of(looks_at_top_left, quadrant_map(HALF[1], HALF[1]))
    assert np.mean([c.deletion_margin for c in curves]) < 0
    assert np.mean([c.drop(c.deletion) for c in curves]) == pytest.approx(0, abs=1e-3)  # its top fifth is elsewhere


def test_a_network_that_ignores_its_input_gives_every_map_a_margin_of_zero():
    for curve in curves_of(ignores_its_input, quadrant_map(HALF[0], HALF[0])):
        assert curve.deletion_margin == pytest.approx(0, abs=1e-9) and curve.insertion_margin == pytest.approx(0, abs=1e-9)


def test_curves_run_from_the_tile_to_its_blurred_copy():
    tile = TILES[0]
    probabilities = []

    def record(pixels):
        probabilities.append(pixels)
        return looks_at_top_left(pixels)

    F.tile_curves(record, tile, quadrant_map(HALF[0], HALF[0]), 0, cells=4)
    deletion, insertion = probabilities[0][:11], probabilities[0][11:22]
    np.testing.assert_allclose(deletion[0], tile) and np.testing.assert_allclose(insertion[-1], tile)
    np.testing.assert_allclose(deletion[-1], F.blurred(tile)) and np.testing.assert_allclose(insertion[0], F.blurred(tile))
    # at a fifth, exactly the highlighted fifth of the pixels is blurred, all inside the top-left quadrant
    changed = np.any(deletion[2] != tile, axis=-1)
    assert changed.sum() == round(0.2 * SIZE * SIZE) and changed[: SIZE // 2, : SIZE // 2].all() == (0.2 >= 0.25)
    assert not changed[SIZE // 2 :].any()


def test_border_share_of_a_rim_and_of_a_centred_blob():
    rim = np.ones((SIZE, SIZE), np.float32)
    rim[8:-8, 8:-8] = 0
    assert F.border_figures(rim) == (pytest.approx(1.0), True)
    blob = np.zeros((SIZE, SIZE), np.float32)
    blob[24:40, 24:40] = 1
    assert F.border_figures(blob) == (pytest.approx(0.0), False)
    assert F.outer_ring(SIZE).mean() == pytest.approx(1 - 0.75**2)


def test_rank_correlation():
    rng = np.random.default_rng(0)
    first = rng.random((16, 16))
    assert F.rank_correlation(first, first * 3 + 1) == pytest.approx(1.0)
    assert abs(F.rank_correlation(first, rng.random((16, 16)))) < 0.2
    assert F.rank_correlation(first, np.zeros((16, 16))) == 0.0


def test_a_ratio_interval_with_unbounded_draws_is_infinite_not_nan():
    drops = np.array([[0.2, 0.0], [0.2, 0.0], [0.1, 0.1], [0.3, 0.1]])  # the first two tiles: a random fifth cost nothing
    with np.errstate(divide="raise", invalid="raise"):
        low, high = F.family_interval(drops, np.array(["a", "b", "c", "d"]), F._ratio_of_means)
    assert np.isfinite(low) and low > 1 and high == np.inf


def test_family_interval_resamples_whole_families():
    values = np.array([1.0, 1.0, 1.0, 0.0])
    one_family = F.family_interval(values, np.array(["a"] * 4))
    assert one_family == [0.75, 0.75]  # one family: every draw is the same tiles
    assert F.family_interval(values, np.array(["a", "a", "a", "b"])) == [0.0, 1.0]


@dataclass
class ToyEntry:
    input_size: int
    explanation_method: str
    class_names: tuple = ("lung_n", "lung_aca", "lung_scc")
    temperature: float = 1.0


class StridedToy:
    """A served-file stand-in with a stride of `stride` px: class 0's map is each cell's fine texture, in the
    top-left quadrant only; classes 1 and 2 map nothing. Its activations (for Score-CAM) are every cell's fine
    texture, each cell in a channel of its own: they show where the texture is, not what the network reads."""

    def __init__(self, method: str, stride: int = 16):
        self.entry, self.stride = ToyEntry(SIZE, method), stride
        self.feature_cells = self.activation_cells = SIZE // stride
        self.calls = []

    def activations(self, pixels):
        n, cells = len(pixels), SIZE // self.stride
        steps = np.abs(np.diff(pixels, axis=2, append=pixels[:, :, -1:])).mean(axis=-1)
        blocks = steps.reshape(n, cells, self.stride, cells, self.stride).mean(axis=(2, 4))
        return blocks[..., None] * np.eye(cells * cells, dtype=np.float32).reshape(1, cells, cells, -1)

    def run(self, pixels):
        pixels = np.asarray(pixels, np.float32)
        self.calls.append(len(pixels))
        n, cells = len(pixels), SIZE // self.stride
        steps = np.abs(np.diff(pixels, axis=2, append=pixels[:, :, -1:])).mean(axis=-1)
        blocks = steps.reshape(n, cells, self.stride, cells, self.stride).mean(axis=(2, 4))
        blocks[:, cells // 2 :, :] = 0
        blocks[:, :, cells // 2 :] = 0
        maps = np.stack([blocks, np.zeros_like(blocks), np.zeros_like(blocks)], axis=-1)
        return {CLASS_MAPS: maps, PROBABILITIES: looks_at_top_left(pixels), POOLED: maps.mean(axis=(1, 2)),
                ACTIVATIONS: self.activations(pixels)}


@pytest.mark.parametrize("method", [GRADCAM, STITCHED, SCORECAM])
def test_each_method_puts_the_peak_on_the_quadrant_the_network_reads(method):
    toy = StridedToy(method)
    tile = TILES[1][None].astype(np.float32)
    (relevance,) = heatmaps(toy, tile, [0])
    peak = np.unravel_index(np.argmax(relevance), relevance.shape)
    assert relevance.shape == (SIZE, SIZE) and relevance.max() == pytest.approx(1.0)
    assert peak[0] < SIZE // 2 and peak[1] < SIZE // 2
    # Score-CAM's masks are its cells brought to the tile, so a cell beside the quadrant reaches into it a little
    assert relevance[SIZE // 2 + 12 :, SIZE // 2 + 12 :].max() <= (0.05 if method == SCORECAM else 0)


def test_stitching_interleaves_evenly_spaced_shifted_views():
    assert stitch_offsets(128, 4) == (16, [8, 24])
    assert stitch_offsets(224, 7) == (16, [8, 24])
    with pytest.raises(ValueError):
        stitch_offsets(32, 32)  # stride 1: nothing to stitch
    toy = StridedToy(STITCHED)
    ramp = np.tile(np.arange(SIZE, dtype=np.float32)[None, :, None] * 3, (SIZE, 1, 3))[None]

    class Mean(StridedToy):  # each cell's mean brightness: the stitched map of a ramp is a finer ramp
        def run(self, pixels):
            cells = SIZE // self.stride
            mean = np.asarray(pixels).reshape(len(pixels), cells, self.stride, cells, self.stride, 3).mean(axis=(2, 4, 5))
            return {CLASS_MAPS: np.repeat(mean[..., None], 3, axis=-1)}

    fine = run_explained(Mean(STITCHED), ramp)[1][0, 0, :, 0]
    assert len(fine) == 8 and np.all(np.diff(fine) > 0)
    # centres 8 px apart, 3 grey levels a pixel; the outermost cells see part of the ramp's mirror image
    np.testing.assert_allclose(np.diff(fine)[1:-1], 24, atol=1e-3)
    assert cells_per_side(STITCHED, 4) == 8 and cells_per_side(GRADCAM, 4) == 4
    assert toy.calls == []


def test_a_stitched_map_costs_four_more_passes_in_the_same_call():
    toy = StridedToy(STITCHED)
    tiles = np.stack(TILES[:2]).astype(np.float32)
    outputs, class_maps = run_explained(toy, tiles)
    assert toy.calls == [2 + 8]  # one call of the file: one batch shape for the interpreter
    assert class_maps.shape == (2, 8, 8, 3) and outputs[PROBABILITIES].shape == (2, 3)
    np.testing.assert_allclose(outputs[PROBABILITIES], looks_at_top_left(tiles))
    plain = StridedToy(GRADCAM)
    assert run_explained(plain, tiles)[1].shape == (2, 4, 4, 3) and plain.calls == [2]


def test_score_cam_masks_the_blurred_tile_with_each_of_the_channels_most_varied_inside_the_rim():
    tile = TILES[0].astype(np.float32)
    activations = np.zeros((4, 4, 20), np.float32)
    activations[0, 0, 2] = 50.0  # lit on the rim only (where zero padding shows): varies most, but not inside
    activations[1, 1, 3] = 3.0  # one cell inside the rim lit
    activations[..., 7] = np.arange(16, dtype=np.float32).reshape(4, 4)  # a ramp
    activations[..., 9] = 2.0  # flat: no variance, never chosen before a varied one
    views, chosen = scorecam_views(tile, activations, channels=3)
    base = F.blurred(tile)
    assert views.shape == (4, SIZE, SIZE, 3) and chosen.shape == (4, 4, 3)
    np.testing.assert_allclose(chosen[..., 0], activations[..., 7])  # the ramp varies most inside, then the lit cell
    np.testing.assert_allclose(chosen[..., 1], activations[..., 3])
    np.testing.assert_allclose(views[-1], base)  # the last view is the blurred tile alone
    # the lit cell's view is the tile at that cell's centre and the blurred tile far from it
    np.testing.assert_allclose(views[1][24, 24], tile[24, 24], atol=1e-3)
    np.testing.assert_allclose(views[1][48:, 48:], base[48:, 48:], atol=1e-3)


def test_a_score_cam_map_costs_one_more_call_of_the_file_with_its_masked_views():
    toy = StridedToy(SCORECAM)
    tiles = np.stack(TILES[:2]).astype(np.float32)
    outputs, class_maps = run_explained(toy, tiles)
    assert toy.calls == [2, 2 * (SCORECAM_CHANNELS + 1)]
    assert class_maps.shape == (2, 4, 4, 3) and cells_per_side(SCORECAM, 4, 4) == 4
    np.testing.assert_allclose(outputs[PROBABILITIES], looks_at_top_left(tiles))
    # the top-left cell inside the rim raises class 0 above the blurred tile; a neighbouring cell's mask reaches into
    # the quadrant a little, and a cell two away not at all
    class_0 = class_maps[..., 0]
    neighbours = np.concatenate([class_0[:, 2, :3], class_0[:, :2, 2]], axis=1)
    assert class_0[:, 1, 1].min() > 5 * neighbours.max()
    assert np.allclose(class_0[:, 3, :], 0, atol=1e-6) and np.allclose(class_0[:, :, 3], 0, atol=1e-6)


def test_the_caption_says_what_the_map_is_worth_and_withholds_a_failing_one():
    figures = F.summarise("gradcam-stitched", curves_of(looks_at_top_left, quadrant_map(HALF[0], HALF[0])),
                          [(0.2, False)] * 6, np.arange(6), 8, 90.0)
    trust = OverlayTrust.of(figures)
    assert trust.passes and "8x8 cells" in trust.caption() and "shift-and-stitch" in trust.caption()
    assert f"{figures.top_fifth_ratio:.1f} times as much as blurring a random fifth" in trust.caption()
    failing = replace(trust, top_fifth_ratio=0.7, passes=False)
    assert failing.caption().split(". ")[1].startswith("Not evidence") and "only 0.7 times" in failing.caption()


def test_the_registry_refuses_an_explanation_method_this_lungfake_does_not_know(tiny_weights, tmp_path):
    import json
    import shutil

    from lungfake.errors import RegistryError
    from lungfake.serving.registry import load_registry, update_explanation

    store = tmp_path / "w"
    shutil.copytree(tiny_weights, store)
    with pytest.raises(RegistryError, match="Unknown explanation method 'magic'"):
        update_explanation("tiny", "magic", {}, store)
    payload = json.loads((store / "registry.json").read_text())
    payload["models"]["tiny"]["explanation_method"] = "magic"
    (store / "registry.json").write_text(json.dumps(payload))
    with pytest.raises(RegistryError, match="explanation method 'magic'"):
        load_registry(store)


def test_a_served_model_explains_a_chunked_batch_as_it_explains_each_tile_alone():
    """The committed ResNet50 (shift-and-stitch): 9 tiles go through in chunks of EXPLAIN_BATCH, each with its shifted
    views in the same call; every map equals the map of that tile scored alone, and sits on the tile's own content."""
    from lungfake.scoring.scoring import EXPLAIN_BATCH, Scorer
    from tests.helpers import he_like

    scorer = Scorer.load("resnet50")
    assert scorer.served[0].entry.explanation_method == STITCHED and EXPLAIN_BATCH < 9
    tiles = [he_like(seed, 128) for seed in range(9)]
    together = scorer.score(tiles, explain=True)
    for tile, score in zip(tiles, together):
        alone = scorer.score([tile], explain=True)[0].models["resnet50"]
        np.testing.assert_allclose(score.models["resnet50"].heatmap, alone.heatmap, atol=1e-4)
        # the model's input size where the view is the tile, else the tile's frame at scale.REFERENCE_SIDE
        assert score.models["resnet50"].heatmap.shape == ((128, 128) if score.scale_factor == 1.0 else (224, 224))
    assert not np.allclose(together[0].models["resnet50"].heatmap, together[1].models["resnet50"].heatmap)


def test_a_served_file_and_its_registry_entry_agree_on_the_score_cam_activations(tiny_weights, tmp_path):
    import dataclasses
    import json
    import shutil

    from lungfake.errors import ModelIntegrityError, RegistryError
    from lungfake.serving.inference import LoadedModel
    from lungfake.serving.registry import load_registry

    entry = load_registry(tiny_weights)["tiny"]
    loaded = LoadedModel.load(entry, tiny_weights)
    assert entry.scorecam_layer == "conv1" and loaded.activation_cells == 32
    scorecam = loaded.with_entry(dataclasses.replace(entry, explanation_method=SCORECAM))
    assert scorecam.entry.explanation_layer == "conv1" and entry.explanation_layer == entry.gradcam_layer
    tiles = np.stack([texture(seed, 32) for seed in range(3)]).astype(np.float32)
    outputs, class_maps = run_explained(scorecam, tiles)
    assert class_maps.shape == (3, 32, 32, 3) and outputs[ACTIVATIONS].shape[:3] == (3, 32, 32)
    np.testing.assert_allclose(run_explained(scorecam, tiles[1:2])[1][0], class_maps[1], atol=1e-5)

    store = tmp_path / "w"
    shutil.copytree(tiny_weights, store)
    payload = json.loads((store / "registry.json").read_text())
    payload["models"]["tiny"]["scorecam_layer"] = ""
    (store / "registry.json").write_text(json.dumps(payload))
    with pytest.raises(ModelIntegrityError, match="has the activations output"):
        LoadedModel.load(load_registry(store)["tiny"], store)
    payload["models"]["tiny"]["explanation_method"] = SCORECAM
    (store / "registry.json").write_text(json.dumps(payload))
    with pytest.raises(RegistryError, match="Score-CAM but no scorecam_layer"):
        load_registry(store)


def test_the_method_chosen_is_the_most_faithful_that_passes_within_the_pass_budget():
    from lungfake.evaluation import explanation_check as check

    base = F.summarise("toy", curves_of(looks_at_top_left, quadrant_map(HALF[0], HALF[0])), [(0.2, False)] * 6,
                       np.arange(6), 8, 1.0)
    assert base.passes
    figures = {GRADCAM: replace(base, method=GRADCAM, deletion_margin=0.30, top_fifth_ratio=1.5),
               STITCHED: replace(base, method=STITCHED, deletion_margin=0.10),
               SCORECAM: replace(base, method=SCORECAM, deletion_margin=0.20)}
    assert check.choose_method(figures) == SCORECAM  # the failing map's larger margin does not count
    assert check.choose_method(figures, budget=4) == STITCHED  # Score-CAM's 9 passes are over this budget
    assert check.choose_method({GRADCAM: figures[GRADCAM]}) == GRADCAM  # none passes: the best within the budget


def test_a_coarse_or_border_bound_map_is_chosen_only_when_no_passing_map_meets_those_targets():
    """ResNet50's plain Grad-CAM (4x4 cells) once beat its shift-and-stitch (8x8) by 0.004 of margin: resolution and
    border decide among maps that pass, the margin only among those that meet them."""
    from lungfake.evaluation import explanation_check as check

    base = F.summarise("toy", curves_of(looks_at_top_left, quadrant_map(HALF[0], HALF[0])), [(0.2, False)] * 6,
                       np.arange(6), 8, 1.0)
    assert base.meets_targets
    coarse = replace(base, method=GRADCAM, deletion_margin=0.105, cells=4)
    stitched = replace(base, method=STITCHED, deletion_margin=0.101, cells=8)
    assert check.choose_method({GRADCAM: coarse, STITCHED: stitched}) == STITCHED
    on_border = replace(stitched, border_peak_share=0.7)
    assert not on_border.meets_targets and on_border.passes
    assert check.choose_method({GRADCAM: coarse, STITCHED: on_border}) == GRADCAM  # neither meets them: the margin decides
    assert check.choose_method({GRADCAM: replace(coarse, cells=8), STITCHED: stitched}) == GRADCAM


def test_a_map_that_is_not_specific_to_its_tile_is_chosen_only_when_none_is():
    """ResNet50's shift-and-stitch Grad-CAM passed against random fifths but was the same central blob on every tile:
    among maps that pass, one that is specific to its tile comes first, whatever the margins."""
    from lungfake.evaluation import explanation_check as check

    base = F.summarise("toy", curves_of(looks_at_top_left, quadrant_map(HALF[0], HALF[0])), [(0.2, False)] * 6,
                       np.arange(6), 8, 1.0)
    specific = F.TileSpecificity(6, 3.0, [2.0, 5.0], 4.0, [2.5, 6.0], 0.2, 0.2)
    generic = replace(specific, own_vs_other_ratio=1.1, own_vs_other_ratio_ci95=[0.9, 1.3], mean_map_correlation=0.8)
    assert not generic.passes and specific.passes
    figures = {STITCHED: replace(base, method=STITCHED, deletion_margin=0.2, specificity=generic),
               SCORECAM: replace(base, method=SCORECAM, deletion_margin=0.1, specificity=specific)}
    assert check.choose_method(figures) == SCORECAM
    assert figures[SCORECAM].is_evidence and not figures[STITCHED].is_evidence and figures[STITCHED].passes
    assert check.choose_method({STITCHED: figures[STITCHED]}) == STITCHED  # shown behind a caution
    unmeasured = replace(base, specificity=None)
    assert unmeasured.tile_specific is None and not unmeasured.is_evidence and unmeasured.meets_targets
    assert F.Faithfulness.from_json(figures[SCORECAM].to_json()) == figures[SCORECAM]
