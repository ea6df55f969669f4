"""Similar-Items: co-occurrence blended with item-metadata similarity (aws-similar-items).

SIMS finds an item's neighbours among items the same users interacted with, so an item
nobody has interacted with has none, and is nobody's neighbour. Personalize's Similar-Items
also reads ITEMS: here an item's fields (categorical values, words of textual fields, deciles
of numeric ones: ``transformer_features.ItemFeatures``) make a token vector, each token
weighted by its inverse document frequency (a genre every other item has says little) and the
vector scaled to unit length, so two items' metadata similarity is the cosine of theirs.

An item's similarity to another is ``co-occurrence + metadata_weight * metadata``: the
co-occurrence is SIMS' (``popularity_discount_factor`` 0.5 makes it the cosine of the items'
user sets, so both terms are in [0, 1]) and the metadata term the cosine above, over each
item's ``metadata_neighbors`` most similar by metadata. So among items with events the
co-occurrence leads and metadata breaks its ties and fills its gaps, and an item without
events (in ITEMS only) has neighbours by its fields at once, and appears among its look-alikes'.
Items that arrive later with metadata (``add_items``, as PutItems) get their neighbours the
same way without retraining, and join their neighbours' lists. Recommendations for a user are
SIMS', over these neighbour lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipelines.personalize.data import InteractionData
from pipelines.personalize.hrnn import extends
from pipelines.personalize.sims import Sims, similar_items
from pipelines.personalize.transformer_features import ItemFeatures
from pipelines.personalize.tuning import FloatRange, IntRange, register_search_space

TINY = float(np.finfo(np.float32).tiny)


class SimilarItems(Sims):
    name = "similar-items"

    @extends(Sims.__init__)
    def __init__(self, metadata_weight: float = 0.3, metadata_neighbors: int = 100, **sims):
        super().__init__(**sims)
        self.metadata_weight = metadata_weight
        self.metadata_neighbors = metadata_neighbors

    def validate(self) -> None:
        super().validate()
        rules = (
            ("metadata_weight", self.metadata_weight >= 0),
            ("metadata_neighbors", self.metadata_neighbors >= 1),
        )
        bad = ", ".join(f"{name}={getattr(self, name)!r}" for name, ok in rules if not ok)
        if bad:
            raise ValueError(f"{self.name}: hyperparameters out of range: {bad}")

    def _fit(self, data: InteractionData) -> None:
        super()._fit(data)
        self.item_features_ = ItemFeatures.fit(data.item_metadata, numeric="bins")
        self.added_: dict[int, tuple[list[int], list[float]]] = {}
        if self.item_features_ is None or self.metadata_weight == 0:
            self.field_vectors_ = None
            return
        counts = self.item_features_.matrix(data.item_metadata)
        described = max(1, int((np.diff(counts.indptr) > 0).sum()))
        frequency = np.bincount(counts.indices, minlength=counts.shape[1])
        self.idf_ = np.log(1 + described / np.maximum(frequency, 1)).astype(np.float32)
        self.field_vectors_ = self._unit(counts)
        by_fields = similar_items(self.field_vectors_.T.tocsr(), 0.0, TINY, self.metadata_neighbors)
        self.indptr_, self.neighbors_, self.scores_ = blend(
            (self.indptr_, self.neighbors_, self.scores_), by_fields, self.metadata_weight, self.max_similar_items
        )

    def _unit(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        weighted = sp.csr_matrix(counts.multiply(self.idf_[None, :]), dtype=np.float32)
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(1)).ravel())
        return sp.csr_matrix(sp.diags(1 / np.maximum(norms, 1e-12)) @ weighted, dtype=np.float32)

    def _neighbors(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        items, scores = super()._neighbors(item)
        added = self.added_.get(item)
        if not added:
            return items, scores
        return np.concatenate([items, np.asarray(added[0], np.int32)]), np.concatenate([scores, added[1]])

    def _grow(self, count: int) -> None:
        super()._grow(count)
        if self.field_vectors_ is not None:
            self.field_vectors_ = sp.vstack([self.field_vectors_, sp.csr_matrix((count, self.field_vectors_.shape[1]))])
            self.field_vectors_ = sp.csr_matrix(self.field_vectors_, dtype=np.float32)

    def _describe(self, items: np.ndarray, metadata: list[Mapping[str, Any]]) -> None:
        """Items' fields arrived (PutItems): they get neighbours by metadata, and join those neighbours' lists."""
        if self.field_vectors_ is None:
            return
        vectors = self._unit(self.item_features_.matrix(metadata))
        rows = self.field_vectors_.tolil()
        for k, item in enumerate(items.tolist()):
            rows[item] = vectors[k]
        self.field_vectors_ = rows.tocsr()
        for k, item in enumerate(items.tolist()):
            similarity = np.asarray((self.field_vectors_ @ vectors[k].T).todense()).ravel()
            similarity[item] = 0
            found = np.flatnonzero(similarity > 0)
            found = found[np.argsort(-similarity[found], kind="stable")[: self.metadata_neighbors]]
            weighted = (self.metadata_weight * similarity[found]).tolist()
            self.added_[item] = (found.tolist(), weighted)
            for other, score in zip(found.tolist(), weighted, strict=True):
                mine = self.added_.setdefault(other, ([], []))
                mine[0].append(item)
                mine[1].append(score)


def blend(cooccurrence, by_fields, weight: float, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two neighbour lists (CSR arrays) summed as ``co-occurrence + weight * metadata``, each row's ``keep`` best."""
    n_items = len(cooccurrence[0]) - 1
    parts = []
    for (indptr, neighbors, scores), factor in ((cooccurrence, 1.0), (by_fields, weight)):
        parts.append(sp.csr_matrix((scores * np.float32(factor), neighbors, indptr), shape=(n_items, n_items)))
    total = (parts[0] + parts[1]).tocsr()
    total.sum_duplicates()
    per_row = np.diff(total.indptr)
    chosen = np.ones(total.nnz, dtype=bool)
    for r in np.flatnonzero(per_row > keep).tolist():
        first, last = total.indptr[r], total.indptr[r + 1]
        chosen[first + np.argpartition(-total.data[first:last], keep - 1)[keep:]] = False
    rows = np.repeat(np.arange(n_items), per_row)[chosen]
    indptr = np.zeros(n_items + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_items), out=indptr[1:])
    return indptr, total.indices[chosen].astype(np.int32), total.data[chosen].astype(np.float32)


register_search_space(
    "similar-items",
    {
        "popularity_discount_factor": FloatRange(0.0, 1.0),
        "min_cointeraction_count": IntRange(0, 10),
        "metadata_weight": FloatRange(0.0, 1.0),
        "metadata_neighbors": IntRange(20, 500, log=True),
    },
)
