"""HRNN-Metadata and HRNN-Coldstart: the HRNN that also reads item and user metadata.

``hrnn-metadata`` concatenates each item's metadata vector (see ``metadata``) to its embedding
at the session GRU's input, and each user's to the user state wherever the state is read, so
items and users with little history borrow from those that look alike.

``hrnn-coldstart`` also scores items that have metadata and no interactions, which a trained
embedding cannot. After training it fits a map from an item's metadata to its trained vectors
(input embedding, output vector, bias) on the items that have interactions, and gives the map's
prediction to items without any: a new item lands where its metadata twins are. Items with
up to ``cold_start_max_interactions`` events (Personalize's name) are half-trained, so their
vectors move from the prediction to their own as their events accumulate.

The map is a ridge regression, solved in closed form on the tokens' Gram matrix: a bag of
categories makes the prediction the (shrunk) mean of the items sharing them, which is what
a twin is; it costs one tokens x tokens solve and no second training loop or seed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipelines.personalize.hrnn import Hrnn, extends

RIDGE = 1.0


class HrnnMetadata(Hrnn):
    name = "hrnn-metadata"
    uses_metadata = True


class HrnnColdstart(HrnnMetadata):
    name = "hrnn-coldstart"

    @extends(Hrnn.__init__)
    def __init__(self, cold_start_max_interactions: int = 15, **hrnn):
        super().__init__(**hrnn)
        self.cold_start_max_interactions = cold_start_max_interactions

    def _rules(self) -> list[tuple[str, bool]]:
        return [*super()._rules(), ("cold_start_max_interactions", self.cold_start_max_interactions >= 0)]

    def _item_vectors(self, embedding, output, bias, item_bags):
        embedding, output, bias = super()._item_vectors(embedding, output, bias, item_bags)
        counts, self.cold_start_items_ = self.training_counts_, 0
        described = np.zeros(len(counts), bool) if item_bags is None else np.diff(item_bags.indptr) > 0
        if not (described & (counts > 0)).any():  # nothing to learn the map from
            return embedding, output, bias
        learned = np.hstack([embedding, output, bias[:, None]]).astype(np.float64)
        predicted = ridge_predict(item_bags, learned, described & (counts > 0))
        cold = described & (counts <= self.cold_start_max_interactions)
        share = (counts[cold] / (self.cold_start_max_interactions + 1))[:, None]
        learned[cold] = share * learned[cold] + (1 - share) * predicted[cold]
        self.cold_start_items_ = int(cold.sum())
        vectors, width = learned.astype(np.float32), embedding.shape[1]
        return vectors[:, :width], vectors[:, width : width + output.shape[1]], vectors[:, -1]


def ridge_predict(features: sp.csr_matrix, targets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Targets of every row predicted from its features, by a ridge regression fitted on ``rows``.

    Centred so the intercept (the mean target) is not shrunk: an item with no known token gets
    the mean trained item.
    """
    x, y = features[rows].astype(np.float64), targets[rows]
    count = x.shape[0]
    x_mean, y_mean = np.asarray(x.mean(0)).ravel(), y.mean(0)
    gram = (x.T @ x).toarray() - count * np.outer(x_mean, x_mean) + RIDGE * np.eye(x.shape[1])
    moment = x.T @ y - count * np.outer(x_mean, y_mean)
    coefficients = np.linalg.solve(gram, moment)
    return features @ coefficients - x_mean @ coefficients + y_mean
