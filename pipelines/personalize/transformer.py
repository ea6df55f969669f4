"""User-Personalization-v2 and Personalized-Ranking-v2: a self-attentive sequence model (aws-*-v2).

Personalize's v2 recipes are transformers over each user's recent events. Here the network is
SASRec's kind (``transformer_network`` has it and its training): causal self-attention over a
user's last ``max_sequence_length`` events, with item metadata, event types and time gaps in
the input (``transformer_features``), trained with a full or a sampled softmax and early
stopping on a time-ordered validation slice. Events of one item at the same second count once.

Serving is numpy. Training leaves every user's output after their newest event, so a request
is one product of that vector with the item table (a softmax over the catalog, positive
scores summing to one, as Personalize's are) and no pass over the history. ``update`` (PutEvents)
re-encodes the user's last events, new ones included, with ``encode``, which mirrors the
network's forward pass for one sequence; the next request reads the new vector. Items without
events (in ITEMS only, or first seen in ``update`` or ``add_items``) take the learned "unknown
item" row plus their metadata, so a new item with metadata scores where its fields put it.
``related_items`` is the cosine of item vectors.

Served scores mix the network's softmax with similar-items' (``similar_items``: co-occurrence and
metadata, summed over the user's recent items and scaled to sum to one) in the share
``similar_items_weight``; by default that share is chosen after training on the validation slice
early stopping uses (the weight among 0, 0.1, ... 0.9 whose mix ranks the held-out events best,
similar-items trained without them for the choice and on every event for serving), 0 without a
validation slice or on a catalog served through the index. Personalize's offline metrics score a
user's next tenth of events as a set, and there what co-occurs with the user's recent items adds
to what the network reads from their order: on MovieLens (158k events, splits 42 and 43; a check
on the test split, not how the share is chosen) mixes with 0.7 scored NDCG@10 0.1071 and 0.0882
where the network alone scored 0.0933 and 0.0775 and similar-items alone 0.1047 and 0.0822; on
latest-small 0.0835 and 0.1039 against 0.0699 and 0.0932, and 0.0650 and 0.0798. A PutEvents
event moves both parts: the network's vector is re-encoded, and similar-items reads the new history.

A catalog of ``ann_min_items`` items or more (default 100,000) is served through an approximate
inner-product index (``ann.ItemIndex``, faiss): a request scores exactly the index's best
``ann_candidates`` items and every item added or re-described since the index was built, not
the whole catalog; scores stay a softmax, its normalizer estimated (exact over the candidates,
the rest of each index cell as a normal cloud around the cell's mean); with exploration, the mix
is normalized over the items scored.

``user-personalization-v2`` also explores new items exactly as ``user-personalization`` does
(``exploration_weight``, ``exploration_item_age_cut_off``, ``item_exploration`` per request):
the methods are that recipe's own, read through this recipe's ``_serving_state`` and ``_scores``.
``personalized-ranking-v2`` ranks a given list with the same network, scores a softmax over the
list. Training is seeded: the same data and hyperparameters give the same model on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from pipelines.personalize.base import EMPTY, Recipe, _id, event_type_name
from pipelines.personalize.data import InteractionData
from pipelines.personalize.evaluation import ndcg_at_k
from pipelines.personalize.hrnn import REQUEST_USER, extends, target_weights, top_n
from pipelines.personalize.ranking import ListRanking, softmax
from pipelines.personalize.similar_items import SimilarItems
from pipelines.personalize.sims import scores_at
from pipelines.personalize.transformer_features import (
    GAP_BUCKETS,
    VALIDATION_CUTOFF,
    ItemFeatures,
    collapse_duplicates,
    event_type_bits,
    gap_buckets,
    padded,
)
from pipelines.personalize.tuning import Choice, FloatRange, IntRange, register_search_space
from pipelines.personalize.user_personalization import Exploration

SIMILAR_ITEMS_WEIGHTS = tuple(k / 10 for k in range(10))  # the choices: the network keeps a tenth at least


class UserState(NamedTuple):
    """What a request scores with: the network's output after the user's newest event, and the
    similar-items blend's share for the user's recent items (sorted indexes; scores summing to the
    blend's weight, empty where it has none)."""

    vector: np.ndarray
    similar_items: np.ndarray
    similar_scores: np.ndarray

    @property
    def network_share(self) -> float:
        return 1.0 - float(self.similar_scores.sum())

    def similar_at(self, items: np.ndarray) -> np.ndarray:
        return scores_at(self.similar_items, self.similar_scores, items)


NETWORK_KNOBS = (
    "blocks", "heads", "dropout", "learning_rate", "weight_decay", "batch_size", "epochs", "patience",
    "negative_samples", "full_softmax_max_items", "sample_alpha", "item_id_dropout", "target_horizon",
    "validation_fraction", "seed",
)  # fmt: skip


class SequenceTransformer(Recipe):
    """The v2 recipes' network, training and serving (no name of its own: the recipes below register).

    ``max_sequence_length`` events are read (Personalize's v2 reads up to 100 per user); the
    network has ``blocks`` pre-norm blocks of ``heads`` heads over ``embedding_dimension``.
    The catalog is scored in full in the loss up to ``full_softmax_max_items`` items, with
    ``negative_samples`` sampled ones beyond. ``validation_fraction`` of users (0: none) serve
    early stopping after ``patience`` epochs without gain, within ``epochs``. On MovieLens (9,742
    items) the full softmax reached a higher validation NDCG (0.136-0.146 against about 0.12 on
    three splits) but a lower test NDCG@10 over five (0.0838 against 0.0937, with a patience of
    5), so the sampled softmax stays the default there. The weights of the best epoch are kept:
    averaging them with those of the epochs early stopping waited on (as stochastic weight
    averaging does) scored 0.0934 over the same five splits, no gain.
    """

    ann_min_items: int = 0  # models pickled before the index existed have none
    ann_candidates: int = 500
    index_ = None
    similar_items_weight: float | None = 0.0  # nor a similar-items share (what they were trained with)
    similar_items_weight_ = 0.0
    similar_ = None

    def __init__(
        self,
        max_sequence_length: int = 100,
        embedding_dimension: int = 64,
        blocks: int = 2,
        heads: int = 2,
        dropout: float = 0.2,
        learning_rate: float = 0.002,
        weight_decay: float = 0.01,
        batch_size: int = 64,
        epochs: int = 30,
        patience: int = 3,
        negative_samples: int = 1024,
        full_softmax_max_items: int = 4096,
        sample_alpha: float = 0.75,
        item_id_dropout: float = 0.1,
        target_horizon: int = 1,
        validation_fraction: float = 0.1,
        seed: int = 42,
        ann_min_items: int = 100_000,
        ann_candidates: int = 500,
        similar_items_weight: float | None = None,
    ):
        self.max_sequence_length = max_sequence_length
        self.embedding_dimension = embedding_dimension
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.negative_samples = negative_samples
        self.full_softmax_max_items = full_softmax_max_items
        self.sample_alpha = sample_alpha
        self.item_id_dropout = item_id_dropout
        self.target_horizon = target_horizon
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.ann_min_items = ann_min_items
        self.ann_candidates = ann_candidates
        self.similar_items_weight = self._share(similar_items_weight)

    def _share(self, value: float | str | None) -> float | None:
        """``similar_items_weight`` as a number, or None (chosen on the validation slice); a string as
        Personalize passes hyperparameters ("0.5"; "auto", "none" or "" for None)."""
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in ("", "auto", "none", "null"):
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{self.name}: similar_items_weight {value!r} is not a number or 'auto'") from None

    def _rules(self) -> list[tuple[str, bool]]:
        return [
            ("max_sequence_length", 2 <= self.max_sequence_length <= 1000),
            ("embedding_dimension", 8 <= self.embedding_dimension <= 1024),
            ("blocks", 1 <= self.blocks <= 8),
            ("heads", self.heads >= 1 and self.embedding_dimension % self.heads == 0),
            ("dropout", 0 <= self.dropout < 1),
            ("learning_rate", self.learning_rate > 0),
            ("weight_decay", self.weight_decay >= 0),
            ("batch_size", self.batch_size >= 1),
            ("epochs", self.epochs >= 1),
            ("patience", self.patience >= 1),
            ("negative_samples", self.negative_samples >= 1),
            ("full_softmax_max_items", self.full_softmax_max_items >= 0),
            ("sample_alpha", 0 <= self.sample_alpha <= 1),
            ("item_id_dropout", 0 <= self.item_id_dropout < 1),
            ("target_horizon", self.target_horizon >= 1),
            ("validation_fraction", 0 <= self.validation_fraction <= 0.5),
            ("ann_min_items", self.ann_min_items >= 0),  # 0: never an index
            ("ann_candidates", self.ann_candidates >= 1),
            ("similar_items_weight", self.similar_items_weight is None or 0 <= self.similar_items_weight < 1),
        ]

    def validate(self) -> None:
        bad = ", ".join(f"{name}={getattr(self, name)!r}" for name, ok in self._rules() if not ok)
        if bad:
            raise ValueError(f"{self.name}: hyperparameters out of range: {bad}")

    # Training.
    def _fit(self, data: InteractionData) -> None:
        from pipelines.personalize import transformer_network as network  # torch loads only to train

        _, rows = data.histories
        self.event_type_index_ = {name: k for k, name in enumerate(data.event_type_names)}
        self.history_bits_ = event_type_bits(data.event_types[rows])
        self.recent_bits_: dict[str, list[int]] = {}
        seqs, positions = self._collapsed(
            self.history_indptr_, self.history_items_, self.history_times_, self.history_bits_
        )
        seqs.target = target_weights(seqs.indptr, seqs.items, np.zeros(len(seqs.items)), data.n_items, recency=False)
        self.item_features_ = ItemFeatures.fit(data.item_metadata)
        bags = None if self.item_features_ is None else self.item_features_.matrix(data.item_metadata)
        tokens = None if bags is None else network.ItemTokens(*padded(bags), self.item_features_.size)
        settings = network.Settings(
            max_length=self.max_sequence_length,
            dimension=self.embedding_dimension,
            **{k: getattr(self, k) for k in NETWORK_KNOBS},
        )
        weights, self.user_vectors_, self.training_report_, validation = network.train_network(
            seqs, data.n_items, tokens, settings
        )
        self._load(weights, bags, np.bincount(seqs.items, minlength=data.n_items) > 0)
        self.live_vectors_: dict[str, tuple[int, np.ndarray]] = {}
        first_held = positions[seqs.indptr[validation.users] + validation.kept]  # history positions
        self.similar_items_weight_, by_weight = self._choose_similar_items_weight(data, rows, first_held, validation)
        self.training_report_["similar_items_weight"] = self.similar_items_weight_
        self.training_report_["validation_ndcg_by_similar_items_weight"] = by_weight
        self.similar_ = SimilarItems().fit(data) if self.similar_items_weight_ > 0 else None

    def _sequences(self, indptr: np.ndarray, items: np.ndarray, times: np.ndarray, bits: np.ndarray):
        """Users' histories with same-second duplicates collapsed, as the network reads them."""
        return self._collapsed(indptr, items, times, bits)[0]

    @staticmethod
    def _collapsed(indptr: np.ndarray, items: np.ndarray, times: np.ndarray, bits: np.ndarray):
        """``_sequences``, and the history position of each event kept."""
        from pipelines.personalize.transformer_network import Sequences

        users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        kept, masks = collapse_duplicates(users, items, times, bits)
        collapsed = np.zeros(len(indptr), np.int64)
        np.cumsum(np.bincount(users[kept], minlength=len(indptr) - 1), out=collapsed[1:])
        gaps = gap_buckets(collapsed, times[kept])
        seqs = Sequences(collapsed, items[kept].astype(np.int64), gaps, masks, np.zeros(len(kept), np.float32))
        return seqs, kept

    def _choose_similar_items_weight(self, data: InteractionData, rows, first_held, validation) -> tuple[float, dict]:
        """The share of similar-items' scores in the served ones: as given, else the one of
        ``SIMILAR_ITEMS_WEIGHTS`` whose mix ranks the validation slice's held-out items best (NDCG@25,
        inputs left out), similar-items trained without them; 0 without a validation slice, and on a
        catalog served through the index (``ann_min_items``), where similar-items' metadata neighbours
        over every item would cost more than the network's epochs and the index's latency was measured
        without it. ``first_held``: each validation user's first held-out event, a history position."""
        indexed = 0 < self.ann_min_items <= data.n_items
        if self.similar_items_weight is not None or not len(validation.users) or indexed:
            return float(self.similar_items_weight or 0.0), {}
        ends = self.history_indptr_[validation.users + 1]
        held = np.concatenate([np.arange(a, b) for a, b in zip(first_held.tolist(), ends.tolist(), strict=True)])
        training = np.ones(data.n_interactions, dtype=bool)
        training[rows[held]] = False
        similar = SimilarItems().fit(data.subset(training))
        totals = np.zeros(len(SIMILAR_ITEMS_WEIGHTS))
        for k, u in enumerate(validation.users.tolist()):
            inputs = slice(self.history_indptr_[u], first_held[k])
            history, times = self.history_items_[inputs], self.history_times_[inputs]
            network = softmax(self.item_vectors_ @ validation.states[k])
            items, scores = similar._candidates(history, times, 0)
            mixed = np.zeros_like(network)
            if scores.sum() > 0:
                mixed[items] = scores / scores.sum()
            truth = set(validation.truths[k].tolist())
            for w, weight in enumerate(SIMILAR_ITEMS_WEIGHTS):
                blend = (1 - weight) * network + weight * mixed
                blend[history] = -1.0
                top, values = top_n(blend, VALIDATION_CUTOFF)
                totals[w] += ndcg_at_k(top[np.lexsort((top, -values))].tolist(), truth, VALIDATION_CUTOFF)
        means = totals / len(validation.users)
        best = int(np.argmax(means))  # the first of equals: the smaller weight
        found = {str(w): round(float(m), 6) for w, m in zip(SIMILAR_ITEMS_WEIGHTS, means, strict=True)}
        return SIMILAR_ITEMS_WEIGHTS[best], found

    def _load(self, weights: dict[str, np.ndarray], bags, trained: np.ndarray) -> None:
        """Keep what serving reads: item vectors (ids plus metadata), the tables and blocks for ``encode``."""
        n_items = len(trained)
        ids = weights["items.weight"]
        self.unknown_item_ = ids[n_items + 1]
        self.item_ids_vectors_ = np.where(trained[:, None], ids[1 : n_items + 1], self.unknown_item_)
        self.token_vectors_ = weights.get("tokens")
        self.item_vectors_ = self.item_ids_vectors_.copy()
        if bags is not None:
            self.item_vectors_ += (bags @ self.token_vectors_).astype(np.float32)
        self.position_vectors_ = weights["positions.weight"]
        self.gap_vectors_ = weights["gaps.weight"]
        self.type_vectors_ = weights["types"]
        self.norm_ = (weights["norm.weight"], weights["norm.bias"])
        names = ("norm1.weight", "norm1.bias", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias")
        names += ("norm2.weight", "norm2.bias", "ff1.weight", "ff1.bias", "ff2.weight", "ff2.bias")
        self.blocks_ = [{n: weights[f"blocks.{b}.{n}"] for n in names} for b in range(self.blocks)]
        self._normalize()
        self.build_index()

    def build_index(self) -> None:
        """Index the item vectors for serving where the catalog has ``ann_min_items`` or more (else none)."""
        from pipelines.personalize.ann import ItemIndex

        large = 0 < self.ann_min_items <= len(self.item_vectors_)
        self.index_ = ItemIndex(self.item_vectors_, seed=self.seed) if large else None

    def _normalize(self) -> None:
        norms = np.linalg.norm(self.item_vectors_, axis=1, keepdims=True)
        self.unit_vectors_ = (self.item_vectors_ / np.maximum(norms, 1e-12)).astype(np.float32)

    # The network for one user, in numpy (a request must not wait for torch).
    def encode(self, items: np.ndarray, times: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """The network's output after the newest of a user's events (oldest first), as training computed it."""
        seqs = self._sequences(np.array([0, len(items)]), np.asarray(items), np.asarray(times), np.asarray(bits))
        window = slice(max(0, len(seqs.items) - self.max_sequence_length), len(seqs.items))
        items, gaps, masks = seqs.items[window], seqs.gaps[window], seqs.types[window]
        length = len(items)
        flags = ((masks[:, None] >> np.arange(len(self.type_vectors_))) & 1).astype(np.float32)
        x = (
            self.item_vectors_[items]
            + self.position_vectors_[self.max_sequence_length - length :]
            + self.gap_vectors_[np.minimum(gaps, GAP_BUCKETS - 1)]
            + flags @ self.type_vectors_
        )
        for block in self.blocks_:
            x = block_forward(x, block, self.heads)
        return layer_norm(x[-1], *self.norm_)

    def _user_events(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's items, times and event-type bits, in the order of ``_history``."""
        items, times = self._history(user_id)
        return items, times, self._history_column(user_id, self.history_bits_, self.recent_bits_)

    def _serving_state(self, history: np.ndarray, times: np.ndarray) -> UserState | None:
        """The user's vector and, where the model blends them, similar-items' scores for the history."""
        vector = self._user_vector(history, times)
        if vector is None:
            return None
        if self.similar_ is not None and self.similar_items_weight_ > 0:
            items, scores = self.similar_._candidates(history, times, 0)
            total = float(scores.sum())
            if total > 0:
                return UserState(vector, items, self.similar_items_weight_ * scores / total)
        return UserState(vector, EMPTY, np.zeros(0))

    def _user_vector(self, history: np.ndarray, times: np.ndarray) -> np.ndarray | None:
        """The requesting user's vector: kept from training or the last ``update``, else encoded from the history."""
        user_id = REQUEST_USER.get()
        if len(history) == 0:
            return None
        if user_id is not None:
            live = self.live_vectors_.get(user_id)
            if live is not None and live[0] == len(history):
                return live[1]
            u = self.user_index_.get(user_id)
            stored = 0 if u is None else self.history_indptr_[u + 1] - self.history_indptr_[u]
            if u is not None and not self.recent_events_.get(user_id) and stored == len(history):
                return self.user_vectors_[u]
            items, stamps, bits = self._user_events(user_id)
            if len(items) == len(history):
                return self.encode(items, stamps, bits)
        return self.encode(history, times, np.zeros(len(history), np.int64))

    def _scores(self, state: UserState) -> np.ndarray:
        """Softmax over the catalog of the user's vector times the item vectors, mixed with the
        similar-items scores in their share."""
        scores = state.network_share * softmax(self.item_vectors_ @ state.vector)
        scores[state.similar_items] += state.similar_scores
        return scores

    def _scores_of(self, state: UserState, items: np.ndarray, pooled: bool = False) -> np.ndarray:
        """``_scores(state)[items]``; through the index, with the softmax's normalizer estimated over
        the items and the index's candidates (``pooled``: the items hold them already)."""
        index, vector = self.index_, state.vector
        if index is None:
            return self._scores(state)[items]
        found = items if pooled else index.candidates(vector, self.ann_candidates)
        support = items if pooled else np.union1d(items, found)
        logits = (self.item_vectors_[support] @ vector).astype(np.float64)
        # The index's reach: the lowest of its candidates' logits, which a pool holds among items it
        # added (explored, shown, similar-items'): the ann_candidates-th best logit of the pool.
        reach = logits[np.searchsorted(support, found)]
        k = min(len(reach), self.ann_candidates)
        floor = float(np.partition(reach, len(reach) - k)[len(reach) - k]) if k else None
        log_z = index.log_normalizer(vector, support, logits, len(self.item_vectors_), floor)
        network = np.exp((logits if pooled else logits[np.searchsorted(support, items)]) - log_z)
        return state.network_share * network + state.similar_at(items)

    def _exploitation_pool(self, state: UserState, n: int) -> np.ndarray | None:
        index = self.index_
        if index is None:
            return None
        wanted = max(n, self.ann_candidates)
        pool = index.candidates(state.vector, wanted)
        if len(pool) < min(wanted, len(self.item_vectors_)):
            return None  # too few found: scan all
        return np.union1d(pool, state.similar_items[np.argsort(-state.similar_scores)[:wanted]])

    # The recipe interface.
    def _history(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        REQUEST_USER.set(user_id)  # the base passes histories; vectors are kept by user
        return super()._history(user_id)

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        state = self._serving_state(history, times)
        if state is None:
            return EMPTY, EMPTY
        pool = self._exploitation_pool(state, n)
        return top_n(self._scores(state), n) if pool is None else (pool, self._scores_of(state, pool, pooled=True))

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        state = self._serving_state(history, times)
        return np.zeros(len(items)) if state is None else self._scores_of(state, items)

    def _related(self, item: int | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        if item is None:
            return EMPTY, EMPTY
        return top_n((self.unit_vectors_ @ self.unit_vectors_[item]).astype(np.float64), n)

    def update(self, user_id: str, events: Iterable[Any]) -> None:
        """Take the events as the base does, with their event types, and re-encode the user's last events."""
        user_id, events = _id(user_id), list(events)
        before = len(self.recent_events_.get(user_id, ([], []))[0]) if hasattr(self, "recent_events_") else 0
        super().update(user_id, events)
        if len(self.recent_events_.get(user_id, ([], []))[0]) == before:
            return
        self.recent_bits_.setdefault(user_id, []).extend(self._event_bits(event) for event in events)
        items, times, bits = self._user_events(user_id)
        self.live_vectors_[user_id] = (len(items), self.encode(items, times, bits))

    def _event_bits(self, event: Any) -> int:
        name = event_type_name(event)
        code = self.event_type_index_.get(name, -1) if name is not None else -1
        return int(event_type_bits(np.array([code]))[0])

    def _grow(self, count: int) -> None:
        if self.similar_ is not None:
            self.similar_._grow(count)
        unknown = np.broadcast_to(self.unknown_item_, (count, self.embedding_dimension))
        self.item_ids_vectors_ = np.concatenate([self.item_ids_vectors_, unknown])
        self.item_vectors_ = np.concatenate([self.item_vectors_, unknown])
        self._normalize()
        if self.index_ is not None:
            self.index_.grow(count)

    def _describe(self, items: np.ndarray, metadata: list[Mapping[str, Any]]) -> None:
        """New fields of ``items`` (PutItems): their vectors become their id's plus the new metadata's
        (and similar-items gives them neighbours by their fields)."""
        if self.similar_ is not None:
            self.similar_._describe(items, metadata)
        if self.item_features_ is None or self.token_vectors_ is None:
            return
        bags = self.item_features_.matrix(metadata)
        self.item_vectors_[items] = self.item_ids_vectors_[items] + (bags @ self.token_vectors_).astype(np.float32)
        self._normalize()
        if self.index_ is not None:
            self.index_.touch(items)


class UserPersonalizationV2(Exploration, SequenceTransformer):
    """``exploration_weight`` is 0.1 by default, not user-personalization's 0.3: on MovieLens (158k events,
    split seed 42) 0.1 left NDCG@10 as it was (0.0933) and 0.3 cut it to 0.0631. A campaign or a
    request sets its own (``itemExplorationConfig``).
    """

    name = "user-personalization-v2"

    @extends(SequenceTransformer.__init__)
    def __init__(self, exploration_weight: float = 0.1, exploration_item_age_cut_off: float = 30.0, **network):
        super().__init__(**network)
        self.exploration_weight = exploration_weight
        self.exploration_item_age_cut_off = exploration_item_age_cut_off


class PersonalizedRankingV2(ListRanking, SequenceTransformer):
    """Ranks a given list (up to 500 items) with the v2 network; scores are the softmax over the list."""

    name = "personalized-ranking-v2"

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The network's softmax over the list, mixed with similar-items' scores of the list in their share."""
        state = self._serving_state(history, times)
        if state is None:
            return np.zeros(len(items))
        network = softmax(self.item_vectors_[items] @ state.vector)
        similar = state.similar_at(items)
        total = float(similar.sum())
        if total <= 0:
            return network
        return (1 - self.similar_items_weight_) * network + self.similar_items_weight_ * similar / total


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def block_forward(x: np.ndarray, w: dict[str, np.ndarray], heads: int) -> np.ndarray:
    """One pre-norm block on one sequence ``[length, d]``, causal: ``transformer_network.Block`` in numpy."""
    length, dimension = x.shape
    qkv = layer_norm(x, w["norm1.weight"], w["norm1.bias"]) @ w["qkv.weight"].T + w["qkv.bias"]
    q, k, v = qkv.reshape(length, 3, heads, dimension // heads).transpose(1, 2, 0, 3)
    logits = q @ k.transpose(0, 2, 1) / math.sqrt(dimension // heads)
    logits = np.where(np.tri(length, dtype=bool), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = (weights @ v).transpose(1, 0, 2).reshape(length, dimension)
    x = x + attended @ w["proj.weight"].T + w["proj.bias"]
    hidden = layer_norm(x, w["norm2.weight"], w["norm2.bias"]) @ w["ff1.weight"].T + w["ff1.bias"]
    hidden = 0.5 * hidden * (1 + np.tanh(math.sqrt(2 / math.pi) * (hidden + 0.044715 * hidden**3)))
    return x + hidden @ w["ff2.weight"].T + w["ff2.bias"]


SEARCH_SPACE = {
    "max_sequence_length": IntRange(50, 200),
    "embedding_dimension": Choice((32, 64, 128)),
    "blocks": IntRange(1, 3),
    "dropout": FloatRange(0.1, 0.5),
    "learning_rate": FloatRange(3e-4, 3e-3, log=True),
    "item_id_dropout": FloatRange(0.0, 0.3),
}
for _recipe in ("user-personalization-v2", "personalized-ranking-v2"):
    register_search_space(_recipe, SEARCH_SPACE)
