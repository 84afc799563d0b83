"""Detect augmentation families: tiles that are rotated and/or flipped copies of one original.

LC25000 copies were made by rotating an original about its centre (up to 25 degrees),
cropping the largest upright square and scaling it back up, and flipping. In log-polar
coordinates about the tile centre, a rotation is a circular shift along the angle axis,
the crop-and-rescale is a shift along the log-radius axis and a flip reverses the angle
axis. So two copies of one original match, after such a shift, where two different tiles
do not; and the same log-polar picture gives shift-invariant descriptors to pick the few
candidate pairs worth checking.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.neighbors import NearestNeighbors

WORK_SIZE = 128
N_RINGS = 56
N_ANGLES = 128
MAX_RING_SHIFT = 8  # ring spacing is ln(8)/55 = 0.038, so this covers a rescale of 1.36
N_HARMONICS = 32
N_CANDIDATES = 40
SMALL_FAMILY = 8  # LC25000 made about 20 copies of each original
RESCUE_CANDIDATES = 600
MATCH_THRESHOLD = 0.55  # aligned copies correlate 0.6-1.0; the best of many different tiles reaches 0.5
ANGLE_SEARCH_STEPS = 8 * N_HARMONICS  # 1.4 degree steps
PLAUSIBLE_POLAR_SCORE = 0.35
CLEAR_MATCH = 0.7
RING_STEP = float(np.log(0.48 / 0.06) / (N_RINGS - 1))


@dataclass(frozen=True)
class FamilyReport:
    labels: np.ndarray  # family id per tile, 0..n_families-1
    n_families: int
    seconds: float


def _log_polar_maps(size: int) -> tuple[np.ndarray, np.ndarray]:
    centre = (size - 1) / 2.0
    radii = np.geomspace(0.06 * size, 0.48 * size, N_RINGS)
    angles = np.linspace(0.0, 2 * np.pi, N_ANGLES, endpoint=False)
    map_x = (centre + radii[:, None] * np.cos(angles)[None, :]).astype(np.float32)
    map_y = (centre + radii[:, None] * np.sin(angles)[None, :]).astype(np.float32)
    return map_x, map_y


def log_polar(images: np.ndarray) -> np.ndarray:
    """(n, rings, angles) float32 log-polar samples of the grey level of each RGB tile."""
    map_x, map_y = _log_polar_maps(WORK_SIZE)
    out = np.empty((len(images), N_RINGS, N_ANGLES), np.float32)
    for i, rgb in enumerate(images):
        grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
        out[i] = cv2.remap(grey, map_x, map_y, cv2.INTER_LINEAR)
    return out


def _ring_spectra(polar: np.ndarray) -> np.ndarray:
    """Angular Fourier coefficients 1..N_HARMONICS of each ring, ring mean removed."""
    centred = polar - polar.mean(axis=2, keepdims=True)
    return np.fft.rfft(centred, axis=2)[:, :, 1 : N_HARMONICS + 1].astype(np.complex64)


def invariant_descriptors(images: np.ndarray, polar: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """Descriptors unchanged by rotation and flips, and smoothed against the rescale."""
    magnitude = np.log1p(np.abs(spectra))
    bands = magnitude.reshape(len(polar), 8, N_RINGS // 8, N_HARMONICS).mean(axis=2)
    harmonic_bands = bands.reshape(len(polar), 8, 8, N_HARMONICS // 8).mean(axis=3)
    ring_means = polar.mean(axis=2).reshape(len(polar), 8, N_RINGS // 8).mean(axis=2)
    colour = images.reshape(len(images), -1, 3).mean(axis=1)
    features = np.concatenate(
        [harmonic_bands.reshape(len(polar), -1), ring_means / 16.0, colour / 16.0], axis=1
    )
    return features.astype(np.float32)


def match_scores(spectra_a: np.ndarray, spectra_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best normalised log-polar correlation of each pair (a[i], b[i]) over rotation, flip and
    rescale, and the transform found: columns flipped (0/1), ring shift, angle in radians.

    Correlations over all ring shifts come from one FFT along the ring axis, and over all
    angles from one inverse FFT along the harmonic axis.
    """
    n, shifts = len(spectra_a), np.arange(-MAX_RING_SHIFT, MAX_RING_SHIFT + 1)
    pad = N_RINGS + MAX_RING_SHIFT + 1
    ring_energy_a = np.concatenate([np.zeros((n, 1)), np.cumsum((np.abs(spectra_a) ** 2).sum(axis=2), axis=1)], axis=1)
    ring_energy_b = np.concatenate([np.zeros((n, 1)), np.cumsum((np.abs(spectra_b) ** 2).sum(axis=2), axis=1)], axis=1)
    lo_a, hi_a = np.maximum(0, -shifts), N_RINGS - np.maximum(0, shifts)
    lo_b, hi_b = np.maximum(0, shifts), N_RINGS - np.maximum(0, -shifts)
    norm = np.sqrt((ring_energy_a[:, hi_a] - ring_energy_a[:, lo_a]) * (ring_energy_b[:, hi_b] - ring_energy_b[:, lo_b]))
    a_term = np.conj(np.fft.fft(np.conj(spectra_a), n=pad, axis=1))
    best = np.full(n, -np.inf)
    transform = np.zeros((n, 3), np.float32)
    for flipped in (False, True):
        b = np.conj(spectra_b) if flipped else spectra_b
        # cross[:, s, h] = sum over rings r of a[r, h] * conj(b[r + s, h])
        cross = np.fft.ifft(a_term * np.fft.fft(np.conj(b), n=pad, axis=1), axis=1)[:, shifts % pad]
        spectrum = np.concatenate([np.zeros(cross.shape[:2] + (1,), cross.dtype), cross], axis=2)
        correlation = np.fft.irfft(spectrum, n=ANGLE_SEARCH_STEPS, axis=2) * (ANGLE_SEARCH_STEPS / 2)
        correlation /= np.maximum(norm, 1e-6)[:, :, None]
        flat = correlation.reshape(n, -1).argmax(axis=1)
        shift_index, angle_index = np.divmod(flat, ANGLE_SEARCH_STEPS)
        score = correlation.reshape(n, -1)[np.arange(n), flat]
        better = score > best
        best[better] = score[better]
        transform[better, 0] = float(flipped)
        transform[better, 1] = shifts[shift_index[better]]
        transform[better, 2] = 2 * np.pi * angle_index[better] / ANGLE_SEARCH_STEPS
    return best.astype(np.float32), transform


