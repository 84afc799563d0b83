import hashlib

import streamlit as st

from lungfake.classes import colour_of, display_name
from lungfake.reports.region import (
    LC25000_TILE_MICRONS,
    RegionScale,
    decode_region,
    explain_tiles,
    png_bytes,
    region_report,
    score_region,
    thumbnail,
)
from lungfake.scoring.scoring import ENSEMBLE
from pages.common import (
    DISCLAIMER,
    computed_once,
    enter_page,
    progress_bar,
    region_source,
    robustness_caution,
    scorer,
    show_overlay,
)

SCALES = {
    "Objective magnification": "The scanner convention: 40x is 0.25 um per pixel, 20x 0.5, 10x 1.0.",
    "Microns per pixel": "From the scanner's or camera's calibration (a slide export states it).",
}


def chosen_scale() -> RegionScale:
    mode = st.radio("How do you know the image's scale?", list(SCALES), horizontal=True, help="\n\n".join(SCALES.values()))
    if mode == "Objective magnification":
        return RegionScale.from_magnification(st.number_input("Objective magnification (x)", 2.0, 100.0, 40.0, 5.0))
    return RegionScale(st.number_input("Microns per pixel", 0.05, 10.0, 0.25, 0.05, format="%.3f"))


def analyse(data: bytes, name: str, scale: RegionScale) -> dict:
    rgb, working_scale, pixel_factor = decode_region(data, name, scale)
    bar, show = progress_bar("tiles")
    result = score_region(scorer(), rgb, working_scale, show, pixel_factor)
    bar.progress(1.0, text="Explaining the most suspicious tiles...")
    suspicious = explain_tiles(scorer(), rgb, result, result.most_suspicious(4))
    bar.empty()
    return {"result": result, "thumbnail": thumbnail(rgb), "suspicious": suspicious, "name": name}


enter_page()
st.title("Map a whole region")
st.warning(DISCLAIMER)
st.markdown(f"Upload a microscope photograph or a region exported from a slide. Its tissue is cut into tiles of the "
            f"models' field of view (about {LC25000_TILE_MICRONS:.0f} um across, estimated from LC25000's nucleus "
            "sizes, since LC25000 does not record its magnification) with half-tile overlap, and every tile is scored. "
            "**State the scale**: the default, 40x, assumes the image was taken like LC25000's photographs.")
upload = st.file_uploader("Region (JPEG, PNG or TIFF, up to 40 megapixels)", type=["jpg", "jpeg", "png", "tif", "tiff"])
scale = chosen_scale()
st.caption(f"At this scale a tile is {scale.tile_pixels} pixels of your image.")
source = region_source(upload)
if source is None:
    st.info("Upload a region to see a class map over it.")
    st.stop()

image_name, data = source
if upload is None:
    st.caption(f"Mapping {image_name}, sent from the tile page; an upload here replaces it.")
key = (hashlib.sha256(data).hexdigest(), scale.microns_per_pixel)
state = computed_once("region", key, lambda: analyse(data, image_name, scale))
result = state["result"]

st.success(result.summary())
if result.ood.any():
    reasons = "; ".join(f"{count} tiles: {reason}" for reason, count in result.ood_reasons.most_common(3))
    flagged = f"{result.ood_share:.0%} of the tissue tiles do not look like LC25000's lung H&E tiles ({reasons})"
    if result.ood_share >= 0.5:
        st.error(f"{flagged}. This is probably not a lung H&E image at this scale: the map means little.")
    else:
        st.warning(f"{flagged}; often tiles at the tissue's edge, part glass. Read the map there with care.")
if result.domain_shift_share:
    st.warning(f"{result.domain_shift_share:.0%} of the tissue tiles are H&E but unlike LC25000's (another lab's colours "
               f"or another magnification?): trust the map less there. {robustness_caution()}")
columns = st.columns(len(result.class_names) + 1)
for column, (name, share) in zip(columns, result.tissue_share_by_class().items()):
    column.metric(display_name(name), f"{share:.0%}", help="Share of the tissue area the ensemble gives this class")
if result.subtype_uncertain is not None:
    columns[-1].metric(
        "Subtype uncertain", f"{int(result.subtype_uncertain.sum())} tiles", help="Carcinoma tiles whose subtype the verdict "
        "withholds (the models disagree on it, its lean is small, or the tissue is unlike LC25000's): read the subtype "
        "shares with care")

which = st.selectbox("Map of", sorted(result.model_names, key=lambda arch: arch != ENSEMBLE), format_func=result.model_names.get)
opacity = st.slider("Map opacity", 0.0, 1.0, 0.5, 0.05)
map_rgb = result.map_image(state["thumbnail"], which, opacity)
st.image(map_rgb, caption=f"{result.model_names[which]}: class probabilities over the tissue", width="stretch")
st.markdown(" &nbsp; ".join(f"<span style='color:{colour_of(n)}'>&#9632;</span> {display_name(n)}"
                            for n in result.class_names), unsafe_allow_html=True)

st.subheader("The most suspicious tiles (highest ensemble cancer probability)")
for score in state["suspicious"]:
    columns = st.columns(1 + len(score.models))
    columns[0].image(score.rgb, caption=score.name, width="stretch")
    for column, model in zip(columns[1:], score.models.values()):
        with column:
            show_overlay(model, score.rgb, title=f"{model.name}, {model.confidence:.0%}: ")

stem = image_name.rsplit(".", 1)[0]
models = [s.entry for s in scorer().served]
left, middle, right = st.columns(3)
left.download_button("Download map (PNG)", png_bytes(map_rgb), f"{stem}_map.png", "image/png", on_click="ignore")
middle.download_button("Download tiles (CSV)", result.csv_text(), f"{stem}_tiles.csv", "text/csv", on_click="ignore")
report_html = lambda: region_report(result, map_rgb, which, state["suspicious"], image_name, models).html()
right.download_button("Download case report (HTML)", report_html, f"{stem}_report.html", "text/html",
                      on_click="ignore")  # built on download: it encodes every image, which no rerun needs
st.text(f"Scored: {image_name}")
