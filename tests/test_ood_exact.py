"""The out-of-distribution statistics and fit, held to their values.

weights/ood_reference.npz was fitted on these statistics: any change to how one is computed makes the committed
reference measure something else, silently. So the statistics of a few fixed images are held to the values in
tests/data/ood_golden.json; a deliberate change of a statistic must come with `python -m lungfake ood-fit` and a
regenerated golden file (tests/ood_probes.py builds the images).
"""
import functools
import json

import numpy as np
import pytest

from lungfake.errors import ModelIntegrityError
from lungfake.evaluation.ood_fitting import fit_reference
from lungfake.serving.ood import (
    NOT_CHECKED,
    STAIN_STATISTICS,
    STATS_BLUR_SIGMA,
    GaussianReference,
    OodReference,
    OodVerdict,
    stain_statistics,
)
from tests.helpers import REPO, he_like
from tests.ood_probes import probe_images

GOLDEN = json.loads((REPO / "tests" / "data" / "ood_golden.json").read_text())


@pytest.mark.parametrize("name", list(GOLDEN["statistics"]))
def test_each_statistic_of_a_fixed_image_keeps_its_value(name):
    image = probe_images()[name]
    found = stain_statistics(image)
    assert len(found) == len(STAIN_STATISTICS)
    for statistic, value, expected in zip(STAIN_STATISTICS, found, GOLDEN["statistics"][name]):
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-9), f"{statistic} of {name}"
    unsoftened = stain_statistics(image, 0.0)
    assert unsoftened == pytest.approx(GOLDEN["unsoftened"][name], rel=1e-6, abs=1e-9)
    assert STATS_BLUR_SIGMA == 0.75


@functools.cache
def _fitted() -> OodReference:
    """Fitted once per session: the tests only read it."""
    rng = np.random.default_rng(0)
    train = [he_like(s, 64) for s in range(30)]
    val = [he_like(s, 64) for s in range(30, 45)]
    # 80 feature rows for 40 dimensions: with fewer rows than FEATURE_COMPONENTS + 1, the projection's last components
    # would span the null space, which each LAPACK build picks differently (seen: an AMD machine's limit 0.24% off)
    return fit_reference(train, rng.normal(size=(80, 40)), val, rng.normal(size=(15, 40)), "probe", 0.9,
                         [he_like(s, 64)[::-1] for s in range(45, 75)], [he_like(s, 64)[:, ::-1] for s in range(75, 90)], 0.95)


def test_a_reference_fitted_on_fixed_images_keeps_its_limits_and_centres():
    reference, expected = _fitted(), GOLDEN["reference"]
    assert reference.feature_model == "probe" and reference.quantile == 0.9
    for name in ("stain", "features", "tissue"):
        key = "feature" if name == "features" else name
        part = getattr(reference, name)
        assert part.limit == pytest.approx(expected[f"{key}_limit"], rel=1e-6)
        assert part.mean == pytest.approx(np.array(expected[f"{key}_mean"]), rel=1e-6, abs=1e-9)
    assert list(reference.features.projection.shape) == expected["projection_shape"]
    assert reference.stain.projection is None and reference.tissue.projection is None
    assert np.trace(reference.stain.precision) == pytest.approx(expected["stain_precision_trace"], rel=1e-6)
    assert np.trace(reference.features.precision) == pytest.approx(expected["feature_precision_trace"], rel=1e-6)


def test_without_images_as_other_labs_show_them_there_is_no_tissue_check():
    rng = np.random.default_rng(1)
    images = [he_like(s, 64) for s in range(20)]
    reference = fit_reference(images, rng.normal(size=(20, 8)), images[:10], rng.normal(size=(10, 8)), "probe")
    assert reference.tissue is None and reference.quantile == 0.995


def test_the_limit_is_the_quantile_of_held_out_distances_and_distance_is_mahalanobis():
    reference = GaussianReference(np.zeros(2), np.diag([4.0, 1.0]), 1.0)
    assert reference.distance(np.array([[1.0, 0.0], [0.0, 3.0], [1.0, 2.0]])) == pytest.approx([2.0, 3.0, np.sqrt(8.0)])
    assert reference.distance(np.array([0.5, 0.0])) == pytest.approx([1.0])  # a single vector is a batch of one
    projected = GaussianReference(np.zeros(1), np.eye(1), 1.0, np.array([[0.6, 0.8]]))
    assert projected.distance(np.array([[3.0, 4.0]])) == pytest.approx([5.0])
    rng = np.random.default_rng(2)
    held_out = rng.normal(size=(200, 3))
    fitted = GaussianReference.fit(rng.normal(size=(500, 3)), held_out, 0.5)
    assert fitted.limit == pytest.approx(float(np.quantile(fitted.distance(held_out), 0.5)))


def test_a_reference_round_trips_through_its_file_exactly(tmp_path):
    reference = _fitted()
    (tmp_path / "r.npz").write_bytes(reference.to_bytes())
    loaded = OodReference.from_file(tmp_path / "r.npz")
    assert (loaded.feature_model, loaded.quantile, loaded.blur_sigma) == ("probe", 0.9, STATS_BLUR_SIGMA)
    for name in ("stain", "features", "tissue"):
        a, b = getattr(reference, name), getattr(loaded, name)
        assert a.limit == b.limit and np.array_equal(a.mean, b.mean) and np.array_equal(a.precision, b.precision)
    assert np.array_equal(loaded.features.projection, reference.features.projection) and loaded.stain.projection is None


