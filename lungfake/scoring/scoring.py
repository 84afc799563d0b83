"""One scoring path for every caller (the CLI, the score, batch and region pages): a batch of images in,
every served model's calibrated prediction, the ensemble, the out-of-distribution verdict and, when asked,
the overlays out. Each image is first brought towards LC25000's magnification (scale.py, where the registry has a
scale setting), then resized once per model input size; overlays are mapped back onto the image.
"""
from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lungfake.classes import display_name, is_cancer
from lungfake.serving.calibration import apply_temperature, ensemble_probabilities
from lungfake.serving.images import to_model_input
from lungfake.serving.inference import LoadedModel, OodScreen
from lungfake.serving.model_file import POOLED, PROBABILITIES
from lungfake.serving.ood import OodVerdict
from lungfake.serving.registry import EnsembleCalibration, OverlayTrust, Registry
from lungfake.serving.scale import ScaledView, ScaleNormalisation, unscaled_view
from lungfake.serving.verdict import Verdict, verdict_of

DEFAULT_WARNING_CONFIDENCE = 0.6  # for registry entries calibrated before thresholds were chosen on val
BATCH = 32
EXPLAIN_BATCH = 8  # explained, a chunk also carries each input's 4 shifted views (cam.run_explained): 40 in one call
ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class Progress:
    """How far a long scoring (a batch, a region) has gone, for a progress bar."""
    done: int
    total: int
    elapsed_seconds: float

    @property
    def seconds_left(self) -> float | None:
        return self.elapsed_seconds / self.done * (self.total - self.done) if self.done else None


@dataclass(frozen=True)
class ModelScore:
    arch: str
    name: str
    probabilities: dict[str, float]  # calibrated, in the registry's class order
    weights_sha256: str
    warn_below: float
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)  # [0, 1], predicted class
    overlay_trust: OverlayTrust | None = field(default=None, repr=False, compare=False)  # measured on val; None: never

    @property
    def overlay_caption(self) -> str:
        """What the overlay under this model's name is and is worth (faithfulness.OverlayTrust.caption)."""
        if self.overlay_trust is None:
            return f"Grad-CAM for {display_name(self.predicted)}; its faithfulness has not been measured."
        return f"Overlay for {display_name(self.predicted)}. {self.overlay_trust.caption()}"

    @property
    def overlay_is_evidence(self) -> bool:
        """Whether the overlay passed the faithfulness and tile-specific tests on validation tiles (else it is shown
        behind a caution)."""
        return self.overlay_trust is not None and self.overlay_trust.is_evidence

    @property
    def predicted(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.predicted]

    @property
    def cancer_probability(self) -> float:
        return sum(p for name, p in self.probabilities.items() if is_cancer(name))

    @property
    def low_confidence(self) -> bool:
        return self.confidence < self.warn_below

    def to_json(self, refused: bool = False) -> dict:
        """A refused image (not H&E) gets no class: predicted and the figures drawn from it are null."""
        return {
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "predicted": None if refused else self.predicted,
            "cancer_probability": None if refused else round(self.cancer_probability, 6),
            "low_confidence": None if refused else self.low_confidence,
            "weights_sha256": self.weights_sha256,
        }


