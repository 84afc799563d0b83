"""The out-of-distribution check: statistics, the fitted reference, its file, and its place in predict output."""
import json

import numpy as np
import pytest
from PIL import Image

from lungfake import cli
from lungfake.errors import ModelIntegrityError
from lungfake.evaluation.ood_fitting import fit_reference
from lungfake.serving.inference import LoadedModel, OodScreen
from lungfake.serving.ood import STAIN_STATISTICS, GaussianReference, OodReference, stain_statistics
from lungfake.serving.registry import Registry, load_ood_entry, load_registry, verified_file
from tests.helpers import DATA_DIR, he_like, needs_data, texture


def test_stain_statistics_tell_blank_green_and_stained_apart():
    white = stain_statistics(np.full((64, 64, 3), 255, np.uint8))
    green = stain_statistics(np.tile(np.array([40, 200, 60], np.uint8), (64, 64, 1)))
    tissue = stain_statistics(he_like(1))
    named = lambda v: dict(zip(STAIN_STATISTICS, v))
    assert len(white) == len(STAIN_STATISTICS)
    assert named(white)["background_fraction"] == 1.0 and named(tissue)["background_fraction"] < 0.2
    assert named(green)["green_fraction"] == 1.0 and named(tissue)["green_fraction"] == 0.0
    assert named(white)["flat_colour_fraction"] == 1.0 > named(tissue)["flat_colour_fraction"]


def _crisp_nuclei(size: int = 128) -> np.ndarray:
    """Purple discs with hard edges on pink: tissue as a sharp scanner shows it, sharper than LC25000's tiles."""
    import cv2

    image = np.full((size, size, 3), (235, 150, 200), np.uint8)
    for x, y in np.random.default_rng(0).integers(6, size - 6, (40, 2)):
        cv2.circle(image, (int(x), int(y)), 4, (120, 70, 160), -1)
    return image


def test_statistics_are_taken_on_a_softened_image_so_a_sharp_scan_has_no_photographs_edges():
    edges = STAIN_STATISTICS.index("sharp_edge_fraction")
    assert stain_statistics(_crisp_nuclei(), blur_sigma=0.0)[edges] > 0.05
    assert stain_statistics(_crisp_nuclei())[edges] < 0.01


def test_a_reference_keeps_the_softening_it_was_fitted_with(tmp_path):
    rng = np.random.default_rng(0)
    gaussian = GaussianReference.fit(rng.normal(size=(50, len(STAIN_STATISTICS))), rng.normal(size=(20, len(STAIN_STATISTICS))), 0.9)
    features = GaussianReference.fit(rng.normal(size=(50, 6)), rng.normal(size=(20, 6)), 0.9, components=2)
    (tmp_path / "new.npz").write_bytes(OodReference(gaussian, features, "stand-in", 0.9, gaussian, 0.5).to_bytes())
    assert OodReference.from_file(tmp_path / "new.npz").blur_sigma == 0.5
    with np.load(tmp_path / "new.npz") as saved:  # as written before the softening existed
        np.savez(tmp_path / "old.npz", **{k: saved[k] for k in saved.files if k != "blur_sigma"})
    assert OodReference.from_file(tmp_path / "old.npz").blur_sigma == 0.0


def test_gaussian_reference_limit_is_the_held_out_quantile():
    rng = np.random.default_rng(0)
    train, held_out = rng.normal(size=(500, 4)), rng.normal(size=(400, 4))
    reference = GaussianReference.fit(train, held_out, 0.9)
    assert np.mean(reference.distance(held_out) > reference.limit) == pytest.approx(0.1, abs=0.01)
    assert reference.distance(np.full(4, 10.0))[0] > 3 * reference.limit
    projected = GaussianReference.fit(rng.normal(size=(500, 20)), rng.normal(size=(100, 20)), 0.99, components=5)
    assert projected.projection.shape == (5, 20) and projected.mean.shape == (5,)


