import hashlib

import streamlit as st

from lungfake.cam import overlay
from lungfake.charts import probability_chart
from lungfake.classes import display_name
from lungfake.errors import LungfakeError
from lungfake.inference import LOW_CONFIDENCE
from lungfake.tile_report import score_tile
from pages.common import DISCLAIMER, ood_screen, route_through_entrypoint, served_models


def show_results(report, opacity: float) -> None:
    predictions = {arch: r.prediction for arch, r in report.results.items()}
    if report.models_agree:
        st.success(f"Both models agree: **{display_name(next(iter(predictions.values())).predicted)}**.")
    else:
        st.error("The models **disagree**: " + "; ".join(
            f"{r.model_name} says {display_name(r.prediction.predicted)}" for r in report.results.values()) + ".")

    for column, (arch, result) in zip(st.columns(len(report.results)), report.results.items()):
        p = result.prediction
        with column:
            st.subheader(result.model_name)
            st.metric("Prediction", display_name(p.predicted), f"{p.confidence:.1%} confidence", delta_color="off")
            if p.low_confidence:
                st.warning(f"Low confidence (top class under {LOW_CONFIDENCE:.0%}): treat this result as uncertain.")
            st.write(f"Cancer vs benign: **{'cancer' if p.cancer_probability >= 0.5 else 'benign'}** "
                     f"(cancer probability {p.cancer_probability:.1%})")
            st.plotly_chart(probability_chart(p), key=f"probabilities_{arch}")
            left, right = st.columns(2)
            left.image(report.rgb, caption="Uploaded tile", width="stretch")
            right.image(overlay(report.rgb, result.heatmap, opacity), caption=f"Grad-CAM: {display_name(p.predicted)}",
                        width="stretch")


route_through_entrypoint()
st.title("Score a lung H&E tile")
st.warning(DISCLAIMER)
upload = st.file_uploader("Upload an H&E tile (JPEG, PNG or TIFF)", type=["jpg", "jpeg", "png", "tif", "tiff"])
opacity = st.slider("Grad-CAM overlay opacity", 0.0, 1.0, 0.45, 0.05)
if upload is None:
    st.info("Upload a tile to see what ResNet50 and MobileNetV2 make of it, with Grad-CAM showing where they looked.")
    st.stop()

data = upload.getvalue()
key = hashlib.sha256(data).hexdigest()
if st.session_state.get("report_key") != key:
    try:
        st.session_state.report = score_tile(data, upload.name, served_models(), ood_screen())
        st.session_state.report_key = key
    except LungfakeError as exc:
        st.session_state.pop("report_key", None)
        st.error(f"{exc}")
        st.stop()
report = st.session_state.report

if report.ood.ood:
    st.error(f"**This does not look like a lung H&E tile**: {report.ood.reason}. The models know only three kinds "
             "of lung tissue and force any image into one of them, so their output below means nothing. "
             "Upload an H&E-stained lung tile at a magnification like LC25000's.")
elif report.ood.ood is None:
    st.info(f"Out-of-distribution check {report.ood.reason}.")
with st.expander("Show the models' output anyway", expanded=False) if report.ood.ood else st.container():
    show_results(report, opacity)

stem = upload.name.rsplit(".", 1)[0]
left, right = st.columns(2)
left.download_button("Download result (JSON)", report.to_json(), f"{stem}_lungfake.json", "application/json",
                     on_click="ignore")  # a download changes nothing on the page, so it need not rerun it
right.download_button("Download result (CSV)", report.to_csv(), f"{stem}_lungfake.csv", "text/csv", on_click="ignore")
st.text(f"Scored: {upload.name}")
