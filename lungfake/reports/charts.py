"""Plotly figures and tables for the app, built from predictions and metrics files."""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lungfake.classes import colour_of, display_name
from lungfake.evaluation.metrics import EvaluationMetrics

PROTOCOL_LABELS = {"grouped": "Grouped by family (honest)", "random": "Random tiles (leaky, as published)"}


def probability_chart(prediction) -> go.Figure:
    """A bar per class of one model's calibrated probabilities (a scoring.ModelScore): its prediction in the class's
    colour, as on the region map, the others grey (red marked the prediction even when it was benign tissue)."""
    names = [display_name(c) for c in prediction.probabilities]
    values = list(prediction.probabilities.values())
    colours = [colour_of(c) if c == prediction.predicted else "#9e9e9e" for c in prediction.probabilities]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker_color=colours,
                           text=[f"{v:.1%}" for v in values], textposition="auto"))
    fig.update_layout(xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(autorange="reversed"),
                      height=180, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def confusion_heatmap(metrics: EvaluationMetrics, normalised: bool) -> go.Figure:
    counts = np.asarray(metrics.confusion_matrix, dtype=float)
    # Wrapped: side by side under the matrix, the full names overlap.
    names = ["<br>".join(textwrap.wrap(display_name(c), 16)) for c in metrics.class_names]
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalised else counts
    text = [[f"{v:.1%}" if normalised else f"{int(v)}" for v in row] for row in values]
    fig = go.Figure(go.Heatmap(z=values, x=names, y=names, text=text, texttemplate="%{text}", colorscale="Blues",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(xaxis_title="Predicted", yaxis_title="True", yaxis=dict(autorange="reversed"),
                      height=380, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def training_curves(metrics: EvaluationMetrics) -> go.Figure:
    history = metrics.history
    epochs = list(range(1, len(history["loss"]) + 1))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"))
    for column, key in ((1, "accuracy"), (2, "loss")):
        for prefix, label, dash in (("", "train", "solid"), ("val_", "validation", "dash")):
            fig.add_trace(go.Scatter(x=epochs, y=history[prefix + key], name=f"{label} {key}", line=dict(dash=dash)),
                          row=1, col=column)
    fig.update_xaxes(title_text="Epoch")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def roc_chart(metrics: EvaluationMetrics) -> go.Figure:
    fig = go.Figure()
    for name, curve in metrics.roc_curves.items():
        auc = metrics.roc_auc.get(name)
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], name=f"{display_name(name)} (AUC {auc:.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", line=dict(dash="dot", color="grey")))
    fig.update_layout(xaxis_title="False positive rate", yaxis_title="True positive rate", height=380,
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def classification_report_table(metrics: EvaluationMetrics) -> pd.DataFrame:
    report = metrics.classification_report
    rows = [
        {"Class": display_name(name), "Precision": report[name]["precision"], "Recall": report[name]["recall"],
         "F1": report[name]["f1-score"], "Support": int(report[name]["support"])}
        for name in metrics.class_names
    ]
    for key, label in (("macro avg", "Macro average"), ("weighted avg", "Weighted average")):
        rows.append({"Class": label, "Precision": report[key]["precision"], "Recall": report[key]["recall"],
                     "F1": report[key]["f1-score"], "Support": int(report[key]["support"])})
    return pd.DataFrame(rows)


def _interval_bar(fig: go.Figure, names: list[str], values: list[float], intervals: list[list[float]], label: str,
                  colour: str) -> None:
    lows = [v - lo for v, (lo, _) in zip(values, intervals)]
    highs = [hi - v for v, (_, hi) in zip(values, intervals)]
    fig.add_trace(go.Bar(x=["<br>".join(textwrap.wrap(n, 14)) for n in names], y=values, name=label, marker_color=colour,
                         text=[f"{v:.1%}" for v in values], textposition="inside", insidetextanchor="start", textangle=0,
                         customdata=intervals, hovertemplate=label + ": %{y:.1%} (95% interval %{customdata[0]:.1%} to "
                         "%{customdata[1]:.1%})<extra></extra>",
                         error_y=dict(type="data", symmetric=False, array=highs, arrayminus=lows)))


def what_was_learned_chart(rows: list[dict]) -> go.Figure:
    """Accuracy with 95% intervals of each model and baseline: grouped, random and grouped colour-neutral.
    rows: {"name", "grouped", "random", "colour_neutral"}, each a metrics-like {"value", "ci95"} or None."""
    fig = go.Figure()
    series = (("grouped", "Grouped split (honest)", "#1f4e99"), ("random", "Random split (leaky)", "#9ab8e0"),
              ("colour_neutral", "Grouped, colour-neutral tiles", "#2a9d8f"))
    for key, label, colour in series:
        present = [r for r in rows if r.get(key)]
        if present:
            _interval_bar(fig, [r["name"] for r in present], [r[key]["value"] for r in present],
                          [r[key]["ci95"] for r in present], label, colour)
    fig.add_hline(y=1 / 3, line_dash="dot", line_color="grey", annotation_text="chance")
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.05], tickformat=".0%", title="3-class accuracy"),
                      height=440, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                      uniformtext=dict(minsize=9, mode="show"), xaxis=dict(tickangle=0))
    return fig


