"""Speaker embeddings to speakers: average-linkage agglomerative clustering on cosine
similarity, stopped at a threshold or at the number of speakers asked for."""

import numpy as np

from cpwhisperx.engines.diarize import Speakers


def cluster(embeddings: np.ndarray, durations: np.ndarray, *, threshold: float,
            speakers: Speakers, reliable_s: float, min_share: float = 0.05
            ) -> np.ndarray:
    """A speaker for each embedding (rows of unit length), numbered by first appearance.

    Only embeddings of at least ``reliable_s`` of speech are clustered (a shorter one says
    little about its voice), unless a number of speakers is asked for (one may speak in short
    lines only); the others join the nearest speaker. Without a number of speakers
    given, a speaker holding under ``min_share`` of the speech is folded into the nearest one:
    such small clusters are mostly the edges of turns, not people."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    low = speakers.number or max(speakers.low, 1)
    high = speakers.number or speakers.high or n
    reliable = durations >= reliable_s
    if reliable.sum() < 2 or low > 1:  # speakers asked for may speak in short lines only
        reliable = np.ones(n, dtype=bool)
    chosen = np.flatnonzero(reliable)
    labels = np.full(n, -1)
    labels[chosen] = _average_linkage(embeddings[chosen], threshold=threshold, low=low,
                                      high=high)
    if not speakers.number:
        labels[chosen] = _fold_small(embeddings[chosen], durations[chosen], labels[chosen],
                                     min_share=min_share, low=low)
    means = centroids(embeddings, labels)
    ids = sorted(means)
    others = np.flatnonzero(labels < 0)
    if len(others):
        matrix = np.stack([means[c] for c in ids])
        labels[others] = np.array(ids)[np.argmax(embeddings[others] @ matrix.T, axis=1)]
    first: dict[int, int] = {}
    for label in labels:
        first.setdefault(int(label), len(first))
    return np.array([first[int(label)] for label in labels])


def _average_linkage(embeddings: np.ndarray, *, threshold: float, low: int, high: int
                     ) -> np.ndarray:
    """Merge the two most similar clusters (mean pairwise similarity, updated by the
    Lance-Williams rule) until none is as similar as ``threshold`` and there are at most
    ``high``, or until there are ``low``."""
    n = len(embeddings)
    sim = (embeddings @ embeddings.T).astype(np.float64)
    np.fill_diagonal(sim, -np.inf)
    size = np.ones(n)
    labels = np.arange(n)
    count = n
    while count > low:
        i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if sim[i, j] < threshold and count <= high:
            break
        row = (size[i] * sim[i] + size[j] * sim[j]) / (size[i] + size[j])
        sim[i, :] = sim[:, i] = row
        sim[j, :] = sim[:, j] = -np.inf
        sim[i, i] = -np.inf
        size[i] += size[j]
        labels[labels == j] = i
        count -= 1
    return labels


def _fold_small(embeddings: np.ndarray, durations: np.ndarray, labels: np.ndarray, *,
                min_share: float, low: int) -> np.ndarray:
    labels = labels.copy()
    while True:
        ids = np.unique(labels)
        shares = np.array([durations[labels == c].sum() for c in ids]) / durations.sum()
        smallest = int(np.argmin(shares))
        if len(ids) <= low or shares[smallest] >= min_share:
            return labels
        means = centroids(embeddings, labels)
        small = int(ids[smallest])
        nearest = max((c for c in means if c != small),
                      key=lambda c: float(means[c] @ means[small]))
        labels[labels == small] = nearest


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each label's mean embedding, of unit length (negative labels: none)."""
    out = {}
    for c in np.unique(labels[labels >= 0]):
        mean = embeddings[labels == c].mean(axis=0)
        out[int(c)] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out
