"""The facts the model card states, read from the committed registry, splits and metrics."""
from __future__ import annotations

import collections
from pathlib import Path

from lungfake.classes import display_name
from lungfake.data.splits import load_split
from lungfake.evaluation.comparison import external_sentences
from lungfake.evaluation.evaluator import load_all_metrics, split_warning
from lungfake.evaluation.metrics import EvaluationMetrics
from lungfake.evaluation.subtype_rule import BUDGET_CONFIDENCE, UNCERTAIN_BUDGET
from lungfake.serving.registry import load_registry
from lungfake.serving.store import WeightsStore


def model_card_facts(folder: Path | None = None) -> dict:
    store = WeightsStore.resolve(folder)
    registry = load_registry(store.root)
    metrics = load_all_metrics(store)
    grouped = load_split(store.split_csv("grouped"))
    families = collections.defaultdict(set)
    for row in grouped:
        families[row.label].add(row.family)
    return {
        "families_per_class": {display_name(label): len(f) for label, f in families.items()},
        "families_total": sum(len(f) for f in families.values()),
        "grouped_test_duplicates": _audit_sentence(store),
        "split_warnings": [w for w in (split_warning(m) for m in metrics.values()) if w],
        "colour_confound": _colour_sentence(metrics),
        "models": [
            (entry, {p: m for (a, p), m in sorted(metrics.items()) if a == arch}) for arch, entry in registry.items()
        ],
        "ensemble": ensemble_sentence(metrics),
        "external": external_sentences(metrics),
        "subtype": subtype_sentence(metrics),
    }


def ensemble_sentence(metrics: dict[tuple[str, str], EvaluationMetrics]) -> str | None:
    """What the ensemble is and how it scores on the grouped test tiles, or None before it is evaluated."""
    from lungfake.evaluation.comparison import agreement_sentence

    m = metrics.get(("ensemble", "grouped"))
    if m is None:
        return None
    low, high = m.accuracy_ci95
    how = ("the mean" if not m.member_weights else "a weighted mean (" + ", ".join(
        f"{metrics[(a, 'grouped')].display_name if (a, 'grouped') in metrics else a} {w:.0%}" for a, w in m.member_weights.items())
        + "; weights fitted on validation tiles by log-loss)")
    return (f"{how} of the {len(m.members or [])} models' calibrated probabilities, then its own temperature "
            f"(T = {m.temperature:.2f}), fitted on validation tiles like theirs. Grouped by family (honest): accuracy "
            f"{m.accuracy:.1%} (95% CI {low:.1%}-{high:.1%}), cancer-vs-benign {m.binary_accuracy:.1%}, on "
            f"{m.n_test} test tiles. " + agreement_sentence(m))


def subtype_sentence(metrics: dict[tuple[str, str], EvaluationMetrics]) -> str | None:
    """How often the verdict withholds the subtype, and how right the verdicts it gives are, on validation and grouped
    test tiles (None before evaluate records it)."""
    m = metrics.get(("ensemble", "grouped"))
    if m is None or not m.subtype or not m.subtype.get("test"):
        return None
    rule, parts = m.subtype["rule"], []
    bound = rule.get("val_uncertain_bound")
    for label, figures in (("validation", m.subtype.get("val")), ("grouped test", m.subtype["test"])):
        if figures:
            unseen = (f" (on unseen families, at most {bound:.1%} with {BUDGET_CONFIDENCE:.0%} confidence)"
                      if label == "validation" and bound is not None else "")
            parts.append(f"on {label} tiles the subtype was withheld on {figures['subtype_uncertain_share']:.1%}{unseen} and the "
                         f"verdicts given were right on {figures['called_accuracy']:.1%} of {figures['called']}")
    return (f"The verdict withholds a carcinoma's subtype where the models disagree on it, where the ensemble's lean between the "
            f"subtypes is under {rule['min_margin']:.2f} (the largest at which, resampling validation families, "
            f"the share withheld stays within {UNCERTAIN_BUDGET:.0%} with {BUDGET_CONFIDENCE:.0%} confidence), "
            f"or, on tissue unlike LC25000's, under {rule['shifted_min_margin']:.2f} (the level at which 99% of the subtype "
            "calls on validation tiles moved by the robustness shifts are right): " + "; ".join(parts) + ".")


def _audit_sentence(store: WeightsStore) -> str:
    import json

    path = store.audit_json("grouped")
    if not path.exists():
        return "the copy audit has not been run"
    report = json.loads(path.read_text())
    return (f"the audit found {report['test']['with_copy_in_train']} of {report['test']['tiles']} test tiles and "
            f"{report['val']['with_copy_in_train']} of {report['val']['tiles']} validation tiles with a copy in train")


