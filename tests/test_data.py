import warnings

import pytest

from lungfake.classes import CLASS_NAMES, display_name, is_cancer
from lungfake.data.tiles import list_tiles, load_readable_tiles, resolve_data_root
from lungfake.errors import DatasetError


def test_class_registry():
    assert CLASS_NAMES == ("lung_n", "lung_aca", "lung_scc")
    assert display_name("lung_scc") == "Lung squamous cell carcinoma"
    assert [is_cancer(n) for n in CLASS_NAMES] == [False, True, True]


@pytest.mark.parametrize("deficiency", ["deuteranomaly", "protanomaly", "tritanomaly"])
def test_class_colours_stay_apart_for_colour_blind_readers(deficiency):
    """The region map paints each class its colour: under a simulated full dichromacy (Machado et al. 2009, via
    colorspacious) every two classes stay at least 20 apart in CAM02-UCS (the green and red used before: 5)."""
    import itertools

    import numpy as np
    from colorspacious import cspace_convert

    from lungfake.classes import colour_of

    rgb = np.array([[int(colour_of(c)[i : i + 2], 16) for i in (1, 3, 5)] for c in CLASS_NAMES]) / 255
    seen = np.clip(cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": deficiency, "severity": 100}, "sRGB1"), 0, 1)
    uniform = cspace_convert(seen, "sRGB1", "CAM02-UCS")
    assert min(np.linalg.norm(uniform[a] - uniform[b]) for a, b in itertools.combinations(range(len(rgb)), 2)) >= 20


def test_finds_class_folders_at_any_depth(tiny_dataset):
    tiles = list_tiles(tiny_dataset)
    assert len(tiles) == 36
    assert tiles[0].path.startswith("nested/lung_n/")
    assert {t.label for t in tiles} == set(CLASS_NAMES)


def test_data_root_from_environment(tiny_dataset, monkeypatch):
    monkeypatch.setenv("LC25000_DIR", str(tiny_dataset))
    assert resolve_data_root() == tiny_dataset


def test_missing_root_and_missing_class_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("LC25000_DIR", raising=False)
    with pytest.raises(DatasetError, match="LC25000_DIR"):
        resolve_data_root()
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_data_root(tmp_path / "nowhere")
    (tmp_path / "lung_n").mkdir()
    with pytest.raises(DatasetError, match="lung_aca, lung_scc") as info:
        list_tiles(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_empty_class_folder_is_an_error(tmp_path):
    for name in CLASS_NAMES:
        (tmp_path / name).mkdir()
    with pytest.raises(DatasetError, match="holds no"):
        list_tiles(tmp_path)


def test_unreadable_and_truncated_files_are_skipped_with_a_warning(tiny_dataset):
    folder = tiny_dataset / "nested" / "lung_aca"
    (folder / "lungaca900.jpeg").write_bytes(b"not a jpeg at all")
    good = (folder / "lungaca1.jpeg").read_bytes()
    (folder / "lungaca901.jpeg").write_bytes(good[: len(good) // 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiles, pixels = load_readable_tiles(tiny_dataset, 32)
    messages = " ".join(str(w.message) for w in caught)
    assert "lungaca900.jpeg" in messages and "lungaca901.jpeg" in messages
    assert len(tiles) == 36 and pixels.shape == (36, 32, 32, 3)


def test_split_rows_read_in_order_or_fail_naming_the_unreadable_tile(tiny_dataset):
    """One unreadable tile in the middle of a split must not shift every row after it (which once
    misaligned the families of the bootstrap): reading the split fails and names the tile."""
    from lungfake.data.splits import SplitRow
    from lungfake.data.tiles import read_split_pixels

    tiles = list_tiles(tiny_dataset)
    rows = [SplitRow(t.path, t.label, f"f{i}", "test") for i, t in enumerate(tiles[:5])]
    pixels = read_split_pixels(tiny_dataset, rows, 32)
    assert pixels.shape == (5, 32, 32, 3)
    (tiny_dataset / rows[2].path).write_bytes(b"broken")
    with pytest.raises(DatasetError, match=rows[2].path.rsplit("/", 1)[-1]):
        read_split_pixels(tiny_dataset, rows, 32)
