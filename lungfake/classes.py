"""The single registry of tissue classes: order, folder, display name, cancer flag.

Every other module (and the app) takes class order from here or from a model's
registry entry, which is checked against this list when a model loads.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TissueClass:
    name: str  # the LC25000 folder name, also the label stored in splits and metrics
    display_name: str
    is_cancer: bool
    colour: str  # on probability maps and charts


CLASSES: tuple[TissueClass, ...] = (
    # Teal, orange and purple stay apart for colour-blind readers; the green and red used before were one
    # colour to a deuteranope on the region map (tests/test_data.py simulates it: 5 apart in CAM02-UCS).
    TissueClass("lung_n", "Benign lung tissue", is_cancer=False, colour="#35978f"),
    TissueClass("lung_aca", "Lung adenocarcinoma", is_cancer=True, colour="#e66100"),
    TissueClass("lung_scc", "Lung squamous cell carcinoma", is_cancer=True, colour="#542788"),
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
_BY_NAME = {c.name: c for c in CLASSES}


def display_name(name: str) -> str:
    return _BY_NAME[name].display_name


def is_cancer(name: str) -> bool:
    return _BY_NAME[name].is_cancer


def class_index(name: str) -> int:
    return CLASS_NAMES.index(name)


def colour_of(name: str) -> str:
    return _BY_NAME[name].colour
