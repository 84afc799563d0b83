"""weights/registry.json: what each served model is, checked whenever a model loads."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lungfake.classes import CLASS_NAMES
from lungfake.errors import ModelIntegrityError, RegistryError
from lungfake.serving.scale import ScaleNormalisation
from lungfake.serving.store import WeightsStore
from lungfake.serving.verdict import SubtypeRule

REGISTRY_NAME = "registry.json"  # named in messages only; WeightsStore owns the path

# The overlay methods a registry entry may name (explain.cam makes them; evaluation.explanation_check chooses one)
GRADCAM, STITCHED, SCORECAM = "gradcam", "gradcam-stitched", "scorecam"
OCCLUSION, RISE = "occlusion", "rise"  # perturbation maps: slower, offered on request
METHOD_LABELS = {GRADCAM: "Grad-CAM (last layer)", STITCHED: "Grad-CAM (last layer, shift-and-stitch, 2x finer)",
                 SCORECAM: "Score-CAM (stride-16 layer)", OCCLUSION: "Occlusion (each part of the tile blurred in turn)",
                 RISE: "RISE (random parts of the tile blurred, many times)"}


@dataclass(frozen=True)
class OverlayTrust:
    """What the registry keeps of a model's overlay measured on validation tiles, and what every caption says.

    Two tests (explain.faithfulness): faithful, where blurring the highlighted fifth of a tile costs the model at least
    twice what a random fifth costs (passes); and specific to the tile, where it also costs at least twice what
    blurring the fifth highlighted on another tile costs, and the maps are not mostly the model's mean map
    (tile_specific). Only a map that passes both is shown as evidence of what the model used on this tile."""
    method: str
    tiles: int
    cells: int
    top_fifth_ratio: float
    deletion_margin: float
    deletion_margin_ci95: list[float]
    border_peak_share: float
    passes: bool
    own_vs_other_ratio: float | None = None  # None: the tile-specific test was not run
    own_vs_other_ratio_ci95: list[float] | None = None
    mean_map_correlation: float | None = None
    tile_specific: bool | None = None
    milliseconds_per_map: float | None = None  # as measured, on the machine that ran `explanations`

    @classmethod
    def of(cls, figures) -> OverlayTrust:
        """From a method's measured figures (explain.faithfulness.Faithfulness)."""
        specific = figures.specificity
        return cls(figures.method, figures.tiles, figures.cells, figures.top_fifth_ratio, figures.deletion_margin,
                   list(figures.deletion_margin_ci95), figures.border_peak_share, figures.passes,
                   specific.own_vs_other_ratio if specific else None,
                   list(specific.own_vs_other_ratio_ci95) if specific else None,
                   specific.mean_map_correlation if specific else None, figures.tile_specific, figures.milliseconds_per_map)

    @property
    def is_evidence(self) -> bool:
        return self.passes and self.tile_specific is True

    def to_json(self) -> dict:
        return asdict(self)

    def caption(self) -> str:
        """Under the overlay, in plain words: the method and what it was measured to be worth."""
        method = f"{METHOD_LABELS.get(self.method, self.method)}, {self.cells}x{self.cells} cells"
        tested = f"on {self.tiles} validation tiles, blurring the highlighted fifth lowered this model's confidence"
        if not self.passes:
            return (f"{method}. Not evidence: {tested} only {self.top_fifth_ratio:.1f} times as much as blurring a random "
                    "fifth, so the map does not show what the model used.")
        if self.tile_specific is None:
            return (f"{method}. Caution: {tested} {self.top_fifth_ratio:.1f} times as much as blurring a random fifth, "
                    "but whether the map is specific to each tile was not measured.")
        against_other = f"{self.own_vs_other_ratio:.1f} times as much as blurring the fifth highlighted on another tile"
        if not self.tile_specific:
            return (f"{method}. Caution, not evidence about this tile: on {self.tiles} validation tiles this model's maps "
                    f"were not specific to their tile (blurring the highlighted fifth lowered its confidence {against_other}; "
                    f"the maps' correlation with their average was {self.mean_map_correlation:.2f}; they peaked in the "
                    f"outer eighth on {self.border_peak_share:.0%} of tiles). The map shows where this model tends to look "
                    "on any tile more than what it found on this one.")
        return (f"{method}. {tested[0].upper()}{tested[1:]} {self.top_fifth_ratio:.1f} times as much as blurring a random "
                f"fifth, and {against_other}: the map is about this tile.")


