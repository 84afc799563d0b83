"""Print the README's results tables from the committed metrics, registry and audit files."""
import json

from lungfake.baselines import BASELINES
from lungfake.evaluation import load_all_metrics, split_warning
from lungfake.registry import load_registry
from lungfake.store import WeightsStore


def _interval(m: dict) -> str:
    return f"{m['accuracy']:.1%} ({m['accuracy_ci95'][0]:.1%}-{m['accuracy_ci95'][1]:.1%})"


def _ece(m: dict) -> str:
    """Calibration error before / after temperature scaling, the latter with its interval over test families."""
    before = m.get("expected_calibration_error_uncalibrated")
    interval = m.get("expected_calibration_error_ci95")
    after = f"{m['expected_calibration_error']:.3f}" + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
    return f"{before:.3f} / {after}" if before is not None else after


def _train_minutes(m: dict) -> str:
    """Wall minutes of training and, where every epoch recorded them, CPU minutes."""
    if not m.get("train_minutes"):
        return "-"
    return f"{m['train_minutes']} / {m.get('train_cpu_minutes') or '-'}"


def main() -> None:
    store = WeightsStore.resolve()
    registry = load_registry(store.root)
    metrics = load_all_metrics(store)
    print("| model | split | input | epochs | train img/s | train minutes (wall / CPU) | accuracy (95% CI) | macro-F1 | cancer vs benign "
          "| sens / spec | colour-neutral | ECE before / after (95% CI) | file | on the committed split |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (arch, protocol), m in sorted(metrics.items(), key=lambda item: (item[0][0] in BASELINES, item[0])):
        entry = registry.get(arch)
        size = store.file(entry.file).stat().st_size / 1e6 if entry and protocol == entry.split else None
        history = m.get("history")
        neutral = m.get("colour_neutral_accuracy")
        size_px = f"{m['input_size']} px" if "input_size" in m else "-"
        rates = history.get("images_per_second") if history else None
        rate = f"{sorted(rates)[len(rates) // 2]:.0f}" if rates else "-"
        neutral_text = f"{neutral['value']:.1%}" if neutral else "-"
        print(
            f"| {m['display_name']} | {protocol} | {size_px} "
            f"| {len(history['loss']) if history else '-'} | {rate} | {_train_minutes(m)} | {_interval(m)} | {m['macro_f1']:.3f} "
            f"| {m['binary_accuracy']:.1%} | {m['binary_sensitivity']:.1%} / {m['binary_specificity']:.1%} "
            f"| {neutral_text} "
            f"| {_ece(m)} "
            f"| {f'{size:.1f} MB' if size else '-'} | {'no' if split_warning(m, store) else 'yes'} |"
        )
    _robustness_table(metrics)
    for protocol in ("grouped", "random"):
        path = store.audit_json(protocol)
        if path.exists():
            audit = json.loads(path.read_text())
            sides = [s for s in ("test", "val") if s in audit]
            print(f"\n{protocol.capitalize()} split audit ({_searched(audit['candidates_searched'])} per tile, score >= "
                  f"{audit['threshold']} keypoints): " + "; ".join(
                      f"{audit[s]['with_copy_in_train']} of {audit[s]['tiles']} {s} tiles have a copy in train" for s in sides) + ".")


def _robustness_table(metrics: dict) -> None:
    """Accuracy under each named shift, as evaluate wrote it (served models in registry order, then the ensemble)."""
    shown = [m for (arch, protocol), m in metrics.items() if protocol == "grouped" and "robustness" in m and arch not in BASELINES]
    shown.sort(key=lambda m: m["arch"] == "ensemble")
    if not shown:
        return
    shifts = list(shown[0]["robustness"]["accuracy"])
    print(f"\nRobustness: accuracy on every {shown[0]['robustness']['every']}rd grouped test tile "
          f"({shown[0]['robustness']['tiles']} tiles), one change at a time; in brackets the change against clean, in points\n")
    print("| shift | " + " | ".join(m["display_name"] for m in shown) + " |")
    print("|---|" + "---|" * len(shown))
    for shift in shifts:
        cells = []
        for m in shown:
            accuracy = m["robustness"]["accuracy"]
            change = 100 * (accuracy[shift] - accuracy["clean"])
            cells.append(f"{accuracy[shift]:.1%}" + ("" if shift == "clean" else f" ({change:+.1f})"))
        print(f"| {shift} | " + " | ".join(cells) + " |")


def _searched(candidates) -> str:
    if isinstance(candidates, int):  # audits written before the descriptor-vote search
        return f"{candidates} candidates by visual words"
    return (f"the {candidates['by_descriptor_votes']} train tiles most voted for by nearest descriptors and the "
            f"{candidates['by_visual_words']} nearest by visual words")


if __name__ == "__main__":
    main()
