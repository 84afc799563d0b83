"""Plotly figures and tables for the app, built from predictions and metrics files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .classes import display_name
from .inference import ModelPrediction

PROTOCOL_LABELS = {"grouped": "Grouped by family (honest)", "random": "Random tiles (leaky, as published)"}


def probability_chart(prediction: ModelPrediction) -> go.Figure:
    names = [display_name(c) for c in prediction.probabilities]
    values = list(prediction.probabilities.values())
    colours = ["#1f77b4" if c != prediction.predicted else "#d62728" for c in prediction.probabilities]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker_color=colours,
                           text=[f"{v:.1%}" for v in values], textposition="auto"))
    fig.update_layout(xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(autorange="reversed"),
                      height=180, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def confusion_heatmap(metrics: dict, normalised: bool) -> go.Figure:
    counts = np.asarray(metrics["confusion_matrix"], dtype=float)
    names = [display_name(c) for c in metrics["class_names"]]
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalised else counts
    text = [[f"{v:.1%}" if normalised else f"{int(v)}" for v in row] for row in values]
    fig = go.Figure(go.Heatmap(z=values, x=names, y=names, text=text, texttemplate="%{text}", colorscale="Blues",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(xaxis_title="Predicted", yaxis_title="True", yaxis=dict(autorange="reversed"),
                      height=380, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def training_curves(metrics: dict) -> go.Figure:
    history = metrics["history"]
    epochs = list(range(1, len(history["loss"]) + 1))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"))
    for column, key in ((1, "accuracy"), (2, "loss")):
        for prefix, label, dash in (("", "train", "solid"), ("val_", "validation", "dash")):
            fig.add_trace(go.Scatter(x=epochs, y=history[prefix + key], name=f"{label} {key}", line=dict(dash=dash)),
                          row=1, col=column)
    fig.update_xaxes(title_text="Epoch")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def roc_chart(metrics: dict) -> go.Figure:
    fig = go.Figure()
    for name, curve in metrics["roc_curves"].items():
        auc = metrics["roc_auc"].get(name)
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], name=f"{display_name(name)} (AUC {auc:.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", line=dict(dash="dot", color="grey")))
    fig.update_layout(xaxis_title="False positive rate", yaxis_title="True positive rate", height=380,
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def leakage_gap_chart(by_protocol: dict[str, dict]) -> go.Figure:
    """Accuracy and macro-F1 with 95% CIs, grouped vs random split, for one model."""
    fig = go.Figure()
    for protocol, metrics in by_protocol.items():
        values = [metrics["accuracy"], metrics["macro_f1"]]
        lows = [metrics["accuracy_ci95"][0], metrics["macro_f1_ci95"][0]]
        highs = [metrics["accuracy_ci95"][1], metrics["macro_f1_ci95"][1]]
        fig.add_trace(go.Bar(
            x=["Accuracy", "Macro F1"], y=values, name=PROTOCOL_LABELS.get(protocol, protocol),
            text=[f"{v:.1%}" for v in values], textposition="inside",
            error_y=dict(type="data", symmetric=False, array=np.subtract(highs, values), arrayminus=np.subtract(values, lows)),
        ))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.05], tickformat=".0%"), height=340,
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def classification_report_table(metrics: dict) -> pd.DataFrame:
    report = metrics["classification_report"]
    rows = [
        {"Class": display_name(name), "Precision": report[name]["precision"], "Recall": report[name]["recall"],
         "F1": report[name]["f1-score"], "Support": int(report[name]["support"])}
        for name in metrics["class_names"]
    ]
    for key, label in (("macro avg", "Macro average"), ("weighted avg", "Weighted average")):
        rows.append({"Class": label, "Precision": report[key]["precision"], "Recall": report[key]["recall"],
                     "F1": report[key]["f1-score"], "Support": int(report[key]["support"])})
    return pd.DataFrame(rows)
