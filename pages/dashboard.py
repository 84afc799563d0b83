import streamlit as st

from lungfake.errors import LungfakeError
from lungfake.evaluation.calibration_fitting import ece_interval_text
from lungfake.evaluation.comparison import (
    accuracy_target_sentence,
    agreement_sentence,
    colour_verdicts,
    detail_choices,
    external_sentences,
    leak_sentence,
    learned_rows,
    mcnemar_table,
    overlay_figures,
    overlay_sentences,
    overlay_table,
    robustness_by_model,
    training_sentence,
)
from lungfake.evaluation.evaluator import load_all_metrics, split_warning
from lungfake.reports.charts import (
    PROTOCOL_LABELS,
    ROBUSTNESS_TARGET_POINTS,
    classification_report_table,
    confusion_heatmap,
    deletion_curves_chart,
    external_chart,
    reliability_chart,
    robustness_chart,
    roc_chart,
    training_curves,
    what_was_learned_chart,
)
from pages.common import enter_page

enter_page()
st.title("Evaluation dashboard")
try:
    metrics = load_all_metrics()
except LungfakeError as exc:
    st.error(str(exc))
    st.stop()
if not metrics:
    st.error("No metrics files in weights/metrics; run `python -m lungfake evaluate` to create them.")
    st.stop()
for warning in filter(None, (split_warning(m) for m in metrics.values())):
    st.warning(warning, icon=":material/history:")

st.header("What the models learned")
st.plotly_chart(what_was_learned_chart(learned_rows(metrics)), key="learned")
st.markdown(
    "LC25000's three classes were photographed so that each has its own colour. The **colour baseline** classifies "
    "a tile from six numbers (the mean and spread of its CIELAB colour) and never looks at tissue; "
    "**colour-neutral** accuracy re-scores each model after every test tile's colour statistics are matched to "
    "the training set's, so that only the tissue differs. A model that learned morphology loses little there."
)
for sentence in colour_verdicts(metrics):
    st.markdown(f"- {sentence}")
st.markdown(leak_sentence(metrics))

st.header("One model in detail")
names = detail_choices(metrics)
arch = names[st.selectbox("Model or baseline", list(names))]
protocols = {PROTOCOL_LABELS[p]: p for p in PROTOCOL_LABELS if (arch, p) in metrics}
m = metrics[(arch, protocols[st.radio("Split protocol", list(protocols), horizontal=True)])]
scaled = f"; probabilities after temperature scaling ({m.temperature:.2f})" if m.temperature is not None else ""
st.caption(f"{m.n_test} held-out test tiles from {m.n_test_families} families; 95% intervals from a bootstrap "
           f"over families{scaled}. {training_sentence(m)}{agreement_sentence(m)}"
           f"{accuracy_target_sentence(m)}")
cols = st.columns(6)
cols[0].metric("Accuracy", f"{m.accuracy:.1%}", f"{m.accuracy_ci95[0]:.1%} to {m.accuracy_ci95[1]:.1%}",
               delta_color="off", delta_arrow="off")
cols[1].metric("Macro F1", f"{m.macro_f1:.3f}", f"{m.macro_f1_ci95[0]:.3f} to {m.macro_f1_ci95[1]:.3f}",
               delta_color="off", delta_arrow="off")
cols[2].metric("Cancer vs benign", f"{m.binary_accuracy:.1%}")
cols[3].metric("Sensitivity", f"{m.binary_sensitivity:.1%}")
cols[4].metric("Specificity", f"{m.binary_specificity:.1%}")
cols[5].metric("ECE", f"{m.expected_calibration_error:.3f}",
               f"{m.expected_calibration_error_uncalibrated:.3f} before" if m.expected_calibration_error_uncalibrated is not None else None,
               delta_color="off", delta_arrow="off", help=ece_interval_text(m))

st.dataframe(classification_report_table(m), hide_index=True,
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("Precision", "Recall", "F1")})
left, right = st.columns(2)
with left:
    st.subheader("Confusion matrix")
    st.plotly_chart(confusion_heatmap(m, st.toggle("Row-normalised (recall per true class)")), key="confusion")
    st.page_link("pages/error_browser.py", label="See the tiles behind any cell in the error browser", icon=":material/image_search:")
with right:
    st.subheader("ROC curves (one vs rest)")
    st.plotly_chart(roc_chart(m), key="roc")
if m.reliability is not None:
    st.subheader("Reliability: is a 90% answer right 90% of the time?")
    st.plotly_chart(reliability_chart(m), key="reliability")
    if m.low_confidence is not None:
        lc = m.low_confidence
        st.caption(f"The app warns below {lc['threshold']:.1%} confidence, chosen on validation tiles: above it, "
                   f"{lc['val_coverage']:.0%} of them, {lc['val_accuracy']:.1%} right.")
if m.history is not None:
    st.subheader("Training curves")
    st.plotly_chart(training_curves(m), key="curves")

robust = robustness_by_model(metrics)
if robust:
    st.header("Robustness: the grouped test tiles under one change at a time")
    st.plotly_chart(robustness_chart(robust), key="robustness")
    sample = next(mm.robustness for mm in metrics.values() if mm.robustness is not None)
    st.caption(f"Change in accuracy against the same {sample['tiles']} tiles unchanged (one grouped test tile "
               f"in {sample['every']}), in points; hover for the accuracies. A shift may cost at most "
               f"{ROBUSTNESS_TARGET_POINTS} points.")
other_labs = external_sentences(metrics)
if other_labs:
    st.header("On other labs' tissue")
    external = metrics[("ensemble", "grouped")].external
    names = {arch: metrics[(arch, "grouped")].display_name for arch in external["models"] if (arch, "grouped") in metrics}
    st.plotly_chart(external_chart(external, {**names, "ensemble": "Ensemble"}), key="external")
    st.markdown("\n".join(f"- {sentence}" for sentence in other_labs))
overlays = overlay_figures(metrics)
if overlays:
    st.header("Can the overlays be trusted?")
    st.plotly_chart(deletion_curves_chart(overlays), key="overlays")
    st.dataframe(overlay_table(overlays), hide_index=True)
    st.markdown("\n".join(f"- {sentence}" for sentence in overlay_sentences(overlays)))
table = mcnemar_table(metrics)
if len(table):
    st.header("Do the models differ? (exact McNemar test, grouped test tiles)")
    st.dataframe(table, hide_index=True, column_config={"McNemar exact p": st.column_config.NumberColumn(format="%.3g")})
