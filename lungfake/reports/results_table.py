"""The results tables of README.md and docs/models.md, written from the committed metrics, registry and audits
between marker comments (scripts/results_table.py; a test fails when a committed table is stale)."""
from __future__ import annotations

import json
from pathlib import Path

from lungfake.errors import MetricsError
from lungfake.evaluation.evaluator import load_all_metrics, split_warning
from lungfake.evaluation.metrics import EvaluationMetrics
from lungfake.serving.registry import load_registry
from lungfake.serving.store import WeightsStore

BEGIN, END = "<!-- results table: scripts/results_table.py writes this -->", "<!-- end of results table -->"


def _interval(value: float, interval: list[float] | None, fmt: str = ".1%") -> str:
    return f"{value:{fmt}}" + (f" ({interval[0]:{fmt}}-{interval[1]:{fmt}})" if interval else "")


def _in_order(metrics: dict) -> list[EvaluationMetrics]:
    """Served models by name, then the ensemble, then the baselines; grouped before random."""
    return sorted(metrics.values(), key=lambda m: (m.is_baseline, m.is_ensemble, m.display_name, m.protocol))


def summary_table(store: WeightsStore) -> str:
    """The README's table: each served model, the ensemble and the colour baseline on the grouped test tiles."""
    metrics = load_all_metrics(store)
    rows = ["| | served at | accuracy (95% CI) | cancer vs benign | colour-neutral | ECE (95% CI) |", "|---|---|---|---|---|---|"]
    for m in _in_order(metrics):
        if m.protocol != "grouped" or m.arch == "baseline_copy_lookup":
            continue
        cells = [m.display_name, f"{m.input_size} px" if m.input_size else "-", _interval(m.accuracy, m.accuracy_ci95),
                 f"{m.binary_accuracy:.1%}", _colour_neutral(m),
                 _interval(m.expected_calibration_error, m.expected_calibration_error_ci95, ".3f")]
        rows.append("| " + " | ".join(cells) + " |")
    n = next((m for m in metrics.values() if m.protocol == "grouped"), None)
    if n is None:
        raise MetricsError("No grouped metrics are committed; run python -m lungfake evaluate.")
    rows.append(f"\nGrouped split: {n.n_test:,} test tiles from {n.n_test_families} families never seen in training; "
                "intervals from a bootstrap over families.")
    return "\n".join(rows + [_overlay_table(metrics)])