@dataclass(frozen=True)
class ImageScore:
    name: str
    rgb: np.ndarray = field(repr=False, compare=False)
    models: dict[str, ModelScore]  # keyed by architecture
    ood: OodVerdict
    ensemble_calibration: EnsembleCalibration = EnsembleCalibration()  # chosen on val by evaluate
    scale_factor: float = 1.0  # how much the models' view was magnified (scale.py); 1: the image as it came

    @property
    def scale_note(self) -> str | None:
        """What the models saw of the image, where scale normalisation changed it (else None)."""
        if self.scale_factor == 1.0:
            return None
        if self.scale_factor > 1.0:
            return (f"Its nuclei look smaller than LC25000's, so the models scored its centre enlarged x{self.scale_factor:.2f}; "
                    "the uncoloured rim of each overlay was not seen.")
        return (f"Its nuclei look larger than LC25000's, so the models scored it shrunk x{self.scale_factor:.2f}, "
                "the field around it continued by mirroring.")

    @property
    def ensemble(self) -> ModelScore | None:
        """The mean of the models' calibrated probabilities at the ensemble's temperature (None with a single
        model); it warns below its own val threshold, else below the strictest model's."""
        if len(self.models) < 2:
            return None
        classes = list(next(iter(self.models.values())).probabilities)
        members = [[m.probabilities[c] for c in classes] for m in self.models.values()]
        calibration = self.ensemble_calibration
        combined = ensemble_probabilities(members, calibration.temperature, calibration.weights_for(list(self.models)))
        sha = ",".join(m.weights_sha256[:12] for m in self.models.values())
        warn_below = self.ensemble_calibration.warn_below
        if warn_below is None:
            warn_below = max(m.warn_below for m in self.models.values())
        return ModelScore(ENSEMBLE, "Ensemble", dict(zip(classes, map(float, combined))), sha, warn_below)

    @property
    def models_agree(self) -> bool:
        return len({m.predicted for m in self.models.values()}) <= 1

    @property
    def refused(self) -> bool:
        """Not lung H&E by the out-of-distribution check: no class is given for it anywhere."""
        return bool(self.ood.ood)

    @property
    def verdict(self) -> Verdict:
        """What the image is called: cancer or benign, the subtype only where it can be trusted (verdict.py)."""
        lead = self.ensemble or next(iter(self.models.values()))
        return verdict_of(lead.probabilities, [m.probabilities for m in self.models.values()],
                          self.ood.reason if self.refused else None, bool(self.ood.domain_shift),
                          self.ensemble_calibration.subtype_rule)

    def to_json(self) -> dict:
        payload = {"file": self.name, **self.verdict.to_json(), **self.ood.to_json(), "scale_factor": round(self.scale_factor, 4),
                   "models": {a: m.to_json(self.refused) for a, m in self.models.items()},
                   "models_agree": None if self.refused else self.models_agree}
        if self.ensemble is not None:
            payload["ensemble"] = self.ensemble.to_json(self.refused)
        return payload

    def csv_rows(self) -> list[list]:
        """One row per model (and the ensemble): file, verdict, model, weights, prediction, probabilities, warnings and
        the scale factor; a refused image's rows give no class."""
        rows, verdict = [], self.verdict
        for arch, m in {**self.models, **({ENSEMBLE: self.ensemble} if self.ensemble else {})}.items():
            predicted = ["", ""] if self.refused else [m.predicted, display_name(m.predicted)]
            rows.append([self.name, verdict.headline, verdict.subtype_uncertain, arch, m.weights_sha256, *predicted,
                         *[f"{p:.6f}" for p in m.probabilities.values()], "" if self.refused else m.low_confidence,
                         self.ood.ood, self.ood.reason, self.ood.domain_shift, self.ood.domain_shift_reason,
                         round(self.scale_factor, 4)])
        return rows


def ensemble_note(calibration: EnsembleCalibration, names: dict[str, str]) -> str:
    """How the ensemble is made, in one sentence for the page (names: architecture -> display name)."""
    weights = calibration.weights_for(list(names))
    if weights is None:
        how = "the mean of the models' calibrated probabilities"
    else:
        total = sum(weights)
        how = "a weighted mean of the models' calibrated probabilities (" + ", ".join(
            f"{names[a]} {w / total:.0%}" for a, w in zip(names, weights)) + "; weights fitted on validation tiles by log-loss)"
    return f"The ensemble is {how}, then its own temperature ({calibration.temperature:.2f}, fitted on validation tiles)."


def precise_overlay_note(entries) -> str | None:
    """What the precise overlays are and about how long they take for these registry entries (None: none has one)."""
    precise = [entry.as_precise() for entry in entries if entry.precise_method]
    if not precise:
        return None
    measured = [entry.trust.milliseconds_per_map for entry in precise if entry.trust and entry.trust.milliseconds_per_map]
    took = f" About {sum(measured) / 1000:.0f} s for {len(precise)} models." if len(measured) == len(precise) else ""
    return ("Each model scores many copies of the tile, each with other parts blurred: the overlay shows where blurring "
            f"lowered its confidence most.{took}")


def csv_text(scores: list[ImageScore], failures: list[tuple[str, str]] | None = None) -> str:
    """One row per image and model (and the ensemble); a file that could not be scored gets one row with its error."""
    out = io.StringIO()
    writer = csv.writer(out)
    classes = list(next(iter(scores[0].models.values())).probabilities) if scores and scores[0].models else []
    header = ["file", "verdict", "subtype_uncertain", "model", "weights_sha256", "predicted", "predicted_name",
              *[f"p_{c}" for c in classes],
              "low_confidence", "ood", "ood_reason", "domain_shift", "domain_shift_reason", "scale_factor", "error"]
    writer.writerow(header)
    for score in scores:
        writer.writerows(row + [""] for row in score.csv_rows())
    for name, message in failures or ():  # (file, error): two files of one name both keep their rows
        writer.writerow([name] + [""] * (len(header) - 2) + [message])
    return out.getvalue()


def json_text(scores: list[ImageScore], failures: list[tuple[str, str]] | None = None) -> str:
    """One image: its JSON object; several (or any failure): a list, failures as {"file", "error"}."""
    payload = [s.to_json() for s in scores] + [{"file": name, "error": message} for name, message in failures or ()]
    return json.dumps(payload[0] if len(payload) == 1 and scores else payload, indent=2)