@dataclass(frozen=True)
class ModelEntry:
    arch: str
    file: str  # relative to the weights folder
    sha256: str
    input_size: int
    class_names: tuple[str, ...]
    gradcam_layer: str
    preprocessing: str
    split: str
    display_name: str = ""
    recipe: dict = field(default_factory=dict)
    temperature: float = 1.0  # fitted on val by `evaluate`; probabilities everywhere are divided by it in log space
    low_confidence: dict = field(default_factory=dict)  # threshold chosen on val, with its val coverage and accuracy
    explanation_method: str = "gradcam"  # cam.py's method for this model's overlay, chosen on val by `explanations`
    overlay_trust: dict = field(default_factory=dict)  # that method's faithfulness on val (faithfulness.OverlayTrust)
    scorecam_layer: str = ""  # the stride-16 layer whose activations the file also gives (model_file.ACTIVATIONS), if any
    # the slower overlay offered on request (the score page's button), chosen and measured on val like the default one
    precise_method: str = ""
    precise_overlay_trust: dict = field(default_factory=dict)

    @property
    def explanation_layer(self) -> str:
        """The layer the overlay's method reads."""
        return self.scorecam_layer if self.explanation_method == SCORECAM else self.gradcam_layer

    @property
    def trust(self):
        """How far this model's overlay can be trusted (OverlayTrust), or None before it was measured."""
        return OverlayTrust(**self.overlay_trust) if self.overlay_trust else None

    def as_precise(self) -> ModelEntry:
        """This entry with its precise overlay in place of the default one (itself where it has none)."""
        if not self.precise_method:
            return self
        return replace(self, explanation_method=self.precise_method, overlay_trust=self.precise_overlay_trust)

    def to_json(self) -> dict:
        payload = asdict(self)
        payload.pop("arch")
        payload["class_names"] = list(self.class_names)
        return payload


def weights_dir(override: str | os.PathLike | None = None) -> Path:
    """The weights store's folder (see store.WeightsStore, which owns every path under it)."""
    return WeightsStore.resolve(override).root


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class OodEntry:
    """The out-of-distribution reference: fitted statistics and the model whose features they describe."""

    file: str
    sha256: str
    feature_model: str
    quantile: float


def _read_registry_file(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"models": {}}


def _write_registry_file(path: Path, payload: dict) -> None:
    payload["models"] = dict(sorted(payload.get("models", {}).items()))
    path.write_text(json.dumps(payload, indent=2) + "\n")


def register(entry: ModelEntry, folder: Path | None = None) -> None:
    path = WeightsStore.resolve(folder).registry
    payload = _read_registry_file(path)
    payload.setdefault("models", {})[entry.arch] = entry.to_json()
    _write_registry_file(path, payload)


def update_calibration(arch: str, temperature: float, low_confidence: dict, folder: Path | None = None) -> None:
    """Record a model's fitted temperature and warning threshold (the model file is unchanged)."""
    path = WeightsStore.resolve(folder).registry
    payload = _read_registry_file(path)
    if arch not in payload.get("models", {}):
        raise RegistryError(f"No model {arch!r} in the registry to calibrate.")
    payload["models"][arch].update(temperature=round(float(temperature), 6), low_confidence=low_confidence)
    _write_registry_file(path, payload)


