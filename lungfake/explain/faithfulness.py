"""How far an explanation map can be trusted: the measures benchmarks/explanations.py prints and evaluate records.

Every measure takes the model as a function (images at its input size -> class probabilities) and the maps as arrays
at that size, so a toy network whose answer is known tests each one (tests/test_faithfulness.py).

- Deletion and insertion (Petsiuk et al. 2018, "RISE"): the tile's pixels are replaced by a blurred copy of the tile,
  most relevant first (deletion), or put back into the blurred copy most relevant first (insertion), and the
  predicted class's probability is followed over the fraction replaced. A faithful map makes the deletion curve fall
  fast and the insertion curve rise fast; its margin is measured against random maps of the same resolution (cells),
  so a blob is compared with blobs, not with pixel noise.
- Border share: the share of the map's mass, and whether its peak lies, in the outer eighth of the tile.
- Randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"): the Spearman rank correlation between the
  trained model's map and the map of the model with its top layers re-initialised; a map that barely changes shows
  the image, not the model.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # (n, size, size, 3) pixels 0-255 -> (n, classes) probabilities

FRACTIONS = np.round(np.linspace(0.0, 1.0, 11), 2)  # share of the tile replaced at each point of a curve
TOP_SHARE = 0.2  # "blurring the highlighted fifth"
BORDER_SHARE = 1 / 8  # the outer eighth of the tile on each side
BLUR_SIGMA_SHARE = 1 / 16  # the baseline's Gaussian sigma, as a share of the side: nuclei and glands are gone
RANDOMISATION_LIMIT = 0.5  # a map that keeps a rank correlation above this after re-initialisation fails
MIN_TOP_FIFTH_RATIO = 2.0  # a map shown as evidence: its highlighted fifth costs at least twice a random fifth
# issue 38's other targets for a map, preferred when choosing among those that pass: it peaks in the outer eighth on
# at most half the tiles, and it resolves at least 8x8 cells (a 4x4 map cannot point at a gland)
MAX_BORDER_PEAK_SHARE = 0.5
MIN_CELLS = 8
MAX_MEAN_MAP_CORRELATION = 0.5  # a map more like the model's mean map than this says little about its own tile


def blurred(image: np.ndarray) -> np.ndarray:
    """The baseline a curve replaces pixels with: the tile blurred until no cell or gland can be seen."""
    sigma = max(1.0, image.shape[0] * BLUR_SIGMA_SHARE)
    return cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def ranking(relevance: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel indices (flattened), most relevant first; ties (a flat map, a zeroed region) broken at random."""
    jitter = np.random.default_rng(seed).random(relevance.size) * 1e-6 * (float(np.ptp(relevance)) or 1.0)
    return np.argsort(-(relevance.ravel() + jitter), kind="stable")


def _curve_inputs(image: np.ndarray, baseline: np.ndarray, order: np.ndarray, insert: bool) -> np.ndarray:
    """The images along one curve: FRACTIONS of the pixels, in this order, taken from baseline (deletion) or
    from the image into the baseline (insertion)."""
    flat_image, flat_base = image.reshape(-1, image.shape[-1]), baseline.reshape(-1, image.shape[-1])
    start, source = (flat_base, flat_image) if insert else (flat_image, flat_base)
    steps = []
    for fraction in FRACTIONS:
        mixed = start.copy()
        chosen = order[: int(round(fraction * len(order)))]
        mixed[chosen] = source[chosen]
        steps.append(mixed.reshape(image.shape))
    return np.stack(steps).astype(np.float32)


