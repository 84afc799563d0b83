import streamlit as st

from lungfake.charts import (
    PROTOCOL_LABELS,
    classification_report_table,
    confusion_heatmap,
    leakage_gap_chart,
    roc_chart,
    training_curves,
)
from lungfake.errors import LungfakeError
from lungfake.evaluation import load_all_metrics
from pages.common import route_through_entrypoint

route_through_entrypoint()
st.title("Evaluation dashboard")
try:
    metrics = load_all_metrics()
except LungfakeError as exc:
    st.error(str(exc))
    st.stop()
if not metrics:
    st.error("No metrics files in weights/metrics; run `python -m lungfake evaluate` to create them.")
    st.stop()

archs = {m["display_name"]: arch for (arch, _), m in sorted(metrics.items())}
arch = archs[st.selectbox("Model", list(archs))]
protocols = {PROTOCOL_LABELS[p]: p for p in PROTOCOL_LABELS if (arch, p) in metrics}
protocol = protocols[st.radio("Split protocol", list(protocols), horizontal=True)]
m = metrics[(arch, protocol)]

st.caption(f"{m['n_test']} held-out test tiles from {m['n_test_families']} families; "
           f"95% intervals from a bootstrap over families. Trained for {len(m['history']['loss'])} epochs "
           f"at {m['input_size']} px in {m['train_minutes']} CPU minutes.")
cols = st.columns(5)
cols[0].metric("Accuracy (3-class)", f"{m['accuracy']:.1%}", f"95% CI {m['accuracy_ci95'][0]:.1%}-{m['accuracy_ci95'][1]:.1%}", delta_color="off")
cols[1].metric("Macro F1", f"{m['macro_f1']:.3f}", f"95% CI {m['macro_f1_ci95'][0]:.3f}-{m['macro_f1_ci95'][1]:.3f}", delta_color="off")
cols[2].metric("Cancer vs benign accuracy", f"{m['binary_accuracy']:.1%}")
cols[3].metric("Sensitivity / specificity", f"{m['binary_sensitivity']:.1%} / {m['binary_specificity']:.1%}")
cols[4].metric("Calibration error (ECE)", f"{m['expected_calibration_error']:.3f}")

st.subheader("Classification report")
st.dataframe(classification_report_table(m), hide_index=True,
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("Precision", "Recall", "F1")})
left, right = st.columns(2)
with left:
    st.subheader("Confusion matrix")
    normalised = st.toggle("Row-normalised (recall per true class)")
    st.plotly_chart(confusion_heatmap(m, normalised), key="confusion")
with right:
    st.subheader("ROC curves (one vs rest)")
    st.plotly_chart(roc_chart(m), key="roc")
st.subheader("Training curves")
st.plotly_chart(training_curves(m), key="curves")

st.subheader("The leakage gap: grouped vs random split")
both = {p: metrics[(arch, p)] for p in PROTOCOL_LABELS if (arch, p) in metrics}
if len(both) < 2:
    st.info("Only one protocol has been evaluated for this model; train and evaluate the other to see the gap.")
st.plotly_chart(leakage_gap_chart(both), key="gap")
st.caption("A random split puts rotated copies of one original tile in both train and test, so the test set "
           "rewards memorising. The grouped split keeps every family on one side: its numbers are the honest ones.")
