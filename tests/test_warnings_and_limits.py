"""Every warning branch and every limit, on a tiny model: each test fails when its behaviour is removed or inverted."""
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from lungfake.errors import ImageDecodeError, ModelIntegrityError, UploadLimitError
from lungfake.evaluation.calibration_fitting import choose_threshold
from lungfake.reports.batch import MAX_TILES, MAX_UNPACKED_BYTES, BatchRow, expand_uploads, score_batch, summary
from lungfake.scoring.scoring import DEFAULT_WARNING_CONFIDENCE, ImageScore, ModelScore, Scorer, dihedral_views
from lungfake.serving.calibration import apply_temperature, ensemble_probabilities
from lungfake.serving.images import MAX_FILE_BYTES, MAX_PIXELS, REGION, decode_image
from lungfake.serving.inference import LoadedModel
from lungfake.serving.ood import LIKE_LC25000, GaussianReference, OodReference, stain_statistics
from lungfake.serving.registry import EnsembleCalibration, load_registry, sha256_of, update_calibration
from tests.helpers import he_like, store_with_ood_limits

INF = float("inf")


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


# Temperature scaling ----------------------------------------------------------------------------------------------

def test_a_temperature_above_one_softens_and_below_one_sharpens():
    assert apply_temperature(np.array([[0.8, 0.2]]), 2.0)[0] == pytest.approx([2 / 3, 1 / 3])  # sqrt(0.8):sqrt(0.2)
    assert apply_temperature(np.array([[0.8, 0.2]]), 0.5)[0] == pytest.approx([16 / 17, 1 / 17])  # 0.64:0.04
    assert apply_temperature(np.array([[0.8, 0.2]]), 1.0)[0] == pytest.approx([0.8, 0.2])


def test_the_ensemble_is_the_mean_of_its_members_at_its_own_temperature():
    members = [[[0.9, 0.1]], [[0.5, 0.5]]]
    assert ensemble_probabilities(members)[0] == pytest.approx([0.7, 0.3])
    assert ensemble_probabilities(members, 2.0)[0] == pytest.approx(apply_temperature(np.array([[0.7, 0.3]]), 2.0)[0])


def test_the_scorer_divides_every_models_log_probabilities_by_its_temperature(tiny_weights, tmp_path):
    import shutil

    tile = he_like(5, 64)
    plain = Scorer.load("all", tiny_weights).score([tile])[0].models["tiny"].probabilities
    folder = tmp_path / "hot"
    shutil.copytree(tiny_weights, folder)
    update_calibration("tiny", 3.0, {}, folder)
    hot = Scorer.load("all", folder).score([tile])[0].models["tiny"].probabilities
    expected = apply_temperature(np.array([list(plain.values())]), 3.0)[0]
    assert list(hot.values()) == pytest.approx(list(expected), abs=1e-6)
    assert max(hot.values()) < max(plain.values())  # a temperature above one softens; inverted it would sharpen


# Low confidence ---------------------------------------------------------------------------------------------------

def test_the_threshold_is_the_lowest_confidence_that_keeps_the_target_accuracy():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 0])  # right, right, wrong, right: running accuracy 1, 1, 2/3, 3/4
    strict = choose_threshold(probabilities, labels, 0.99)
    assert (strict.threshold, strict.val_coverage, strict.val_accuracy) == pytest.approx((0.8, 0.5, 1.0))
    loose = choose_threshold(probabilities, labels, 0.75)
    assert (loose.threshold, loose.val_coverage, loose.val_accuracy) == pytest.approx((0.6, 1.0, 0.75))
    assert strict.to_json() == {"threshold": 0.8, "val_coverage": 0.5, "val_accuracy": 1.0, "target_accuracy": 0.99}


def test_when_no_threshold_reaches_the_target_every_prediction_warns():
    never_right = choose_threshold(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([1, 1]))
    assert never_right.threshold == 1.0 and never_right.val_coverage == 0.0 and np.isnan(never_right.val_accuracy)


def _model_score(probabilities, warn_below, arch="m") -> ModelScore:
    return ModelScore(arch, arch, dict(zip(("lung_n", "lung_aca", "lung_scc"), probabilities)), "0" * 64, warn_below)


def test_low_confidence_is_strictly_below_the_threshold():
    assert not _model_score([0.7, 0.2, 0.1], 0.7).low_confidence
    assert _model_score([0.69, 0.21, 0.1], 0.7).low_confidence
    assert not _model_score([0.71, 0.19, 0.1], 0.7).low_confidence