def test_reference_round_trips_and_flags_what_is_not_tissue(tiny_weights):
    model = LoadedModel.load(load_registry(tiny_weights)["tiny"], tiny_weights)
    screen = OodScreen.load([model], Registry.load(tiny_weights))
    assert screen.feature_model is model and load_ood_entry(tiny_weights).feature_model == "tiny"
    images = [he_like(s) for s in range(1000, 1040)]
    assert sum(v.ood for v in screen.assess(images, {})) <= 4  # two checks, each limited at the 99th percentile of 100 val images
    others = [np.full((80, 80, 3), 255, np.uint8), np.tile(np.array([40, 200, 60], np.uint8), (80, 80, 1)),
              np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8), texture(3, 96)]
    verdicts = screen.assess(others, {})
    assert all(v.ood for v in verdicts)
    assert all("distance" in v.reason and v.to_json()["ood"] is True for v in verdicts)


def test_a_damaged_or_tampered_reference_is_refused(tiny_weights, tmp_path):
    with pytest.raises(ModelIntegrityError, match="unreadable"):
        (tmp_path / "bad.npz").write_bytes(b"not a numpy archive")
        OodReference.from_file(tmp_path / "bad.npz")
    copy = tmp_path / "w"
    copy.mkdir()
    for name in ("registry.json", "tiny.tflite"):
        (copy / name).write_bytes((tiny_weights / name).read_bytes())
    (copy / "ood.npz").write_bytes((tiny_weights / "ood.npz").read_bytes() + b"x")
    model = LoadedModel.load(load_registry(copy)["tiny"], copy)
    with pytest.raises(ModelIntegrityError, match="out-of-distribution reference.*does not match"):
        OodScreen.load([model], Registry.load(copy))


