"""Augmentation families: tiles that show one field of tissue, however turned, flipped or magnified.

LC25000 made about 20 copies of each original by rotating, cropping, rescaling and flipping it, and
some fields were also photographed at another magnification. Two tiles belong to one family when one
is such a copy of the other. The test is the standard one for copies under a similarity transform:

1. SIFT keypoints (invariant to rotation and scale) on the tile and on its mirror image (a flip is a
   mirror plus a rotation), described as RootSIFT.
2. Candidates by retrieval: each tile's visual words (k-means over the descriptors), tf-idf weighted;
   the tiles with the most similar word histograms, in either mirror sense, are the candidates.
3. Verification: ratio-test matches, then a RANSAC similarity fit (``cv2.estimateAffinePartial2D``) at a
   plausible scale. The pair's score is the number of keypoints that fit agrees with. A pixel correlation
   after alignment was tried and dropped: LC25000's cross-magnification pairs are separate photographs
   (other focus, other optics) that line up only to a few pixels, so they correlate like strangers.

Families are the connected components of verified pairs. ``benchmarks/family_recall.py`` measures the
recall and false-match rate of the whole search on synthetic copies.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import MiniBatchKMeans

log = logging.getLogger(__name__)
# Matching runs in forked worker processes, one per core. OpenCV's own thread pool, once started in the
# parent, is copied into each child in whatever locked state it was in, and the child hangs: keep OpenCV
# single-threaded in any process that matches tiles.
cv2.setNumThreads(1)

WORK_SIZE = 224  # tiles are matched at LC25000's own size here
SIFT_FEATURES = 600
RATIO_TEST = 0.8
MIN_RAW_MATCHES = 6
RANSAC_PIXELS = 3.0
MAX_SCALE = 3.5  # magnification ratio between two copies (2.5x asked for, with a rotation crop on top)
# Consistent keypoints that make a copy. Measured: 51,200 pairs of tiles of different classes (surely
# different tissue) reach at most 6; synthetic copies at 1.8-2.5x magnification keep 8 or more in 99%.
MATCH_THRESHOLD = 8
SOME_AGREEMENT = 4  # below this, a pair is plainly not a copy
CLOSE_CALL = 0.15  # retrieval's two views within 15% of each other: verify both
VOCABULARY_SIZE = 2048
N_CANDIDATES = 30
AUDIT_CANDIDATES = 120
AUDIT_VOTED_CANDIDATES = 30
# Squared RootSIFT distance under which a reference descriptor counts as the query's (FLANN returns squared
# L2). Measured on synthetic 1.5-2.5x copies among 1,530 lung_n tiles: 0.04-0.08 rank every original in the
# top 30, 0.10 and above let unrelated texture vote too.
VOTE_DISTANCE = 0.06
VOTE_NEIGHBOURS = 16
SMALL_FAMILY = 8  # LC25000 made about 20 copies of each original
RESCUE_CANDIDATES = 200


@dataclass(frozen=True)
class FamilyReport:
    family_ids: np.ndarray  # family number per tile, 0..n_families-1
    n_families: int
    seconds: float


@dataclass(frozen=True)
class PairMatch:
    score: int  # keypoints carried onto their match by the similarity fit; 0 where none was found
    scale: float  # size of b's pixels relative to a's (how much more magnified a is)
    mirrored: bool


NO_MATCH = PairMatch(0, 0.0, False)


@dataclass
class Keypoints:
    """SIFT keypoints of one tile as it is (view 0) and mirrored left-right (view 1)."""

    points: tuple[np.ndarray, np.ndarray]
    descriptors: tuple[np.ndarray, np.ndarray]


_SIFT = None


def _sift():
    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=SIFT_FEATURES)
    return _SIFT


def _grey(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if grey.shape != (WORK_SIZE, WORK_SIZE):
        grey = cv2.resize(grey, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
    return grey


def _root_sift(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found, descriptors = _sift().detectAndCompute(grey, None)
    if descriptors is None or not found:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float16)
    # RootSIFT (Arandjelovic & Zisserman 2012): Hellinger distance matches textures better than L2.
    # Kept as float16: 15,000 tiles' keypoints in float32 would take 9 GB.
    descriptors = np.sqrt(descriptors / (descriptors.sum(axis=1, keepdims=True) + 1e-7)).astype(np.float16)
    return np.array([k.pt for k in found], np.float32), descriptors


def keypoints_of(rgb: np.ndarray) -> Keypoints:
    grey = _grey(rgb)
    plain, mirrored = _root_sift(grey), _root_sift(cv2.flip(grey, 1))
    return Keypoints((plain[0], mirrored[0]), (plain[1], mirrored[1]))


def _keypoints_of_chunk(images: np.ndarray) -> list[Keypoints]:
    return [keypoints_of(rgb) for rgb in images]


def keypoints_of_all(images, progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> list[Keypoints]:
    """Keypoints of every tile, on every core, reporting progress every 500 tiles."""
    workers = workers or os.cpu_count() or 1
    chunks = [images[s : s + 500] for s in range(0, len(images), 500)]
    found: list[Keypoints] = []
    if workers == 1 or len(images) < 200:
        results = map(_keypoints_of_chunk, chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_one_thread_each)
        results = pool.map(_keypoints_of_chunk, chunks)
    try:
        for chunk in results:
            found.extend(chunk)
            if progress:
                progress(len(found), len(images))
    finally:
        if pool:
            pool.shutdown()
    return found


def ratio_test_matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into a, into b) of the descriptor matches that pass Lowe's ratio test.

    RootSIFT descriptors have unit length, so squared distance is 2 - 2 * dot product: one matrix
    product gives every distance (faster here than OpenCV's brute-force matcher)."""
    similarity = a.astype(np.float32) @ b.astype(np.float32).T
    nearest = similarity.argmax(axis=1)
    top_two = -np.partition(-similarity, 1, axis=1)[:, :2]
    distances = np.sqrt(np.maximum(2.0 - 2.0 * top_two, 0.0))
    good = distances[:, 0] < RATIO_TEST * distances[:, 1]
    return np.flatnonzero(good), nearest[good]


