"""Whole slides: the reader and its refusals, scale, the tissue mask, tiling from the pyramid, the outputs (QuPath's
GeoJSON rules among them), the command line, and the slide page."""
import json
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest

from lungfake.data.mosaic import write_mosaic
from lungfake.errors import SlideReadError, SlideScaleError
from lungfake.reports.slide import map_slide, plan_slide, tissue_mask, verdict_colours
from lungfake.scoring.scoring import ENSEMBLE, Scorer
from lungfake.serving.slides import SlideFile
from tests.helpers import REPO, cells, needs_data

SLIDES = REPO.parent / "shared" / "data" / "slides"
needs_slides = pytest.mark.skipif(not (SLIDES / "cmu_small_region.svs").is_file(), reason=f"no shared slides at {SLIDES}")
LC25000_MPP = 184 / 224  # one mosaic tile is one model tile


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    tiles = [cells(seed) for seed in range(8)]
    return write_mosaic(tmp_path_factory.mktemp("mosaic") / "mosaic.svs", tiles, 4, LC25000_MPP), tiles


@needs_slides
def test_an_aperio_slide_opens_with_its_own_scale():
    with SlideFile(SLIDES / "cmu_small_region.svs") as slide:
        assert slide.format == "aperio" and slide.dimensions == (2220, 2967)
        scale = slide.scale()
        assert scale.microns_per_pixel == pytest.approx(0.499) and scale.source == "the file's metadata"
        assert slide.objective_power == 20


@needs_slides
def test_a_slide_without_a_scale_is_refused_until_one_is_stated_and_tiles_come_from_the_nearest_level():
    with SlideFile(SLIDES / "tcga_frozen_no_mpp.svs") as slide:
        with pytest.raises(SlideScaleError, match="--mpp"):
            plan_slide(slide)
        at_20x, at_40x = plan_slide(slide, 0.5), plan_slide(slide, 0.25)
    assert at_20x.level == 0 and at_20x.tile == 368 and at_20x.scale.source == "stated by the user"
    assert at_40x.level == 1 and at_40x.tile == 736  # 736 px shrink to 224: level 1 (half) still has enough pixels


@needs_slides
@pytest.mark.parametrize("name, error, words", [
    ("small_dicom.dcm", SlideReadError, "cannot read it.*Convert the slide"),
    ("boxes_generic.tiff", SlideScaleError, "not one a microscope gives"),
])
def test_files_openslide_cannot_use_are_refused_with_what_to_do(name, error, words):
    with pytest.raises(error, match=words) as caught, SlideFile(SLIDES / name) as slide:
        plan_slide(slide)
    assert str(SLIDES) not in str(caught.value)