def _colour_sentence(metrics: dict[tuple[str, str], EvaluationMetrics]) -> str:
    colour = metrics.get(("baseline_colour", "grouped"))
    if colour is None:
        return ("LC25000's classes differ in colour; the colour baseline has not been evaluated here "
                "(python -m lungfake evaluate --arch baselines).")
    text = (f"LC25000's three classes were photographed so that each has its own colour: a logistic regression on six "
            f"colour numbers per tile (CIELAB mean and spread), which never looks at tissue, scores "
            f"{colour.accuracy:.1%} on the grouped test tiles. A model can reach published accuracy on this data by "
            "learning the colour of each class.")
    neutral = [f"{m.display_name} {m.colour_neutral_accuracy['value']:.1%}" for (_, p), m in sorted(metrics.items())
               if p == "grouped" and m.colour_neutral_accuracy is not None and m.kind == "model"]
    if neutral:
        text += (" With every test tile's colour statistics matched to the training set's (same tissue, neutral colour), "
                 "the served models score: " + ", ".join(neutral) + ".")
    return text


def _sizes_phrase(entry) -> str:
    """At which input sizes it trained (a first size, and the size of its last cycle where that differs) and,
    where it differs from the last, the size it is served at."""
    from lungfake.training.trainer import Recipe

    recipe = Recipe.from_json(entry.recipe) if entry.recipe else None
    first, last = (recipe.train_size, recipe.last_train_size) if recipe else (entry.input_size, entry.input_size)
    phrase = f"at {first}x{first} px"
    if last != first:
        phrase += f", its last {recipe.epochs - max(recipe.restart_epochs)} epochs at {last}x{last} px"
    if entry.input_size != last:
        phrase += f" (served at {entry.input_size}x{entry.input_size} px, the size validation tiles chose)"
    return phrase


def model_recipe_sentence(entry) -> str:
    """How a served model was trained, in one plain sentence, from its registry entry."""
    recipe = entry.recipe
    colour = ("each tile's colour standardised at input (CIELAB, per tile), so the stain's overall colour cannot "
              "decide the class; " if entry.preprocessing == "lab_standardised" else "raw colour at input; ")
    augment = ("augmented in stain space (haematoxylin and eosin amounts and colours), gamma, blur, JPEG, "
               "magnification 0.6-1.6x and any rotation" if "augmentation" in recipe else "flips, rotations and colour jitter")
    restarts = recipe.get("restart_epochs") or []
    peaks = recipe.get("restart_learning_rates") or [None] * len(restarts)  # None: the shared restart rate
    at = [f"{epoch} (peak {peak:g})" if peak else str(epoch) for epoch, peak in zip(restarts, peaks)]
    restart = f", with a warm restart of the learning rate at epoch {', '.join(at)}" if restarts else ""
    cpu = recipe.get("train_cpu_minutes")
    cost = f"{recipe.get('train_minutes')} minutes of training on a 2-core CPU" + (f", {cpu} CPU-minutes" if cpu else "")
    return (f"trained from scratch (no ImageNet weights) {_sizes_phrase(entry)} for {recipe.get('epochs')} "
            f"epochs{restart} ({cost}); {colour}{augment}. Probabilities are "
            f"temperature-scaled on validation tiles (T = {entry.temperature:.2f}).")


def overlay_sentence(entry, metrics: EvaluationMetrics | None) -> str:
    """A served model's overlays (the default one, and the precise one offered on request): method and layer, and what
    each was measured to be worth on grouped test tiles."""
    from lungfake.serving.registry import METHOD_LABELS

    method = f"Overlay: {METHOD_LABELS.get(entry.explanation_method, entry.explanation_method)} on layer `{entry.explanation_layer}`"
    figures = metrics.explanation_figures("test") if metrics is not None else None
    if figures is None:
        return method + "; its faithfulness has not been measured (python -m lungfake explanations)."
    sentence = f"{method}, {_overlay_figures_sentence(figures)}"
    precise = metrics.precise_explanation_figures("test")
    if entry.precise_method and precise is not None:
        sentence += (f" On request, a more precise overlay: {METHOD_LABELS.get(precise.method, precise.method)}, "
                     f"{_overlay_figures_sentence(precise)}")
    return sentence


def _overlay_figures_sentence(figures) -> str:
    low, high = figures.top_fifth_ratio_ci95
    spearman = ("not measured" if figures.randomisation_spearman is None else f"{figures.randomisation_spearman:.2f}")
    return (f"{figures.cells}x{figures.cells} cells, {figures.milliseconds_per_map:.0f} ms a map. On "
            f"{figures.tiles} grouped test tiles, blurring its highlighted fifth lowered confidence "
            f"{figures.top_fifth_ratio:.1f} times (95% CI {low:.1f}-{high:.1f}) as much as a random fifth; deletion margin "
            f"{figures.deletion_margin_text}; "
            f"peak in the outer eighth on {figures.border_peak_share:.0%} of tiles; rank correlation with the map of the "
            f"model with its top block re-initialised {spearman}; against the fifth another tile's map highlights "
            f"{figures.other_tile_text}, against smooth random maps {figures.smooth_random_text}, likeness to the mean "
            f"map {figures.mean_map_text}. "
            + ("Shown as evidence." if figures.is_evidence else "Not shown as evidence: the app shows a caution instead."))