def reliability_chart(metrics: EvaluationMetrics) -> go.Figure:
    """Accuracy against confidence, before and after temperature scaling."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="perfect calibration", line=dict(dash="dot", color="grey")))
    temperature = metrics.temperature if metrics.temperature is not None else 1.0
    for curve, label in ((metrics.reliability_uncalibrated, "uncalibrated"), (metrics.reliability, f"temperature {temperature:.2f}")):
        if curve is not None:
            fig.add_trace(go.Scatter(x=curve["confidence"], y=curve["accuracy"], name=label, mode="lines+markers"))
    fig.update_layout(xaxis=dict(title="Confidence (predicted class)", range=[0, 1.02]),
                      yaxis=dict(title="Accuracy", range=[0, 1.02]), height=360, margin=dict(l=10, r=10, t=30, b=10))
    return fig


ROBUSTNESS_TARGET_POINTS = 5  # the model issue's bound: no single shift may cost more


def robustness_chart(by_model: dict[str, dict]) -> go.Figure:
    """Each named shift's change in accuracy against the clean tiles, in points: shifts (rows) by models
    (columns), red for a loss, full red at the bound a shift may cost. Accuracy itself sits near 95%
    everywhere, which bars on a 0-100% axis flatten into one length."""
    names = list(by_model)
    shifts = [s for s in next(iter(by_model.values()), {}) if s != "clean"]
    change = [[100 * (by_model[n][s] - by_model[n]["clean"]) for n in names] for s in shifts]
    accuracy = [[[by_model[n][s], by_model[n]["clean"]] for n in names] for s in shifts]
    fig = go.Figure(go.Heatmap(
        z=change, x=["<br>".join(textwrap.wrap(n, 18)) for n in names], y=shifts, customdata=accuracy,
        text=[[f"{c:+.1f}" for c in row] for row in change], texttemplate="%{text}",
        colorscale="RdBu", zmid=0, zmin=-ROBUSTNESS_TARGET_POINTS, zmax=ROBUSTNESS_TARGET_POINTS,
        colorbar=dict(title="points"),
        hovertemplate="%{y}: %{customdata[0]:.1%} against %{customdata[1]:.1%} clean (%{z:+.1f} points)<extra></extra>"))
    fig.update_layout(yaxis=dict(autorange="reversed"), xaxis=dict(side="top"), height=120 + 34 * len(shifts),
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig


def external_chart(external: dict, names: dict[str, str]) -> go.Figure:
    """Each model's and the ensemble's accuracy on other labs' images, three classes and cancer vs benign, with Wilson
    95% intervals (external.external_summary; names: key -> display name)."""
    fig = go.Figure()
    keys = [k for k in names if k in external["models"]]
    for figure, label, colour in (("cancer_vs_benign", "Cancer vs benign", "#2a9d8f"), ("accuracy", "Three classes", "#1f4e99")):
        parts = [external["models"][k][figure] for k in keys]
        _interval_bar(fig, [names[k] for k in keys], [p["value"] for p in parts], [p["ci95"] for p in parts], label, colour)
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.05], tickformat=".0%", title=f"right, of {external['images']} images"),
                      height=380, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                      uniformtext=dict(minsize=9, mode="show"), xaxis=dict(tickangle=0))
    return fig


def deletion_curves_chart(figures: dict[str, object]) -> go.Figure:
    """Each model's mean deletion curve on grouped test tiles (the predicted class's probability as the most highlighted
    pixels are blurred first) against random maps of the same resolution (dashed); figures: display name ->
    faithfulness.Faithfulness. A faithful map's curve falls first."""
    from lungfake.explain.faithfulness import FRACTIONS

    palette = ["#1f4e99", "#e76f51", "#2a9d8f", "#8e44ad", "#e9c46a", "#6c757d", "#264653", "#f4a261"]
    fig = go.Figure()
    for (name, f), colour in zip(figures.items(), palette):
        x = [100 * v for v in FRACTIONS]
        fig.add_trace(go.Scatter(x=x, y=f.deletion_curve, name=f"{name}: its overlay", line=dict(color=colour, width=3),
                                 hovertemplate="%{x:.0f}% blurred: %{y:.1%}<extra>" + name + "</extra>"))
        fig.add_trace(go.Scatter(x=x, y=f.random_deletion_curve, name=f"{name}: random map", line=dict(color=colour, dash="dash"),
                                 hovertemplate="%{x:.0f}% blurred at random: %{y:.1%}<extra>" + name + "</extra>"))
    fig.update_layout(xaxis=dict(title="share of the tile blurred, most highlighted first (%)"),
                      yaxis=dict(title="probability of the predicted class", tickformat=".0%"),
                      height=420, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25))
    return fig