def _structure(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(grey, (0, 0), 1.0) - cv2.GaussianBlur(grey, (0, 0), 6.0)


def aligned_correlation(structure_a: np.ndarray, structure_b: np.ndarray, transform: np.ndarray) -> float:
    """Pixel correlation of the centres of a and of b moved onto a by the log-polar transform.

    The log-polar peak fixes the rotation and rescale up to their signs, so all four
    sign combinations are tried; a true copy lines up in one of them, a different tile in none.
    """
    flipped, shift, angle = transform
    centre = (WORK_SIZE - 1) / 2.0
    b = cv2.flip(structure_b, 0) if flipped else structure_b
    lo, hi = int(WORK_SIZE * 0.3), int(WORK_SIZE * 0.7)
    a = structure_a[lo:hi, lo:hi].ravel()
    a = (a - a.mean()) / (a.std() + 1e-6)
    def correlation(angle_deg: float, log_scale: float) -> float:
        matrix = cv2.getRotationMatrix2D((centre, centre), angle_deg, float(np.exp(log_scale)))
        moved = cv2.warpAffine(b, matrix, (WORK_SIZE, WORK_SIZE), flags=cv2.INTER_LINEAR)[lo:hi, lo:hi].ravel()
        return float((a * (moved - moved.mean()) / (moved.std() + 1e-6)).mean())

    starts = [(s_a * float(np.degrees(angle)), s_s * shift * RING_STEP) for s_a in (1, -1) for s_s in (1, -1)]
    best, (best_angle, best_scale) = max((correlation(*p), p) for p in starts)
    if best < CLEAR_MATCH:  # the search grid is coarse: refine around the peak before judging
        offsets = [(da, ds) for da in (-0.7, 0.0, 0.7) for ds in (-RING_STEP / 2, 0.0, RING_STEP / 2)]
        best = max(best, max(correlation(best_angle + da, best_scale + ds) for da, ds in offsets))
    return best


def candidate_pairs(descriptors: np.ndarray, n_candidates: int = N_CANDIDATES) -> np.ndarray:
    """Unique (i, j) index pairs, i < j, of each tile and its nearest descriptors."""
    z = (descriptors - descriptors.mean(axis=0)) / (descriptors.std(axis=0) + 1e-6)
    k = min(n_candidates + 1, len(z))
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    pairs = np.stack([np.repeat(np.arange(len(z)), k), neighbours.ravel()], axis=1)
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    return np.unique(pairs, axis=0)


def _connected_components(n: int, edges: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels


class _Signatures:
    """Log-polar spectra, invariant descriptors and structure images of a set of tiles."""

    def __init__(self, images: np.ndarray):
        polar = log_polar(images)
        self.spectra = _ring_spectra(polar)
        self.descriptors = invariant_descriptors(images, polar, self.spectra)
        self.structure = np.stack([_structure(rgb) for rgb in images]) if len(images) else np.zeros((0,))


def _verified_scores(a: _Signatures, index_a: np.ndarray, b: _Signatures, index_b: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Match score of each pair (a[index_a[i]], b[index_b[i]]): the aligned pixel correlation
    where the log-polar correlation makes a match plausible, else the log-polar score."""
    scores = np.zeros(len(index_a), np.float32)
    for s in range(0, len(index_a), batch):
        ia, ib = index_a[s : s + batch], index_b[s : s + batch]
        polar_scores, transforms = match_scores(a.spectra[ia], b.spectra[ib])
        for k in np.flatnonzero(polar_scores >= PLAUSIBLE_POLAR_SCORE):
            polar_scores[k] = aligned_correlation(a.structure[ia[k]], b.structure[ib[k]], transforms[k])
        scores[s : s + batch] = polar_scores
    return scores


def detect_families(images: np.ndarray, threshold: float = MATCH_THRESHOLD) -> FamilyReport:
    """Group tiles (n, h, w, 3 uint8, one class) into families of rotated/flipped copies."""
    started = time.perf_counter()
    if len(images) < 2:
        return FamilyReport(np.zeros(len(images), int), len(images), 0.0)
    signatures = _Signatures(images)
    pairs = candidate_pairs(signatures.descriptors)
    edges = pairs[_verified_scores(signatures, pairs[:, 0], signatures, pairs[:, 1]) >= threshold]
    labels = _connected_components(len(images), edges)
    # A tile left (nearly) alone has missed its siblings among its nearest descriptors: look
    # much further for it, since one missed copy on the other side of a split is a leak.
    sizes = np.bincount(labels)
    lonely = np.flatnonzero(sizes[labels] < SMALL_FAMILY)
    if len(lonely):
        k = min(RESCUE_CANDIDATES, len(images) - 1)
        z = (signatures.descriptors - signatures.descriptors.mean(axis=0)) / (signatures.descriptors.std(axis=0) + 1e-6)
        _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z[lonely])
        rescue = np.stack([np.repeat(lonely, k + 1), neighbours.ravel()], axis=1)
        rescue = rescue[rescue[:, 0] != rescue[:, 1]]
        found = rescue[_verified_scores(signatures, rescue[:, 0], signatures, rescue[:, 1]) >= threshold]
        labels = _connected_components(len(images), np.concatenate([edges, found]))
    return FamilyReport(labels, int(labels.max()) + 1, time.perf_counter() - started)


def best_matches(
    queries: np.ndarray, references: np.ndarray, n_candidates: int = 2 * N_CANDIDATES
) -> tuple[np.ndarray, np.ndarray]:
    """For each query tile, its best match score against its nearest reference tiles, and which one."""
    if len(queries) == 0 or len(references) == 0:
        return np.zeros(len(queries), np.float32), np.zeros(len(queries), int)
    q, r = _Signatures(queries), _Signatures(references)
    mean, std = r.descriptors.mean(axis=0), r.descriptors.std(axis=0) + 1e-6
    k = min(n_candidates, len(references))
    index = NearestNeighbors(n_neighbors=k).fit((r.descriptors - mean) / std)
    _, neighbours = index.kneighbors((q.descriptors - mean) / std)
    query_idx = np.repeat(np.arange(len(queries)), k)
    scores = _verified_scores(q, query_idx, r, neighbours.ravel()).reshape(len(queries), k)
    best = scores.argmax(axis=1)
    return scores[np.arange(len(queries)), best], neighbours[np.arange(len(queries)), best]


def best_match_scores(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    return best_matches(queries, references)[0]


def dataset_families(tiles: list, images: np.ndarray, labels: list[str]) -> tuple[list[str], dict]:
    """Family name of every tile (families never cross classes) and per-class counts and timings."""
    names = [""] * len(tiles)
    summary = {}
    for label in labels:
        idx = [i for i, t in enumerate(tiles) if t.label == label]
        report = detect_families(images[idx])
        for i, family in zip(idx, report.labels):
            names[i] = f"{label}-{family:04d}"
        summary[label] = {"tiles": len(idx), "families": report.n_families, "seconds": round(report.seconds, 1)}
    return names, summary
