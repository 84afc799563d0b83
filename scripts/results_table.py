"""Print the README's results table from the committed metrics, registry and audit files."""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from lungfake.evaluation import load_all_metrics  # noqa: E402
from lungfake.registry import load_registry, weights_dir  # noqa: E402


def main() -> None:
    registry = load_registry()
    print("| model | split | input | epochs | train CPU-min | accuracy (95% CI) | macro-F1 | cancer vs benign | sens / spec | ECE | file |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (arch, protocol), m in sorted(load_all_metrics().items()):
        size = (weights_dir() / registry[arch].file).stat().st_size / 1e6 if protocol == "grouped" else None
        print(
            f"| {m['display_name']} | {protocol} | {m['input_size']} px | {len(m['history']['loss'])} | {m['train_minutes']} "
            f"| {m['accuracy']:.1%} ({m['accuracy_ci95'][0]:.1%}-{m['accuracy_ci95'][1]:.1%}) | {m['macro_f1']:.3f} "
            f"| {m['binary_accuracy']:.1%} | {m['binary_sensitivity']:.1%} / {m['binary_specificity']:.1%} "
            f"| {m['expected_calibration_error']:.3f} | {f'{size:.1f} MB' if size else '-'} |"
        )
    audit = json.loads((weights_dir() / "splits" / "grouped_audit.json").read_text())
    print(f"\nGrouped split audit: {audit['test_tiles_with_duplicate_in_train']} of {audit['test_tiles']} test tiles "
          f"have a near-duplicate in train (match score >= {audit['threshold']}).")


if __name__ == "__main__":
    main()