def test_a_model_calibrated_without_a_threshold_warns_below_the_fallback(tiny_weights):
    scorer = Scorer.load("all", tiny_weights)
    assert load_registry(tiny_weights)["tiny"].low_confidence == {}
    assert scorer.served[0].warn_below() == DEFAULT_WARNING_CONFIDENCE == 0.6


def test_a_recorded_threshold_replaces_the_fallback(tiny_weights, tmp_path):
    import shutil

    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    update_calibration("tiny", 1.0, {"threshold": 0.97}, folder)
    assert Scorer.load("all", folder).served[0].warn_below() == 0.97


def _image_score(models: list[ModelScore], calibration=EnsembleCalibration(), verdict=None) -> ImageScore:
    from lungfake.serving.ood import OodVerdict

    verdict = verdict or OodVerdict(False, "lung H&E tissue", False, LIKE_LC25000)
    return ImageScore("x.png", np.zeros((4, 4, 3), np.uint8), {m.arch: m for m in models}, verdict, calibration)


def test_the_ensemble_warns_below_its_own_threshold_or_else_the_strictest_members():
    members = [_model_score([0.8, 0.1, 0.1], 0.5, "a"), _model_score([0.8, 0.1, 0.1], 0.9, "b")]
    assert _image_score(members).ensemble.warn_below == 0.9
    assert _image_score(members).ensemble.low_confidence
    own = _image_score(members, EnsembleCalibration(1.0, 0.7)).ensemble
    assert own.warn_below == 0.7 and not own.low_confidence
    assert _image_score(members[:1]).ensemble is None


def test_the_batch_counts_uncertain_subtypes_by_the_verdict():
    from lungfake.serving.verdict import SubtypeRule

    rule = EnsembleCalibration(subtype_rule=SubtypeRule(0.5))
    aca, torn, scc = (_model_score([0.05, 0.9, 0.05], 0.6, "a"), _model_score([0.1, 0.5, 0.4], 0.6, "b"),
                      _model_score([0.05, 0.25, 0.7], 0.6, "c"))
    benign = _model_score([0.9, 0.05, 0.05], 0.6, "a")
    rows = [BatchRow("sure", _image_score([aca], rule)), BatchRow("small lean", _image_score([torn], rule)),
            BatchRow("disagree", _image_score([aca, scc], rule)), BatchRow("benign", _image_score([benign], rule)),
            BatchRow("bad", error="unreadable")]
    assert [row.subtype_uncertain for row in rows] == [False, True, True, False, False]
    assert summary(rows)["subtype_uncertain"] == 2
    assert summary(rows)["predicted"] == {"Lung adenocarcinoma": 1, "Carcinoma, subtype uncertain": 2, "Benign lung tissue": 1}


# Out of distribution and domain shift -----------------------------------------------------------------------------

def _reference(image: np.ndarray, tissue: float | None, stain: float, features: float) -> OodReference:
    """A reference centred on this image's statistics and on zero features (distances 0 and |features|), with
    the given limits: a negative one fails the image on that check."""
    centre = stain_statistics(image)
    eye = np.eye(len(centre))
    tissue_reference = None if tissue is None else GaussianReference(centre, eye, tissue)
    return OodReference(GaussianReference(centre, eye, stain), GaussianReference(np.zeros(2), np.eye(2), features),
                        "stand-in", 0.99, tissue_reference)


@pytest.mark.parametrize("tissue, stain, features, ood, shifted, words", [
    (INF, INF, INF, False, False, ""),
    (0.0, 0.0, 5.0, False, False, ""),  # a distance equal to its limit passes (features are 5 from the centre)
    (-1.0, INF, INF, True, None, "tissue distance"),
    (INF, -1.0, INF, False, True, "stain distance"),
    (INF, INF, 4.9, False, True, "feature distance"),
    (INF, -1.0, 4.9, False, True, "stain distance"),  # the stain reason is given first
])
def test_each_check_decides_its_own_verdict(tissue, stain, features, ood, shifted, words):
    image = he_like(7, 64)
    verdict = _reference(image, tissue, stain, features).assess(image, np.array([3.0, 4.0]))
    assert (verdict.ood, verdict.domain_shift) == (ood, shifted)
    reason = verdict.reason if ood else verdict.domain_shift_reason
    assert words in reason if words else reason == LIKE_LC25000
    if shifted:
        assert verdict.reason == "lung H&E tissue" and verdict.to_json()["domain_shift"] is True


