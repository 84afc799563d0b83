"""Scale normalisation (scale.py): the nuclear-size estimate, the factor, the view the models score, overlays mapped
back onto the uploaded image, the registry's setting, and the scorer applying it."""
import json
import shutil

import cv2
import numpy as np
import pytest

from lungfake.errors import DatasetError, RegistryError
from lungfake.evaluation.robustness import magnified
from lungfake.evaluation.scale_fitting import fit_reference
from lungfake.explain.cam import overlay
from lungfake.scoring.scoring import Scorer
from lungfake.serving.images import to_model_input
from lungfake.serving.registry import load_scale_normalisation, update_scale_normalisation
from lungfake.serving.scale import REFERENCE_SIDE, ScaledView, ScaleNormalisation, nuclear_size
from tests.helpers import cells

PINK, PURPLE = (232, 190, 215), (70, 40, 140)


def nuclei(radius: int, seed: int = 0, side: int = REFERENCE_SIDE) -> np.ndarray:
    """Pink tissue with well-separated purple discs of one radius (their side, the root of the area: radius * sqrt(pi))."""
    rng = np.random.default_rng(seed)
    tile = np.full((side, side, 3), PINK, np.uint8)
    step = 4 * radius
    for y in range(step // 2, side - radius, step):
        for x in range(step // 2, side - radius, step):
            jitter = rng.integers(-radius // 2, radius // 2 + 1, 2)
            cv2.circle(tile, (int(x + jitter[0]), int(y + jitter[1])), radius, PURPLE, -1)
    return tile


@pytest.mark.parametrize("radius", [4, 6, 9])
def test_the_nuclear_size_is_the_side_of_the_median_nucleus(radius):
    assert nuclear_size(nuclei(radius)) == pytest.approx(radius * np.sqrt(np.pi), rel=0.15)


@pytest.mark.parametrize("factor", [0.6, 1.6])
def test_the_nuclear_size_follows_a_known_magnification(factor):
    tile = cells(3)
    assert nuclear_size(magnified(tile, factor)) / nuclear_size(tile) == pytest.approx(factor, rel=0.15)


def test_a_tile_without_nuclei_has_no_size_and_is_left_as_it_is():
    pink = np.full((REFERENCE_SIDE, REFERENCE_SIDE, 3), PINK, np.uint8)
    assert np.isnan(nuclear_size(pink))
    view = ScaleNormalisation(10.0).view(pink)
    assert view.factor == 1.0 and np.array_equal(view.pixels, pink)


def test_the_factor_goes_the_given_power_of_the_way_rounded_and_clipped():
    assert ScaleNormalisation(10.0).factor_for(2.5) == 1.0 and ScaleNormalisation(10.0).factor_for(40.0) == 0.6  # shrinks only
    scale = ScaleNormalisation(10.0, power=0.5, min_factor=0.6, max_factor=1.6)
    assert scale.factor_for(2.5) == 1.6  # (10 / 2.5) ** 0.5 = 2, clipped
    assert scale.factor_for(10 / 1.21) == 1.1 and scale.factor_for(10 * 1.21) == pytest.approx(0.91)
    assert scale.factor_for(10.04) == 1.0  # within half a percent: the tile as it is
    assert scale.factor_for(float("nan")) == 1.0 and ScaleNormalisation(10.0, power=0.0).factor_for(5.0) == 1.0
    assert ScaleNormalisation(10.0, power=1.0).factor_for(12.5) == 0.8


def test_the_view_is_the_image_at_lc25000s_side_magnified_by_its_factor():
    """Nuclei are measured as the models see the image, at LC25000's side, not in the upload's own pixels."""
    image = cv2.resize(nuclei(3), (448, 448), interpolation=cv2.INTER_NEAREST)  # in its own pixels, radius 6
    scale = ScaleNormalisation(nuclear_size(nuclei(3)) * 1.44, 0.5, 0.6, 1.6)  # measured on 448 px it would shrink it
    view = scale.view(image)
    at_side = to_model_input(image, REFERENCE_SIDE).round().astype(np.uint8)
    assert view.nuclear_size == pytest.approx(nuclear_size(at_side))
    assert view.factor == scale.factor_for(view.nuclear_size) > 1.1 and scale.factor_for(nuclear_size(image)) < 1.0
    assert np.array_equal(view.pixels, magnified(at_side, view.factor))


def spot(centre: tuple[int, int], side: int = REFERENCE_SIDE) -> np.ndarray:
    tile = np.zeros((side, side, 3), np.uint8)
    cv2.circle(tile, centre, 6, (255, 255, 255), -1)
    return tile


@pytest.mark.parametrize("factor", [0.7, 0.9, 1.2, 1.4])
@pytest.mark.parametrize("centre", [(112, 112), (50, 170), (175, 60)])
def test_an_overlay_over_the_view_lands_on_the_same_place_of_the_image(factor, centre):
    """A map that lights what the models saw at a point of the image, mapped back, peaks at that point."""
    view_pixels = magnified(spot(centre), factor)
    relevance = cv2.resize(view_pixels[..., 0].astype(np.float32) / 255, (14, 14), interpolation=cv2.INTER_AREA)
    on_image = ScaledView(view_pixels, factor, 8.0).to_tile_frame(relevance)
    peak = np.unravel_index(np.nanargmax(on_image), on_image.shape)
    assert on_image.shape == (REFERENCE_SIDE, REFERENCE_SIDE)
    assert abs(peak[0] - centre[1]) <= 10 and abs(peak[1] - centre[0]) <= 10


def test_the_rim_an_enlarged_view_did_not_show_has_no_overlay():
    on_image = ScaledView(np.zeros((224, 224, 3), np.uint8), 1.6, 6.0).to_tile_frame(np.ones((14, 14), np.float32))
    same = np.ones((14, 14), np.float32)
    assert ScaledView(np.zeros((224, 224, 3), np.uint8), 1.0, 9.0).to_tile_frame(same) is same  # the view is the image
    rim = (REFERENCE_SIDE - round(REFERENCE_SIDE / 1.6)) // 2
    assert np.isnan(on_image[:rim]).all() and np.isnan(on_image[:, -rim:]).all()
    assert np.isfinite(on_image[rim:-rim, rim:-rim]).all()
    shrunk = ScaledView(np.zeros((224, 224, 3), np.uint8), 0.7, 14.0).to_tile_frame(np.ones((14, 14), np.float32))
    assert np.isfinite(shrunk).all()


def test_the_overlay_leaves_the_unseen_rim_as_the_tile_is():
    tile = cells(5, 96)
    relevance = np.ones((96, 96), np.float32)
    relevance[:20] = np.nan
    blended = overlay(tile, relevance, opacity=0.5)
    assert np.array_equal(blended[:20], tile[:20]) and not np.array_equal(blended[40:], tile[40:])


def test_the_registry_keeps_the_scale_setting_and_refuses_a_broken_one(tmp_path):
    (tmp_path / "registry.json").write_text(json.dumps({"models": {}}))
    assert load_scale_normalisation(tmp_path) is None  # no setting fitted: tiles are scored as they come
    scale = ScaleNormalisation(9.95, 0.5, 0.6, 1.6)
    update_scale_normalisation(scale, tmp_path)
    assert load_scale_normalisation(tmp_path) == scale
    payload = json.loads((tmp_path / "registry.json").read_text())
    payload["scale"] = {"reference_nuclear_size": 9.95, "strength": 2}
    (tmp_path / "registry.json").write_text(json.dumps(payload))
    with pytest.raises(RegistryError, match="scale-fit"):
        load_scale_normalisation(tmp_path)


def test_the_reference_is_the_median_nuclear_size_of_the_tiles_given():
    tiles = [nuclei(4), nuclei(6, 1), nuclei(9, 2)]
    assert fit_reference(tiles) == pytest.approx(nuclear_size(nuclei(6, 1)))
    with pytest.raises(DatasetError, match="No nuclei"):
        fit_reference([np.full((64, 64, 3), PINK, np.uint8)])


@pytest.fixture(scope="module")
def scaled_weights(tiny_weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scaled") / "w"
    shutil.copytree(tiny_weights, folder)
    update_scale_normalisation(ScaleNormalisation(nuclear_size(nuclei(6)), power=1.0, max_factor=1.6), folder)
    return folder


def test_the_scorer_scores_the_view_and_maps_the_overlay_back(scaled_weights, tiny_weights):
    small_nuclei = nuclei(4)  # at power 1 brought all the way to radius 6: x1.5
    scaled, plain = Scorer.load("all", scaled_weights), Scorer.load("all", tiny_weights)
    view = scaled.views([small_nuclei])[0]
    assert view.factor == pytest.approx(1.5, abs=0.1)
    result = scaled.score([small_nuclei], explain=True)[0]
    expected = plain.score([view.pixels])[0]  # the view scored as an image of its own, unscaled
    assert result.scale_factor == view.factor and result.rgb is small_nuclei
    assert result.models["tiny"].probabilities == pytest.approx(expected.models["tiny"].probabilities, abs=1e-6)
    heatmap = result.models["tiny"].heatmap
    assert heatmap.shape == (REFERENCE_SIDE, REFERENCE_SIDE) and np.isnan(heatmap[0]).all() and np.isfinite(heatmap[112]).any()
    assert result.to_json()["scale_factor"] == view.factor and "enlarged" in result.scale_note


def test_without_a_scale_setting_the_image_is_scored_as_it_is(tiny_weights):
    result = Scorer.load("all", tiny_weights).score([nuclei(4)], explain=True)[0]
    assert result.scale_factor == 1.0 and result.scale_note is None
    assert result.models["tiny"].heatmap.shape == (32, 32)  # the model's own input size, untouched


def test_the_screen_is_fitted_on_what_the_models_see():
    from lungfake.serving.scale import as_scored

    tiles = [nuclei(4), nuclei(6, 1)]
    scale = ScaleNormalisation(nuclear_size(nuclei(6)), power=1.0, max_factor=1.6)
    seen = as_scored(tiles, scale)
    assert np.array_equal(seen[0], scale.view(tiles[0]).pixels) and not np.array_equal(seen[0], tiles[0])
    assert as_scored(tiles, None) is tiles
