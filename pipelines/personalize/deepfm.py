"""DeepFM: a factorization machine and a deep network over user, item, context and metadata fields (aws-deepfm).

The network and its training are in ``deepfm_network`` (Guo et al., IJCAI 2017). The fields:

- the user's side: the user id; each user metadata column; the user's ``recent_history_length``
  newest items before the event, mean-pooled (so new events move the next recommendations, and
  a user with three events is already somebody); each context column of the interactions
  (EVENT_TYPE and categorical ones such as DEVICE) that takes at least two values;
- the item's side: the item id and each item metadata column. A multi-valued column (genres)
  is one field whose embedding is the mean of its values'; a numeric one is cut into deciles.

Serving is numpy and splits the score by side, as the FM's algebra allows: with S_u and S_i
the sums of each side's field embeddings, the FM is (user terms) + (item terms) + S_u . S_i, and
the network's first layer is (user part) + (item part). Item terms, S_i and the item part of the
first layer are computed once per item at training, so a request computes its user side once;
then, over a catalog larger than ``candidate_count``, the FM part alone (one matrix-vector product)
picks the candidates, with the most popular items beside them, and only those go through the
remaining layers. Items that have no events (metadata only, or new in ``update``) and users
with none (metadata only) take their id table's "unknown" row, which training taught to stand
for an id without history (see ``id_dropout``), so metadata alone scores them. A user with no
events, no metadata and no context is no evidence: popular items fill the list with score 0,
as for the other recipes. Scores are the network's sigmoid output.

``recommend`` and ``rank`` take ``context`` ({"EVENT_TYPE": "watch", "DEVICE": "phone"}); a
field not given, or a value never seen, reads as the training events' mean of that field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from pipelines.personalize.base import EMPTY, Recipe
from pipelines.personalize.data import InteractionData
from pipelines.personalize.hrnn import target_weights, top_n
from pipelines.personalize.tuning import FloatRange, IntRange, register_search_space

REQUEST_USER: ContextVar[str | None] = ContextVar("deepfm_request_user", default=None)
REQUEST_CONTEXT: ContextVar[Mapping[str, str] | None] = ContextVar("deepfm_request_context", default=None)
REQUEST_SKIP_SEEN: ContextVar[bool] = ContextVar("deepfm_request_skip_seen", default=False)


class DeepFM(Recipe):
    """Hyperparameters: the network's shape (``hidden_layers`` of ``hidden_dimension`` units, embeddings
    of ``embedding_dimension``), its training, and serving's ``candidate_count``. The history
    percentiles are Personalize's, as for HRNN. Training is seeded: same data, same model on CPU.
    """

    name = "deepfm"

    def __init__(
        self,
        embedding_dimension: int = 32,
        hidden_dimension: int = 128,
        hidden_layers: int = 2,
        dropout: float = 0.1,
        id_dropout: float = 0.1,
        l2_regularization: float = 1e-5,
        negative_samples: int = 8,
        sample_alpha: float = 0.75,
        logq: float = 1.0,
        epochs: int = 10,
        learning_rate: float = 0.003,
        batch_size: int = 512,
        recent_history_length: int = 10,
        candidate_count: int = 500,
        min_user_history_length_percentile: float = 0.0,
        max_user_history_length_percentile: float = 0.99,
        seed: int = 42,
    ):
        self.embedding_dimension = embedding_dimension
        self.hidden_dimension = hidden_dimension
        self.hidden_layers = hidden_layers
        self.dropout = dropout
        self.id_dropout = id_dropout
        self.l2_regularization = l2_regularization
        self.negative_samples = negative_samples
        self.sample_alpha = sample_alpha
        self.logq = logq
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.recent_history_length = recent_history_length
        self.candidate_count = candidate_count
        self.min_user_history_length_percentile = min_user_history_length_percentile
        self.max_user_history_length_percentile = max_user_history_length_percentile
        self.seed = seed

    def validate(self) -> None:
        low, high = self.min_user_history_length_percentile, self.max_user_history_length_percentile
        rules = (
            ("embedding_dimension", 2 <= self.embedding_dimension <= 256),
            ("hidden_dimension", 8 <= self.hidden_dimension <= 1024),
            ("hidden_layers", 1 <= self.hidden_layers <= 8),
            ("dropout", 0 <= self.dropout < 1),
            ("id_dropout", 0 <= self.id_dropout < 1),
            ("l2_regularization", self.l2_regularization >= 0),
            ("negative_samples", 1 <= self.negative_samples <= 1000),
            ("sample_alpha", 0 <= self.sample_alpha <= 1),
            ("logq", 0 <= self.logq <= 1),
            ("epochs", self.epochs >= 1),
            ("learning_rate", self.learning_rate > 0),
            ("batch_size", self.batch_size >= 1),
            ("recent_history_length", 0 <= self.recent_history_length <= 200),
            ("candidate_count", self.candidate_count >= 1),
            ("min_user_history_length_percentile", 0 <= low <= high),
            ("max_user_history_length_percentile", low <= high <= 1),
        )
        bad = ", ".join(f"{name}={getattr(self, name)!r}" for name, ok in rules if not ok)
        if bad:
            raise ValueError(f"{self.name}: hyperparameters out of range: {bad}")

    # Training.
    def _fit(self, data: InteractionData) -> None:
        from pipelines.personalize import deepfm_network as network  # torch loads only to train

        indptr, rows = data.histories
        items, lengths = self.history_items_, np.diff(indptr)
        user_of = np.repeat(np.arange(data.n_users), lengths)
        first = target_weights(indptr, items, self.history_times_, data.n_items, recency=False) > 0
        positives = np.flatnonzero(first & np.isin(user_of, self._training_users(lengths)))
        counts = np.bincount(items[positives], minlength=data.n_items)
        user_fields = [network.id_field("USER_ID", data.n_users), *network.metadata_fields(data.user_metadata)]
        item_fields = [network.id_field("ITEM_ID", data.n_items), *network.metadata_fields(data.item_metadata)]
        history = network.history_field(indptr, items, first, self.recent_history_length, data.n_items)
        context, self.context_values_ = network.context_fields(data, rows)
        event_fields = ([history] if history else []) + context
        examples = network.Examples(
            user_of[positives], items[positives], positives, user_fields, event_fields, item_fields,
            data.n_users, data.n_items,
        )  # fmt: skip
        knobs = ("embedding_dimension", "hidden_dimension", "hidden_layers", "dropout", "id_dropout")
        knobs += ("l2_regularization", "negative_samples", "sample_alpha", "logq", "epochs", "learning_rate")
        settings = network.Settings(**{k: getattr(self, k) for k in (*knobs, "batch_size", "seed")})
        weights = network.train_network(examples, counts, settings)
        self.training_positives_ = len(positives)
        self.__dict__.update(network.serving_arrays(weights, examples, counts, settings))
        # Tiny offsets, more popular items ahead: items without events tie, and selection slows tenfold on ties.
        self.tie_breaks_ = np.empty(data.n_items)
        self.tie_breaks_[self.popular_order_] = -1e-9 * np.arange(data.n_items)

    def _training_users(self, lengths: np.ndarray) -> np.ndarray:
        active = lengths > 0
        kept = active.copy()
        if active.any():
            low, high = np.quantile(
                lengths[active], [self.min_user_history_length_percentile, self.max_user_history_length_percentile]
            )
            kept &= (lengths >= low) & (lengths <= high)
        return np.flatnonzero(kept)

    # Serving.
    @contextmanager
    def _request(self, context: Mapping[str, str] | None, exclude_seen: bool) -> Iterator[None]:
        """The request's context and whether it leaves seen items out, for ``_user_side`` and ``_candidates``."""
        tokens = REQUEST_CONTEXT.set(context), REQUEST_SKIP_SEEN.set(exclude_seen)
        try:
            yield
        finally:
            REQUEST_CONTEXT.reset(tokens[0])
            REQUEST_SKIP_SEEN.reset(tokens[1])

    def _history(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        REQUEST_USER.set(user_id)  # the base passes histories; the user's id and metadata are by user
        return super()._history(user_id)

    def _user_side(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The request's user side: the first layer's user part, the FM's S_u and user terms; None without evidence."""
        u = self.user_index_.get(REQUEST_USER.get() or "")
        row = len(self.user_trained_) if u is None else u  # the last row is the unknown user's
        vectors = [self.user_id_vectors_[row, 0], *self.user_meta_vectors_[row]]
        first = float(self.user_id_first_[row] + self.user_meta_first_[row])
        evidence = bool(row < len(self.user_trained_) and self.user_trained_[row]) or bool(self.user_has_metadata_[row])
        if self.history_vectors_ is not None:
            distinct, order = np.unique(history, return_index=True)  # as in training: by first event
            recent = distinct[np.argsort(order)][-self.recent_history_length :]
            recent = recent[self.history_known_[recent]]
            share = 1.0 / max(len(recent), 1)
            vectors.append(self.history_vectors_[recent].sum(0) * share)
            first += float(self.history_first_[recent].sum()) * share
            evidence |= len(history) > 0
        given = REQUEST_CONTEXT.get() or {}
        for (name, codes), (table, weights, mean, mean_first) in zip(
            self.context_values_.items(), self.context_tables_, strict=True
        ):
            code = codes.get(str(given[name])) if name in given else None
            evidence |= code is not None
            vectors.append(mean if code is None else table[code])
            first += mean_first if code is None else float(weights[code])
        if not evidence:
            return None
        stacked = np.stack(vectors).astype(np.float32)
        total = stacked.sum(0)
        const = self.bias_ + first + 0.5 * float(total @ total - (stacked**2).sum())
        deep = self.first_user_ @ stacked.ravel() + self.first_bias_
        return deep, total, const

    def _logits(self, side, items: np.ndarray) -> np.ndarray:
        deep, total, const = side
        fm = const + self.item_const_[items] + self.item_sum_[items] @ total
        hidden = np.maximum(self.item_deep_[items] + deep, 0)
        for weight, bias in self.layers_:
            hidden = np.maximum(hidden @ weight.T + bias, 0)
        return fm + hidden @ self.output_[0] + self.output_[1]

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        side = self._user_side(history)
        if side is None:
            return EMPTY, EMPTY
        # Seen items that the list leaves out need no score: a long history must not grow the candidates.
        seen = np.unique(history) if REQUEST_SKIP_SEEN.get() else EMPTY
        size = max(self.candidate_count, n - len(seen))
        n_items = len(self.item_const_)
        if n_items - len(seen) <= size:
            items = np.setdiff1d(np.arange(n_items), seen, assume_unique=True)
        else:  # the FM part alone picks candidates over the catalog, popular items join them
            retrieval = (self.item_const_ + self.item_sum_ @ side[1]).astype(np.float64) + self.tie_breaks_
            retrieval[seen] = -np.inf
            items, _ = top_n(retrieval, size)
            popular = self.popular_order_[: max(1, self.candidate_count // 4) + len(seen)]
            items = np.union1d(items, popular[~np.isin(popular, seen)])
        return items, sigmoid(self._logits(side, items))

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        side = self._user_side(history)
        return np.zeros(len(items)) if side is None else sigmoid(self._logits(side, items))

    def _grow(self, count: int) -> None:
        names = ("item_sum_", "item_const_", "item_deep_")
        for name, cold in zip(names, self.cold_item_, strict=True):
            value = getattr(self, name)
            setattr(self, name, np.concatenate([value, np.repeat(cold, count, axis=0)]))
        start = len(self.tie_breaks_)
        self.tie_breaks_ = np.concatenate([self.tie_breaks_, -1e-9 * np.arange(start, start + count)])
        if self.history_vectors_ is not None:
            self.history_known_ = np.concatenate([self.history_known_, np.zeros(count, bool)])


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


# Depth and width of the network, and the embedding size its FM shares.
register_search_space(
    "deepfm",
    {
        "hidden_layers": IntRange(1, 4),
        "hidden_dimension": IntRange(32, 512, log=True),
        "embedding_dimension": IntRange(8, 64, log=True),
        "dropout": FloatRange(0.0, 0.5),
        "learning_rate": FloatRange(3e-4, 3e-2, log=True),
    },
)