def _fit(a: Keypoints, b: Keypoints, view: int) -> tuple[np.ndarray | None, int]:
    """RANSAC similarity from a's keypoints to b's (view 1: b mirrored), and how many keypoints agree."""
    if len(a.descriptors[0]) < 2 or len(b.descriptors[view]) < 2:
        return None, 0
    from_a, to_b = ratio_test_matches(a.descriptors[0], b.descriptors[view])
    if len(from_a) < MIN_RAW_MATCHES:
        return None, 0
    source, target = a.points[0][from_a], b.points[view][to_b]
    matrix, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS, maxIters=2000, confidence=0.995
    )
    if matrix is None:
        return None, 0
    return matrix, int(inliers.sum())


BOTH_VIEWS = (0, 1)


def _one_way(a: Keypoints, b: Keypoints, views=BOTH_VIEWS) -> PairMatch:
    best = NO_MATCH
    for view in views:
        matrix, inliers = _fit(a, b, view)
        if matrix is None or inliers <= best.score:
            continue
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if 1 / MAX_SCALE <= scale <= MAX_SCALE:
            best = PairMatch(inliers, scale, bool(view))
    return best


def match_pair(a: Keypoints, b: Keypoints, views=BOTH_VIEWS) -> PairMatch:
    """How many of a's keypoints one similarity transform (turn, magnification, shift; b mirrored or not)
    carries onto b's: copies keep 8 to 200, tiles of different tissue at most 6 (measured).
    views: which of b's views to try (0 as it is, 1 mirrored); retrieval says which is likelier."""
    best = _one_way(a, b, views)
    if SOME_AGREEMENT <= best.score < MATCH_THRESHOLD:
        # The ratio test depends on direction; a borderline pair gets the other direction's say.
        reverse = _one_way(b, a, views)
        if reverse.score > best.score:
            best = PairMatch(reverse.score, 1 / reverse.scale, reverse.mirrored)
    return best


