"""What the pages share: cached models, the disclaimer, and error display."""
import streamlit as st

from lungfake.tile_report import ServedModel, served_architectures

DISCLAIMER = (
    "**Research use only.** This demo is not a medical device and must not be used for diagnosis or "
    "treatment decisions. Its models were trained on one public dataset (LC25000) and can be wrong "
    "with high confidence on tissue, stains or scanners they have not seen."
)


@st.cache_resource(show_spinner="Loading the models and their Grad-CAM explainers (first time only)...")
def served_model(arch: str) -> ServedModel:
    return ServedModel.load(arch)


def served_models() -> list[ServedModel]:
    return [served_model(arch) for arch in served_architectures()]
