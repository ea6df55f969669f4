"""HRNN: hierarchical recurrent networks over users' sessions (aws-hrnn), trained and served.

What a user does next depends on the session at hand and on who the user is. A session GRU
follows the session; a user GRU, updated with each finished session, starts the next one
(Quadrana et al., RecSys 2017; the network and its training are in ``hrnn_training``).
A session ends after ``session_gap_minutes`` without events. Where timestamps are too coarse
to tell sessions apart (dates only, or most events of a user sharing a second), each user's
history is cut into chunks of ``session_chunk_length`` events instead.

Serving keeps, per user, the user GRU's state and the open session's state after the newest
event, so a request scores the catalog with one product of the session state and the output
matrix: no pass over the history. ``update`` reads new events into the state (closing the
session first when the gap is exceeded), so the next request reflects them, with no retraining.
Items the model never trained on (new in ``update``, or without events) get the mean trained
item's vectors: recommendable, neither favoured nor buried. Scores are the softmax over the
catalog, as Personalize's are: positive, summing to one.

Repeat events are not training targets: recommendations leave out what the user has seen, so
learning to predict repeats would spend the model on lists nobody is shown. Duplicate events
are not read at all, in training and in serving alike: the same item again at the same
timestamp, or right after itself within a session (a click, then a watch of the same movie).
They told the network nothing new and cost a step each (a third of the Personalize-layout
MovieLens events).

With ``use_event_types`` and events of two EVENT_TYPEs or more, each event's type is an input
beside its item (a learned vector per type added to the item's, in training and in serving;
PutEvents' eventType is read the same way), so a watch and a click of the same item can lead the
session apart. Training reads a tenth of the events as of no type (``TYPE_DROPOUT``), so an event
that comes without one, or with a type training never saw, reads as a trained "no type". A
duplicate's type is not read, as the duplicate is not. It is off by default: on the
Personalize-layout MovieLens events (click and watch) it lowered NDCG@10 over the benchmark's five
splits from 0.0710 to 0.0545 (Personalize's HRNN reads no event type either; its training filter
chooses which events count).

Training reads a long history's newest events (up to ``max_user_history_length_percentile``'s
length) instead of leaving the user out, and stops early: a ``validation_fraction`` of the
training users keep their newest events out of training, the network's NDCG@10 on them is
measured after each epoch, and training ends after ``patience`` epochs without a gain, keeping
the best epoch's weights (``training_report_``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.personalize.base import EMPTY, Recipe, _id, event_type_name
from pipelines.personalize.data import InteractionData
from pipelines.personalize.metadata import metadata_bags
from pipelines.personalize.tuning import Choice, IntRange, register_search_space

DAY = 86_400
RECENCY_FLOOR = 0.3  # with recency_mask, the oldest event weighs this much and the newest 1
VARIANTS = ("init", "all")
LOSSES = ("cross-entropy", "bpr-max")
REQUEST_USER: ContextVar[str | None] = ContextVar("hrnn_request_user", default=None)


@dataclass
class UserState:
    """A user's place in the network: the user GRU's state and the open session's state."""

    user: np.ndarray
    session: np.ndarray
    events: int = 0
    session_events: int = 0
    last_time: int = 0
    last_item: int = -1
    instant: tuple = ()  # the items read at last_time


