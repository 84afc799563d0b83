"""Regions (tissue mask, tiling, batched scoring, merged maps), batches (zips, unreadable files) and case reports,
on a tiny model and synthetic tiles."""
import io
import zipfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from lungfake.errors import ImageDecodeError, UploadLimitError
from lungfake.reports import region
from lungfake.reports.batch import MAX_TILES, downloads, expand_uploads, score_batch, summary, table_rows
from lungfake.reports.case_report import CaseReport
from lungfake.reports.region import RegionResult, RegionScale, TileGrid, score_region, tissue_mask
from lungfake.scoring.scoring import Scorer
from tests.helpers import he_like, store_with_ood_limits

WHITE = 245


def _region(tile_rows: int, tile_cols: int, tile: int = 224, margin: int = 300) -> np.ndarray:
    """H&E-like tissue in the top-left block of tiles, glass-white everywhere else (right and bottom margins)."""
    tissue = np.concatenate([np.concatenate([he_like(r * 10 + c, tile) for c in range(tile_cols)], axis=1)
                             for r in range(tile_rows)], axis=0)
    canvas = np.full((tissue.shape[0] + margin, tissue.shape[1] + margin, 3), WHITE, np.uint8)
    canvas[: tissue.shape[0], : tissue.shape[1]] = tissue
    return canvas


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def test_scales_convert_to_tile_pixels():
    assert RegionScale.like_lc25000_tiles().tile_pixels == 224
    assert RegionScale.from_magnification(40).microns_per_pixel == pytest.approx(0.25)
    assert RegionScale.from_magnification(20).tile_pixels == pytest.approx(region.LC25000_TILE_MICRONS / 0.5, abs=1)


def test_tissue_mask_keeps_tissue_and_drops_glass():
    rgb = _region(2, 2)
    mask, scale = tissue_mask(rgb, 224)
    assert scale == 1.0 and mask.shape == rgb.shape[:2]
    assert mask[:448, :448].mean() > 0.9 and mask[500:, 500:].mean() < 0.05


def test_an_all_tissue_region_is_not_split_in_half_by_otsu():
    rgb = np.concatenate([he_like(s, 224) for s in range(4)], axis=1)
    assert tissue_mask(rgb, 224)[0].mean() > 0.9


def test_grid_overlaps_by_half_a_tile_and_skips_glass():
    rgb = _region(2, 3)
    mask, scale = tissue_mask(rgb, 224)
    grid = TileGrid.over(rgb.shape[:2], 224, mask, scale)
    assert grid.stride == 112
    # tissue 448x672 in a 748x972 image: tiles at stride 112 whose footprint is at least 30% tissue,
    # i.e. 4 rows x 6 columns but the corner one (a quarter tissue); none wholly on glass
    assert len(grid) == 4 * 6 - 1
    assert (grid.positions[:, 0] < 448).all() and (grid.positions[:, 1] < 672).all()
    assert (grid.tissue >= region.MIN_TISSUE_FRACTION).all()


@pytest.mark.parametrize("tile, message", [(20, "only 20 pixels"), (4000, "smaller than one tile")])
def test_impossible_scales_are_explained(tile, message):
    rgb = _region(1, 1)
    with pytest.raises(ImageDecodeError, match=message):
        TileGrid.over(rgb.shape[:2], tile, *tissue_mask(rgb, 224))