@pytest.mark.parametrize("stain, features, ood, words", [
    (INF, INF, False, ""), (-1.0, INF, True, "stain distance"), (INF, 4.9, True, "feature distance"),
    (0.0, 5.0, False, ""),
])
def test_a_reference_without_a_tissue_check_refuses_on_stain_or_features(stain, features, ood, words):
    image = he_like(8, 64)
    verdict = _reference(image, None, stain, features).assess(image, np.array([3.0, 4.0]))
    assert verdict.ood is ood and (words in verdict.reason if ood else verdict.domain_shift is False)


@pytest.fixture(scope="module")
def shifted_weights(tiny_weights, tmp_path_factory):
    """The tiny store, its reference taking every image as tissue and every one as unlike LC25000's stain."""
    return store_with_ood_limits(tiny_weights, tmp_path_factory.mktemp("s") / "w", INF, -1.0, INF)


@pytest.fixture(scope="module")
def refusing_weights(tiny_weights, tmp_path_factory):
    """The tiny store, its reference refusing every image as not tissue."""
    return store_with_ood_limits(tiny_weights, tmp_path_factory.mktemp("r") / "w", -1.0, INF, INF)


def test_a_domain_shift_is_flagged_and_counted_in_a_batch(shifted_weights):
    rows = score_batch(Scorer.load("all", shifted_weights), [("a.png", _png(he_like(1))), ("b.png", _png(he_like(2)))])
    assert all(row.score.ood.domain_shift and not row.score.ood.ood for row in rows)
    assert all(row.flagged for row in rows)
    counts = summary(rows)
    assert counts["domain_shift"] == 2 and counts["flagged"] == 2 and counts["not_he"] == 0
    assert sum(counts["predicted"].values()) == 2  # a shifted tile keeps its class


def test_tissue_like_lc25000s_is_not_flagged(tiny_weights, tmp_path):
    folder = store_with_ood_limits(tiny_weights, tmp_path / "w", INF, INF, INF)
    rows = score_batch(Scorer.load("all", folder), [("a.png", _png(he_like(1)))])
    assert not rows[0].flagged and summary(rows)["domain_shift"] == 0


def test_a_refused_image_counts_as_not_h_and_e_only(refusing_weights):
    rows = score_batch(Scorer.load("all", refusing_weights), [("a.png", _png(he_like(1)))])
    counts = summary(rows)
    assert counts["not_he"] == 1 and counts["predicted"] == {} and rows[0].flagged


def test_the_region_and_its_report_warn_of_a_domain_shift(shifted_weights):
    from lungfake.reports.region import RegionScale, region_report, score_region, thumbnail
    from tests.test_region_batch_report import _region

    scorer = Scorer.load("all", shifted_weights)
    rgb = _region(1, 2)
    result = score_region(scorer, rgb, RegionScale.like_lc25000_tiles())
    assert result.domain_shift.all() and result.domain_shift_share == 1.0 and not result.ood.any()
    page = region_report(result, thumbnail(rgb), "tiny", [], "r.png", [s.entry for s in scorer.served]).html()
    assert "100% of the tissue tiles are H&amp;E but unlike LC25000" in page
    assert "do not look like lung H&amp;E" not in page


def test_the_region_and_its_report_warn_of_refused_tiles(refusing_weights):
    from lungfake.reports.region import RegionScale, region_report, score_region, thumbnail
    from tests.test_region_batch_report import _region

    scorer = Scorer.load("all", refusing_weights)
    rgb = _region(1, 2)
    result = score_region(scorer, rgb, RegionScale.like_lc25000_tiles())
    assert result.ood.all() and result.ood_share == 1.0 and result.most_suspicious(4) == []
    page = region_report(result, thumbnail(rgb), "tiny", [], "r.png", [s.entry for s in scorer.served]).html()
    assert "100% of the tissue tiles do not look like lung H&amp;E tiles" in page


def test_a_tile_reports_warnings_name_the_shift_and_the_refusal(shifted_weights, refusing_weights):
    from lungfake.reports.case_report import CaseReport

    for folder, expected, absent in ((shifted_weights, "unlike LC25000", "Not a lung H&amp;E tile"),
                                     (refusing_weights, "Not a lung H&amp;E tile", "H&amp;E tissue, but unlike LC25000")):
        scorer = Scorer.load("all", folder)
        report = CaseReport("Tile report", "t.png", [s.entry for s in scorer.served])
        report.add_score(scorer.score([he_like(4, 64)], ["t.png"])[0])
        page = report.html()
        assert expected in page and absent not in page


# Limits -----------------------------------------------------------------------------------------------------------

def _png_declaring(width: int, height: int) -> bytes:
    from tests.test_hostile_inputs import _png_declaring as declaring

    return declaring(width, height)