class HrnnHyperparameters(BaseModel):
    """Personalize's HRNN hyperparameters, defaults and ranges (the first five), then the training
    knobs it keeps to itself. The two percentiles also need min <= max (Hrnn._rules)."""

    model_config = ConfigDict(extra="forbid")

    hidden_dimension: int = Field(43, ge=32, le=256)
    bptt: int = Field(32, ge=2, le=32)
    recency_mask: bool = True
    min_user_history_length_percentile: float = Field(0.0, ge=0)
    max_user_history_length_percentile: float = Field(0.99, le=1)
    variant: Literal[VARIANTS] = "init"  # type: ignore[valid-type]
    session_gap_minutes: float = Field(30.0, gt=0)
    session_chunk_length: int = Field(20, ge=2)
    epochs: int = Field(30, ge=1)
    patience: int = Field(3, ge=0)  # 0: no early stopping, every epoch runs
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    learning_rate: float = Field(0.1, gt=0)
    batch_size: int = Field(64, ge=1)
    loss: Literal[LOSSES] = "cross-entropy"  # type: ignore[valid-type]
    negative_samples: int = Field(128, ge=0)
    sample_alpha: float = Field(0.75, ge=0, le=1)
    bpreg: float = Field(1.0, ge=0)
    logq: float = Field(1.0, ge=0, le=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    use_event_types: bool = False  # EVENT_TYPE as an input beside the item (measured: see the module's docstring)
    seed: int = 42


def extends_model(model: type[BaseModel]) -> Callable:
    """Give ``__init__(self, **hyperparameters)`` the signature of ``model``'s fields (keyword-only,
    with their defaults), so the registry, get_params and ``extends`` see every hyperparameter."""

    def decorate(init: Callable) -> Callable:
        fields = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=field.annotation)
            for name, field in model.model_fields.items()
        ]
        init.__signature__ = inspect.Signature(
            [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *fields]
        )
        return init

    return decorate


def extends(base_init: Callable) -> Callable:
    """Give ``__init__(self, own..., **inherited)`` the full signature, so the registry sees every hyperparameter."""

    def decorate(init: Callable) -> Callable:
        own = [p for p in inspect.signature(init).parameters.values() if p.kind != p.VAR_KEYWORD]
        names = {p.name for p in own}
        inherited = [
            p.replace(kind=p.KEYWORD_ONLY)
            for p in inspect.signature(base_init).parameters.values()
            if p.name not in names and p.name != "self"
        ]
        init.__signature__ = inspect.Signature(own + inherited)
        return init

    return decorate