def update_explanation(arch: str, method: str, overlay_trust: dict, folder: Path | None = None,
                       precise: tuple[str, dict] | None = None) -> None:
    """Record a model's overlay method and its faithfulness on validation tiles, and those of its precise overlay
    (method, trust) where given (the model file is unchanged)."""
    for name in (method, *(precise[:1] if precise else ())):
        if name not in METHOD_LABELS:
            raise RegistryError(f"Unknown explanation method {name!r}; choose one of {', '.join(METHOD_LABELS)}.")
    path = WeightsStore.resolve(folder).registry
    payload = _read_registry_file(path)
    if arch not in payload.get("models", {}):
        raise RegistryError(f"No model {arch!r} in the registry to record an explanation for.")
    payload["models"][arch].update(explanation_method=method, overlay_trust=overlay_trust)
    if precise:
        payload["models"][arch].update(precise_method=precise[0], precise_overlay_trust=precise[1])
    _write_registry_file(path, payload)


@dataclass(frozen=True)
class EnsembleCalibration:
    """How the ensemble combines its members and when it calls a subtype uncertain, all chosen on val by `evaluate`."""
    temperature: float = 1.0
    warn_below: float | None = None  # None: not chosen yet (the strictest member's threshold applies)
    member_weights: dict[str, float] | None = None  # by architecture; None: equal weights
    subtype_rule: SubtypeRule = SubtypeRule()

    def weights_for(self, archs) -> list[float] | None:
        """The weights of these members in this order (None: equal), renormalised over the members present."""
        if not self.member_weights or any(arch not in self.member_weights for arch in archs):
            return None
        return [self.member_weights[arch] for arch in archs]


def update_ensemble_calibration(temperature: float, low_confidence: dict, folder: Path | None = None,
                                member_weights: dict[str, float] | None = None, subtype_rule: SubtypeRule | None = None) -> None:
    """Record the ensemble's temperature, warning threshold, member weights and subtype rule, all fitted on val."""
    path = WeightsStore.resolve(folder).registry
    payload = _read_registry_file(path)
    payload["ensemble"] = {"temperature": round(float(temperature), 6), "low_confidence": low_confidence}
    if member_weights:
        payload["ensemble"]["member_weights"] = {arch: round(float(w), 6) for arch, w in member_weights.items()}
    if subtype_rule is not None:
        payload["ensemble"]["subtype_rule"] = subtype_rule.to_json()
    _write_registry_file(path, payload)


def update_scale_normalisation(scale, folder: Path | None = None) -> None:
    """Record the scale setting (scale.ScaleNormalisation) that every scoring applies before the models."""
    path = WeightsStore.resolve(folder).registry
    payload = _read_registry_file(path)
    payload["scale"] = scale.to_json()
    _write_registry_file(path, payload)


def register_ood(entry: OodEntry, folder: Path | None = None) -> None:
    path = WeightsStore.resolve(folder).registry
    payload = _read_registry_file(path)
    payload["ood"] = asdict(entry)
    _write_registry_file(path, payload)


def verified_file(file: str, sha256: str, what: str, folder: Path | None = None) -> Path:
    """A weights-folder file, after checking it exists and matches the registry's sha256."""
    path = WeightsStore.resolve(folder).file(file)
    if not path.is_file():
        raise ModelIntegrityError(
            f"File {file} ({what}) is missing from the weights folder; "
            "restore it from the repository (git lfs is not used) or retrain it."
        )
    actual = sha256_of(path)
    if actual != sha256:
        raise ModelIntegrityError(
            f"File {file} ({what}) does not match the registry "
            f"(sha256 {actual[:12]}... instead of {sha256[:12]}...); refusing to load it. "
            "Restore the file from the repository or retrain and re-register it."
        )
    return path


def verified_path(entry: ModelEntry, folder: Path | None = None) -> Path:
    """The model file, after checking it exists and matches the registry's sha256."""
    return verified_file(entry.file, entry.sha256, f"the {entry.arch} model", folder)


