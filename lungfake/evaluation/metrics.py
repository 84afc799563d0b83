"""The metrics files (weights/metrics/<name>_<protocol>.json): one typed, versioned schema, written by
evaluation and read by the dashboard, the comparison, the model card, the error browser and the results table.

Three kinds share it: a served model, the ensemble of the served models, and a baseline (the colour
statistics and the copy-lookup memoriser). Fields that only some kinds have are None for the others.
A file of another schema version is refused with what to do, never half-read.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from lungfake.errors import MetricsError

SCHEMA_VERSION = 1
KINDS = ("model", "ensemble", "baseline")


@dataclass(frozen=True)
class EvaluationMetrics:
    schema_version: int
    kind: str  # one of KINDS
    arch: str  # the architecture, "ensemble", or the baseline's name
    protocol: str  # the split protocol: grouped or random
    display_name: str
    class_names: list[str]
    split_sha256: str | None  # the split the figures were computed on
    n_test: int
    n_test_families: int
    accuracy: float
    accuracy_ci95: list[float]  # 95% interval over test families
    macro_f1: float
    macro_f1_ci95: list[float]
    classification_report: dict  # scikit-learn's, by class name
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted, in class_names order
    binary_accuracy: float  # cancer vs benign
    binary_sensitivity: float
    binary_specificity: float
    roc_auc: dict[str, float]
    roc_curves: dict[str, dict[str, list[float]]]
    expected_calibration_error: float
    reliability: dict[str, list[float]]
    predictions: list[int]  # per test tile, in the split's order
    true_labels: list[int]
    expected_calibration_error_ci95: list[float] | None = None  # grouped protocol
    # Served models and the ensemble (calibrated on validation tiles):
    temperature: float | None = None
    low_confidence: dict | None = None  # the warning threshold chosen on val, its coverage and accuracy there
    expected_calibration_error_uncalibrated: float | None = None
    reliability_uncalibrated: dict[str, list[float]] | None = None
    confidence: list[float] | None = None  # calibrated confidence per test tile, to 4 decimals
    colour_neutral_accuracy: dict | None = None  # {value, ci95}
    robustness: dict | None = None  # {tiles, every, accuracy: {shift: accuracy}}
    # Served models:
    colour_neutral_predictions: list[int] | None = None
    model_file: str | None = None
    weights_sha256: str | None = None
    input_size: int | None = None  # the size the model is served at
    history: dict | None = None
    train_minutes: float | None = None
    train_cpu_minutes: float | None = None
    recipe: dict | None = None
    trained_on_split_sha256: str | None = None
    # The ensemble:
    members: list[str] | None = None
    all_members_agree: dict | None = None  # {share, accuracy_when_agreeing}
    member_weights: dict[str, float] | None = None  # fitted on val by log-loss (calibration.fit_member_weights)
    combination: dict | None = None  # {val_accuracy: {weighted, equal_weights, <arch>...}, test_accuracy_equal_weights}
    subtype: dict | None = None  # {rule, val, test}: the subtype rule and verdict.subtype_figures on val and test tiles
    external: dict | None = None  # other labs' images (external.external_summary), measuring only
    # Served models' overlays (explanation_check.check_model): {method, candidates, validation, test}, each figure set
    # a faithfulness.Faithfulness
    explanation: dict | None = None

    def explanation_figures(self, side: str = "test"):
        """The overlay's faithfulness.Faithfulness on validation or test tiles, or None where it was not measured."""
        from lungfake.explain.faithfulness import Faithfulness

        return Faithfulness.from_json(self.explanation[side]) if self.explanation and side in self.explanation else None

    def precise_explanation_figures(self, side: str = "test"):
        """The same for the precise overlay offered on request, or None where there is none."""
        from lungfake.explain.faithfulness import Faithfulness

        precise = (self.explanation or {}).get("precise") or {}
        return Faithfulness.from_json(precise[side]) if side in precise else None

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"

    @property
    def is_ensemble(self) -> bool:
        return self.kind == "ensemble"

    @classmethod
    def from_json(cls, payload: dict, source: str = "a metrics file") -> EvaluationMetrics:
        """The metrics in a parsed file; MetricsError for another schema version, a missing or unknown field."""
        version = payload.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MetricsError(f"{source} has metrics schema version {version}, this lungfake reads version "
                               f"{SCHEMA_VERSION}; rerun python -m lungfake evaluate to rewrite it.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise MetricsError(f"{source} has fields this schema does not know ({', '.join(unknown)}); "
                               "rerun python -m lungfake evaluate to rewrite it.")
        if payload.get("kind") not in KINDS:
            raise MetricsError(f"{source} is of kind {payload.get('kind')!r}, not one of {', '.join(KINDS)}.")
        try:
            return cls(**payload)
        except TypeError as exc:  # a required field missing
            raise MetricsError(f"{source} is incomplete ({exc}); rerun python -m lungfake evaluate.") from None

    def to_json(self) -> dict:
        """Every field, but an optional one only where this kind has it."""
        optional = {f.name for f in dataclasses.fields(self) if f.default is None}
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None or key not in optional}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> EvaluationMetrics:
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise MetricsError(f"Metrics file {path.name} cannot be read ({exc}); rerun python -m lungfake evaluate.") from None
        if not isinstance(payload, dict):
            raise MetricsError(f"Metrics file {path.name} is not a JSON object; rerun python -m lungfake evaluate.")
        return cls.from_json(payload, f"Metrics file {path.name}")
