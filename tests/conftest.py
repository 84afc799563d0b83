import keras  # noqa: F401  imported before any test: mutmut's fork server then forks workers with TensorFlow loaded
import numpy as np
import pytest
import tensorflow  # noqa: F401
from PIL import Image

from lungfake.data.synthetic import CopyTransform, make_copy
from tests.helpers import cells, register_tiny_model

COPY_TRANSFORMS = (CopyTransform(0, False, 1.0, False, 95), CopyTransform(12, True, 1.0, False, 90),
                   CopyTransform(-20, False, 1.3, False, 90), CopyTransform(160, True, 1.6, True, 85))


def write_tiny_dataset(root):
    """An LC25000-shaped folder of synthetic tiles: 3 families of 4 copies per class, in a nested folder."""
    for k, label in enumerate(("lung_n", "lung_aca", "lung_scc")):
        folder = root / "nested" / label
        folder.mkdir(parents=True)
        n = 0
        for family in range(3):
            base = cells(100 * k + family, size=96)
            for transform in COPY_TRANSFORMS:
                n += 1
                copy = make_copy(base, transform, np.random.default_rng(n))
                Image.fromarray(copy).save(folder / f"{label.replace('_', '')}{n}.jpeg", quality=90)
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    """A fresh synthetic dataset per test (tests may damage its files)."""
    return write_tiny_dataset(tmp_path / "lc")


@pytest.fixture(scope="module")
def shared_tiny_dataset(tmp_path_factory):
    """The same dataset shared by a module's tests that only read it (training runs once per module)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("lc"))


@pytest.fixture(autouse=True)
def own_runs_dir(tmp_path, monkeypatch):
    """Training keeps trained Keras models in the runs folder (training.runs_dir): each test gets its own, never
    the user's ~/.cache."""
    monkeypatch.setenv("LUNGFAKE_RUNS_DIR", str(tmp_path / "runs"))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights store with a tiny model and an OOD reference, built once; tests that change files work on a copy."""
    return register_tiny_model(tmp_path_factory.mktemp("weights"))
