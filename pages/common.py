"""What the pages share: routing through the entry point, cached models and the disclaimer."""
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from lungfake.inference import OodScreen
from lungfake.registry import weights_dir
from lungfake.tile_report import ServedModel, served_architectures

DISCLAIMER = (
    "**Research use only.** This demo is not a medical device and must not be used for diagnosis or "
    "treatment decisions. Its models were trained on one public dataset (LC25000) and can be wrong "
    "with high confidence on tissue, stains or scanners they have not seen."
)


@st.cache_resource(show_spinner="Loading the models and their Grad-CAM explainers (first time only)...")
def served_model(arch: str, folder: str) -> ServedModel:
    return ServedModel.load(arch, Path(folder))


def served_models() -> list[ServedModel]:
    folder = str(weights_dir())  # part of the cache key, so other weights are never served from the cache
    return [served_model(arch, folder) for arch in served_architectures()]


@st.cache_resource(show_spinner="Loading the out-of-distribution check (first time only)...")
def _ood_screen(folder: str) -> OodScreen:
    return OodScreen.load([served.loaded for served in served_models()], Path(folder))


def ood_screen() -> OodScreen:
    return _ood_screen(str(weights_dir()))


def route_through_entrypoint() -> None:
    """Call first on every page. On a fresh server whose first request is a page URL, Streamlit runs the
    page on its own in its old pages/-folder mode, skipping streamlit_app.py (layout, titles, menu)."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation itself sets; the rerun goes through it
        st.rerun()
