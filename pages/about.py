import streamlit as st

from lungfake.classes import CLASSES
from lungfake.errors import LungfakeError
from lungfake.reports.charts import PROTOCOL_LABELS
from lungfake.reports.model_card import model_card_facts, model_recipe_sentence, overlay_sentence
from pages.common import DISCLAIMER, enter_page

enter_page()
st.title("About lungfake / model card")
st.warning(DISCLAIMER)
try:
    facts = model_card_facts()
except LungfakeError as exc:
    st.error(str(exc))
    st.stop()

st.header("The data")
st.markdown(
    "LC25000 (Borkowski et al., 2019) holds 5,000 H&E tiles for each of three lung classes: "
    + ", ".join(f"**{c.display_name}**" for c in CLASSES)
    + ". Each class was made from only 250 original tiles, each turned into about 20 copies by rotations "
    "(up to 25 degrees) and flips. A random split therefore tests on copies of training tiles, which is how "
    "published papers reach 99%."
)
st.markdown(
    f"lungfake finds these families itself: SIFT keypoints on each tile and its mirror image, candidates by "
    f"visual-word retrieval, and a RANSAC similarity fit that must carry at least 8 keypoints of one tile onto "
    f"the other, so copies turned by any angle, mirrored or magnified up to 2.5x are found "
    f"(`benchmarks/family_recall.py` measures it). The split's audit also looks up every validation and test "
    f"tile's keypoints among all training keypoints of its class, so that a strongly magnified copy, which "
    f"shares few visual words with its original, is still checked. It found **{facts['families_total']}** families "
    f"({', '.join(f'{n} {c}' for c, n in facts['families_per_class'].items())}). "
    "All headline numbers come from a split that keeps every family on one side of train/validation/test "
    f"(70/20/10). On it, {facts['grouped_test_duplicates']}."
)
for warning in facts["split_warnings"]:
    st.warning(warning, icon=":material/history:")

st.header("The models")
for entry, metrics in facts["models"]:
    st.markdown(f"**{entry.display_name}**: {model_recipe_sentence(entry)}")
    st.markdown("\n".join(
        f"- {PROTOCOL_LABELS[protocol]}: accuracy {m.accuracy:.1%} (95% CI {m.accuracy_ci95[0]:.1%}-"
        f"{m.accuracy_ci95[1]:.1%}), cancer-vs-benign {m.binary_accuracy:.1%}, on {m.n_test} test tiles."
        for protocol, m in metrics.items()))
    st.markdown(overlay_sentence(entry, metrics.get("grouped")))
if facts["ensemble"]:
    st.markdown(f"**Ensemble**: {facts['ensemble']}")
if facts["subtype"]:
    st.markdown(f"**The verdict** (what the pages lead with: cancer vs benign, then the subtype): {facts['subtype']}")

st.header("On other labs' tissue")
if facts["external"]:
    st.markdown("\n".join(f"- {sentence}" for sentence in facts["external"]))
    st.markdown("Cancer vs benign is what holds on other labs' tissue; the subtype is the weak point, which is why the "
                "pages lead with cancer vs benign and withhold the subtype when it cannot be trusted.")
else:
    st.markdown("No figures on other labs' images are committed yet (`python -m lungfake evaluate --external DIR`).")

st.header("Intended use")
st.markdown(
    "Education and research: to show what convolutional networks pick up in lung H&E tiles, how class-activation "
    "overlays (Grad-CAM, Score-CAM) localise it, and how much a leaky split inflates reported accuracy. It is for "
    "clinicians and reviewers exploring the method, not for patients."
)
st.header("Limitations")
st.markdown(
    "- One dataset, one centre, 250 original tiles per class: performance on other labs, stains and scanners rests on "
    "a handful of outside images (above), far too few to be sure of.\n"
    "- Tiles only: no whole-slide context; other lung pathology (small cell carcinoma, metastases, inflammation) "
    "was never shown to the models and will be forced into one of three classes.\n"
    "- Tiles are resized to the model's input size; the region page cuts tiles of LC25000's field of view, "
    "estimated at about 184 um from its nucleus sizes (LC25000 does not record its magnification). A tile whose "
    "nuclei look larger than LC25000's is first shrunk part of the way to its scale (at most to 0.6x); one whose "
    "nuclei look smaller is not enlarged, which cost cancer-vs-benign accuracy on tissue drawn as other labs show it. "
    "The nuclear-size estimate is rough, so this narrows a magnification gap, it does not close it.\n"
    "- Two warnings: an image that is not lung H&E tissue (photographs, documents, blank or noise images, other "
    "stains) is refused; H&E tissue unlike LC25000's (another lab's colours or magnification) is scored with an "
    "amber caution, because the robustness figures on the dashboard show what such changes cost. Neither can "
    "tell an unseen lung disease from the three classes the models know.\n"
    "- Telling adenocarcinoma from squamous cell carcinoma on unseen originals is the hardest part; see the confusion "
    "matrix. The errors cluster in a few original fields (the error browser lists them by family): LC25000 gives every "
    "field its slide's diagnosis, and some fields do not show it, such as a solid sheet of tumour cells without glands "
    "labelled adenocarcinoma.\n"
    "- An overlay shows where evidence for the predicted class was found, cell by cell (its caption gives the cells); "
    "it is not a segmentation.\n"
    f"- **Colour confound.** {facts['colour_confound']}"
)