def test_predict_json_reports_ood_per_file(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUNGFAKE_WEIGHTS_DIR", str(tiny_weights))
    tile, blank = tmp_path / "tile.png", tmp_path / "blank.jpg"
    Image.fromarray(he_like(2000)).save(tile)
    Image.new("RGB", (300, 200), (255, 255, 255)).save(blank)
    assert cli.main(["predict", str(tile), str(blank), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["ood"], bool(line["ood_reason"])) for line in lines] == [(False, True), (True, True)]
    assert set(lines[1]["models"]["tiny"]["probabilities"]) == {"lung_n", "lung_aca", "lung_scc"}
    assert lines[1]["models"]["tiny"]["predicted"] is None and lines[1]["verdict"] == "Not scored"  # no class for it
    assert lines[0]["models"]["tiny"]["predicted"] in ("lung_n", "lung_aca", "lung_scc")
    assert cli.main(["predict", str(blank)]) == 0
    out = capsys.readouterr().out
    assert "not scored: not like a lung H&E tile" in out and "no class is given" in out and ": tiny:" not in out


def test_a_reference_fitted_on_other_statistics_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    reference = fit_reference([he_like(s) for s in range(40)], rng.normal(size=(40, 8)), [he_like(s) for s in range(40, 60)],
                              rng.normal(size=(20, 8)), "tiny")
    (tmp_path / "current.npz").write_bytes(reference.to_bytes())
    with np.load(tmp_path / "current.npz") as current:
        saved = dict(current)
    saved["stain_mean"] = saved["stain_mean"][:15]
    np.savez(tmp_path / "old.npz", **saved)
    with pytest.raises(ModelIntegrityError, match="fitted on 15 image statistics.*ood-fit"):
        OodReference.from_file(tmp_path / "old.npz")


def _committed_reference() -> OodReference:
    entry = load_ood_entry()
    return OodReference.from_file(verified_file(entry.file, entry.sha256, "the out-of-distribution reference"))


def _recoloured_photographs() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_image

    from lungfake.data.synthetic import recoloured_as_he

    return [recoloured_as_he(load_sample_image(name)) for name in ("china.jpg", "flower.jpg")]


@pytest.mark.parametrize("image", _recoloured_photographs(), ids=["buildings", "flower"])
def test_the_committed_reference_refuses_photographs_recoloured_as_h_and_e(image):
    """Refused by the tissue check, which the committed reference decides on; features cannot rescue them."""
    reference = _committed_reference()
    statistics = stain_statistics(image, reference.blur_sigma)
    assert reference.tissue.distance(statistics)[0] > reference.tissue.limit
    typical_features = reference.features.mean @ reference.features.projection  # at the training tiles' centre
    verdict = reference.assess(image, typical_features)
    assert verdict.ood is True and "tissue distance" in verdict.reason


@needs_data
def test_the_committed_reference_passes_real_tiles():
    from lungfake.serving.images import read_image_file

    reference = _committed_reference()
    tiles = [read_image_file(DATA_DIR / folder / f"{prefix}{i}.jpeg") for folder, prefix in
             (("lung_n", "lungn"), ("lung_aca", "lungaca"), ("lung_scc", "lungscc")) for i in range(1, 6)]
    distances = reference.stain.distance(np.stack([stain_statistics(t) for t in tiles]))
    assert (distances <= reference.stain.limit).all()


@needs_data
def test_the_committed_tissue_check_takes_real_tiles_sharpened_as_another_scanner_might():
    from lungfake.evaluation.robustness import sharpened
    from lungfake.serving.images import read_image_file

    reference = _committed_reference()
    tiles = [read_image_file(DATA_DIR / folder / f"{prefix}{i}.jpeg") for folder, prefix in
             (("lung_n", "lungn"), ("lung_aca", "lungaca"), ("lung_scc", "lungscc")) for i in range(1, 11)]
    statistics = np.stack([stain_statistics(sharpened(t, 2.0, 2.0), reference.blur_sigma) for t in tiles])
    assert (reference.tissue.distance(statistics) <= reference.tissue.limit).all()


def test_tissue_from_another_lab_is_a_domain_shift_and_a_photograph_is_refused(tmp_path):
    """The tissue check learns H&E as other labs show it; the stain check still knows LC25000's own look."""
    from sklearn.datasets import load_sample_image

    from lungfake.evaluation.colour import ColourTarget
    from lungfake.evaluation.robustness import another_lab

    rng = np.random.default_rng(0)
    train, val = [he_like(s, 128) for s in range(200)], [he_like(s, 128) for s in range(300, 380)]
    own = ColourTarget.of(np.stack(train[:100]))
    varied_train = [another_lab(t, rng, own) for t in train]
    varied_val = [another_lab(t, rng, own) for t in val]
    features = lambda images: np.stack([stain_statistics(x)[:6] for x in images])
    reference = fit_reference(train, features(train), val, features(val), "stand-in", 0.99, varied_train, varied_val, 0.999)
    (tmp_path / "reference.npz").write_bytes(reference.to_bytes())
    assert OodReference.from_file(tmp_path / "reference.npz").tissue.limit == reference.tissue.limit

    plain = reference.assess(he_like(999, 128), features([he_like(999, 128)])[0])
    assert plain.ood is False and plain.domain_shift is False
    from lungfake.evaluation.colour import match_colour

    mean, std = np.asarray(own.mean), np.asarray(own.std)
    restained = match_colour(he_like(998, 128), ColourTarget(tuple(mean + (10.0, -8.0, 8.0)), tuple(std * 1.2)))
    shifted = reference.assess(restained, features([restained])[0])
    assert shifted.ood is False and shifted.domain_shift is True and "distance" in shifted.domain_shift_reason
    photo = np.asarray(Image.fromarray(load_sample_image("china.jpg")).resize((128, 128)))
    refused = reference.assess(photo, features([photo])[0])
    assert refused.ood is True and "tissue distance" in refused.reason
    assert set(refused.to_json()) == {"ood", "ood_reason", "domain_shift", "domain_shift_reason"}