def test_region_is_scored_in_batches_with_progress_and_merged(tiny_weights, monkeypatch, tmp_path):
    inf = float("inf")  # every tile taken as tissue: the untrained tiny model's own reference refuses these
    scorer = Scorer.load("all", store_with_ood_limits(tiny_weights, tmp_path / "w", inf, inf, inf))
    batch_sizes, progress = [], []
    score = scorer.score
    monkeypatch.setattr(scorer, "score", lambda images, names, **kw: batch_sizes.append(len(images)) or score(images, names, **kw))
    monkeypatch.setattr(region, "BATCH_TILES", 4)
    result = score_region(scorer, _region(2, 3), RegionScale.like_lc25000_tiles(), progress.append)
    assert max(batch_sizes) <= 4 and sum(batch_sizes) == len(result.grid) == 23
    assert [p.done for p in progress][-1] == 23 and progress[-1].seconds_left == 0
    probabilities = result.probabilities["tiny"]
    assert probabilities.shape == (23, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert sum(result.tissue_share_by_class().values()) == pytest.approx(1.0)
    assert result.csv_text().count("\n") == 24
    thumb = region.thumbnail(_region(2, 3))
    assert result.map_image(thumb, "tiny", 0.5).shape == thumb.shape
    cancer = probabilities[:, 1:].sum(axis=1)  # adenocarcinoma and squamous cell carcinoma
    assert result.most_suspicious(4) == [int(i) for i in np.argsort(-cancer)[:4]]
    result.ood[result.most_suspicious(1)[0]] = True  # a tile refused as not H&E is never among the suspicious
    assert result.most_suspicious(4) == [int(i) for i in np.argsort(-cancer)[1:5]]


def test_probability_map_averages_the_tiles_covering_each_cell():
    grid = TileGrid(224, 112, 1, 2, np.array([[0, 0], [0, 112]]), np.array([[0, 0], [0, 1]]), np.ones(2))
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    result = RegionResult((224, 336), grid, ("lung_n", "lung_aca", "lung_scc"), {"m": "M"}, {"m": probabilities},
                          np.zeros(2, bool), Counter())
    merged = result.probability_map("m")
    assert merged.shape == (2, 3, 3)
    assert np.allclose(merged[0, 0], [0.9, 0.1, 0]) and np.allclose(merged[0, 1], [0.55, 0.45, 0])
    assert np.allclose(merged[1, 2], [0.2, 0.8, 0])
    assert result.tissue_share_by_class("m") == pytest.approx({"lung_n": 4 / 6, "lung_aca": 2 / 6, "lung_scc": 0.0})
    painted = result.map_image(np.full((224, 336, 3), 255, np.uint8), "m", 1.0)
    benign, adenocarcinoma = np.array([0x35, 0x97, 0x8F]), np.array([0xE6, 0x61, 0x00])
    assert np.allclose(painted[10, 10], 0.9 * benign + 0.1 * adenocarcinoma, atol=1)
    assert np.allclose(painted[10, 330], 0.2 * benign + 0.8 * adenocarcinoma, atol=1)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zips_are_expanded_to_their_images_only():
    tile = _png(he_like(1))
    archive = _zip({"case/a.png": tile, "case/b.png": tile, "notes.txt": b"x", "__MACOSX/case/._a.png": b"junk"})
    names = [name for name, _ in expand_uploads([("one.png", tile), ("case.zip", archive)])]
    assert names == ["one.png", "case.zip/case/a.png", "case.zip/case/b.png"]


def test_batch_limits_and_broken_zips_are_refused_with_a_message():
    with pytest.raises(UploadLimitError, match=f"more than {MAX_TILES}"):
        expand_uploads([(f"{i}.png", b"x") for i in range(MAX_TILES + 1)])
    with pytest.raises(UploadLimitError, match="not a zip archive"):
        expand_uploads([("broken.zip", b"PK\x03\x04 not really")])


def test_an_unreadable_file_keeps_its_row_and_the_rest_are_scored(tiny_weights):
    scorer = Scorer.load("all", tiny_weights)
    files = [("a.png", _png(he_like(1))), ("broken.jpg", b"\xff\xd8 nope"), ("a.png", _png(he_like(2)))]
    rows = score_batch(scorer, files)
    assert [r.name for r in rows] == ["a.png", "broken.jpg", "a.png"]  # upload order, duplicate names kept apart
    assert rows[1].score is None and rows[1].error.startswith("broken.jpg ") and rows[1].flagged
    assert rows[0].score is not None and rows[2].score is not None
    assert summary(rows)["unreadable"] == 1 and summary(rows)["files"] == 3
    records = table_rows(rows)
    assert len({tuple(r) for r in records}) == 1 and records[1]["error"]
    csv_data, json_data = downloads(rows)
    assert csv_data.count("\n") == 1 + 2 + 1 and csv_data.splitlines()[-1].startswith("broken.jpg,")
    assert '"error"' in json_data


def test_the_batch_summary_counts_a_refused_image_apart_from_every_class():
    from lungfake.reports.batch import NO_CLASS, BatchRow
    from lungfake.scoring.scoring import ImageScore, ModelScore
    from lungfake.serving.ood import OodVerdict

    def scored(name: str, probabilities: list[float], ood: bool) -> BatchRow:
        model = ModelScore("m", "M", dict(zip(("lung_n", "lung_aca", "lung_scc"), probabilities)), "0" * 64, 0.5)
        screen = OodVerdict(ood, "colours unlike H&E" if ood else "lung H&E tissue", None if ood else False, "")
        return BatchRow(name, ImageScore(name, np.zeros((4, 4, 3), np.uint8), {"m": model}, screen))

    rows = [scored("a", [0.9, 0.05, 0.05], False), scored("photo", [0.9, 0.05, 0.05], True),
            scored("b", [0.05, 0.9, 0.05], False), BatchRow("x.png", error="bad")]
    counts = summary(rows)
    assert counts["predicted"] == {"Benign lung tissue": 1, "Lung adenocarcinoma": 1}
    assert (counts["not_he"], counts["unreadable"], counts["flagged"], counts["files"]) == (1, 1, 2, 4)
    refused = table_rows(rows)[1]
    assert refused["verdict"] == "Not scored" and refused["M"] == NO_CLASS and refused["not H&E"] is True


def test_case_report_is_self_contained_and_names_the_weights(tiny_weights, tmp_path):
    from tests.helpers import store_with_ood_limits

    passing = store_with_ood_limits(tiny_weights, tmp_path / "w", float("inf"), float("inf"), float("inf"))
    scorer = Scorer.load("all", passing)
    score = scorer.score([he_like(3, 64)], ["<script>alert(1)</script>.png"], explain=True)[0]
    assert not score.refused  # the screen passes everything here, so it is scored and explained
    report = CaseReport("Tile report", score.name, [s.entry for s in scorer.served])
    report.add_score(score)
    page = report.html()
    assert "Research use only" in page and scorer.served[0].entry.sha256 in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    # the tile; the tiny model's overlay was never measured, so it is left out with that reason
    assert page.count("data:image/jpeg;base64,") == 1 and "faithfulness has not been measured" in page
    assert "http://" not in page and "https://" not in page


def test_a_region_is_decoded_at_no_more_resolution_than_the_models_use():
    """At 40x a tile is 736 file pixels; the region is decoded about 3.3x smaller (a JPEG at 1/2 scale by
    its decoder, then resized), and tile positions are reported back in file pixels."""
    from lungfake.reports.region import decode_region

    canvas = np.concatenate([np.concatenate([he_like(r * 4 + c, 512) for c in range(4)], axis=1) for r in range(3)], axis=0)
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "JPEG", quality=90)  # 2048 x 1536
    rgb, scale, factor = decode_region(buffer.getvalue(), "field.jpg", RegionScale.from_magnification(40))
    assert max(rgb.shape[:2]) == pytest.approx(2048 * 224 / 736, abs=2)
    assert scale.tile_pixels == pytest.approx(224, abs=1) and factor == pytest.approx(736 / 224, rel=0.01)
    same, kept, one = decode_region(_png(_region(1, 1)), "small.png", RegionScale.like_lc25000_tiles())
    assert one == 1.0 and same.shape == _region(1, 1).shape and kept.tile_pixels == 224


