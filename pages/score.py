import hashlib

import streamlit as st

from lungfake.classes import display_name
from lungfake.reports.case_report import CaseReport
from lungfake.reports.charts import probability_chart
from lungfake.reports.region import region_hint
from lungfake.scoring.scoring import csv_text, ensemble_note, json_text, precise_overlay_note
from lungfake.serving.images import decode_image
from pages.common import (
    DISCLAIMER,
    computed_once,
    enter_page,
    hand_to_region_page,
    loading_note,
    robustness_caution,
    scorer,
    show_overlay,
    wrap_metric_values,
)

PRECISE_HINT = "The precise overlays below can be asked for instead."


def show_model(score, rgb, opacity: float, key: str) -> None:
    st.subheader(score.name)
    st.metric("Prediction", display_name(score.predicted), f"{score.confidence:.1%} confidence", delta_color="off", delta_arrow="off")
    st.write(f"Cancer vs benign: **{'cancer' if score.cancer_probability >= 0.5 else 'benign'}** "
             f"(cancer probability {score.cancer_probability:.1%})")
    st.plotly_chart(probability_chart(score), key=f"probabilities_{key}")
    if score.heatmap is not None:
        offered = {served.entry.arch for served in scorer().served if served.entry.precise_method}
        show_overlay(score, rgb, opacity, instead=PRECISE_HINT if score.arch in offered else "")


def show_verdict(tile_score) -> None:
    """What the tile is called, first: cancer vs benign, and the subtype only where it can be trusted."""
    verdict, lead = tile_score.verdict, tile_score.ensemble or next(iter(tile_score.models.values()))
    cancer = f"cancer probability {lead.cancer_probability:.1%}"
    if verdict.subtype_uncertain:
        st.warning(f"### {verdict.headline}\n\n{verdict.explanation} ({cancer}; the probabilities of each subtype are "
                   "shown below.)")
    else:
        st.success(f"### {verdict.headline}\n\n{'Cancer' if verdict.cancer else 'Benign'} ({cancer}).")
    if not tile_score.models_agree:
        st.info("The models' own calls differ: " + "; ".join(
            f"{m.name} says {display_name(m.predicted)}" for m in tile_score.models.values()) + ".")


def show_precise_overlays(tile_score, key, tta: bool, opacity: float) -> None:
    """The slower overlays measured from the models' own answers (the registry's precise method), on request; once
    asked for, they stay for this tile and setting."""
    note = precise_overlay_note([served.entry for served in scorer().served])
    if tile_score.refused or note is None:
        return
    st.subheader("More precise overlays")
    st.caption(note)
    if st.session_state.get("precise_key") != key and not st.button("Compute the precise overlays", key="precise_overlays",
                                                                   icon=":material/center_focus_strong:"):
        return
    st.session_state["precise_key"] = key
    with st.spinner("Scoring blurred copies of the tile..."):
        explained = computed_once("precise_score", key, lambda: scorer().score(
            [tile_score.rgb], [tile_score.name], explain=True, tta=tta, precise=True)[0])
    for column, score in zip(st.columns(len(explained.models)), explained.models.values()):
        with column:
            show_overlay(score, explained.rgb, opacity, title=f"{score.name}: ")


def show_results(tile_score, opacity: float) -> None:
    ensemble = tile_score.ensemble
    left, right = st.columns([1, 2])
    left.image(tile_score.rgb, caption="Uploaded tile", width="stretch")
    if tile_score.scale_note:
        left.caption(tile_score.scale_note)
    if ensemble is not None:
        with right:
            show_model(ensemble, tile_score.rgb, opacity, "ensemble")
            st.caption(ensemble_note(tile_score.ensemble_calibration, {a: m.name for a, m in tile_score.models.items()}))
    for column, (arch, score) in zip(st.columns(len(tile_score.models)), tile_score.models.items()):
        with column:
            show_model(score, tile_score.rgb, opacity, arch)


enter_page()
wrap_metric_values()
st.title("Score a lung H&E tile")
st.warning(DISCLAIMER)
upload = st.file_uploader("Upload an H&E tile (JPEG, PNG or TIFF)", type=["jpg", "jpeg", "png", "tif", "tiff"])
opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05)
tta = st.toggle("Test-time augmentation (average over the tile's 8 rotations and mirror images; slower)")
if upload is None:
    st.info("Upload a tile to see what each model makes of it, with an overlay showing where it looked.")
    loading_note()
    st.stop()

data = upload.getvalue()
key = (hashlib.sha256(data).hexdigest(), tta)
tile_score = computed_once("tile_score", key, lambda: scorer().score([decode_image(data, upload.name)], [upload.name],
                                                              explain=True, tta=tta)[0])

if tile_score.ood.ood:
    st.error(f"**This does not look like a lung H&E tile**: {tile_score.ood.reason}. The models know only three kinds "
             "of lung tissue and force any image into one of them, so their output below means nothing. "
             "Upload an H&E-stained lung tile at a magnification like LC25000's.")
elif tile_score.ood.ood is None:
    st.info(f"Out-of-distribution check {tile_score.ood.reason}.")
elif tile_score.ood.domain_shift:
    st.warning(f"**H&E tissue, but unlike LC25000's tiles**: {tile_score.ood.domain_shift_reason}. The predictions are "
               f"shown; trust them less. {robustness_caution()}")
hint = region_hint(tile_score.rgb.shape)
if hint:
    st.info(hint)
    if st.button("Map this image as a region", icon=":material/map:", key="map_as_region"):
        hand_to_region_page(upload.name, data)
if not tile_score.refused:
    show_verdict(tile_score)
with st.expander("Show the models' output anyway", expanded=False) if tile_score.refused else st.container():
    show_results(tile_score, opacity)
show_precise_overlays(tile_score, key, tta, opacity)

stem = upload.name.rsplit(".", 1)[0]
models = [served.entry for served in scorer().served]


def report_html() -> str:  # built only when downloaded: it encodes every image, which no rerun needs
    tile_report = CaseReport("Tile report", upload.name, models)
    tile_report.add_score(tile_score, upload.name, opacity)
    return tile_report.html()


left, middle, right = st.columns(3)
left.download_button("Download result (JSON)", json_text([tile_score]), f"{stem}_lungfake.json", "application/json",
                     on_click="ignore")  # a download changes nothing on the page, so it need not rerun it
middle.download_button("Download result (CSV)", csv_text([tile_score]), f"{stem}_lungfake.csv", "text/csv", on_click="ignore")
right.download_button("Download case report (HTML)", report_html, f"{stem}_report.html", "text/html", on_click="ignore")
st.text(f"Scored: {upload.name}")
