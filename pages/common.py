"""What the pages share: routing through the entry point, the cached scorer and the disclaimer.

Pages live in pages/ and are registered with st.navigation in streamlit_app.py, which sets the menu, titles
and order in one place. The cost: Streamlit's older convention also treats a pages/ folder as pages of
its own, so a page URL opened first on a fresh server runs without the entry point; route_through_entrypoint
sends it back through st.navigation.
"""
import gc
import sys
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import script_runner

from lungfake import report
from lungfake.comparison import domain_shift_caution
from lungfake.errors import LungfakeError
from lungfake.evaluation import load_all_metrics
from lungfake.scoring import Scorer
from lungfake.store import WeightsStore

DISCLAIMER = report.DISCLAIMER.replace("Research use only.", "**Research use only.**", 1)


@st.cache_resource(show_spinner="Loading the models and their Grad-CAM explainers (first time only)...")
def _scorer(folder: str) -> Scorer:
    scorer = Scorer.load("all", Path(folder))
    for served in scorer.served:
        served.explainer  # built now, once, rather than inside the first user's upload
    _exempt_from_collection()
    return scorer


def scorer() -> Scorer:
    """Every served model, calibrated, with its Grad-CAM explainer and the out-of-distribution screen;
    keyed by the weights folder, so other weights are never served from the cache."""
    return _scorer(str(WeightsStore.resolve().root))


@st.cache_data(show_spinner=False)
def robustness_caution() -> str:
    """The committed robustness figures, in one sentence, for the domain-shift caution."""
    try:
        return domain_shift_caution(load_all_metrics())
    except LungfakeError:
        return "The robustness figures could not be read."


def wrap_metric_values() -> None:
    """Let a metric's value wrap instead of ending in an ellipsis: in a model's column, "Lung squamous cell
    carcinoma" was cut to "Lung squamous c...". A style-only st.html goes to the page's event container,
    so it takes no room; the browser test checks that no prediction is cut."""
    value = '[data-testid="stMetricValue"] [data-testid="stMarkdownContainer"]'
    st.html(f"<style>{value}, {value} p {{white-space: normal; overflow: visible; text-overflow: clip}}</style>")


REGION_HANDOFF = "region_from_tile_page"  # an image the tile page sent on: (name, bytes), in this session only


def hand_to_region_page(name: str, data: bytes) -> None:
    """Open the region page on an image uploaded to the tile page, so it need not be uploaded again."""
    st.session_state[REGION_HANDOFF] = (name, data)
    st.switch_page("pages/region.py")


def region_source(upload) -> tuple[str, bytes] | None:
    """The region page's image: its own upload (which replaces anything handed over), else what the tile page sent."""
    if upload is not None:
        st.session_state.pop(REGION_HANDOFF, None)
        return upload.name, upload.getvalue()
    return st.session_state.get(REGION_HANDOFF)


def computed_once(name: str, key, compute):
    """compute()'s result, kept in the session under name until key changes (a new upload or setting).
    A lungfake error is shown with what to do and stops the page."""
    if st.session_state.get(f"{name}_key") != key:
        st.session_state.pop(name, None)
        try:
            st.session_state[name] = compute()
            st.session_state[f"{name}_key"] = key
        except LungfakeError as exc:
            st.session_state.pop(f"{name}_key", None)
            st.error(f"{exc}")
            st.stop()
    return st.session_state[name]


def progress_bar(unit: str):
    """A progress bar and the callback that moves it: done of total, time left. A rerun requested meanwhile
    (e.g. a second upload) raises from the callback, which cancels the scoring under way."""
    bar = st.progress(0.0, text=f"Scoring the {unit}...")

    def show(progress) -> None:
        left = progress.seconds_left
        bar.progress(progress.done / progress.total, text=f"{progress.done} of {progress.total} {unit} scored"
                     + (f", about {left:.0f} s left" if left is not None else ""))

    return bar, show


def _exempt_from_collection() -> None:
    """The loaded models are ~440,000 Python objects that live as long as the process. Streamlit runs a
    full gc.collect(2) after every script run (twice per upload: the uploader's clearing run, then the
    scoring run), and scanning them took 0.5 s each time, holding the GIL. gc.freeze() moves every object
    alive now out of the collector's sight; later garbage is still collected."""
    gc.freeze()


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
