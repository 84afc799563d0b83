"""What the pages share: routing through the entry point, cached models and the disclaimer."""
import gc
import sys
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner

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
    served = ServedModel.load(arch, Path(folder))
    _exempt_from_collection()
    return served


def served_models() -> list[ServedModel]:
    folder = str(weights_dir())  # part of the cache key, so other weights are never served from the cache
    return [served_model(arch, folder) for arch in served_architectures()]


@st.cache_resource(show_spinner="Loading the out-of-distribution check (first time only)...")
def _ood_screen(folder: str) -> OodScreen:
    screen = OodScreen.load([served.loaded for served in served_models()], Path(folder))
    _exempt_from_collection()
    return screen


def _exempt_from_collection() -> None:
    """The loaded models are ~440,000 Python objects that live as long as the process. Streamlit runs a
    full gc.collect(2) after every script run (twice per upload: the uploader's clearing run, then the
    scoring run), and scanning them took 0.5 s each time, holding the GIL. gc.freeze() moves every object
    alive now out of the collector's sight; later garbage is still collected."""
    gc.freeze()


def ood_screen() -> OodScreen:
    return _ood_screen(str(weights_dir()))


def route_through_entrypoint() -> None:
    """Call first on every page. On a fresh server whose first request is a page URL, Streamlit runs the
    page on its own in its old pages/-folder mode, skipping streamlit_app.py (layout, titles, menu)."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation itself sets; the rerun goes through it
        st.rerun()


def _close_pyplot_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def keep_tensorflow_kernels_between_runs() -> None:
    """After every script run Streamlit calls keras.backend.clear_session(), which empties TensorFlow's
    kernel cache: the next run then re-optimises every traced model function (Grappler), 0.5-7 s of CPU
    on this machine, and concurrent sessions keep wiping each other's caches. Our models and Grad-CAM
    objects live in st.cache_resource and no run builds Keras objects, so there is no state to clear;
    matplotlib figures are still closed as before."""
    script_runner._clean_problem_modules = _close_pyplot_figures


keep_tensorflow_kernels_between_runs()
