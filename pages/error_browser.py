import streamlit as st

from lungfake.classes import display_name
from lungfake.data.tiles import optional_data_root
from lungfake.errors import LungfakeError, MetricsError
from lungfake.evaluation.evaluator import served_grouped_metrics
from lungfake.evaluation.metrics import EvaluationMetrics
from lungfake.evaluation.misclassified import TileSource, by_family, cell_rows, held_out_rows
from lungfake.serving.store import WeightsStore
from pages.common import enter_page, scorer, show_overlay

SHOWN = 48


def graded_metrics() -> dict[str, EvaluationMetrics]:
    """Every served model's and the ensemble's grouped metrics on the committed split, by display name."""
    found = served_grouped_metrics()
    if not found:
        raise MetricsError("No metrics of the served models on the committed split; run python -m lungfake evaluate.")
    return found


def busiest_error(m: EvaluationMetrics) -> tuple[int, int]:
    matrix = [row[:] for row in m.confusion_matrix]
    for i in range(len(matrix)):
        matrix[i][i] = -1
    return max(((i, j) for i in range(len(matrix)) for j in range(len(matrix))), key=lambda c: matrix[c[0]][c[1]])


def show_tile(rgb, path: str, source: TileSource) -> None:
    report = scorer().score([rgb], [path], explain=True)[0]
    columns = st.columns(1 + len(report.models))
    columns[0].image(rgb, caption=path + (" (112-px sprite copy)" if source.from_sprite else ""), width="stretch")
    for column, model in zip(columns[1:], report.models.values()):
        with column:
            show_overlay(model, rgb, title=f"{model.name}: ")
        column.write(" / ".join(f"{display_name(c)} {p:.0%}" for c, p in model.probabilities.items()))


enter_page()
st.title("Error browser")
st.caption("Pick a cell of a confusion matrix on the grouped test tiles; see its tiles, then one tile with every "
           "served model's overlay and calibrated probabilities.")
try:
    metrics = graded_metrics()
    name = st.selectbox("Model", list(metrics))
    m = metrics[name]
    rows = held_out_rows(WeightsStore.resolve(), m)
except LungfakeError as exc:
    st.error(str(exc))
    st.stop()
classes = list(m.class_names)
default_true, default_predicted = busiest_error(m)
left, right = st.columns(2)
true_label = left.selectbox("True class", classes, default_true, format_func=display_name)
predicted_label = right.selectbox("Predicted class", classes, default_predicted, format_func=display_name)
chosen = cell_rows(m, rows, true_label, predicted_label)
st.subheader(f"{len(chosen)} test tiles: {display_name(true_label)} called {display_name(predicted_label)} by {name}")
families = by_family(chosen, rows)
if families and true_label != predicted_label:
    st.caption(f"From {len(families)} of {len({r.family for r in rows})} test families (a family is one original field "
               "and its rotated, mirrored and magnified copies): "
               + ", ".join(f"{family} ({n} of its {size} tiles)" for family, n, size in families[:8])
               + (", ..." if len(families) > 8 else "."))

source = TileSource(optional_data_root(), WeightsStore.resolve())
if source.from_sprite:
    st.info("The LC25000 folder is not on this server: thumbnails come from a small committed sprite holding only "
            "the misclassified test tiles (112 px), so correctly classified cells show no pictures.")
tiles = [(row.path, source.tile(row.path)) for row in chosen[:SHOWN]]
tiles = [(path, rgb) for path, rgb in tiles if rgb is not None]
if tiles:
    st.image([rgb for _, rgb in tiles], caption=[path.split("/")[-1] for path, _ in tiles], width=112)
    if len(chosen) > SHOWN:
        st.caption(f"The first {SHOWN} of {len(chosen)} shown.")
    path = st.selectbox("Look closer at", [path for path, _ in tiles])
    show_tile(dict(tiles)[path], path, source)
elif chosen:
    st.write("No pictures of these tiles on this server.")