def random_relevance(cells: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random map of the same resolution as the map it is compared with, brought to size the same way."""
    return cv2.resize(rng.random((cells, cells)).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class TileCurves:
    """One tile's curves (predicted class's probability at each of FRACTIONS) for its map and for a random map."""
    deletion: np.ndarray
    insertion: np.ndarray
    random_deletion: np.ndarray
    random_insertion: np.ndarray

    @property
    def deletion_margin(self) -> float:
        """How much lower the map's deletion curve runs than the random map's (area between them)."""
        return area(self.random_deletion) - area(self.deletion)

    @property
    def insertion_margin(self) -> float:
        return area(self.insertion) - area(self.random_insertion)

    def drop(self, curve: np.ndarray, share: float = TOP_SHARE) -> float:
        """How far the probability falls when this share of the tile is blurred along this curve."""
        return float(curve[0] - curve[int(np.argmin(np.abs(FRACTIONS - share)))])


def area(curve: np.ndarray) -> float:
    """Area under a curve over FRACTIONS (0 to 1)."""
    curve = np.asarray(curve, np.float64)
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(FRACTIONS)))


def tile_curves(predict: Predict, image: np.ndarray, relevance: np.ndarray, class_index: int, cells: int,
                seed: int = 0) -> TileCurves:
    """Deletion and insertion curves of one tile for its map and for one random map of `cells` cells per side."""
    baseline = blurred(image)
    noise = random_relevance(cells, image.shape[0], np.random.default_rng(seed))
    batches = [_curve_inputs(np.asarray(image, np.float32), baseline, ranking(r, seed), insert)
               for r in (relevance, noise) for insert in (False, True)]
    probabilities = predict(np.concatenate(batches))[:, class_index].reshape(4, len(FRACTIONS))
    return TileCurves(probabilities[0], probabilities[1], probabilities[2], probabilities[3])


def outer_ring(size: int, share: float = BORDER_SHARE) -> np.ndarray:
    """True in the outer `share` of a size x size tile on every side."""
    width = max(1, int(round(size * share)))
    ring = np.ones((size, size), bool)
    ring[width : size - width, width : size - width] = False
    return ring


def border_figures(relevance: np.ndarray) -> tuple[float, bool]:
    """(share of the map's mass in the outer eighth, whether its peak lies there)."""
    ring = outer_ring(relevance.shape[0])
    relevance = np.maximum(np.asarray(relevance, np.float64), 0)
    total = relevance.sum()
    mass = float(relevance[ring].sum() / total) if total > 0 else float(ring.mean())
    return mass, bool(ring.flat[int(np.argmax(relevance))])


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (0 where either is flat: nothing ranks)."""
    from scipy.stats import spearmanr  # here: scipy.stats takes a third of a second to import, and the app never ranks

    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    return float(spearmanr(np.ravel(first), np.ravel(second)).statistic)


def family_interval(values: np.ndarray, families: np.ndarray, statistic=np.mean, draws: int = 1000,
                    seed: int = 0) -> list[float]:
    """95% bootstrap interval of a statistic of per-tile values, resampling whole families (tiles of one
    family are not independent)."""
    values, families = np.asarray(values), np.asarray(families)
    names = np.unique(families)
    members = [np.flatnonzero(families == name) for name in names]
    rng, estimates = np.random.default_rng(seed), []
    for _ in range(draws):
        chosen = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        estimates.append(statistic(values[chosen]))
    # A ratio is infinite in a draw whose random fifth cost nothing; interpolating between infinities gives nan, so
    # such draws are ranked as they are (the bound is then infinite: the data do not bound it)
    method = "linear" if np.all(np.isfinite(estimates)) else "inverted_cdf"
    low, high = np.percentile(estimates, [2.5, 97.5], method=method)
    return [round(float(low), 4), round(float(high), 4)]


def ratio_with_interval(ratio: float, interval: list[float]) -> str:
    """A ratio with its 95% interval, as tables show it: x3.5 (2.3-11.7)."""
    low, high = interval
    return f"x{ratio:.1f} ({low:.1f}-{high:.1f})"


@dataclass(frozen=True)
class TileSpecificity:
    """How much a model's maps say about their own tile: the highlighted fifth against another tile's map and against
    smooth random maps (ratios of mean drops, 95% intervals over families), likeness to the mean map, border peaks."""
    tiles: int
    own_vs_other_ratio: float
    own_vs_other_ratio_ci95: list[float]
    own_vs_smooth_ratio: float
    own_vs_smooth_ratio_ci95: list[float]
    mean_map_correlation: float
    border_peak_share: float

    @property
    def passes(self) -> bool:
        """The issue's targets: both ratios at least 2 with intervals above 1, mean-map correlation at most 0.5, peak
        in the outer eighth on at most half the tiles."""
        return (self.own_vs_other_ratio >= MIN_TOP_FIFTH_RATIO and self.own_vs_other_ratio_ci95[0] > 1
                and self.own_vs_smooth_ratio >= MIN_TOP_FIFTH_RATIO and self.own_vs_smooth_ratio_ci95[0] > 1
                and self.mean_map_correlation <= MAX_MEAN_MAP_CORRELATION and self.border_peak_share <= MAX_BORDER_PEAK_SHARE)


@dataclass(frozen=True)
class Faithfulness:
    """One model's explanation measured on a set of tiles (what metrics files record and pages caption)."""
    method: str
    tiles: int
    families: int
    cells: int  # effective resolution: cells per side of the map before it is brought to the tile
    milliseconds_per_map: float
    deletion_margin: float
    deletion_margin_ci95: list[float]
    insertion_margin: float
    insertion_margin_ci95: list[float]
    top_fifth_drop: float  # mean fall of the predicted class's probability with the highlighted fifth blurred
    random_fifth_drop: float  # ... with a random fifth (same resolution) blurred
    top_fifth_ratio: float
    top_fifth_ratio_ci95: list[float]
    border_mass: float  # mean share of the map's mass in the outer eighth (43.75% of the tile)
    border_peak_share: float  # share of tiles whose map peaks in the outer eighth
    deletion_curve: list[float]  # mean over tiles, at FRACTIONS
    random_deletion_curve: list[float]
    insertion_curve: list[float]
    random_insertion_curve: list[float]
    randomisation_spearman: float | None = None  # mean over tiles; None: not measured
    specificity: TileSpecificity | None = None  # how much the maps say about their own tile; None: not measured

    @property
    def passes(self) -> bool:
        """The map is shown as evidence only if blurring its top fifth hurts at least twice as much as a random fifth
        and its deletion margin's interval lies above zero."""
        return self.top_fifth_ratio >= MIN_TOP_FIFTH_RATIO and self.deletion_margin_ci95[0] > 0

    @property
    def tile_specific(self) -> bool | None:
        """Whether the maps passed the tile-specific test (TileSpecificity.passes); None: not measured."""
        return None if self.specificity is None else self.specificity.passes

    @property
    def is_evidence(self) -> bool:
        """Shown as evidence of what the model used on this tile: faithful, and specific to the tile."""
        return self.passes and self.tile_specific is True

    @property
    def meets_targets(self) -> bool:
        """It passes, and also meets the border and resolution targets (and the tile-specific test, where measured)."""
        return (self.passes and self.border_peak_share <= MAX_BORDER_PEAK_SHARE and self.cells >= MIN_CELLS
                and self.tile_specific is not False)

    @property
    def ratio_text(self) -> str:
        """The highlighted fifth against a random fifth with its interval, as tables show it: x3.5 (2.3-11.7)."""
        return ratio_with_interval(self.top_fifth_ratio, self.top_fifth_ratio_ci95)

    @property
    def other_tile_text(self) -> str:
        """The highlighted fifth against the fifth another tile's map highlights, as tables show it."""
        specific = self.specificity
        return "not measured" if specific is None else ratio_with_interval(specific.own_vs_other_ratio,
                                                                           specific.own_vs_other_ratio_ci95)

    @property
    def smooth_random_text(self) -> str:
        """The highlighted fifth against random maps as smooth as the shown one, as tables show it."""
        specific = self.specificity
        return "not measured" if specific is None else ratio_with_interval(specific.own_vs_smooth_ratio,
                                                                           specific.own_vs_smooth_ratio_ci95)

    @property
    def mean_map_text(self) -> str:
        return "not measured" if self.specificity is None else f"{self.specificity.mean_map_correlation:.2f}"

    @property
    def deletion_margin_text(self) -> str:
        low, high = self.deletion_margin_ci95
        return f"{self.deletion_margin:+.3f} ({low:+.3f} to {high:+.3f})"

    @property
    def passes_randomisation(self) -> bool | None:
        return None if self.randomisation_spearman is None else self.randomisation_spearman <= RANDOMISATION_LIMIT

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> Faithfulness:
        specificity = payload.get("specificity")
        return cls(**{**payload, "specificity": TileSpecificity(**specificity) if specificity else None})


def _ratio_of_means(pairs: np.ndarray) -> float:
    return float(pairs[:, 0].mean() / pairs[:, 1].mean()) if pairs[:, 1].mean() > 0 else float("inf")


def summarise(method: str, curves: list[TileCurves], borders: list[tuple[float, bool]], families: np.ndarray,
              cells: int, milliseconds: float, randomisation: list[float] | None = None,
              specificity: TileSpecificity | None = None) -> Faithfulness:
    """The figures of one model's maps over tiles, with intervals over families."""
    deletion = np.array([c.deletion_margin for c in curves])
    insertion = np.array([c.insertion_margin for c in curves])
    drops = np.array([[c.drop(c.deletion), c.drop(c.random_deletion)] for c in curves])
    ratio = _ratio_of_means(drops)
    ratio_interval = family_interval(drops, families, _ratio_of_means) if np.isfinite(ratio) else [ratio, ratio]

    def mean_curve(name):
        return [round(float(v), 4) for v in np.mean([getattr(c, name) for c in curves], axis=0)]

    return Faithfulness(
        method=method, tiles=len(curves), families=len(np.unique(families)), cells=int(cells),
        milliseconds_per_map=round(float(milliseconds), 2),
        deletion_margin=round(float(deletion.mean()), 4), deletion_margin_ci95=family_interval(deletion, families),
        insertion_margin=round(float(insertion.mean()), 4), insertion_margin_ci95=family_interval(insertion, families),
        top_fifth_drop=round(float(drops[:, 0].mean()), 4), random_fifth_drop=round(float(drops[:, 1].mean()), 4),
        top_fifth_ratio=round(ratio, 3) if np.isfinite(ratio) else ratio, top_fifth_ratio_ci95=ratio_interval,
        border_mass=round(float(np.mean([b[0] for b in borders])), 4),
        border_peak_share=round(float(np.mean([b[1] for b in borders])), 4),
        deletion_curve=mean_curve("deletion"), random_deletion_curve=mean_curve("random_deletion"),
        insertion_curve=mean_curve("insertion"), random_insertion_curve=mean_curve("random_insertion"),
        randomisation_spearman=None if randomisation is None else round(float(np.mean(randomisation)), 4),
        specificity=specificity,
    )


# Tile-specific measures (issue 53): a map that is the same central blob on every tile beats scattered random cells
# whatever the tissue, so the highlighted fifth is also set against another tile's map (ranked on this tile) and
# against random maps as smooth as the shown one, and each map's likeness to the model's mean map is reported.

def top_fifth_drops(predict: Predict, images: np.ndarray, relevances: list[np.ndarray], class_indices,
                    share: float = TOP_SHARE, seed: int = 0) -> np.ndarray:
    """For each tile, how far its class's probability falls when the share of it that its relevance map ranks
    highest is blurred (one call of predict for all tiles)."""
    images = np.asarray(images, np.float32)
    blurred_images = np.stack([blurred(image) for image in images])
    edited = images.copy()
    for i, (image, relevance) in enumerate(zip(images, relevances)):
        chosen = ranking(relevance, seed + i)[: int(round(share * relevance.size))]
        flat = edited[i].reshape(-1, image.shape[-1])
        flat[chosen] = blurred_images[i].reshape(-1, image.shape[-1])[chosen]
    probabilities = predict(np.concatenate([images, edited]))
    rows, columns = np.arange(len(images)), np.asarray(class_indices, int)
    return probabilities[rows, columns] - probabilities[len(images) + rows, columns]


def derangement(count: int) -> np.ndarray:
    """A fixed derangement: tile i is given tile i+1's map (the last, the first's); no tile keeps its own."""
    return np.roll(np.arange(count), -1)


def smooth_random_map(relevance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random map with the same power spectrum as this one, so as smooth and as blob-like (phase randomisation:
    the Fourier amplitudes kept, the phases drawn anew)."""
    relevance = np.asarray(relevance, np.float64)
    spectrum = np.fft.rfft2(relevance - relevance.mean())
    phases = np.exp(2j * np.pi * rng.random(spectrum.shape))
    phases[0, 0] = 1.0
    return np.fft.irfft2(np.abs(spectrum) * phases, s=relevance.shape).astype(np.float32)


def mean_map_correlations(maps: list[np.ndarray]) -> np.ndarray:
    """Each map's Pearson correlation with the model's mean map over these tiles (1: the same map everywhere)."""
    stacked = np.stack([np.asarray(m, np.float64).ravel() for m in maps])
    mean = stacked.mean(axis=0)
    out = []
    for row in stacked:
        spread = row.std() * mean.std()
        out.append(float(np.mean((row - row.mean()) * (mean - mean.mean())) / spread) if spread > 0 else 1.0)
    return np.array(out)


def tile_specificity(predict: Predict, images: np.ndarray, maps: list[np.ndarray], class_indices, families: np.ndarray,
                     seed: int = 0) -> TileSpecificity:
    """The tile-specific measures of one model's maps on these tiles."""
    rng = np.random.default_rng(seed)
    others = [maps[j] for j in derangement(len(maps))]
    smooth = [smooth_random_map(m, rng) for m in maps]
    own, other, random = (top_fifth_drops(predict, images, chosen, class_indices, seed=seed) for chosen in (maps, others, smooth))

    def ratio(baseline: np.ndarray) -> tuple[float, list[float]]:
        pairs = np.stack([own, baseline], axis=1)
        value = _ratio_of_means(pairs)
        return value, (family_interval(pairs, families, _ratio_of_means) if np.isfinite(value) else [value, value])

    (versus_other, other_ci), (versus_smooth, smooth_ci) = ratio(other), ratio(random)
    return TileSpecificity(len(maps), round(versus_other, 3), other_ci, round(versus_smooth, 3), smooth_ci,
                           round(float(mean_map_correlations(maps).mean()), 4),
                           round(float(np.mean([border_figures(m)[1] for m in maps])), 4))