def test_an_image_over_forty_megapixels_is_refused_by_its_header_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 10  # under PIL's own bomb limit (89 megapixels): only lungfake's check stops it
    with pytest.raises(ImageDecodeError, match=f"{side}x{side} pixels, too large to be a tile.*at most 40 megapixels"):
        decode_image(_png_declaring(side, side), "scan.png")
    with pytest.raises(ImageDecodeError, match="too large to be a region"):
        decode_image(_png_declaring(side, side), "scan.png", REGION)


def test_an_image_at_forty_megapixels_passes_the_pixel_check():
    side = int(MAX_PIXELS ** 0.5)
    with pytest.raises(ImageDecodeError, match="damaged or truncated"):  # its header passes; its 16x16 pixels do not
        decode_image(_png_declaring(side, side), "scan.png")


def test_file_size_limits_for_a_tile_and_a_region():
    tile_limit, region_limit = bytes(MAX_FILE_BYTES + 1), bytes(REGION.max_file_bytes + 1)
    with pytest.raises(ImageDecodeError, match="larger than 50 MB; upload a single tile"):
        decode_image(tile_limit, "big.png")
    with pytest.raises(ImageDecodeError, match="larger than 100 MB; export a smaller region"):
        decode_image(region_limit, "big.png", REGION)
    with pytest.raises(ImageDecodeError, match="damaged|not an image"):  # under the region limit: read, not refused for size
        decode_image(tile_limit, "big.png", REGION)


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_that_unpacks_past_the_limit_is_refused_before_unpacking():
    over = _zip({"a.png": bytes(MAX_UNPACKED_BYTES // 2 + 1), "b.png": bytes(MAX_UNPACKED_BYTES // 2)}, zipfile.ZIP_DEFLATED)
    with pytest.raises(UploadLimitError, match="unpacks to more than 200 MB"):
        expand_uploads([("big.zip", over)])


def test_a_zip_that_unpacks_to_exactly_the_limit_is_taken(monkeypatch):
    from lungfake.reports import batch

    monkeypatch.setattr(batch, "MAX_UNPACKED_BYTES", 1000)  # the sizes are the members' declared ones, summed
    assert len(expand_uploads([("ok.zip", _zip({"a.png": bytes(600), "b.png": bytes(400), "c.txt": bytes(99)}))])) == 2
    with pytest.raises(UploadLimitError):
        expand_uploads([("big.zip", _zip({"a.png": bytes(600), "b.png": bytes(401)}))])


def test_a_zip_of_more_images_than_a_batch_holds_is_refused():
    tile = _png(he_like(1, 16))
    with pytest.raises(UploadLimitError, match=f"holds {MAX_TILES + 1} images \\(at most {MAX_TILES}\\)"):
        expand_uploads([("many.zip", _zip({f"{i}.png": tile for i in range(MAX_TILES + 1)}))])
    assert len(expand_uploads([("full.zip", _zip({f"{i}.png": tile for i in range(MAX_TILES)}))])) == MAX_TILES
    with pytest.raises(UploadLimitError, match=f"more than {MAX_TILES} tiles"):
        expand_uploads([("full.zip", _zip({f"{i}.png": tile for i in range(MAX_TILES)})), ("one.png", tile)])


def encrypted_zip() -> bytes:
    """A zip whose member says it is encrypted (zipfile writes no encryption; the flag is what readers check)."""
    data = bytearray(_zip({"a.png": _png(he_like(1, 16))}))
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + 6] |= 1  # general purpose bit 0: encrypted
    data[central + 8] |= 1
    return bytes(data)


def test_an_encrypted_zip_is_refused_with_what_to_do():
    with pytest.raises(UploadLimitError, match="damaged, encrypted or an unusual compression\\); zip the tiles again"):
        expand_uploads([("secret.zip", encrypted_zip())])


def test_a_region_of_more_than_twenty_thousand_tiles_is_refused():
    from lungfake.reports.region import MAX_TILES as REGION_TILES
    from lungfake.reports.region import TileGrid

    tile = 32  # stride 16: 141 x 141 positions on 2272 pixels = 19,881; 142 x 142 on 2288 = 20,164
    with pytest.raises(ImageDecodeError, match="20,164 tiles \\(at most 20,000\\)"):
        TileGrid.over((2288, 2288), tile, np.ones((2288, 2288), bool), 1.0)
    assert REGION_TILES == 20_000
    assert len(TileGrid.over((2272, 2272), tile, np.ones((2272, 2272), bool), 1.0)) == 141 * 141


def test_a_region_without_tissue_is_refused_with_a_message(tiny_weights):
    from lungfake.reports.region import RegionScale, score_region

    glass = np.full((800, 800, 3), 245, np.uint8)
    with pytest.raises(ImageDecodeError, match="no tissue was found"):
        score_region(Scorer.load("all", tiny_weights), glass, RegionScale.like_lc25000_tiles())


# Report escaping --------------------------------------------------------------------------------------------------

HOSTILE = '<img src=x onerror="alert(1)">'


def test_every_part_of_a_report_escapes_what_users_typed(tiny_weights):
    from lungfake.reports.case_report import CaseReport

    scorer = Scorer.load("all", tiny_weights)
    report = CaseReport(HOSTILE, HOSTILE, [s.entry for s in scorer.served])
    report.add_text(HOSTILE)
    report.add_warning(HOSTILE)
    report.add_table([HOSTILE], [[HOSTILE]])
    report.add_images([(he_like(1, 32), HOSTILE)])
    report.add_score(scorer.score([he_like(2, 64)], [HOSTILE])[0])
    page = report.html()
    assert "<img src=x" not in page
    # title and heading, source, text, warning, table head and cell, figure alt and caption, score heading
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 10


def test_the_batch_report_escapes_file_names_and_error_messages(tiny_weights):
    from lungfake.reports.batch import batch_report

    scorer = Scorer.load("all", tiny_weights)
    rows = score_batch(scorer, [(f"{HOSTILE}.png", _png(he_like(1))), (f"{HOSTILE}.jpg", b"\xff\xd8 broken")])
    page = batch_report(rows, HOSTILE, [s.entry for s in scorer.served]).html()
    assert "<img src=x" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.jpg is not an image") == 2  # table and warning
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.png") >= 1


# Model integrity --------------------------------------------------------------------------------------------------

def _store_with_entry(tiny_weights, tmp_path, **changes):
    import shutil

    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    registry = json.loads((folder / "registry.json").read_text())
    registry["models"]["tiny"].update(changes)
    (folder / "registry.json").write_text(json.dumps(registry))
    return folder


def test_a_model_whose_input_differs_from_the_registry_is_refused(tiny_weights, tmp_path):
    folder = _store_with_entry(tiny_weights, tmp_path, input_size=64)
    with pytest.raises(ModelIntegrityError, match="takes \\(32, 32, 3\\).*registry says \\(64, 64, 3\\) pixels in and 3 classes"):
        LoadedModel.load(load_registry(folder)["tiny"], folder)


def test_a_file_with_the_registered_sha256_that_is_not_a_served_model_is_refused(tiny_weights, tmp_path):
    folder = _store_with_entry(tiny_weights, tmp_path)
    (folder / "tiny.tflite").write_bytes(b"not a flatbuffer" * 100)
    folder = _store_with_entry(folder, tmp_path / "again", sha256=sha256_of(folder / "tiny.tflite"))
    with pytest.raises(ModelIntegrityError, match="is not a served model file"):
        LoadedModel.load(load_registry(folder)["tiny"], folder)


def test_a_model_not_ending_in_the_registered_gradcam_layer_is_not_exported(tmp_path):
    from lungfake.training.architectures import build_model
    from lungfake.training.export import write_served_model

    with pytest.raises(ModelIntegrityError, match="does not end preprocess_lab_standardised -> pool -> probabilities"):
        write_served_model(build_model("tiny", 32), "preprocess_lab_standardised", tmp_path / "tiny.tflite")
    assert not (tmp_path / "tiny.tflite").exists()


# Test-time augmentation -------------------------------------------------------------------------------------------

def test_dihedral_views_are_the_eight_rotations_and_mirror_images():
    pixels = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    views = dihedral_views(pixels)
    assert len(views) == 8 and len({v.tobytes() for v in views}) == 8
    assert np.array_equal(views[0], pixels) and np.array_equal(views[4], pixels[:, :, ::-1])
    assert np.array_equal(views[1], np.rot90(pixels, 1, axes=(1, 2)))


def test_tta_probabilities_are_the_calibrated_mean_of_the_eight_views(tiny_weights, tmp_path):
    import shutil

    from lungfake.serving.images import to_model_input

    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    update_calibration("tiny", 2.0, {}, folder)
    scorer = Scorer.load("all", folder)
    tile = he_like(9, 64)
    averaged = scorer.score([tile], tta=True)[0].models["tiny"].probabilities
    pixels = to_model_input(tile, 32)[None]
    raw = np.mean([scorer.served[0].loaded.forward(view)[1] for view in dihedral_views(pixels)], axis=0)
    assert list(averaged.values()) == pytest.approx(list(apply_temperature(raw, 2.0)[0]), abs=1e-6)
