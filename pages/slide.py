import hashlib
import shutil
import tempfile
from pathlib import Path

import streamlit as st

from lungfake.reports.region import LC25000_TILE_MICRONS, png_bytes
from lungfake.reports.slide import (
    DEFAULT_MINUTES_LIMIT,
    SLIDE_SUFFIXES,
    SLIDES_DIR_SETTING,
    map_figure,
    map_slide,
    plan_slide,
    server_slides,
)
from lungfake.serving.slides import SlideFile
from pages.common import DISCLAIMER, computed_once, enter_page, progress_bar, scorer, show_overlay

UPLOAD_LIMIT_MB = 500  # .streamlit/config.toml's maxUploadSize


def uploaded_path(upload) -> Path:
    """The upload saved once per session under its own name (the slide reader needs a file)."""
    key = hashlib.sha256(upload.getvalue()).hexdigest()
    saved = st.session_state.get("slide_upload")
    if not saved or saved[0] != key:
        if saved:  # the slide it replaces is not kept on the server
            shutil.rmtree(Path(saved[1]).parent, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="lungfake-slide-"))
        path = folder / (Path(upload.name).name or "slide")  # the browser's name, never a path of its choosing
        path.write_bytes(upload.getvalue())
        st.session_state["slide_upload"] = (key, str(path))
    return Path(st.session_state["slide_upload"][1])


def plan(path: Path, mpp: float | None) -> dict:
    with SlideFile(path) as slide:
        planned = plan_slide(slide, mpp)
    return {"plan": planned}


def mapped(path: Path, planned) -> dict:
    with SlideFile(path) as slide:
        bar, show = progress_bar("tiles")
        result = map_slide(scorer(), slide, planned, show)
        bar.empty()
    return {"result": result}


enter_page()
st.title("Map a slide")
st.warning(DISCLAIMER)
st.markdown(f"Open a whole-slide file (SVS, NDPI, MRXS, SCN, DICOM or tiled TIFF). Its tissue is found on a thumbnail and "
            f"cut into tiles of the models' field of view (about {LC25000_TILE_MICRONS:.0f} um across), read from the "
            "slide's pyramid at the scale the models need; every tile gets the verdict a single tile gets. The scale comes "
            "from the file; where the file does not record it, state it below.")
slides = server_slides()
sources = ["Upload a slide"] + ([f"A slide on this server ({len(slides)})"] if slides else [])
source = st.radio("Slide", sources, horizontal=True, help=f"Slides on the server are listed from the folder the "
                  f"{SLIDES_DIR_SETTING} setting names; uploads are limited to {UPLOAD_LIMIT_MB} MB.")
if source == sources[0]:
    upload = st.file_uploader(f"Slide file (up to {UPLOAD_LIMIT_MB} MB)", type=[s.lstrip(".") for s in SLIDE_SUFFIXES])
    path = uploaded_path(upload) if upload is not None else None
else:
    path = st.selectbox("Slide on this server", slides, format_func=lambda p: p.name)
own_scale = st.checkbox("State the scale myself", help="Needed where the file does not record its microns per pixel; "
                        "it then replaces the file's own.")
mpp = st.number_input("Microns per pixel at full resolution", 0.08, 4.0, 0.25, 0.01, format="%.3f",
                      help="40x is about 0.25, 20x about 0.5") if own_scale else None
if path is None:
    st.info("Upload a slide, or choose one on the server, to map it.")
    st.stop()

planned = computed_once("slide_plan", (str(path), mpp), lambda: plan(path, mpp))["plan"]
st.image(planned.mask_image(), caption=f"Tissue found (outlined): {planned.tissue_mm2:.1f} mm2, {len(planned.grid):,} tiles "
         f"of {planned.tile} px at {planned.scale.microns_per_pixel:g} um per pixel ({planned.scale.source})", width=480)
st.caption(f"About {planned.estimated_seconds / 60:.1f} minutes to map. Interacting with the page stops a run under way.")
too_long_message = planned.too_long_message(DEFAULT_MINUTES_LIMIT)
if too_long_message:
    st.error(too_long_message)
    st.stop()
if st.session_state.get("slide_key") != (str(path), mpp):
    if not st.button("Map this slide", type="primary"):
        st.stop()
    st.button("Stop")  # a rerun stops the scoring under way (the progress callback raises)
result = computed_once("slide", (str(path), mpp), lambda: mapped(path, planned))["result"]

st.success(result.summary_text())
if result.tiles.domain_shift_share:
    st.warning(f"{result.tiles.domain_shift_share:.0%} of the tissue tiles are H&E but unlike LC25000's (another lab's "
               "colours or magnification?): trust the map less there.")
st.plotly_chart(map_figure(result), width="stretch")

st.subheader("The most suspicious tiles (highest ensemble cancer probability)")
for score in result.suspicious:
    columns = st.columns(1 + len(score.models))
    columns[0].image(score.rgb, caption=score.name, width="stretch")
    for column, model in zip(columns[1:], score.models.values()):
        with column:
            show_overlay(model, score.rgb, title=f"{model.name}, {model.confidence:.0%}: ")

stem = Path(planned.name).stem
models = [s.entry for s in scorer().served]
columns = st.columns(4)
columns[0].download_button("Map (PNG)", png_bytes(result.verdict_map_image()), f"{stem}_map.png", "image/png", on_click="ignore")
columns[1].download_button("Tiles (CSV)", result.csv_text(), f"{stem}_tiles.csv", "text/csv", on_click="ignore")
columns[2].download_button("Tiles for QuPath (GeoJSON)", result.geojson_text(), f"{stem}_tiles.geojson", "application/geo+json",
                           on_click="ignore")
columns[3].download_button("Slide report (HTML)", lambda: result.report(models).html(), f"{stem}_report.html", "text/html",
                           on_click="ignore")