def _one_thread_each() -> None:
    """Worker processes split the cores between them: OpenCV and BLAS must not each start a pool too."""
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1)


def _scores_of_chunk(pairs: np.ndarray) -> np.ndarray:
    keys_a, keys_b = _POOL_KEYS
    views = [BOTH_VIEWS if len(p) < 3 or p[2] < 0 else (int(p[2]),) for p in pairs]
    return np.array([match_pair(keys_a[p[0]], keys_b[p[1]], v).score for p, v in zip(pairs, views)], np.int32)


_POOL_KEYS: tuple = ((), ())


def match_scores(keys_a: list[Keypoints], keys_b: list[Keypoints], pairs: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Score of every (i, j) pair of keys_a[i] against keys_b[j], on every core. A third column, where
    given, names the view of b to try (0 as it is, 1 mirrored, -1 both)."""
    global _POOL_KEYS
    workers = workers or os.cpu_count() or 1
    if len(pairs) < 200 or workers == 1:
        _POOL_KEYS = (keys_a, keys_b)
        return _scores_of_chunk(pairs) if len(pairs) else np.zeros(0, np.int32)
    _POOL_KEYS = (keys_a, keys_b)  # forked workers inherit the keypoints instead of receiving copies
    chunks = np.array_split(pairs, max(workers * 8, len(pairs) // 2000))
    started, done, scores = time.perf_counter(), 0, []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_one_thread_each) as pool:
        for chunk, result in zip(chunks, pool.map(_scores_of_chunk, chunks)):
            scores.append(result)
            done += len(chunk)
            if len(pairs) >= 20_000 and len(scores) % 10 == 0:
                elapsed = time.perf_counter() - started
                left = elapsed / done * (len(pairs) - done)
                log.info("verified %d/%d pairs (%.0f s, about %.0f s left)", done, len(pairs), elapsed, left)
    return np.concatenate(scores)


class VisualWords:
    """Bag-of-visual-words retrieval over RootSIFT descriptors, tf-idf weighted, cosine similarity."""

    def __init__(self, references: list[Keypoints], size: int = VOCABULARY_SIZE, seed: int = 0):
        pool = np.concatenate([k.descriptors[0] for k in references] or [np.zeros((0, 128), np.float16)]).astype(np.float32)
        rng = np.random.default_rng(seed)
        sample = pool[rng.choice(len(pool), min(len(pool), 60 * size), replace=False)] if len(pool) else pool
        n_words = max(1, min(size, len(sample) // 4))
        self.kmeans = MiniBatchKMeans(n_clusters=n_words, random_state=seed, batch_size=4096, n_init=1).fit(sample)
        counts = self._counts(references, 0)
        documents = np.asarray((counts > 0).sum(axis=0)).ravel()
        self.idf = np.log((1 + counts.shape[0]) / (1 + documents)).astype(np.float32) + 1.0
        self.references = self._weighted(counts)

    def _counts(self, keys: list[Keypoints], view: int) -> sparse.csr_matrix:
        rows, words = [], []
        for i, k in enumerate(keys):
            if len(k.descriptors[view]):
                found = self.kmeans.predict(k.descriptors[view].astype(np.float32))
                rows.append(np.full(len(found), i))
                words.append(found)
        rows_all = np.concatenate(rows) if rows else np.zeros(0, int)
        words_all = np.concatenate(words) if words else np.zeros(0, int)
        values = np.ones(len(rows_all), np.float32)
        shape = (len(keys), self.kmeans.n_clusters)
        return sparse.csr_matrix((values, (rows_all, words_all)), shape=shape)

    def _weighted(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        weighted = counts.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel()) + 1e-9
        return sparse.diags(1.0 / norms) @ weighted

    def similarity(self, queries: list[Keypoints]) -> np.ndarray:
        """(queries, references) cosine similarity, the better of each query as it is and mirrored."""
        return self.similarity_and_view(queries)[0]

    def similarity_and_view(self, queries: list[Keypoints]) -> tuple[np.ndarray, np.ndarray]:
        """The similarity, and which view of the pair to verify: 1 where the query mirrored matches better
        (so the reference mirrored matches the query), 0 where it as it is does, -1 where it is a close call."""
        plain = (self._weighted(self._counts(queries, 0)) @ self.references.T).toarray()
        mirrored = (self._weighted(self._counts(queries, 1)) @ self.references.T).toarray()
        view = (mirrored > plain).astype(np.int8)
        view[np.abs(mirrored - plain) < CLOSE_CALL * np.maximum(mirrored, plain)] = -1
        return np.maximum(plain, mirrored), view


class DescriptorVotes:
    """Retrieval by nearest descriptors: each query keypoint votes for the reference tiles that hold one of
    its VOTE_NEIGHBOURS nearest descriptors within VOTE_DISTANCE (FLANN kd-trees over every reference
    descriptor). Unlike a visual-word histogram, a partial overlap is not diluted by the rest of the tile:
    a copy magnified 2.5x shows a sixth of its original, whose other keypoints do not count against it."""

    def __init__(self, references: list[Keypoints]):
        descriptors = [k.descriptors[0] for k in references]
        self.n_references = len(references)
        self.owner = np.concatenate([np.full(len(d), i) for i, d in enumerate(descriptors)] or [np.zeros(0, int)])
        self.index = None
        if len(self.owner):
            pool = np.ascontiguousarray(np.concatenate(descriptors).astype(np.float32))
            self.index = cv2.flann_Index(pool, dict(algorithm=1, trees=4))  # 1: randomised kd-trees
            self._pool = pool  # the index refers to this memory

    def _votes(self, queries: list[Keypoints], view: int) -> np.ndarray:
        votes = np.zeros((len(queries), self.n_references), np.float32)
        counts = [len(k.descriptors[view]) for k in queries]
        if self.index is None or not sum(counts):
            return votes
        descriptors = np.concatenate([k.descriptors[view] for k in queries if len(k.descriptors[view])]).astype(np.float32)
        query_of = np.repeat(np.arange(len(queries)), counts)
        neighbours, distances = self.index.knnSearch(descriptors, min(VOTE_NEIGHBOURS, len(self.owner)), params=dict(checks=32))
        close = distances < VOTE_DISTANCE
        keypoint = np.repeat(np.arange(len(descriptors)), close.sum(axis=1))
        # A keypoint votes once per tile, however many of that tile's descriptors are near it.
        pairs = np.unique(np.stack([keypoint, self.owner[neighbours[close]]], axis=1), axis=0)
        np.add.at(votes, (query_of[pairs[:, 0]], pairs[:, 1]), 1.0)
        return votes

    def votes_and_view(self, queries: list[Keypoints]) -> tuple[np.ndarray, np.ndarray]:
        """(queries, references) votes, the better of each query as it is and mirrored, and the view to
        verify (as in ``VisualWords.similarity_and_view``)."""
        plain, mirrored = self._votes(queries, 0), self._votes(queries, 1)
        view = (mirrored > plain).astype(np.int8)
        view[np.abs(mirrored - plain) < CLOSE_CALL * np.maximum(mirrored, plain)] = -1
        return np.maximum(plain, mirrored), view


def top_candidates(similarity: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """(n, k) indices of each row's k most similar columns, best first."""
    similarity = similarity.copy()
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    k = min(k, similarity.shape[1] - int(exclude_self))
    if k <= 0:
        return np.zeros((len(similarity), 0), int)
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def _verified_edges(keys: list[Keypoints], pairs: np.ndarray, threshold: float) -> np.ndarray:
    if not len(pairs):
        return pairs
    return pairs[match_scores(keys, keys, pairs) >= threshold]


def _pairs_from(candidates: np.ndarray, rows: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Unique (i, j, view) rows, i < j, of each row tile and its candidates; view from retrieval."""
    pairs = np.stack([np.repeat(rows, candidates.shape[1]), candidates.ravel()], axis=1)
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    return np.concatenate([pairs, view[pairs[:, 0], pairs[:, 1]][:, None].astype(pairs.dtype)], axis=1)


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)) if len(edges) else sparse.coo_matrix((n, n))
    return connected_components(graph, directed=False)[1]


CANDIDATE_ROUNDS = (0, 4, 12, N_CANDIDATES)  # candidate ranks verified round by round


def _link_in_rounds(keys: list[Keypoints], candidates: np.ndarray, rows: np.ndarray, view: np.ndarray, threshold: int,
                    edges: np.ndarray, rounds=CANDIDATE_ROUNDS) -> np.ndarray:
    """Verified edges from each row's candidates, nearest first. After each round, a candidate already in
    the tile's family (through other copies) needs no check: most of a tile's nearest candidates are its
    own family, so later rounds verify only what could still join two families."""
    n = len(keys)
    for lo, hi in zip(rounds[:-1], rounds[1:]):
        family_ids = _components(n, edges)
        pairs = _pairs_from(candidates[:, lo:hi], rows, view)
        pairs = pairs[family_ids[pairs[:, 0]] != family_ids[pairs[:, 1]]]
        log.info("candidates %d-%d: verifying %d pairs", lo + 1, hi, len(pairs))
        edges = np.concatenate([edges, _verified_edges(keys, pairs, threshold)[:, :2]])
    return edges


def detect_families(tiles, threshold: int = MATCH_THRESHOLD) -> FamilyReport:
    """Group the tiles of one class into families of copies: tiles as pixels (n, h, w, 3 uint8) or
    as their keypoints (a list of Keypoints)."""
    started = time.perf_counter()
    keys = tiles if isinstance(tiles, list) and (not tiles or isinstance(tiles[0], Keypoints)) else keypoints_of_all(tiles)
    if len(keys) < 2:
        return FamilyReport(np.zeros(len(keys), int), len(keys), 0.0)
    similarity, view = VisualWords(keys).similarity_and_view(keys)
    np.fill_diagonal(similarity, -np.inf)
    candidates = top_candidates(similarity, N_CANDIDATES)
    edges = _link_in_rounds(keys, candidates, np.arange(len(keys)), view, threshold, np.zeros((0, 2), int))
    family_ids = _components(len(keys), edges)
    # A tile left (nearly) alone has probably missed its siblings among its nearest candidates:
    # look much further for it, since one missed copy on the other side of a split is a leak.
    lonely = np.flatnonzero(np.bincount(family_ids)[family_ids] < SMALL_FAMILY)
    if len(lonely):
        wider = top_candidates(similarity[lonely], RESCUE_CANDIDATES)
        edges = _link_in_rounds(keys, wider, lonely, view, threshold, edges, (N_CANDIDATES, RESCUE_CANDIDATES))
        family_ids = _components(len(keys), edges)
    return FamilyReport(family_ids, int(family_ids.max()) + 1, time.perf_counter() - started)


def _merged_candidates(first: np.ndarray, first_view: np.ndarray, second: np.ndarray, second_view: np.ndarray):
    """Each row's candidates from first, then those of second not already there (-1 pads the rows), and the
    view to verify each with (first's where it named the candidate)."""
    n = len(first)
    width = first.shape[1] + second.shape[1]
    merged, views = np.full((n, width), -1), np.full((n, width), -1, np.int8)
    for i in range(n):
        extra = second[i][~np.isin(second[i], first[i])]
        row = np.concatenate([first[i], extra])
        merged[i, : len(row)] = row
        views[i, : len(row)] = np.concatenate([first_view[i, first[i]], second_view[i, extra]])
    return merged, views


def best_matches(
    queries: list[Keypoints], references: list[Keypoints], n_candidates: int = AUDIT_CANDIDATES,
    n_voted: int = AUDIT_VOTED_CANDIDATES, rounds: tuple[int, ...] = (0, 10, 40, AUDIT_CANDIDATES + AUDIT_VOTED_CANDIDATES),
) -> tuple[np.ndarray, np.ndarray]:
    """For each query tile, its best-scoring retrieved reference tile and that score (a verified match where
    it reaches MATCH_THRESHOLD; below it, the candidate with the most chance agreement; where no candidate
    agrees at all, score 0 and the nearest by visual words, or with n_candidates=0 the most voted for).
    Candidates are the n_voted most voted for by nearest descriptors (``DescriptorVotes``), then the
    n_candidates nearest by visual words; they are verified in that order, and a query stops once it has a
    verified match."""
    if not queries or not references:
        return np.zeros(len(queries), np.int32), np.zeros(len(queries), int)
    if n_candidates:
        similarity, word_view = VisualWords(references).similarity_and_view(queries)
        by_words = top_candidates(similarity, n_candidates)
    else:  # votes alone (the vocabulary's k-means is most of a small search's cost)
        by_words, word_view = np.zeros((len(queries), 0), int), np.zeros((len(queries), len(references)), np.int8)
    if n_voted:
        votes, vote_view = DescriptorVotes(references).votes_and_view(queries)
        candidates, view_of = _merged_candidates(top_candidates(votes, n_voted), vote_view, by_words, word_view)
    else:
        candidates, view_of = by_words, np.take_along_axis(word_view, by_words, axis=1)
    scores = np.zeros(len(queries), np.int32)
    # Where nothing verifies: the nearest by visual words, else the most voted for.
    best = (by_words if n_candidates else candidates)[:, 0].copy() if candidates.shape[1] else np.zeros(len(queries), int)
    for lo, hi in zip(rounds[:-1], (min(r, candidates.shape[1]) for r in rounds[1:])):
        open_rows = np.flatnonzero(scores < MATCH_THRESHOLD)
        if not len(open_rows) or lo >= hi:
            continue
        block = candidates[open_rows, lo:hi]
        query_rows = np.repeat(open_rows, block.shape[1])
        pairs = np.stack([query_rows, block.ravel(), view_of[open_rows, lo:hi].ravel()], axis=1)
        found = np.zeros(len(pairs), np.int32)
        real = pairs[:, 1] >= 0  # rows padded where the two searches named the same tiles
        found[real] = match_scores(queries, references, pairs[real])
        found = found.reshape(block.shape)
        top = found.argmax(axis=1)
        better = found[np.arange(len(open_rows)), top] > scores[open_rows]
        scores[open_rows[better]] = found[np.arange(len(open_rows)), top][better]
        best[open_rows[better]] = block[np.arange(len(open_rows)), top][better]
    return scores, best


def dataset_families(tiles: list, keys: list[Keypoints], class_names) -> tuple[list[str], dict]:
    """Family name of every tile (families never cross classes), and per class: tiles, families,
    largest and median family size, seconds."""
    names = [""] * len(tiles)
    summary = {}
    for class_name in class_names:
        idx = [i for i, t in enumerate(tiles) if t.label == class_name]
        report = detect_families([keys[i] for i in idx])
        for i, family in zip(idx, report.family_ids):
            names[i] = f"{class_name}-{family:04d}"
        sizes = np.bincount(report.family_ids)
        summary[class_name] = {
            "tiles": len(idx), "families": report.n_families, "largest_family": int(sizes.max()),
            "median_family": float(np.median(sizes)), "seconds": round(report.seconds, 1),
        }
        log.info("%s: %s", class_name, summary[class_name])
    return names, summary