def test_a_reference_from_before_the_tissue_check_and_the_softening_still_loads(tmp_path):
    reference = _fitted()
    (tmp_path / "r.npz").write_bytes(reference.to_bytes())
    with np.load(tmp_path / "r.npz") as saved:
        old = {k: saved[k] for k in saved.files if not k.startswith("tissue") and k != "blur_sigma"}
    np.savez(tmp_path / "old.npz", **old)
    loaded = OodReference.from_file(tmp_path / "old.npz")
    assert loaded.tissue is None and loaded.blur_sigma == 0.0


@pytest.mark.parametrize("missing", ["stain_precision", "feature_limit", "feature_model", "quantile"])
def test_a_reference_missing_a_part_is_refused_with_what_to_do(tmp_path, missing):
    (tmp_path / "r.npz").write_bytes(_fitted().to_bytes())
    with np.load(tmp_path / "r.npz") as saved:
        np.savez(tmp_path / "bad.npz", **{k: saved[k] for k in saved.files if k != missing})
    with pytest.raises(ModelIntegrityError, match="bad.npz is unreadable.*refit it with python -m lungfake ood-fit"):
        OodReference.from_file(tmp_path / "bad.npz")


def test_the_verdicts_read_as_json_say_what_was_checked():
    assert OodVerdict(True, "why", None, "").to_json() == {"ood": True, "ood_reason": "why", "domain_shift": None,
                                                           "domain_shift_reason": ""}
    assert NOT_CHECKED.ood is None and NOT_CHECKED.reason.startswith("not checked")


def test_the_reasons_give_the_distance_and_the_limit():
    image = he_like(4, 64)
    centre = stain_statistics(image)
    features = GaussianReference(np.zeros(2), np.eye(2), 1.0)
    shifted = OodReference(GaussianReference(centre + 1.0, np.eye(len(centre)), 2.5), features, "m", 0.99,
                           GaussianReference(centre, np.eye(len(centre)), 100.0)).assess(image, np.zeros(2))
    distance = np.sqrt(len(centre))
    assert shifted.domain_shift_reason.endswith(f"stain distance {distance:.1f}, limit 2.5")
    refused = OodReference(GaussianReference(centre, np.eye(len(centre)), 1.0), features, "m", 0.99,
                           GaussianReference(centre + 2.0, np.eye(len(centre)), 3.0)).assess(image, np.zeros(2))
    assert refused.reason.endswith(f"(tissue distance {2 * distance:.1f}, limit 3.0)")
    legacy = OodReference(GaussianReference(centre + 1.0, np.eye(len(centre)), 2.5), features, "m", 0.99)
    assert legacy.assess(image, np.zeros(2)).reason.endswith(f"(stain distance {distance:.1f}, limit 2.5)")
    far = legacy.assess(image, np.array([3.0, 4.0]))
    assert far.ood is True
    passing = OodReference(GaussianReference(centre, np.eye(len(centre)), 1.0), features, "m", 0.99)
    assert passing.assess(image, np.array([0.6, 0.8])).to_json() == {
        "ood": False, "ood_reason": "looks like the lung H&E tiles the models were trained on", "domain_shift": False,
        "domain_shift_reason": ""}
    assert passing.assess(image, np.array([3.0, 4.0])).reason.endswith("(feature distance 5.0, limit 1.0)")


def test_every_verdict_reads_in_full():
    image = he_like(4, 64)
    centre, eye = stain_statistics(image), np.eye(28)
    near, far = GaussianReference(centre, eye, 100.0), GaussianReference(centre, eye, -1.0)
    features = GaussianReference(np.zeros(2), np.eye(2), 1.0)
    zero, five = np.zeros(2), np.array([3.0, 4.0])
    assert OodReference(near, features, "m", 0.99, far).assess(image, zero).reason == (
        "its colours and texture are unlike H&E-stained lung tissue, even as other labs stain and photograph it "
        "(tissue distance 0.0, limit -1.0)")
    assert OodReference(far, features, "m", 0.99).assess(image, zero).reason == (
        "its colours and texture are unlike an H&E-stained lung tile (stain distance 0.0, limit -1.0)")
    assert OodReference(near, features, "m", 0.99).assess(image, five).reason == (
        "the model's features are far from every training tile (feature distance 5.0, limit 1.0)")
    assert OodReference(near, features, "m", 0.99).assess(image, zero) == OodVerdict(
        False, "looks like the lung H&E tiles the models were trained on", False, "")
    assert OodReference(far, features, "m", 0.99, near).assess(image, zero) == OodVerdict(
        False, "lung H&E tissue", True, "its colours or texture differ from LC25000's (another lab's stain, scanner or "
        "magnification?): stain distance 0.0, limit -1.0")
    assert OodReference(near, features, "m", 0.99, near).assess(image, five) == OodVerdict(
        False, "lung H&E tissue", True, "the models' features are far from every training tile (tissue or magnification "
        "unlike LC25000's?): feature distance 5.0, limit 1.0")
    assert OodReference(near, features, "m", 0.99, near).assess(image, zero) == OodVerdict(
        False, "lung H&E tissue", False, "looks like the lung H&E tiles the models were trained on")


def test_a_reference_measures_with_the_softening_it_was_fitted_with():
    image = he_like(6, 64)
    softened = GaussianReference(stain_statistics(image, 0.0), np.eye(28), 1e-6)
    features = GaussianReference(np.zeros(2), np.eye(2), 1.0)
    unsoftened = OodReference(softened, features, "m", 0.99, blur_sigma=0.0)
    assert unsoftened.assess(image, np.zeros(2)).ood is False  # its own blur: distance 0
    assert OodReference(softened, features, "m", 0.99).assess(image, np.zeros(2)).ood is True  # the default blur differs