def _checked_models(raw: dict) -> dict[str, ModelEntry]:
    """The registry's model entries, each checked against what this lungfake knows."""
    entries = {arch: ModelEntry(arch=arch, **{**spec, "class_names": tuple(spec["class_names"])}) for arch, spec in raw.items()}
    for entry in entries.values():
        for method in filter(None, (entry.explanation_method, entry.precise_method)):
            if method not in METHOD_LABELS:
                raise RegistryError(f"Registry entry {entry.arch} names explanation method {method!r}; "
                                    f"this lungfake knows {', '.join(METHOD_LABELS)}.")
        if entry.explanation_method == SCORECAM and not entry.scorecam_layer:
            raise RegistryError(f"Registry entry {entry.arch} names Score-CAM but no scorecam_layer; export the model "
                                "again (python -m lungfake export) and run python -m lungfake explanations.")
        if sorted(entry.class_names) != sorted(CLASS_NAMES):
            raise RegistryError(f"Registry entry {entry.arch} lists classes {entry.class_names}, expected {CLASS_NAMES}.")
    return entries


def _ensemble_of(recorded: dict) -> EnsembleCalibration:
    threshold = recorded.get("low_confidence", {}).get("threshold")
    return EnsembleCalibration(float(recorded.get("temperature", 1.0)), float(threshold) if threshold is not None else None,
                               recorded.get("member_weights"), SubtypeRule.from_json(recorded.get("subtype_rule")))


def _scale_of(recorded: dict | None) -> ScaleNormalisation | None:
    try:
        return ScaleNormalisation.from_json(recorded)
    except (AttributeError, TypeError, ValueError) as exc:
        raise RegistryError(f"The registry's scale setting {recorded} is not readable ({exc}); "
                            "fit it again with python -m lungfake scale-fit.") from None


def _ood_of(raw: dict | None) -> OodEntry | None:
    try:
        return OodEntry(**raw) if raw is not None else None
    except TypeError as exc:
        raise RegistryError(f"The ood entry of the model registry is malformed ({exc}); "
                            "refit it with python -m lungfake ood-fit.") from None


@dataclass(frozen=True)
class Registry:
    """registry.json read and checked once: the served models, the out-of-distribution screen's entry, the ensemble's
    rule and the scale setting. Whoever needs any of them is handed this object (Scorer.load reads the file once)."""

    models: dict[str, ModelEntry]
    ood: OodEntry | None
    ensemble: EnsembleCalibration
    scale: ScaleNormalisation | None
    folder: Path  # the weights folder it was read from; its files are resolved against it

    @classmethod
    def load(cls, folder: Path | None = None) -> Registry:
        store = WeightsStore.resolve(folder)
        try:
            payload = json.loads(store.registry.read_text())
            models = _checked_models(payload["models"])
        except FileNotFoundError:
            raise RegistryError(f"The model registry ({REGISTRY_NAME} in the weights folder) is missing; "
                                "restore it from the repository or train a model (python -m lungfake train).") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"The model registry ({REGISTRY_NAME} in the weights folder) is malformed ({exc}); "
                                "restore it from the repository.") from None
        return cls(models, _ood_of(payload.get("ood")), _ensemble_of(payload.get("ensemble", {})),
                   _scale_of(payload.get("scale")), store.root)

    def select(self, which: str = "all") -> list[ModelEntry]:
        """The entries named by which: all, one architecture, or several separated by commas."""
        if which == "all":
            return list(self.models.values())
        names = [name.strip() for name in which.split(",") if name.strip()]
        unknown = [name for name in names if name not in self.models]
        if unknown or not names:
            raise RegistryError(f"No model {', '.join(map(repr, unknown)) or repr(which)} in the registry; choose from "
                                f"{', '.join(self.models)}, several separated by commas, or all.")
        return [self.models[name] for name in dict.fromkeys(names)]


def load_registry(folder: Path | None = None) -> dict[str, ModelEntry]:
    """The model entries alone (Registry.load for everything the registry holds)."""
    return Registry.load(folder).models


def load_ensemble_calibration(folder: Path | None = None) -> EnsembleCalibration:
    """The ensemble's calibration as evaluate recorded it (temperature 1, equal weights, no thresholds before that)."""
    return Registry.load(folder).ensemble


def load_scale_normalisation(folder: Path | None = None) -> ScaleNormalisation | None:
    """The registry's scale setting, or None where none was fitted (tiles are then scored as they come)."""
    return Registry.load(folder).scale


def load_ood_entry(folder: Path | None = None) -> OodEntry | None:
    return Registry.load(folder).ood
