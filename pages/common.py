"""What the pages share: the menu and routing, the models' process, the disclaimer.

Pages live in pages/ and are registered with st.navigation (app_pages), which sets the menu, titles and
order in one place. Streamlit's older convention also treats a pages/ folder as pages of their own, until
the first call of st.navigation in the server's life (documented: from then on the app ignores pages/ in
every session). So a page URL opened first on a fresh server runs the page without the entry point:
enter_page sees that, calls st.navigation and reruns, which goes through the entry point.
"""
from pathlib import Path

import streamlit as st

from lungfake.errors import LungfakeError
from lungfake.evaluation.comparison import domain_shift_caution
from lungfake.evaluation.evaluator import load_all_metrics
from lungfake.explain.cam import overlay
from lungfake.reports import case_report as report
from lungfake.scoring.process import ScoringProcess
from lungfake.serving.store import WeightsStore

DISCLAIMER = report.DISCLAIMER.replace("Research use only.", "**Research use only.**", 1)
ROUTED = "entered_through_streamlit_app"  # set by the entry point before every page run it routes
REROUTED = "sent_back_through_streamlit_app"


def app_pages() -> list:
    """The app's pages, in menu order: the score page first and the default."""
    return [
        st.Page("pages/score.py", title="Score a tile", icon=":material/biotech:", default=True),
        st.Page("pages/batch.py", title="Score a batch", icon=":material/grid_view:"),
        st.Page("pages/region.py", title="Map a region", icon=":material/map:"),
        st.Page("pages/slide.py", title="Map a slide", icon=":material/layers:"),
        st.Page("pages/dashboard.py", title="Evaluation dashboard", icon=":material/monitoring:"),
        st.Page("pages/error_browser.py", title="Error browser", icon=":material/image_search:"),
        st.Page("pages/about.py", title="About / model card", icon=":material/info:"),
    ]


def route() -> None:
    """The entry point's whole work: mark the run as routed, then run the page the URL names."""
    st.session_state[ROUTED] = True
    st.navigation(app_pages()).run()


def enter_page() -> None:
    """Call first on every page: send a run that did not come through the entry point back through it, and
    start loading the models (in their own process) so they are ready, or nearly, when they are needed."""
    if not st.session_state.pop(ROUTED, False) and not st.session_state.get(REROUTED):
        st.session_state[REROUTED] = True  # once: a page run on its own (AppTest of a page file) then just renders
        st.navigation(app_pages())  # the documented switch away from the pages/ folder's own pages
        st.rerun()
    _models_process(str(WeightsStore.resolve().root))


def _release(process: ScoringProcess) -> None:
    process.close()


@st.cache_resource(show_spinner=False, validate=lambda process: process.alive, on_release=_release)
def _models_process(folder: str) -> ScoringProcess:
    """One models' process per weights folder, so other weights are never served from the cache; a process
    that stopped is replaced on the next call."""
    return ScoringProcess("all", Path(folder))


def scorer() -> ScoringProcess:
    """Every served model, calibrated, and the out-of-distribution screen, in the models' process. While they
    load, a progress bar says which; a loading error is raised as LungfakeError."""
    process = _models_process(str(WeightsStore.resolve().root))
    if not process.status().ready:
        bar = st.progress(0.0, text=process.status().text)
        process.wait_until_ready(lambda status: bar.progress(status.fraction, text=status.text))
        bar.empty()
    return process


def loading_note() -> None:
    """A caption while the models load (never waits), so a user knows why a first upload may take longer."""
    try:
        status = _models_process(str(WeightsStore.resolve().root)).status()
    except LungfakeError:
        return  # the page says so, with what to do, when it needs the models
    if not status.ready:
        st.caption(f"The models are loading in the background: {status.text} You can upload already.")


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


def show_overlay(model, rgb, opacity: float = 0.45, title: str = "", instead: str = "") -> None:
    """A model's overlay with what it is worth (its method and measured faithfulness); an overlay that failed the
    faithfulness or tile-specific test is not shown as evidence: a caution (with what to use instead, if anything), and
    the map only on request."""
    caption = f"{title}{model.overlay_caption}"
    if model.overlay_is_evidence:
        st.image(overlay(rgb, model.heatmap, opacity), caption=caption, width="stretch")
        return
    st.warning(f"{caption} {instead}".strip())
    with st.expander("Show the overlay anyway"):
        st.image(overlay(rgb, model.heatmap, opacity), caption="Not evidence of what the model used", width="stretch")


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