class ServedModel:
    """A verified model and its calibration."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self._precise: LoadedModel | None = None
        # One scoring at a time per model: the app serves many sessions from threads, and on two cores
        # queuing them costs no throughput while keeping memory flat and every result identical.
        self.lock = threading.Lock()

    @property
    def entry(self):
        return self.loaded.entry

    @property
    def name(self) -> str:
        return self.entry.display_name or self.entry.arch

    def explained_by(self, precise: bool) -> LoadedModel:
        """The model read with its default overlay, or with its precise one (the slower overlay offered on request)."""
        if not precise:
            return self.loaded
        if self._precise is None:
            self._precise = self.loaded.with_entry(self.entry.as_precise())
        return self._precise

    def warn_below(self) -> float:
        return float(self.entry.low_confidence.get("threshold", DEFAULT_WARNING_CONFIDENCE))


def _on_image(score: ModelScore, view: ScaledView) -> ModelScore:
    """The score with its overlay mapped from the models' view back onto the image."""
    return score if score.heatmap is None else replace(score, heatmap=view.to_tile_frame(score.heatmap))


def dihedral_views(pixels: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations and mirror images of a batch (n, h, w, c): a tile has no up and no handedness."""
    views = []
    for mirrored in (pixels, pixels[:, :, ::-1]):
        views.extend(np.rot90(mirrored, k, axes=(1, 2)) for k in range(4))
    return [np.ascontiguousarray(v) for v in views]


class Scorer:
    """The served models and the out-of-distribution screen, scoring batches of RGB images."""

    def __init__(self, served: list[ServedModel], screen: OodScreen,
                 ensemble_calibration: EnsembleCalibration = EnsembleCalibration(), scale: ScaleNormalisation | None = None):
        self.served, self.screen, self.ensemble_calibration, self.scale = served, screen, ensemble_calibration, scale

    @classmethod
    def load(cls, which: str = "all", folder: Path | None = None,
             on_model: Callable[[int, int, str], None] | None = None) -> Scorer:
        """The registry's models (verified), their calibration and the OOD screen; on_model(i, n, name) is
        called before the i-th of n models loads (the app shows it)."""
        registry = Registry.load(folder)
        entries, served = registry.select(which), []
        for i, entry in enumerate(entries):
            if on_model:
                on_model(i, len(entries), entry.display_name or entry.arch)
            served.append(ServedModel(LoadedModel.load(entry, registry.folder)))
        return cls(served, OodScreen.load([s.loaded for s in served], registry), registry.ensemble, registry.scale)

    def views(self, images: list[np.ndarray]) -> list[ScaledView]:
        """What the models and the screen see of each image (scale.py)."""
        return self.scale.views(images) if self.scale else [unscaled_view(rgb) for rgb in images]

    def score(self, images: list[np.ndarray], names: list[str] | None = None, explain: bool = False,
              tta: bool = False, precise: bool = False) -> list[ImageScore]:
        """Every image scored by every model; explain: with each model's overlay, its precise one if precise."""
        names = names or [f"image {i + 1}" for i in range(len(images))]
        views = self.views(images)
        inputs: dict[int, np.ndarray] = {}
        per_model, features = {}, {}
        for model in self.served:
            size = model.entry.input_size
            if size not in inputs:
                inputs[size] = np.stack([to_model_input(view.pixels, size) for view in views])
            per_model[model.entry.arch], features[model.entry.arch] = self._score_model(model, inputs[size], explain, tta,
                                                                                        precise)
        verdicts = self.screen.assess([view.pixels for view in views], features, inputs)
        return [ImageScore(names[i], images[i], {arch: _on_image(scores[i], views[i]) for arch, scores in per_model.items()},
                           verdicts[i], self.ensemble_calibration, views[i].factor) for i in range(len(images))]

    def _score_model(self, model: ServedModel, pixels: np.ndarray, explain: bool, tta: bool,
                     precise: bool = False) -> tuple[list[ModelScore], np.ndarray]:
        from lungfake.explain.cam import heatmap, run_explained

        loaded = model.explained_by(precise and explain)
        entry, probabilities, features, heatmaps = loaded.entry, [], [], []
        step = EXPLAIN_BATCH if explain else BATCH
        with model.lock:
            for start in range(0, len(pixels), step):
                chunk = pixels[start : start + step]
                outputs, class_maps = run_explained(loaded, chunk) if explain else (loaded.run(chunk), None)
                chunk_probabilities = outputs[PROBABILITIES]
                if tta:  # the first view is the chunk itself, whose probabilities are already there
                    views = dihedral_views(chunk)[1:]
                    chunk_probabilities = np.mean([chunk_probabilities] + [loaded.forward(view)[1] for view in views], axis=0)
                features.append(outputs[POOLED])
                probabilities.append(chunk_probabilities)
                if explain:  # of the predicted class (the temperature keeps it), by the registered method (cam.py)
                    heatmaps.extend(heatmap(entry.explanation_method, maps[..., c], entry.input_size)
                                    for maps, c in zip(class_maps, chunk_probabilities.argmax(axis=1)))
        calibrated = apply_temperature(np.concatenate(probabilities), entry.temperature)
        heatmaps, trust, warn_below = heatmaps or [None] * len(pixels), entry.trust, model.warn_below()
        scores = [ModelScore(entry.arch, model.name, dict(zip(entry.class_names, map(float, row))), entry.sha256,
                             warn_below, heatmap, trust) for row, heatmap in zip(calibrated, heatmaps)]
        return scores, np.concatenate(features)