def test_not_a_slide_and_a_damaged_slide_are_refused(tmp_path, mosaic):
    (tmp_path / "notes.txt").write_text("not a slide")
    with pytest.raises(SlideReadError, match="not a whole-slide file"):
        SlideFile(tmp_path / "notes.txt")
    data = mosaic[0].path.read_bytes()
    (tmp_path / "cut.svs").write_bytes(data[: len(data) // 3])
    with pytest.raises(SlideReadError) as caught, SlideFile(tmp_path / "cut.svs") as slide:
        plan_slide(slide)
    assert str(tmp_path) not in str(caught.value)
    with pytest.raises(SlideReadError, match="does not exist"):
        SlideFile(tmp_path / "missing.svs")


def test_a_stated_scale_no_microscope_gives_is_refused(mosaic):
    with SlideFile(mosaic[0].path) as slide, pytest.raises(SlideScaleError, match="not one a microscope gives"):
        plan_slide(slide, 25.0)


def test_the_mask_keeps_tissue_and_drops_glass_and_specks():
    thumbnail = np.full((200, 300, 3), 245, np.uint8)
    thumbnail[40:160, 40:160] = (200, 120, 180)  # tissue
    thumbnail[20:23, 250:253] = (120, 60, 150)  # a speck: 9 pixels, under a quarter of a 20-px tile
    mask = tissue_mask(thumbnail, 20)
    assert mask[50:150, 50:150].all() and not mask[20:23, 250:253].any() and not mask[:, 200:].any()
    assert not tissue_mask(np.full((100, 100, 3), 245, np.uint8), 20).any()


def test_a_blank_slide_has_no_tissue_to_map(tmp_path):
    blank = write_mosaic(tmp_path / "blank.svs", [np.full((224, 224, 3), 245, np.uint8)] * 4, 2, LC25000_MPP)
    with SlideFile(blank.path) as slide, pytest.raises(SlideReadError, match="No tissue"):
        plan_slide(slide)


def test_every_mosaic_tile_is_scored_as_it_is_scored_alone(tiny_weights, mosaic):
    layout, tiles = mosaic
    scorer = Scorer.load(folder=tiny_weights)
    with SlideFile(layout.path) as slide:
        plan = plan_slide(slide)
        assert plan.tile == 224 and plan.level == 0
        result = map_slide(scorer, slide, plan, suspicious=2)
    positions = [(int(x), int(y)) for y, x in result.tiles.grid.positions]
    assert sorted(positions) == sorted(layout.positions)
    alone = {pos: score for pos, score in zip(layout.positions, scorer.score(tiles))}
    for i, pos in enumerate(positions):
        for arch, model in alone[pos].models.items():
            assert np.allclose(result.tiles.probabilities[arch][i], list(model.probabilities.values()), atol=1e-4)
        assert result.tiles.verdicts[i] == alone[pos].verdict.headline
    assert len(result.suspicious) == min(2, int((~result.tiles.ood).sum()))  # refused tiles are never "suspicious"


def test_the_geojson_follows_qupaths_rules_for_tiles(tiny_weights, mosaic):
    layout, _ = mosaic
    with SlideFile(layout.path) as slide:
        plan = plan_slide(slide)
        result = map_slide(Scorer.load(folder=tiny_weights), slide, plan, suspicious=0)
    collection = json.loads(result.geojson_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(layout.positions)
    ids = set()
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        ids.add(str(uuid.UUID(feature["id"])))
        ring = feature["geometry"]["coordinates"][0]
        assert feature["geometry"]["type"] == "Polygon" and len(ring) == 5 and ring[0] == ring[-1]
        x, y = ring[0]
        assert (x, y) in layout.positions and ring[2] == [x + 224, y + 224]  # level-0 pixels
        properties = feature["properties"]
        assert properties["objectType"] == "tile"
        classification = properties["classification"]
        assert classification["name"] in verdict_colours()
        colour = classification["color"]  # QuPath refuses a classification without its colour
        assert len(colour) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
        measurements = properties["measurements"]
        assert measurements and all(isinstance(v, float) and np.isfinite(v) for v in measurements.values())
    assert len(ids) == len(layout.positions)
    assert result.geojson_text() == result.geojson_text()  # the same slide, the same file


def test_the_summary_names_a_subtype_only_where_the_tiles_agree_on_it(tiny_weights, mosaic):
    with SlideFile(mosaic[0].path) as slide:
        result = map_slide(Scorer.load(folder=tiny_weights), slide, plan_slide(slide), suspicious=0)
    result.tiles.verdicts = ["Lung adenocarcinoma"] * 5 + ["Carcinoma, subtype uncertain"] * 2 + ["Benign lung tissue"]
    summary = result.summary()
    assert summary["cancer_found"] and summary["carcinoma_tiles"] == 7 and summary["subtype"] == "Lung adenocarcinoma"
    result.tiles.verdicts = ["Lung adenocarcinoma"] * 3 + ["Carcinoma, subtype uncertain"] * 4 + ["Benign lung tissue"]
    assert result.summary()["subtype"] is None  # withheld on most carcinoma tiles
    result.tiles.verdicts = ["Lung adenocarcinoma"] * 3 + ["Lung squamous cell carcinoma"] * 3 + ["Benign lung tissue"] * 2
    assert result.summary()["subtype"] is None  # mixed
    result.tiles.verdicts = ["Benign lung tissue"] * 8
    assert not result.summary()["cancer_found"] and result.summary()["subtype"] is None


def test_a_reproducible_summary_says_nothing_of_how_long_the_slide_took(tiny_weights, mosaic, monkeypatch):
    """Two runs take different times: with SOURCE_DATE_EPOCH set their reports must still match byte for byte."""
    with SlideFile(mosaic[0].path) as slide:
        result = map_slide(Scorer.load(folder=tiny_weights), slide, plan_slide(slide), suspicious=0)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert f"scored in {result.summary()['seconds']:.0f} s:" in result.summary_text()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796601600")
    text = result.summary_text()
    result.tiles.seconds += 7.0
    assert " scored: " in text and result.summary_text() == text


def _cli(*args, weights=None):
    return subprocess.run([sys.executable, "-m", "lungfake", "slide", *map(str, args),
                           *(["--weights-dir", str(weights)] if weights else [])],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def test_the_command_line_writes_every_output_or_none(tiny_weights, mosaic, tmp_path):
    outputs = {flag: tmp_path / f"out.{ext}" for flag, ext in (("--map", "png"), ("--csv", "csv"), ("--geojson", "geojson"),
                                                               ("--report", "html"))}
    run = _cli(mosaic[0].path, *[x for pair in outputs.items() for x in pair], weights=tiny_weights)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "8 tissue tiles" in run.stdout and "8/8 tiles, 0 left" in run.stderr
    assert all(path.stat().st_size > 0 for path in outputs.values())
    assert outputs["--csv"].read_text().count("\n") == 9
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    run = _cli(mosaic[0].path, "--csv", tmp_path / "tiles.csv", "--report", tmp_path / "no" / "such" / "report.html",
               weights=tiny_weights)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []  # the CSV was not left behind without its report


@needs_slides
def test_the_command_line_refuses_a_slide_without_scale_naming_mpp(tiny_weights):
    run = _cli(SLIDES / "tcga_frozen_no_mpp.svs", weights=tiny_weights)
    assert run.returncode == 2 and "--mpp" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
@needs_data
def test_a_mosaic_of_grouped_test_tiles_is_mapped_as_its_layout_says():
    """The committed models on a slide whose every tile's truth is known: each tile's probabilities as when scored
    alone, and the map's verdicts agree with the layout on at least 95% of the tissue tiles."""
    import tempfile
    from pathlib import Path

    from lungfake.data.splits import load_split, rows_on
    from lungfake.data.tiles import read_split_pixels
    from lungfake.serving.store import WeightsStore
    from tests.helpers import DATA_DIR

    rows = rows_on(load_split(WeightsStore.resolve().split_csv("grouped")), "test")[::30]  # 48 tiles, every class
    tiles = list(read_split_pixels(DATA_DIR, rows, 224))
    scorer = Scorer.load()
    with tempfile.TemporaryDirectory() as folder:
        layout = write_mosaic(Path(folder) / "mosaic.svs", tiles, 8, LC25000_MPP)
        with SlideFile(layout.path) as slide:
            result = map_slide(scorer, slide, plan_slide(slide), suspicious=2)
    where = {(int(x), int(y)): i for i, (y, x) in enumerate(result.tiles.grid.positions)}
    assert len(where) >= 0.95 * len(tiles)  # tissue found under nearly every tile
    alone, agree = scorer.score(tiles), 0
    for k, (pos, row) in enumerate(zip(layout.positions, rows)):
        if pos not in where:
            continue
        i = where[pos]
        for arch, model in alone[k].models.items():
            assert np.allclose(result.tiles.probabilities[arch][i], list(model.probabilities.values()), atol=1e-4)
        ensemble = result.tiles.probabilities[ENSEMBLE][i]
        agree += result.tiles.class_names[int(np.argmax(ensemble))] == row.label
    assert agree >= 0.95 * len(where)
    assert len(result.suspicious) == 2


@pytest.mark.slow
@needs_slides
def test_the_slide_page_maps_a_server_slide_and_offers_every_download(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LUNGFAKE_SLIDES_DIR", str(SLIDES))
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/slide.py").run()
    at.radio[0].set_value(at.radio[0].options[1]).run()
    assert at.error and "not one a microscope gives" in at.error[0].value  # boxes_generic.tiff comes first
    at.selectbox[0].set_value(SLIDES / "tcga_frozen_no_mpp.svs").run()
    assert at.error and "State the scale myself" in at.error[0].value
    at.selectbox[0].set_value(SLIDES / "cmu_small_region.svs").run()
    assert not at.error and any("minutes to map" in c.value for c in at.caption)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success and "0.499 um/px from the file's metadata" in at.success[0].value
    assert len(at.get("plotly_chart")) == 1
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Map (PNG)", "Tiles (CSV)", "Tiles for QuPath (GeoJSON)", "Slide report (HTML)"]


def test_tissue_shares_count_each_tiles_mask_pixels_and_glass_beyond_the_edge():
    from lungfake.reports.region import tissue_shares

    mask = np.zeros((10, 10), bool)
    mask[:5, :5] = True
    shares = tissue_shares(mask, 0.5, np.array([0, 0, 10, 16]), np.array([0, 10, 0, 16]), 10)
    # tiles of 10 px are 5 mask pixels a side: all tissue, none, none; the last hangs 2 pixels over the edge
    assert shares.tolist() == [1.0, 0.0, 0.0, 0.0]
    mask[8:, 8:] = True
    assert tissue_shares(mask, 0.5, np.array([16]), np.array([16]), 10)[0] == pytest.approx(4 / 25)