def test_the_cli_maps_a_region_and_writes_its_map_table_and_report(tiny_weights, tmp_path, monkeypatch, capsys):
    from lungfake import cli

    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tiny_weights))
    image = tmp_path / "field.png"
    image.write_bytes(_png(_region(2, 3)))
    outputs = {name: tmp_path / name for name in ("map.png", "tiles.csv", "report.html")}
    code = cli.main(["region", str(image), "--microns-per-pixel", str(region.LC25000_TILE_MICRONS / 224),
                     "--map", str(outputs["map.png"]), "--csv", str(outputs["tiles.csv"]), "--report", str(outputs["report.html"])])
    assert code == 0
    printed = capsys.readouterr()
    assert "23 tissue tiles of 224 px" in printed.out and "23/23 tiles" in printed.err
    assert Image.open(outputs["map.png"]).size[0] > 0
    assert outputs["tiles.csv"].read_text().count("\n") == 24
    assert "Region report" in outputs["report.html"].read_text()
    assert cli.main(["region", str(tmp_path / "absent.png")]) == 2


def test_tiles_reach_the_right_and_bottom_edges_with_glass_beyond_them():
    rgb = np.concatenate([np.concatenate([he_like(r * 2 + c, 200) for c in range(2)], axis=1) for r in range(2)], axis=0)
    grid = TileGrid.over(rgb.shape[:2], 224, *tissue_mask(rgb, 224))  # 400x400 tissue, tiles of 224 at stride 112
    assert grid.rows == grid.cols == 3 and len(grid) == 9
    assert (grid.positions + 224 >= 400).any(axis=0).all()  # some tile reaches each far edge
    last = region.cut_tile(rgb, 224, 224, 224)
    assert last.shape == (224, 224, 3) and (last[-20:, -20:] == region.GLASS).all()
    assert not (last[:100, :100] == region.GLASS).all()


def test_the_tile_page_points_a_large_image_or_a_strip_to_the_region_page():
    from lungfake.reports.region import region_hint

    assert region_hint((224, 224, 3)) is None and region_hint((768, 768, 3)) is None  # a tile, an LC25000 photograph
    assert region_hint((500, 700, 3)) is None  # 1.4:1 costs under a point or two: scored as it is
    assert "larger than the 768-pixel photographs" in region_hint((683, 1024, 3))
    assert "strip (about 2.3:1)" in region_hint((300, 700, 3)) and "Map a region" in region_hint((300, 700, 3))
