"""Deterministic images for the out-of-distribution statistics' golden values (tests/data/ood_golden.json)."""
import numpy as np

from tests.helpers import cells, he_like


def probe_images() -> dict[str, np.ndarray]:
    """Tissue-like tiles, and a patchwork that reaches every statistic: glass, near-black, green, blue, flat colour."""
    patchwork = cells(7, 160)
    patchwork[:40, :40] = 250  # glass: background fraction
    patchwork[40:70, :40] = 10  # near black: dark fraction
    patchwork[70:100, :40] = (40, 200, 60)  # green
    patchwork[100:130, :40] = (40, 60, 220)  # blue
    patchwork[130:, :40] = (230, 150, 200)  # one flat colour
    return {"he_like": he_like(3, 128), "cells": cells(11, 224), "patchwork": patchwork,
            "non_square": cells(13, 200)[:, :150]}
