"""Comparing models and baselines from their metrics files: what they learned, which differ, who beats colour."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from lungfake.evaluation.baselines import BASELINES
from lungfake.evaluation.metrics import EvaluationMetrics

COLOUR_NEUTRAL_TARGET = 0.95
ACCURACY_TARGET, ENSEMBLE_ACCURACY_TARGET = 0.975, 0.98  # the model issue's, on the grouped test tiles


def _accuracy(metrics: EvaluationMetrics | None) -> dict | None:
    return {"value": metrics.accuracy, "ci95": metrics.accuracy_ci95} if metrics else None


def in_display_order(archs) -> list[str]:
    """The served models first (by name), then the ensemble, then the baselines: what a reader looks for first."""
    return sorted(set(archs), key=lambda a: (a in BASELINES, a == "ensemble", a))


def detail_choices(metrics: dict[tuple[str, str], EvaluationMetrics]) -> dict[str, str]:
    """Display name -> arch of every model, the ensemble and every baseline, in display order."""
    names = {arch: m.display_name for (arch, _), m in metrics.items()}
    return {names[arch]: arch for arch in in_display_order(names)}


def training_sentence(metrics: EvaluationMetrics) -> str:
    """How long a model trained (wall and, where recorded, CPU minutes) and the size it is served at."""
    if metrics.history is None:
        return ""
    cpu = metrics.train_cpu_minutes
    return (f"Trained for {len(metrics.history['loss'])} epochs in {metrics.train_minutes} minutes"
            + (f" ({cpu} CPU minutes)" if cpu else "") + f"; served at {metrics.input_size} px.")


def accuracy_target_sentence(metrics: EvaluationMetrics) -> str:
    """Whether a served model (or the ensemble) reaches the model issue's grouped test accuracy; "" for baselines."""
    if metrics.is_baseline or metrics.protocol != "grouped":
        return ""
    target = ENSEMBLE_ACCURACY_TARGET if metrics.is_ensemble else ACCURACY_TARGET
    verdict = "met" if metrics.accuracy >= target else "NOT met"
    return f" Accuracy target {target:.1%} on these tiles: {verdict}."


def agreement_sentence(metrics: EvaluationMetrics) -> str:
    """For the ensemble: how often all its members agree on the test tiles, and how often they are then right."""
    agree = metrics.all_members_agree
    if not agree:
        return ""
    return (f"Its {len(metrics.members or [])} members agree on {agree['share']:.1%} of the test tiles and are "
            f"then right on {agree['accuracy_when_agreeing']:.1%} of them; the rest is where a disagreement banner shows.")


def learned_rows(metrics: dict[tuple[str, str], EvaluationMetrics]) -> list[dict]:
    """One row per model or baseline: accuracy on each protocol and colour-neutral, for the chart."""
    rows = []
    for arch in in_display_order(a for a, _ in metrics):
        grouped, random = metrics.get((arch, "grouped")), metrics.get((arch, "random"))
        shown = grouped or random
        rows.append({"arch": arch, "name": shown.display_name, "grouped": _accuracy(grouped), "random": _accuracy(random),
                     "colour_neutral": grouped.colour_neutral_accuracy if grouped else None})
    return rows


def colour_verdicts(metrics: dict[tuple[str, str], EvaluationMetrics]) -> list[str]:
    """Plain sentences: does each model beat the colour baseline, and keep its accuracy without colour?"""
    colour = metrics.get(("baseline_colour", "grouped"))
    sentences = []
    for arch in in_display_order(a for a, p in metrics if p == "grouped" and not metrics[(a, p)].is_baseline):
        m = metrics[(arch, "grouped")]
        parts = []
        if colour is not None:
            low = m.accuracy_ci95[0]
            beats = low > colour.accuracy
            parts.append(f"the lower end of its 95% interval ({low:.1%}) is {'above' if beats else 'NOT above'} "
                         f"the colour baseline's {colour.accuracy:.1%}")
        neutral = m.colour_neutral_accuracy
        if neutral is not None:
            kept = neutral["value"] >= COLOUR_NEUTRAL_TARGET
            parts.append(f"on colour-neutral tiles it scores {neutral['value']:.1%} "
                         f"({'meets' if kept else 'MISSES'} the {COLOUR_NEUTRAL_TARGET:.0%} target)")
        else:
            parts.append("its colour-neutral accuracy has not been measured")
        sentences.append(f"**{m.display_name}**: " + "; ".join(parts) + ".")
    return sentences


