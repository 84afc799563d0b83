"""Does an input look like the lung H&E tiles the models were trained on?

Four checks, all fitted on training tiles only and given limits from validation
tiles, so nothing that is not histology (and no other lab's tile) ever shapes them:

* tissue: colour and texture statistics of the image, softened first so that a sharper scanner than
  LC25000's does not count against it (optical density along the
  haematoxylin/eosin plane, hue, flat areas, edges, how the haematoxylin and grey
  images spread their detail over spatial frequencies, nucleus-sized blobs) against
  those of training tiles as other labs might show them (``robustness.another_lab``:
  other stain amounts and colours, magnification 0.5-2x, blur, JPEG). Failing it means
  *not lung H&E tissue*: ``ood`` is true and the app refuses the image.
* two stains: H&E tissue mixes haematoxylin and eosin in every proportion, so its two stains vary apart
  (two_stain_spread, by colour deconvolution); an image whose colours run along one line (a photograph, drawing or
  document recoloured in H&E's colours) does not, whatever its texture. Below the limit (a share of the least spread
  on validation tiles, plain, as other labs show them and stain-normalised) the image is refused too.
* stain: the same statistics against LC25000's own tiles;
* features: where the feature-model's pooled features fall relative to the
  training tiles (Mahalanobis distance in a PCA space).
  H&E tissue that fails either of these two differs from LC25000 (another lab's colours
  or magnification): ``domain_shift`` is true, with the reason, and the app shows the
  predictions with a caution instead of refusing.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungfake.errors import ModelIntegrityError
from lungfake.serving.images import to_model_input

STATS_SIDE = 128
# Every image is softened to this Gaussian blur (pixels at STATS_SIDE) before its statistics are taken:
# LC25000's tiles are soft and other scanners' are sharper, and without it 5.8% of validation tiles under an
# unsharp mask (x2, radius 2) were refused as not tissue. 0.75 is the least blur at which sharpened validation
# tiles (x1.5-3, radius 1-2) are refused no more often than validation tiles as other labs show them, with
# non-histology still refused >= 95% (docs/decisions.md, LC25000 and built images only; the need
# was seen on the external development tiles, the value was not chosen on them).
STATS_BLUR_SIGMA = 0.75
FEATURE_COMPONENTS = 32
DEFAULT_QUANTILE = 0.995  # per check, on validation tiles: about 1% of real tiles flagged in all
TISSUE_QUANTILE = DEFAULT_QUANTILE  # 0.999 let 16 of 40 H&E-recoloured fakes through (benchmarks/ood_rates.py)
# Ruifrok & Johnston optical-density stain vectors; their cross product is the direction H&E never reaches.
_HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
_EOSIN = np.array([0.07, 0.99, 0.11])
_OFF_STAIN = np.cross(_HAEMATOXYLIN, _EOSIN) / np.linalg.norm(np.cross(_HAEMATOXYLIN, _EOSIN))
_HAEMATOXYLIN_UNIT = _HAEMATOXYLIN / np.linalg.norm(_HAEMATOXYLIN)
# Spatial-frequency bands (cycles per pixel at STATS_SIDE): tissue keeps its detail at nucleus scale;
# photographs, documents and drawings, even recoloured in H&E pink and purple, do not.
_FREQUENCY_BANDS = ((0.02, 0.06), (0.06, 0.15), (0.15, 0.3), (0.3, 0.75))
_RADIAL_FREQUENCY = np.hypot(*np.meshgrid(np.fft.fftfreq(STATS_SIDE), np.fft.fftfreq(STATS_SIDE), indexing="ij"))
_BLOCK = 8
STAIN_STATISTICS = (
    "background_fraction", "dark_fraction", "mean_od_r", "mean_od_g", "mean_od_b", "od_spread",
    "off_stain", "green_fraction", "blue_fraction", "saturation", "hue_cos", "hue_sin",
    "edge_strength", "sharp_edge_fraction", "flat_colour_fraction",
    *(f"{image}_power_{low}-{high}" for image in ("haematoxylin", "grey") for low, high in _FREQUENCY_BANDS),
    "blob_contrast", "blob_fraction", "haematoxylin_spread", "flat_block_fraction", "block_contrast_range",
)


def stain_statistics(rgb: np.ndarray, blur_sigma: float = STATS_BLUR_SIGMA) -> np.ndarray:
    """A fixed-length vector (STAIN_STATISTICS order) of colour and texture statistics of an RGB image,
    softened first by blur_sigma (see STATS_BLUR_SIGMA)."""
    import cv2

    pixels = to_model_input(rgb, STATS_SIDE)
    if blur_sigma > 0:
        pixels = cv2.GaussianBlur(pixels, (0, 0), blur_sigma)
    pixels = pixels / 255.0
    flat = pixels.reshape(-1, 3)
    od = -np.log10(np.clip(flat, 1 / 255, 1.0))
    od_norm = np.linalg.norm(od, axis=1)
    tissue = od_norm > 0.25  # not white background
    stained = od[tissue] if tissue.any() else od
    unit = stained / np.maximum(np.linalg.norm(stained, axis=1, keepdims=True), 1e-6)
    red, green, blue = flat[:, 0], flat[:, 1], flat[:, 2]
    high, low = flat.max(axis=1), flat.min(axis=1)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    hue = np.arctan2(np.sqrt(3) * (green - blue), 2 * red - green - blue)
    grey = pixels.mean(axis=2)
    gradient = np.hypot(np.diff(grey, axis=0)[:, :-1], np.diff(grey, axis=1)[:-1, :])
    quantised = (flat * 15.99).astype(np.int32) @ np.array([256, 16, 1])
    _, counts = np.unique(quantised, return_counts=True)
    return np.array([
        1.0 - tissue.mean(),
        (high < 0.15).mean(),
        *stained.mean(axis=0),
        stained.std(axis=0).mean(),
        np.abs(unit @ _OFF_STAIN).mean(),
        ((green > red + 0.04) & (green > blue + 0.04)).mean(),
        ((blue > red + 0.08) & (blue > green + 0.08)).mean(),
        saturation.mean(),
        np.average(np.cos(hue), weights=saturation + 1e-6),
        np.average(np.sin(hue), weights=saturation + 1e-6),
        gradient.mean(),
        (gradient > 0.25).mean(),
        np.sort(counts)[-5:].sum() / len(quantised),
        *_texture_statistics(od.reshape(pixels.shape) @ _HAEMATOXYLIN_UNIT, grey),
    ], dtype=np.float64)


TWO_STAIN_BINS = 16
TWO_STAIN_MIN_TISSUE = 0.05  # with less stained area the measure says nothing (blank images have their own checks)


def two_stain_spread(rgb: np.ndarray) -> float:
    """How far the image's two stains vary apart: over its stained pixels, the share of one stain's variance that the
    other does not explain (binned by the other's quantiles; the smaller of the two directions). H&E-stained tissue
    mixes haematoxylin and eosin in every proportion (nuclei, stroma, cytoplasm), well above 0.1 on every LC25000
    tile under every stain change measured; an image whose colours run along one line (a photograph, drawing or
    document recoloured in H&E's pink and purple, a single-stain image) stays near 0. NaN: too little stain to say."""
    import cv2
    from skimage.color import rgb2hed

    # averaged down (area) where larger; a smaller image as it is: interpolating up would invent mixed colours
    pixels = cv2.resize(rgb, (STATS_SIDE, STATS_SIDE), interpolation=cv2.INTER_AREA) if max(rgb.shape[:2]) > STATS_SIDE else rgb
    stains = rgb2hed(pixels).reshape(-1, 3)  # Ruifrok and Johnston's colour deconvolution
    density = -np.log((pixels.reshape(-1, 3).astype(np.float64) + 1.0) / 256.0).sum(axis=1)
    stained = density > 0.3  # not white background
    if stained.mean() < TWO_STAIN_MIN_TISSUE:
        return float("nan")
    haematoxylin, eosin = stains[stained, 0], stains[stained, 1]
    return min(_unexplained(haematoxylin, eosin), _unexplained(eosin, haematoxylin))


def _unexplained(given: np.ndarray, other: np.ndarray) -> float:
    """The share of other's variance left within bins of given's quantiles (0: other is a function of given)."""
    total = other.var()
    if total <= 0:
        return 0.0
    edges = np.quantile(given, np.linspace(0, 1, TWO_STAIN_BINS + 1))
    bins = np.clip(np.searchsorted(edges, given, side="right") - 1, 0, TWO_STAIN_BINS - 1)
    counts = np.bincount(bins, minlength=TWO_STAIN_BINS)
    sums, squares = np.bincount(bins, other, TWO_STAIN_BINS), np.bincount(bins, other * other, TWO_STAIN_BINS)
    within = squares - np.where(counts > 0, sums**2 / np.maximum(counts, 1), 0.0)
    return float(np.maximum(within, 0).sum() / len(other) / total)


def _band_powers(image: np.ndarray) -> list[float]:
    """Log share of the image's (mean-removed) spectral power in each frequency band."""
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    total = power.sum() + 1e-9
    return [np.log(power[(low <= _RADIAL_FREQUENCY) & (high > _RADIAL_FREQUENCY)].sum() / total + 1e-6)
            for low, high in _FREQUENCY_BANDS]


def _texture_statistics(haematoxylin: np.ndarray, grey: np.ndarray) -> list[float]:
    from scipy import ndimage

    blobs = ndimage.gaussian_filter(haematoxylin, 1.0) - ndimage.gaussian_filter(haematoxylin, 3.0)
    side = STATS_SIDE // _BLOCK
    block_contrast = grey.reshape(side, _BLOCK, side, _BLOCK).std(axis=(1, 3))
    low, high = np.percentile(block_contrast, [10, 90])
    return [
        *_band_powers(haematoxylin), *_band_powers(grey),
        np.log(blobs.std() + 1e-4), (blobs > 0.05).mean(), np.log(haematoxylin.std() + 1e-4),
        (block_contrast < 0.02).mean(), np.log(high + 1e-4) - np.log(low + 1e-4),
    ]


@dataclass(frozen=True)
class GaussianReference:
    """A Gaussian fitted to reference vectors, optionally in a PCA subspace, and a distance limit."""

    mean: np.ndarray
    precision: np.ndarray
    limit: float
    projection: np.ndarray | None = None  # rows: principal axes

    @classmethod
    def fit(cls, train: np.ndarray, held_out: np.ndarray, quantile: float, components: int | None = None) -> GaussianReference:
        from sklearn.covariance import LedoitWolf

        projection = None
        if components is not None:
            centred = train - train.mean(axis=0)
            # each component's sign set by its largest entry (as scikit-learn's PCA does): an SVD's signs are otherwise
            # the LAPACK build's choice, and the fitted centre would differ between machines
            rows = np.linalg.svd(centred, full_matrices=False)[2][:components]
            projection = rows * np.sign(rows[np.arange(len(rows)), np.argmax(np.abs(rows), axis=1)])[:, None]
        estimator = LedoitWolf().fit(train if projection is None else train @ projection.T)
        fitted = cls(estimator.location_, estimator.precision_, np.inf, projection)
        return cls(fitted.mean, fitted.precision, float(np.quantile(fitted.distance(held_out), quantile)), projection)

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        return vectors if self.projection is None else vectors @ self.projection.T

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        delta = self._project(vectors) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", delta, self.precision, delta), 0.0))


@dataclass(frozen=True)
class OodVerdict:
    ood: bool | None  # not lung H&E tissue; None: no reference registered, so nothing was checked
    reason: str
    domain_shift: bool | None = None  # H&E tissue, but unlike LC25000's (colours, magnification)
    domain_shift_reason: str = ""

    def to_json(self) -> dict:
        return {"ood": self.ood, "ood_reason": self.reason, "domain_shift": self.domain_shift,
                "domain_shift_reason": self.domain_shift_reason}


NOT_CHECKED = OodVerdict(None, "not checked: no out-of-distribution reference is registered for these weights")
LIKE_LC25000 = "looks like the lung H&E tiles the models were trained on"


@dataclass(frozen=True)
class OodReference:
    stain: GaussianReference
    features: GaussianReference
    feature_model: str
    quantile: float
    tissue: GaussianReference | None = None  # None in references fitted before domain shift was told apart
    blur_sigma: float = STATS_BLUR_SIGMA  # the softening its statistics were fitted with (0 before it existed)
    two_stain_limit: float | None = None  # below it, an image's colours run along one line (None: not checked)

    def assess(self, rgb: np.ndarray, pooled_features: np.ndarray) -> OodVerdict:
        statistics = stain_statistics(rgb, self.blur_sigma)
        stain = float(self.stain.distance(statistics)[0])
        feature = float(self.features.distance(pooled_features)[0])
        if self.tissue is not None:
            tissue = float(self.tissue.distance(statistics)[0])
            if tissue > self.tissue.limit:
                return OodVerdict(True, "its colours and texture are unlike H&E-stained lung tissue, even as other labs "
                                        f"stain and photograph it (tissue distance {tissue:.1f}, limit {self.tissue.limit:.1f})")
            spread = two_stain_spread(rgb) if self.two_stain_limit is not None else float("nan")
            if np.isfinite(spread) and spread < self.two_stain_limit:
                return OodVerdict(True, "its colours run along a single line, as a recoloured photograph, drawing or "
                                        "document's do: H&E-stained tissue shows two stains varying apart "
                                        f"(two-stain spread {spread:.2f}, limit {self.two_stain_limit:.2f})")
        elif stain > self.stain.limit:
            return OodVerdict(True, "its colours and texture are unlike an H&E-stained lung tile "
                                    f"(stain distance {stain:.1f}, limit {self.stain.limit:.1f})")
        return self._domain_verdict(stain, feature)

    def _domain_verdict(self, stain: float, feature: float) -> OodVerdict:
        if self.tissue is None:
            if feature > self.features.limit:
                return OodVerdict(True, "the model's features are far from every training tile "
                                        f"(feature distance {feature:.1f}, limit {self.features.limit:.1f})")
            return OodVerdict(False, LIKE_LC25000, False, "")
        if stain > self.stain.limit:
            why = ("its colours or texture differ from LC25000's (another lab's stain, scanner or magnification?): "
                   f"stain distance {stain:.1f}, limit {self.stain.limit:.1f}")
        elif feature > self.features.limit:
            why = ("the models' features are far from every training tile (tissue or magnification unlike LC25000's?): "
                   f"feature distance {feature:.1f}, limit {self.features.limit:.1f}")
        else:
            return OodVerdict(False, "lung H&E tissue", False, LIKE_LC25000)
        return OodVerdict(False, "lung H&E tissue", True, why)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        tissue = {} if self.tissue is None else dict(tissue_mean=self.tissue.mean, tissue_precision=self.tissue.precision,
                                                      tissue_limit=self.tissue.limit)
        np.savez(
            buffer, stain_mean=self.stain.mean, stain_precision=self.stain.precision, stain_limit=self.stain.limit,
            feature_mean=self.features.mean, feature_precision=self.features.precision,
            feature_limit=self.features.limit, feature_projection=self.features.projection,
            feature_model=np.array(self.feature_model), quantile=self.quantile, blur_sigma=self.blur_sigma, **tissue,
            **({} if self.two_stain_limit is None else {"two_stain_limit": self.two_stain_limit}),
        )
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> OodReference:
        try:
            with np.load(path, allow_pickle=False) as saved:
                if saved["stain_mean"].shape != (len(STAIN_STATISTICS),):
                    raise ValueError(f"fitted on {saved['stain_mean'].shape[0]} image statistics, this version "
                                     f"computes {len(STAIN_STATISTICS)}")
                tissue = (GaussianReference(saved["tissue_mean"], saved["tissue_precision"], float(saved["tissue_limit"]))
                          if "tissue_mean" in saved.files else None)
                return cls(
                    GaussianReference(saved["stain_mean"], saved["stain_precision"], float(saved["stain_limit"])),
                    GaussianReference(saved["feature_mean"], saved["feature_precision"], float(saved["feature_limit"]),
                                      saved["feature_projection"]),
                    str(saved["feature_model"]), float(saved["quantile"]), tissue,
                    float(saved["blur_sigma"]) if "blur_sigma" in saved.files else 0.0,
                    float(saved["two_stain_limit"]) if "two_stain_limit" in saved.files else None,
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ModelIntegrityError(f"The out-of-distribution reference {path.name} is unreadable ({exc}); refit it "
                                      "with python -m lungfake ood-fit.") from None