class Hrnn(Recipe):
    """Personalize's HRNN, with the hyperparameters of HrnnHyperparameters.

    ``variant`` picks HRNN-Init or HRNN-All; ``loss`` is cross-entropy (with ``logq``'s sampling
    correction) or BPR-max over the in-batch and ``negative_samples`` sampled items. With
    ``recency_mask``, newer events weigh more in the loss, so the model follows recent tastes.
    Training is seeded: the same data and hyperparameters give the same model on CPU.

    The base hands recipes a user's history, not the user; the state is kept by user, so
    ``_history`` notes the requesting user in a context variable (per thread, so concurrent
    requests do not mix) and a state that does not match the history is replayed from it.
    """

    name = "hrnn"
    uses_metadata: ClassVar[bool] = False
    # Models pickled before early stopping existed trained without it: what get_params says of them.
    patience: int = 0
    validation_fraction: float = 0.0
    # ... and without event types: none read, in training or in serving.
    use_event_types: bool = False
    event_type_index_: ClassVar[dict[str, int]] = {}
    history_types_: np.ndarray | None = None
    type_inputs_: np.ndarray | None = None

    @extends_model(HrnnHyperparameters)
    def __init__(self, **hyperparameters):
        unknown = sorted(set(hyperparameters) - set(HrnnHyperparameters.model_fields))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}")
        for name, field in HrnnHyperparameters.model_fields.items():  # checked by validate, as Recipe's are
            setattr(self, name, hyperparameters.get(name, field.default))

    def _rules(self) -> list[tuple[str, bool]]:
        values = {name: getattr(self, name) for name in HrnnHyperparameters.model_fields}
        try:
            HrnnHyperparameters.model_validate(values)
            bad = set()
        except ValidationError as error:
            bad = {e["loc"][0] for e in error.errors()}
        low, high = self.min_user_history_length_percentile, self.max_user_history_length_percentile
        rules = [(name, name not in bad) for name in values]
        return [
            *rules,
            ("min_user_history_length_percentile", low <= high),
            ("max_user_history_length_percentile", low <= high),
        ]

    def validate(self) -> None:
        bad = ", ".join(f"{name}={getattr(self, name)!r}" for name, ok in self._rules() if not ok)
        if bad:
            raise ValueError(f"{self.name}: hyperparameters out of range: {bad}")

    # Training.
    def _fit(self, data: InteractionData) -> None:
        from pipelines.personalize import hrnn_training as training  # torch loads only to train

        _, rows = data.histories
        names = data.event_type_names if self.use_event_types else ()
        self.event_type_index_ = {name: k + 1 for k, name in enumerate(names)}
        self.history_types_ = (data.event_types[rows].astype(np.int64) + 1) if self.event_type_index_ else None
        self.recent_types_: dict[str, list[int]] = {}
        indptr, items, times, starts, self.coarse_timestamps_, kept = distinct_events(
            self.history_indptr_,
            self.history_items_,
            self.history_times_,
            self._gap_seconds(),
            self.session_chunk_length,
        )
        weights = target_weights(indptr, items, times, data.n_items, self.recency_mask)
        train_users, begin = self._training_spans(indptr)
        item_bags = metadata_bags(data.item_metadata)[0] if self.uses_metadata else None
        user_bags = metadata_bags(data.user_metadata)[0] if self.uses_metadata else None
        knobs = ("variant", "loss", "negative_samples", "sample_alpha", "bpreg", "logq", "dropout", "epochs")
        knobs += ("patience", "validation_fraction", "learning_rate", "batch_size", "bptt", "seed")
        settings = training.Settings(hidden=self.hidden_dimension, **{k: getattr(self, k) for k in knobs})
        types = None if self.history_types_ is None else self.history_types_[kept]
        if types is not None and len(np.unique(types[types > 0])) < 2:  # one type tells nothing: none read
            self.history_types_ = types = None
        sequences = training.Sequences(indptr, items, starts, weights, begin=begin, types=types)
        trained = training.train_network(sequences, train_users, data.n_items, item_bags, user_bags, settings)
        network, self.user_states_, self.session_states_, self.training_report_, self.training_counts_ = trained
        self.training_users_ = len(train_users)
        self._load(network, item_bags, user_bags)
        last_start = np.maximum.accumulate(np.where(starts, np.arange(len(items)), 0))
        ends = indptr[1:] - 1
        self.session_events_ = np.where(np.diff(indptr) > 0, ends - last_start[np.maximum(ends, 0)] + 1, 0)
        self.last_items_ = np.where(np.diff(indptr) > 0, items[np.maximum(ends, 0)] if len(items) else -1, -1)
        self.live_states_: dict[str, UserState] = {}

    def _training_spans(self, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Users with a next item to predict and a history at least the lower percentile's length, and
        where each one's training starts: histories beyond the upper percentile's length are read from
        that many events before their end (their newest), not left out."""
        lengths = np.diff(indptr)
        kept, begin = lengths >= 2, indptr[:-1].copy()
        if (lengths > 0).any():
            low, high = np.quantile(
                lengths[lengths > 0],
                [self.min_user_history_length_percentile, self.max_user_history_length_percentile],
            )
            kept &= lengths >= low
            cap = max(2, int(np.ceil(high)))
            begin = np.maximum(begin, indptr[1:] - cap)
        return np.flatnonzero(kept), begin

    def _load(self, weights: dict, item_bags: sp.csr_matrix | None, user_bags: sp.csr_matrix | None) -> None:
        """Keep the trained weights as numpy, items' input vectors ready, untrained items filled in."""
        vectors = self._item_vectors(
            weights["item_embedding.weight"], weights["output.weight"], weights["output_bias.weight"][:, 0], item_bags
        )
        embedding, self.output_, self.output_bias_ = vectors
        if item_bags is not None:
            embedding = np.hstack([embedding, item_bags @ weights["item_tokens"]]).astype(np.float32)
        self.item_inputs_ = embedding
        self.type_inputs_ = weights.get("event_types")  # row 0: no type (learned from training's untyped reads)
        self.user_features_ = None if user_bags is None else (user_bags @ weights["user_tokens"]).astype(np.float32)
        gru = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        self.session_gru_ = tuple(weights[f"session_gru.{k}"] for k in gru)
        self.user_gru_ = tuple(weights[f"user_gru.{k}"] for k in gru)
        self.session_init_ = (weights["session_init.weight"], weights["session_init.bias"])
        trained = self.training_counts_ > 0
        self.cold_item_ = tuple(
            (m[trained] if trained.any() else m).mean(0) for m in (self.item_inputs_, self.output_, self.output_bias_)
        )

    def _item_vectors(self, embedding, output, bias, item_bags):
        """Input embeddings, output vectors and biases; untrained items get the mean trained item's."""
        trained = self.training_counts_ > 0
        if trained.any():
            for matrix in (embedding, output, bias):
                matrix[~trained] = matrix[trained].mean(0)
        return embedding, output, bias

    # The network, one user at a time, in numpy (a request must not wait for torch).
    def _user_features(self, user_id: str | None) -> np.ndarray | None:
        if self.user_features_ is None:
            return None
        u = self.user_index_.get(user_id) if user_id is not None else None
        return self.user_features_[u] if u is not None else np.zeros(self.user_features_.shape[1], np.float32)

    def _init_session(self, user: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        weight, bias = self.session_init_
        return np.tanh(weight @ (user if features is None else np.concatenate([user, features])) + bias)

    def _fresh_state(self, user_id: str | None) -> UserState:
        user = np.zeros(self.hidden_dimension, np.float32)
        return UserState(user, self._init_session(user, self._user_features(user_id)))

    def _stored_state(self, user_id: str) -> UserState:
        if user_id in self.live_states_:
            return self.live_states_[user_id]
        u = self.user_index_.get(user_id)
        if u is None or self.history_indptr_[u + 1] == self.history_indptr_[u]:
            return self._fresh_state(user_id)
        start, end = self.history_indptr_[u], self.history_indptr_[u + 1]
        last_time = self.history_times_[end - 1]
        at_last = self.history_items_[start:end][self.history_times_[start:end] == last_time]
        return UserState(
            self.user_states_[u],
            self.session_states_[u],
            int(end - start),
            int(self.session_events_[u]),
            int(last_time),
            int(self.last_items_[u]) if hasattr(self, "last_items_") else int(self.history_items_[end - 1]),
            tuple(dict.fromkeys(at_last.tolist())),
        )

    def _read(
        self, state: UserState, item: int, when: int, features: np.ndarray | None, event_type: int = 0
    ) -> UserState:
        """The state after one more event (``event_type``: its code plus one, 0 for none): the open session
        closes first if the event starts a new one. A duplicate (``is_duplicate``) is counted and not read."""
        later = not state.events or when > state.last_time  # an event out of order leaves the instant as it was
        if self._is_duplicate(state, item, when):
            instant = (item,) if later else state.instant
            return replace(state, events=state.events + 1, last_time=max(state.last_time, when), instant=instant)
        instant = (item,) if later else (*state.instant, item) if when == state.last_time else state.instant
        state = (
            self._close_session(state, features)
            if state.events and self._starts_session(state, when)
            else replace(state)
        )
        x = self.item_inputs_[item]
        if self.type_inputs_ is not None:  # a type training never saw reads as none, as in training
            x = x + self.type_inputs_[event_type if 0 <= event_type < len(self.type_inputs_) else 0]
        if self.variant == "all":
            x = np.concatenate([x, state.user] + ([] if features is None else [features]))
        state.session = gru_cell(x, state.session, *self.session_gru_)
        state.events += 1
        state.session_events += 1
        state.last_time = max(state.last_time, when)
        state.last_item, state.instant = item, instant
        return state

    def _is_duplicate(self, state: UserState, item: int, when: int) -> bool:
        """The same item again at the same timestamp, or right after itself within the session
        (``distinct_events``' rule, event by event)."""
        if not state.events:
            return False
        if when == state.last_time and item in state.instant:
            return True
        return item == state.last_item and (self.coarse_timestamps_ or when - state.last_time <= self._gap_seconds())

    def _close_session(self, state: UserState, features: np.ndarray | None) -> UserState:
        """The open session ends: the user GRU reads its final state, and its state opens the next session."""
        user = gru_cell(state.session, state.user, *self.user_gru_)
        return replace(state, user=user, session=self._init_session(user, features), session_events=0)

    def _starts_session(self, state: UserState, when: int) -> bool:
        if self.coarse_timestamps_:
            return state.session_events >= self.session_chunk_length
        return when - state.last_time > self._gap_seconds()

    def _gap_seconds(self) -> float:
        return self.session_gap_minutes * 60

    def _serving_state(self, history: np.ndarray, times: np.ndarray) -> UserState | None:
        """The requesting user's stored state, or one replayed from the history where it does not match."""
        user_id = REQUEST_USER.get()
        if user_id is not None:
            state = self._stored_state(user_id)
            if state.events == len(history) and (not len(times) or state.last_time == int(times[-1])):
                return state if len(history) or self._has_features(user_id) else None
        if len(history) == 0:
            return None
        state, features = self._fresh_state(user_id), self._user_features(user_id)
        types = self._history_types(user_id, len(history))
        for item, when, event_type in zip(history.tolist(), times.tolist(), types.tolist(), strict=True):
            state = self._read(state, item, when, features, event_type)
        return state

    def _history_types(self, user_id: str | None, count: int) -> np.ndarray:
        """The event-type codes of the user's history, in ``_history``'s order (zeros where unknown)."""
        if self.history_types_ is None or user_id is None:
            return np.zeros(count, np.int64)
        types = self._history_column(user_id, self.history_types_, getattr(self, "recent_types_", {}))
        return types if len(types) == count else np.zeros(count, np.int64)

    def _has_features(self, user_id: str) -> bool:
        features = self._user_features(user_id)
        return features is not None and bool(np.any(features))

    def _scores(self, state: UserState) -> np.ndarray:
        """Softmax over the catalog of the open session's state times the output matrix."""
        logits = (self.output_ @ state.session + self.output_bias_).astype(np.float64)
        scores = np.exp(logits - logits.max())
        return scores / scores.sum()

    # The recipe interface.
    def _history(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        REQUEST_USER.set(user_id)  # the base passes histories; the state is kept by user
        return super()._history(user_id)

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        state = self._serving_state(history, times)
        if state is None:
            return EMPTY, EMPTY
        return top_n(self._scores(state), n)

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        state = self._serving_state(history, times)
        return np.zeros(len(items)) if state is None else self._scores(state)[items]

    def update(self, user_id: str, events: Iterable[Any]) -> None:
        """Take the events as the base does, then read them into the user's state (no retraining)."""
        user_id, events = _id(user_id), list(events)
        before = len(self.recent_events_.get(user_id, ([], []))[0]) if hasattr(self, "recent_events_") else 0
        super().update(user_id, events)
        items, times = self.recent_events_.get(user_id, ([], []))
        if len(items) == before:
            return
        codes = [0] * len(events)
        if self.history_types_ is not None:
            codes = [self.event_type_index_.get(event_type_name(e) or "", 0) for e in events]
            self.__dict__.setdefault("recent_types_", {}).setdefault(user_id, []).extend(codes)
        state, features = self._stored_state(user_id), self._user_features(user_id)
        new_items, new_times = np.asarray(items[before:]), np.asarray(times[before:])
        for k in np.argsort(new_times, kind="stable").tolist():
            state = self._read(state, int(new_items[k]), int(new_times[k]), features, codes[k])
        self.live_states_[user_id] = state

    def _grow(self, count: int) -> None:
        names = ("item_inputs_", "output_", "output_bias_")
        for name, cold in zip(names, self.cold_item_, strict=True):
            value = getattr(self, name)
            setattr(self, name, np.concatenate([value, np.broadcast_to(cold, (count, *value.shape[1:]))]))
        self.training_counts_ = np.concatenate([self.training_counts_, np.zeros(count, np.int64)])


def session_starts(indptr: np.ndarray, times: np.ndarray, gap: float, chunk: int) -> tuple[np.ndarray, bool]:
    """Which events open a session (events in user-history order), and whether timestamps were too coarse.

    Coarse: 90% or more of the gaps between a user's consecutive events are whole days (zero
    included), so time tells no session apart; then sessions are chunks of ``chunk`` events.
    """
    lengths = np.diff(indptr)
    first = np.zeros(len(times), dtype=bool)
    first[indptr[:-1][lengths > 0]] = True
    gaps = np.diff(times, prepend=times[:1])
    within = gaps[~first]
    coarse = bool(len(within)) and float(np.mean(within % DAY == 0)) >= 0.9
    if coarse:
        return chunk_starts(indptr, chunk), True
    return first | (gaps > gap), False


def chunk_starts(indptr: np.ndarray, chunk: int) -> np.ndarray:
    """Every ``chunk``-th event of each user opens a session."""
    lengths = np.diff(indptr)
    position = np.arange(indptr[-1]) - np.repeat(indptr[:-1], lengths)
    return position % chunk == 0


def distinct_events(
    indptr: np.ndarray, items: np.ndarray, times: np.ndarray, gap: float, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool, np.ndarray]:
    """The histories without duplicates, as (indptr, items, times, session starts, coarse, which events are kept).

    A duplicate is an event of an item the user already has at that timestamp, or of the item the
    user's previous distinct event was, within the session (with coarse timestamps: any time).
    Sessions are found on the full histories (a duplicate's time counts for the gap) and, with
    coarse timestamps, chunked over the distinct events.
    """
    lengths = np.diff(indptr)
    user_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    starts, coarse = session_starts(indptr, times, gap, chunk)
    order = np.lexsort((np.arange(len(items)), times, items, user_of))
    same_instant = np.zeros(len(items), dtype=bool)
    repeated = (np.diff(user_of[order]) == 0) & (np.diff(items[order]) == 0) & (np.diff(times[order]) == 0)
    same_instant[order[1:][repeated]] = True
    kept = np.flatnonzero(~same_instant)
    previous_same = np.zeros(len(items), dtype=bool)
    previous_same[kept[1:]] = (user_of[kept[1:]] == user_of[kept[:-1]]) & (items[kept[1:]] == items[kept[:-1]])
    duplicate = same_instant | (previous_same & (True if coarse else ~starts))
    keep = ~duplicate
    new_indptr = np.concatenate([[0], np.cumsum(np.bincount(user_of[keep], minlength=len(lengths)))]).astype(
        indptr.dtype
    )
    new_times = times[keep]
    if coarse:
        return new_indptr, items[keep], new_times, chunk_starts(new_indptr, chunk), True, keep
    return new_indptr, items[keep], new_times, starts[keep], False, keep


def target_weights(indptr: np.ndarray, items: np.ndarray, times: np.ndarray, n_items: int, recency: bool) -> np.ndarray:
    """Loss weight of predicting each event: 0 for a user's repeat of an item, more for newer events with recency."""
    user_of = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    _, first = np.unique(user_of * n_items + items, return_index=True)
    weights = np.zeros(len(items), dtype=np.float32)
    weights[first] = 1.0
    if recency and len(times) > 1:
        rank = np.empty(len(times))
        rank[np.argsort(times, kind="stable")] = np.arange(len(times)) / (len(times) - 1)
        weights *= (RECENCY_FLOOR + (1 - RECENCY_FLOOR) * rank).astype(np.float32)
    return weights


def gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh) -> np.ndarray:
    """torch.nn.GRUCell's step for one row: gates r, z and candidate n, stacked in that order."""
    gi, gh = weight_ih @ x + bias_ih, weight_hh @ h + bias_hh
    size = len(h)
    reset = 1 / (1 + np.exp(-(gi[:size] + gh[:size])))
    keep = 1 / (1 + np.exp(-(gi[size : 2 * size] + gh[size : 2 * size])))
    candidate = np.tanh(gi[2 * size :] + reset * gh[2 * size :])
    return ((1 - keep) * candidate + keep * h).astype(np.float32)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n best items by score, in no order (the base sorts): a partition, not a sort of the catalog."""
    if n >= len(scores):
        return np.arange(len(scores)), scores
    top = np.argpartition(-scores, n - 1)[:n]
    return top, scores[top]


# Personalize's HPO ranges, for every recipe of the family.
SEARCH_SPACE = {"hidden_dimension": IntRange(32, 256), "bptt": IntRange(2, 32), "recency_mask": Choice((True, False))}
for _recipe in ("hrnn", "hrnn-metadata", "hrnn-coldstart", "user-personalization", "personalized-ranking"):
    register_search_space(_recipe, SEARCH_SPACE)