def mcnemar_table(metrics: dict[tuple[str, str], EvaluationMetrics], protocol: str = "grouped") -> pd.DataFrame:
    """Exact McNemar test between every pair of models (ensemble included) on the same test tiles: how often
    each is right where the other is wrong, and the two-sided p-value (binomial test on those discordant tiles)."""
    models = {m.display_name: m for (_, p), m in sorted(metrics.items()) if p == protocol and not m.is_baseline}
    rows = []
    for a, b in itertools.combinations(models, 2):
        truth = np.asarray(models[a].true_labels)
        if not np.array_equal(truth, np.asarray(models[b].true_labels)):
            continue  # evaluated on different tiles: not comparable
        pred_a, pred_b = np.asarray(models[a].predictions), np.asarray(models[b].predictions)
        right_a, right_b = pred_a == truth, pred_b == truth
        only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
        p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        rows.append({"Model A": a, "Model B": b, "A right, B wrong": only_a, "B right, A wrong": only_b,
                     "Predictions differ": int((pred_a != pred_b).sum()), "McNemar exact p": float(p)})
    return pd.DataFrame(rows)


def leak_sentence(metrics: dict[tuple[str, str], EvaluationMetrics]) -> str:
    """What the grouped-vs-random comparison shows, in numbers, from the memoriser and the models."""
    memoriser = {p: metrics.get(("baseline_copy_lookup", p)) for p in ("grouped", "random")}
    if not all(memoriser.values()):
        return ("The copy-lookup memoriser has not been evaluated on both protocols yet "
                "(python -m lungfake evaluate --arch baselines), so this page makes no claim about the leak.")
    g, r = memoriser["grouped"].accuracy, memoriser["random"].accuracy
    text = (f"A memoriser that only looks up each test tile's closest training tile and copies its class scores "
            f"**{r:.1%}** on the random split and **{g:.1%}** on the grouped split. ")
    if r > g:
        text += (f"That gap of {r - g:.1%} is what copies of training tiles in the test set are worth: a random split "
                 "rewards memorising; the grouped split, which keeps every family on one side, does not. ")
    else:
        text += "On these splits the memoriser gains nothing from the random split. "
    cnns = [(m.display_name, m.accuracy, metrics[(a, "random")].accuracy) for (a, p), m in sorted(metrics.items())
            if p == "grouped" and (a, "random") in metrics and not m.is_baseline]
    for name, grouped_acc, random_acc in cnns:
        text += f"{name}: {grouped_acc:.1%} grouped, {random_acc:.1%} random. "
    return text


def robustness_by_model(metrics: dict[tuple[str, str], EvaluationMetrics]) -> dict[str, dict[str, float]]:
    """Display name -> {shift: accuracy} of every model and baseline with a grouped robustness table, in display order."""
    grouped = {arch: m for (arch, p), m in metrics.items() if p == "grouped" and m.robustness is not None}
    return {grouped[arch].display_name: grouped[arch].robustness["accuracy"] for arch in in_display_order(grouped)}


def domain_shift_caution(metrics: dict[tuple[str, str], EvaluationMetrics]) -> str:
    """What the robustness table says about tissue unlike LC25000's: the largest accuracy drop any served
    model (or the ensemble) shows under one simulated change, on the grouped test tiles."""
    drops = []
    for (_arch, protocol), m in metrics.items():
        table = m.robustness["accuracy"] if protocol == "grouped" and m.robustness else None
        if table:
            worst = min((name for name in table if name != "clean"), key=table.get)
            drops.append((table["clean"] - table[worst], m.display_name, worst))
    if not drops:
        return "No robustness figures are committed, so how much accuracy such a change costs is not known."
    drop, name, shift = max(drops)
    return (f"On LC25000 test tiles changed one way at a time (stain amounts, another lab's colours, gamma, blur, JPEG, "
            f"magnification 0.6x/1.6x), the largest loss was {drop:.1%} ({name}, {shift}); real tissue from another lab "
            "combines several changes and may cost more. See the dashboard's robustness section.")


def external_sentences(metrics: dict[tuple[str, str], EvaluationMetrics]) -> list[str]:
    """What the committed figures say about other labs' tissue, in plain sentences with n and 95% intervals (empty when
    evaluate found no external images)."""
    ensemble = metrics.get(("ensemble", "grouped"))
    external = ensemble.external if ensemble else None
    if not external or not external.get("images"):
        return []

    def figure(part: dict) -> str:
        low, high = part["ci95"]
        return f"{part['right']} of {part['n']} ({low:.0%}-{high:.0%})"

    n, sources = external["images"], len(external["sources"])
    labels = ", ".join(f"{count} {name}" for name, count in sorted(external["labels"].items()))
    names = {arch: metrics[(arch, "grouped")].display_name for arch in external["models"] if (arch, "grouped") in metrics}
    names["ensemble"] = "the ensemble"
    verdict = external.get("verdict") or {}
    sentences = [
        f"Measured on only {n} labelled images from {sources} outside source{'s' if sources > 1 else ''} ({labels}; folder "
        f"`{external.get('folder', '')}`), never used to train or tune anything: every figure has a wide 95% interval, shown "
        "in brackets.",
        "Cancer vs benign: " + "; ".join(f"{names[a]} {figure(m['cancer_vs_benign'])}" for a, m in external["models"].items()
                                         if a in names) + ".",
        "Three classes: " + "; ".join(f"{names[a]} {figure(m['accuracy'])}" for a, m in external["models"].items()
                                      if a in names) + ".",
        f"The screen called {external['domain_shift_rate']['right']} of {n} unlike LC25000's tissue and refused "
        f"{external['ood_rate']['right']}.",
    ]
    if verdict.get("images"):
        accuracy = verdict["called_accuracy"]
        sentences.append(f"The subtype was marked uncertain on {verdict['subtype_uncertain']} of {n}; the verdicts given "
                         f"(benign or a subtype) were right on {verdict['called_right']} of {verdict['called']}"
                         + (f" ({accuracy:.0%})." if accuracy is not None else "."))
    return sentences


