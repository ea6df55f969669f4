"""Approximate inner-product search over a large catalog's item vectors (faiss), for serving.

A recipe that scores items by ``item_vectors @ user_vector`` scans the whole catalog per
request: a million items of 64 dimensions is about 15 ms of arithmetic and partitioning on one
core. ``ItemIndex`` clusters the vectors once (faiss' inverted-file index, ``nlist`` k-means
cells, inner product) and a request reads only the ``nprobe`` cells nearest the user vector;
the recipe then scores the returned candidates exactly, so what is approximate is which items
are considered, never their scores.

The index is a snapshot of the vectors when it was built. Items added later (``grow``) or whose
vectors changed (``touch``: new metadata) are kept in ``fresh`` and are always candidates, scored
exactly like the rest, so a new item is recommendable at once; the next training builds a new index.

Scores over the catalog are a softmax, whose normalizer sums over every item. With the index it
is estimated: exactly over the candidates, plus each cell's other items as a normal cloud around
the cell's mean vector (``log_normalizer``).
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_PER_CELL = 64  # k-means trains on this many vectors per cell


class ItemIndex:
    def __init__(self, vectors: np.ndarray, nprobe: int = 64, seed: int = 42):
        import faiss

        vectors = np.asarray(vectors, dtype=np.float32)
        n, dimension = vectors.shape
        # Every item vector gets one more coordinate so that all have one norm (Bachrach et al. 2014):
        # the query's 0 there leaves inner products as they were, and cells cluster directions alone.
        norms = np.linalg.norm(vectors, axis=1)
        extra = np.sqrt(np.maximum(norms.max() ** 2 - norms**2, 0))[:, None]
        vectors = np.ascontiguousarray(np.hstack([vectors, extra]), dtype=np.float32)
        dimension += 1
        self.nlist = int(min(max(16, math.sqrt(n)), max(1, n // 39)))  # faiss wants >= 39 points a cell
        quantizer = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIVFFlat(quantizer, dimension, self.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed, index.cp.niter = seed, 10
        sample = vectors
        if n > SAMPLE_PER_CELL * self.nlist:  # k-means on a seeded sample: a million items cluster in seconds
            sample = vectors[np.random.default_rng(seed).choice(n, SAMPLE_PER_CELL * self.nlist, replace=False)]
        index.train(sample)
        index.add(vectors)
        self.nprobe = index.nprobe = min(nprobe, self.nlist)
        self.index, self.size = index, n
        self.cell_ = np.asarray(quantizer.assign(vectors, 1), dtype=np.int64).reshape(-1)
        self.cell_sizes_ = np.bincount(self.cell_, minlength=self.nlist).astype(np.float64)
        counts = np.maximum(self.cell_sizes_, 1)
        sums = np.zeros((self.nlist, dimension - 1))  # each cell's mean item vector, and the spread around it
        np.add.at(sums, self.cell_, vectors[:, :-1])
        self.centroids_ = (sums / counts[:, None]).astype(np.float32)
        deviations = ((vectors[:, :-1] - self.centroids_[self.cell_]) ** 2).sum(1)
        self.spread_ = np.bincount(self.cell_, deviations, self.nlist) / counts / (dimension - 1)
        self.fresh: set[int] = set()
        self.grown = 0  # items added after the index was built

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """Item indexes: the index's best ``k`` for ``query`` by inner product, and every fresh item."""
        query = np.append(np.asarray(query, dtype=np.float32), np.float32(0))[None, :]
        _, found = self.index.search(query, min(k, self.size))
        found = found[0][found[0] >= 0]
        if self.fresh:
            found = np.union1d(found, np.fromiter(self.fresh, np.int64, len(self.fresh)))
        return found.astype(np.int64)

    def log_normalizer(
        self, query: np.ndarray, items: np.ndarray, logits: np.ndarray, n_items: int, floor: float | None = None
    ) -> float:
        """log of sum(exp(vectors @ query)) over the catalog: ``logits`` of ``items`` exactly, each cell's
        other indexed items as a normal cloud around its mean, none above ``floor`` (default: the lowest of
        ``logits``; the lowest of the index's candidates where ``items`` hold more), items beyond the index
        at the mean of the scored."""
        indexed = items[items < self.size]
        others = self.cell_sizes_ - np.bincount(self.cell_[indexed], minlength=self.nlist)
        unscored = max(0, n_items - self.size - int((items >= self.size).sum()))
        # a cell's sum of exp(v @ q) ~ n exp(mean @ q + spread |q|^2 / 2): its vectors as a normal cloud,
        # none of them above the lowest scored (the index found the best; a cloud has a tail cells do not)
        ceiling = logits.min() if floor is None else floor
        cells = np.minimum(self.centroids_ @ query + 0.5 * self.spread_ * float(query @ query), ceiling)
        kept = others > 0
        terms = [logits, cells[kept] + np.log(others[kept])]
        if unscored:
            terms.append(np.array([float(np.log(unscored) + logits.mean())]))
        stacked = np.concatenate(terms)
        top = stacked.max()
        return float(top + np.log(np.exp(stacked - top).sum()))

    def grow(self, count: int) -> None:
        """``count`` new items at the end of the catalog: candidates from now on, until a rebuild."""
        start = self.size + self.grown
        self.fresh.update(range(start, start + count))
        self.grown += count

    def touch(self, items: np.ndarray) -> None:
        """These items' vectors changed: always candidates, until a rebuild."""
        self.fresh.update(int(i) for i in np.asarray(items).tolist())

    # faiss indexes do not pickle; their bytes do.
    def __getstate__(self) -> dict:
        import faiss

        state = dict(self.__dict__)
        state["index"] = faiss.serialize_index(self.index)
        return state

    def __setstate__(self, state: dict) -> None:
        import faiss

        self.__dict__.update(state)
        self.index = faiss.deserialize_index(state["index"])
        self.index.nprobe = self.nprobe
