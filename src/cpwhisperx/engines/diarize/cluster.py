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
    """Merge the two most similar clusters (mean pairwise similarity) until none is as similar
    as ``threshold`` and there are at most ``high``, or until there are ``low``.

    The merges come from nearest-neighbour chains, O(n²), where merging the best pair each time
    is O(n³) (40 s at 2,000 spans here): average linkage is reducible, so both give the same
    tree (0.2 s at 2,000 spans). The n-by-n matrix of similarities is the memory: 72 MB at
    3,000 spans, about what a 2-hour film of dialogue has."""
    n = len(embeddings)
    sim = (embeddings @ embeddings.T).astype(np.float64)
    np.fill_diagonal(sim, -np.inf)
    size = np.ones(n)
    merges: list[tuple[float, int, int]] = []
    chain: list[int] = []
    left = n
    while left > 1:
        if not chain:
            chain.append(int(np.argmax(size > 0)))
        a = chain[-1]
        b = int(np.argmax(sim[a]))
        if len(chain) > 1 and sim[a, chain[-2]] >= sim[a, b]:
            b = chain[-2]  # a tie goes back down the chain, which ends it
        if len(chain) == 1 or b != chain[-2]:
            chain.append(b)
            continue
        chain.pop()
        chain.pop()
        merges.append((float(sim[a, b]), a, b))
        row = (size[a] * sim[a] + size[b] * sim[b]) / (size[a] + size[b])  # Lance-Williams
        sim[a, :] = sim[:, a] = row
        sim[b, :] = sim[:, b] = -np.inf
        sim[a, a] = -np.inf
        size[a] += size[b]
        size[b] = 0
        left -= 1
    merges.sort(key=lambda m: -m[0])  # the chains find them out of order
    wanted = sum(similarity >= threshold for similarity, _, _ in merges)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for _, a, b in merges[:max(0, min(max(wanted, n - high), n - low))]:  # low > n: none
        parent[root(b)] = root(a)
    return np.array([root(i) for i in range(n)])


def _fold_small(embeddings: np.ndarray, durations: np.ndarray, labels: np.ndarray, *,
                min_share: float, low: int) -> np.ndarray:
    """The smallest speaker into the one whose centroid is nearest, one at a time, while one
    holds under ``min_share`` of the speech. The centroids are kept up to date as they merge:
    noisy speech may leave hundreds of tiny clusters."""
    _, labels = np.unique(labels, return_inverse=True)
    sums = np.zeros((labels.max() + 1, embeddings.shape[1]))
    np.add.at(sums, labels, embeddings)
    shares = np.bincount(labels, weights=durations) / durations.sum()
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    alive = np.ones(len(sums), dtype=bool)
    while alive.sum() > low:
        small = np.flatnonzero(alive)[np.argmin(shares[alive])]
        if shares[small] >= min_share:
            break
        similarity = np.where(alive, means @ means[small], -np.inf)
        similarity[small] = -np.inf
        nearest = int(np.argmax(similarity))
        sums[nearest] += sums[small]
        means[nearest] = sums[nearest] / max(float(np.linalg.norm(sums[nearest])), 1e-12)
        shares[nearest] += shares[small]
        alive[small] = False
        labels[labels == small] = nearest
    return labels


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each label's mean embedding, of unit length (negative labels: none)."""
    out = {}
    for c in np.unique(labels[labels >= 0]):
        mean = embeddings[labels == c].mean(axis=0)
        out[int(c)] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out