def full_table(store: WeightsStore) -> str:
    """docs/models.md's tables: every model and baseline on both protocols, robustness, and the split audits."""
    registry, metrics = load_registry(store.root), load_all_metrics(store)
    rows = ["| model | split | served at | epochs | train img/s | train minutes (wall / CPU) | accuracy (95% CI) | macro-F1 "
            "| cancer vs benign | sens / spec | colour-neutral | ECE before / after (95% CI) | file | on the committed split |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in _in_order(metrics):
        entry = registry.get(m.arch)
        size = store.file(entry.file).stat().st_size / 1e6 if entry and m.protocol == entry.split else None
        cells = [m.display_name, m.protocol, f"{m.input_size} px" if m.input_size else "-", *_training_cells(m),
                 _interval(m.accuracy, m.accuracy_ci95), f"{m.macro_f1:.3f}", f"{m.binary_accuracy:.1%}",
                 f"{m.binary_sensitivity:.1%} / {m.binary_specificity:.1%}", _colour_neutral(m), _ece(m),
                 f"{size:.1f} MB" if size else "-", "no" if split_warning(m, store) else "yes"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows + [_robustness_table(metrics), _overlay_table(metrics, detailed=True), *_audit_sentences(store)])


def _training_cells(m: EvaluationMetrics) -> list[str]:
    """Epochs, median training images/s, and wall / CPU minutes of training; dashes for what was not trained."""
    if m.history is None:
        return ["-", "-", "-"]
    rates = m.history.get("images_per_second")
    rate = f"{sorted(rates)[len(rates) // 2]:.0f}" if rates else "-"
    minutes = f"{m.train_minutes} / {m.train_cpu_minutes or '-'}" if m.train_minutes else "-"
    return [str(len(m.history["loss"])), rate, minutes]


def _colour_neutral(m: EvaluationMetrics) -> str:
    return f"{m.colour_neutral_accuracy['value']:.1%}" if m.colour_neutral_accuracy else "-"


def _ece(m: EvaluationMetrics) -> str:
    """Calibration error before / after temperature scaling, the latter with its interval over test families."""
    after = _interval(m.expected_calibration_error, m.expected_calibration_error_ci95, ".3f")
    before = m.expected_calibration_error_uncalibrated
    return f"{before:.3f} / {after}" if before is not None else after


def _robustness_table(metrics: dict) -> str:
    shown = [m for m in _in_order(metrics) if m.protocol == "grouped" and m.robustness and not m.is_baseline]
    if not shown:
        return ""
    first = shown[0].robustness
    lines = [f"\nRobustness: accuracy on every {first['every']}rd grouped test tile ({first['tiles']} tiles), one change at "
             "a time; in brackets the change against clean, in points.\n",
             "| shift | " + " | ".join(m.display_name for m in shown) + " |", "|---|" + "---|" * len(shown)]
    for shift in first["accuracy"]:
        cells = []
        for m in shown:
            accuracy = m.robustness["accuracy"]
            change = 100 * (accuracy[shift] - accuracy["clean"])
            cells.append(f"{accuracy[shift]:.1%}" + ("" if shift == "clean" else f" ({change:+.1f})"))
        lines.append(f"| {shift} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _overlay_table(metrics: dict, detailed: bool = False) -> str:
    """Each served model's overlay on grouped test tiles (`python -m lungfake explanations`): method, resolution, how much
    more blurring its highlighted fifth costs than a random fifth, the border and randomisation figures."""
    from lungfake.evaluation.comparison import overlay_figures
    from lungfake.serving.registry import METHOD_LABELS

    figures = overlay_figures(metrics)
    if not figures:
        return ""
    sample = next(iter(figures.values()))
    header = ["overlay", "cells", "highlighted fifth vs random fifth (95% CI)", "vs another tile's fifth (95% CI)",
              "likeness to mean map", "peak in outer eighth", "randomised top: rank correlation", "shown as evidence"]
    if detailed:
        header[5:5] = ["deletion margin (95% CI)", "insertion margin", "ms per map"]
    where = "[below](#overlays)" if detailed else "[docs/models.md](docs/models.md#overlays)"
    lines = [f"\nOverlays on {sample.tiles} grouped test tiles ({sample.families} families), each model's method chosen on "
             f"validation tiles ({where}):\n", "| | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for name, f in figures.items():
        cells = [METHOD_LABELS.get(f.method, f.method), f"{f.cells}x{f.cells}", f.ratio_text, f.other_tile_text,
                 f.mean_map_text, f"{f.border_peak_share:.0%}",
                 "-" if f.randomisation_spearman is None else f"{f.randomisation_spearman:.2f}",
                 "yes" if f.is_evidence else "no (a caution instead)"]
        if detailed:
            cells[5:5] = [f.deletion_margin_text, f"{f.insertion_margin:+.3f}", f"{f.milliseconds_per_map:.0f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _audit_sentences(store: WeightsStore) -> list[str]:
    sentences = []
    for protocol in ("grouped", "random"):
        path = store.audit_json(protocol)
        if path.exists():
            audit = json.loads(path.read_text())
            sides = [s for s in ("test", "val") if s in audit]
            sentences.append(f"\n{protocol.capitalize()} split audit (score >= {audit['threshold']} keypoints): " + "; ".join(
                f"{audit[s]['with_copy_in_train']:,} of {audit[s]['tiles']:,} {s} tiles have a copy in train" for s in sides) + ".")
    return sentences


def with_table(text: str, table: str, name: str) -> str:
    """text with the part between the markers replaced by table; MetricsError if the markers are missing."""
    if BEGIN not in text or END not in text:
        raise MetricsError(f"{name} has no results-table markers ({BEGIN} ... {END}).")
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n" + table + "\n" + END + rest.split(END, 1)[1]


def documents(repo: Path) -> dict[Path, str]:
    """Each document that holds a results table, with the table it should hold."""
    store = WeightsStore.resolve()
    return {repo / "README.md": summary_table(store), repo / "docs" / "models.md": full_table(store)}