PRECISE_SUFFIX = ", on request"  # the name of a model's precise overlay in tables: "ResNet50, on request"


def overlay_figures(metrics: dict[tuple[str, str], EvaluationMetrics]) -> dict[str, object]:
    """Display name -> each served model's overlay figures on grouped test tiles (faithfulness.Faithfulness), in
    display order, for the models where `python -m lungfake explanations` measured them; then, named with
    PRECISE_SUFFIX, those of the precise overlays offered on request."""
    grouped = {arch: m for (arch, p), m in metrics.items() if p == "grouped" and m.explanation_figures("test") is not None}
    order = in_display_order(grouped)
    figures = {grouped[arch].display_name: grouped[arch].explanation_figures("test") for arch in order}
    figures.update({grouped[arch].display_name + PRECISE_SUFFIX: grouped[arch].precise_explanation_figures("test")
                    for arch in order if grouped[arch].precise_explanation_figures("test") is not None})
    return figures


def overlay_table(figures: dict[str, object]) -> pd.DataFrame:
    """One row per model: its overlay method and every faithfulness figure on grouped test tiles."""
    from lungfake.explain.faithfulness import RANDOMISATION_LIMIT
    from lungfake.serving.registry import METHOD_LABELS

    rows = []
    for name, f in figures.items():
        spearman = f.randomisation_spearman
        rows.append({
            "Model": name, "Overlay": METHOD_LABELS.get(f.method, f.method), "Cells": f"{f.cells}x{f.cells}",
            "Top fifth vs random fifth": f.ratio_text,
            "Top fifth vs another tile's": f.other_tile_text,
            "Top fifth vs smooth random": f.smooth_random_text,
            "Likeness to the mean map": f.mean_map_text,
            "Deletion margin": f.deletion_margin_text,
            "Insertion margin": f"{f.insertion_margin:+.3f}",
            "Peak in outer eighth": f"{f.border_peak_share:.0%}",
            "Randomised top: rank correlation": "not measured" if spearman is None else
            f"{spearman:.2f} ({'passes' if spearman <= RANDOMISATION_LIMIT else 'fails'})",
            "ms per map": round(f.milliseconds_per_map),
            "Shown as evidence": "yes" if f.is_evidence else "no: behind a caution",
        })
    return pd.DataFrame(rows)


def overlay_sentences(figures: dict[str, object]) -> list[str]:
    """What the overlay figures mean, in plain sentences (the tiles, what passing takes, who fails)."""
    if not figures:
        return []
    sample = next(iter(figures.values()))
    sentences = [
        f"Measured on {sample.tiles} grouped test tiles from {sample.families} families (95% intervals from a bootstrap "
        "over families); each model's method was chosen on validation tiles. Pixels are replaced by a blurred copy of "
        "the tile, the most highlighted first (deletion), and compared with random maps of the same resolution.",
        "An overlay is shown as evidence only if blurring its highlighted fifth lowers the model's confidence at least "
        "twice as much as blurring a random fifth (its deletion margin's interval above zero), and it is specific to "
        "the tile: at least twice as much as blurring the fifth another tile's map highlights and twice as much as a "
        "random map as smooth as it (both intervals above 1), its maps correlate at most 0.5 with the model's mean map "
        "and peak in the outer eighth on at most half the tiles. Otherwise the app shows a caution and the map only on "
        "request: a map that is much the same blob on every tile says where the model tends to look, not what it found.",
        "The randomisation check re-initialises each model's last block and head: an overlay that hardly changes "
        "(rank correlation above 0.5) shows the image, not the model. The outer eighth is 44% of the tile.",
    ]
    failing = [name for name, f in figures.items() if not f.is_evidence]
    if failing:
        sentences.append(f"Not evidence on these tiles: {', '.join(failing)}.")
    return sentences
