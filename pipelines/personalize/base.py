"""One interface for every recipe, and the registry that finds recipes by Personalize's names.

A recipe follows scikit-learn's habit: hyperparameters are constructor arguments, ``fit``
learns state into attributes ending with ``_`` and returns the recipe, now a trained model
(Personalize's solution version). What a model needs to serve is kept in numpy arrays and
dicts, so a request touches only the user's history and the recipe's candidates, never a
pass over the catalog, and a model pickles as it is.

The base class owns what every recipe shares, so recipes differ only in how they score:

- each user's history (base events by time, plus those given to ``update`` since), which
  history-based recipes read and which ``exclude_seen_items`` (below) may leave out;
- popularity (unique users per item), which fills lists where a recipe has no evidence and
  breaks ties, so every recipe degrades to the baseline instead of to an arbitrary order;
- ids, including items first seen in ``update``, which become known without retraining.

``update`` mutates the model; a server that shares one model between threads serializes them.

Seen items. ``exclude_seen_items`` is a recipe setting, not a hyperparameter (tuning leaves it
alone): whether what the model serves (the HTTP API's GetRecommendations, with or without a
filter) leaves out items the user already interacted with. Its default is Personalize's for
custom recipes, False: a campaign may recommend an item the user clicked or bought, and a
filter says otherwise (``EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")`` drops every
seen item, ``IN ("purchase")`` only purchases), which is also what makes a buy-again filter
(``INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")``) work. Some of Personalize's
domain recommenders drop seen items themselves (VIDEO_ON_DEMAND's because_you_watched_x and
more_like_x drop the videos the user watched, and apply a custom filter after that): a preset
for those sets the setting to True. Rankings never drop seen items; related items drop only the
item asked about. ``recommend(exclude_seen=...)`` is the per-call switch, True unless told, that
library code passes (offline evaluation must not count a seen item as a hit); serving passes
the setting.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipelines.personalize.data import InteractionData

MAX_RESULTS = 500  # Personalize's limit on numResults and on a ranking request's inputList
RECIPES: dict[str, type[Recipe]] = {}
EMPTY = np.zeros(0, dtype=np.int64)


class Recipe:
    """A recommendation algorithm; after ``fit``, the trained model that serves requests."""

    name: ClassVar[str] = ""
    recipe_type: ClassVar[str] = "USER_PERSONALIZATION"
    exclude_seen_items: bool = False  # a setting (see the module's docstring); an instance may set its own

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            RECIPES[cls.name] = cls

    @classmethod
    def hyperparameter_defaults(cls) -> dict[str, Any]:
        params = inspect.signature(cls.__init__).parameters
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {k: p.default for k, p in params.items() if k != "self" and p.kind in named}

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.hyperparameter_defaults()}

    def clone(self) -> Recipe:
        """The same recipe, hyperparameters and settings, untrained (for evaluation and retraining)."""
        twin = type(self)(**self.get_params())
        if "exclude_seen_items" in vars(self):
            twin.exclude_seen_items = self.exclude_seen_items
        return twin

    def validate(self) -> None:
        """Raise ValueError naming the hyperparameter that is out of range."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def fit(self, data: InteractionData) -> Recipe:
        self.validate()
        start = time.perf_counter()
        self.item_ids_ = list(data.item_ids)
        self.item_index_ = dict(data.item_index)
        self.user_index_ = dict(data.user_index)
        indptr, rows = data.histories
        self.history_indptr_ = indptr
        self.history_items_ = data.items[rows].astype(np.int64)
        self.history_times_ = data.timestamps[rows]
        self.recent_events_: dict[str, tuple[list[int], list[int]]] = {}
        self.popularity_ = np.bincount(data.user_item.indices, minlength=data.n_items).astype(np.float64)
        self.popular_order_ = np.lexsort((np.arange(data.n_items), -self.popularity_))
        self.latest_timestamp_ = int(data.timestamps.max()) if data.n_interactions else 0
        self._fit(data)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    # What a recipe implements. Items are integer indexes; scores <= 0 mean "no evidence".
    def _fit(self, data: InteractionData) -> None:
        raise NotImplementedError

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Items and scores that include the best n the recipe can tell apart from popularity."""
        raise NotImplementedError

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _exploitation_pool(self, state: Any, n: int) -> np.ndarray | None:
        """Sorted item indexes that hold the best ``n`` for ``state``, where the recipe serves a large
        catalog through an index (``ann.ItemIndex``); None: score the whole catalog."""
        return None

    def _related(self, item: int | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"recipe {self.name!r} does not recommend related items; use 'sims'")

    def _grow(self, count: int) -> None:
        """Make room for ``count`` new items at the end of the index."""

    def _observe(self, items: np.ndarray, times: np.ndarray) -> None:
        """See new events (of any user) arrive."""

    @contextmanager
    def _request(self, context: Mapping[str, str] | None, exclude_seen: bool) -> Iterator[None]:
        """Hold what a request says beyond the user's history, for the recipes that read it (DeepFM)."""
        yield

    # Serving.
    def recommend(
        self,
        user_id: str,
        n: int = 25,
        context: Mapping[str, str] | None = None,
        exclude: Iterable[str] | None = None,
        exclude_seen: bool = True,
    ) -> list[tuple[str, float]]:
        """The best ``n`` (item_id, score) for a user, best first.

        Items the user interacted with are left out unless ``exclude_seen`` is false, and so
        are the ``exclude`` ids. Where the recipe has no evidence (an unknown user, too short a
        history), popular items fill the list with score 0. None of these recipes reads
        ``context``; it is accepted so that every recipe is called alike.
        """
        self._check_fitted()
        n = _check_count(n, "n")
        with self._request(context, exclude_seen):
            history, times = self._history(_id(user_id))
            banned = self._banned(history if exclude_seen else EMPTY, exclude)
            items, scores = self._candidates(history, times, n + len(banned))
        return self._top(items, scores, n, banned)

    def related_items(self, item_id: str, n: int = 25, exclude: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """Items similar to ``item_id`` (RELATED_ITEMS recipes); popular items for an unknown item."""
        self._check_fitted()
        n = _check_count(n, "n")
        item = self.item_index_.get(_id(item_id))
        banned = self._banned(EMPTY if item is None else np.array([item]), exclude)
        items, scores = self._related(item, n + len(banned))
        return self._top(items, scores, n, banned)

    def rank(
        self, user_id: str, item_ids: Sequence[str], context: Mapping[str, str] | None = None
    ) -> list[tuple[str, float]]:
        """The given items reordered for the user, best first; items unknown to the model go last.

        ``context`` is accepted so that every recipe is called alike; recipes that read it
        (DeepFM) take it in ``_request``.
        """
        self._check_fitted()
        ids = list(dict.fromkeys(_id(i) for i in item_ids))
        if len(ids) > MAX_RESULTS:
            raise ValueError(f"rank takes at most {MAX_RESULTS} items, got {len(ids)}")
        known = [i for i in ids if i in self.item_index_]
        unknown = [(i, 0.0) for i in ids if i not in self.item_index_]
        if not known:
            return unknown
        items = np.array([self.item_index_[i] for i in known], dtype=np.int64)
        with self._request(context, exclude_seen=False):
            history, times = self._history(_id(user_id))
            scores = np.asarray(self._score_items(history, times, items), dtype=np.float64)
        order = np.lexsort((np.arange(len(items)), -self.popularity_[items], -scores))
        return [(known[k], float(scores[k])) for k in order] + unknown

    def users_for_items(self, item_ids: Sequence[str], n: int = 25) -> list[tuple[str, float]]:
        """The ``n`` users most likely to interact with ``item_ids``, best first (user segments).

        Personalize's item-affinity takes one item; item-attribute-affinity the items an attribute
        query matches. Every user the model knows (trained on, or with events from ``update``) is
        scored against the items by the recipe's own user x item score (what ``rank`` orders by),
        averaged over the items; ties go to the user with more events. Items unknown to the model
        are ignored; ValueError when none is known.
        """
        self._check_fitted()
        if not int(n) >= 1:
            raise ValueError(f"n must be at least 1, got {n}")
        items = np.array([self.item_index_[i] for i in map(_id, item_ids) if i in self.item_index_], dtype=np.int64)
        if not len(items):
            raise ValueError("none of the items is known to the model")
        users = [*self.user_index_, *(u for u in self.recent_events_ if u not in self.user_index_)]
        scores, events = self._user_scores(users, np.unique(items))
        order = np.lexsort((np.arange(len(users)), -events, -scores))[: int(n)]
        return [(users[k], float(scores[k])) for k in order.tolist()]

    def _user_scores(self, user_ids: Sequence[str], items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each user's mean score of ``items`` and number of events (one ``_score_items`` per user)."""
        scores, events = np.zeros(len(user_ids)), np.zeros(len(user_ids))
        with self._request(None, exclude_seen=False):
            for k, user in enumerate(user_ids):
                history, times = self._history(user)
                scores[k] = float(np.mean(np.asarray(self._score_items(history, times, items), dtype=np.float64)))
                events[k] = len(history)
        return np.nan_to_num(scores, nan=0.0), events

    def update(self, user_id: str, events: Iterable[Any]) -> None:
        """Take a user's new events, as Personalize's PutEvents does, without retraining.

        Each event is ``(item_id, timestamp)``, ``(item_id, timestamp, event_type)`` or a
        mapping with itemId/ITEM_ID and sentAt/TIMESTAMP. The events join the user's history
        (so they are excluded and, for history-based recipes, drive the next recommendations);
        items the model has not seen become known. An event type is accepted; the base reads none (the
        solution's training filter already chose which events a recipe learns from), recipes that
        take event types as input (the HRNN family, the v2 recipes) read it in their own ``update``.
        """
        self._check_fitted()
        parsed = [_event(e) for e in events]
        if not parsed:
            return
        new = [i for i in dict.fromkeys(item for item, _ in parsed) if i not in self.item_index_]
        if new:
            self._add_items(new)
        items = np.array([self.item_index_[item] for item, _ in parsed], dtype=np.int64)
        times = np.array([ts for _, ts in parsed], dtype=np.int64)
        stored_items, stored_times = self.recent_events_.setdefault(_id(user_id), ([], []))
        stored_items.extend(items.tolist())
        stored_times.extend(times.tolist())
        self._observe(items, times)

    def add_items(self, item_ids: Sequence[str], metadata: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Take items from the catalog, as Personalize's PutItems does, without retraining.

        Unknown ids become known, as items first seen in ``update`` do: recommendable with no
        events yet (popularity 0), as far as the recipe scores a new item (user-personalization
        explores them). ``metadata`` holds one mapping of schema field to value per id, for
        recipes that read item fields (``_describe``).
        """
        self._check_fitted()
        ids = [_id(i) for i in item_ids]
        new = [i for i in dict.fromkeys(ids) if i not in self.item_index_]
        if new:
            self._add_items(new)
        if metadata is not None:
            self._describe(np.array([self.item_index_[i] for i in ids], dtype=np.int64), list(metadata))

    def _describe(self, items: np.ndarray, metadata: list[Mapping[str, Any]]) -> None:
        """Fields of ``items`` arrived (``add_items``); recipes that read them take what they use."""

    # Shared machinery.
    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise RuntimeError(f"recipe {self.name!r} is not trained: call fit(data) first")

    def _history(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The user's items and timestamps, oldest first, events from ``update`` included."""
        u = self.user_index_.get(user_id)
        if u is None:
            items, times = EMPTY, EMPTY
        else:
            start, end = self.history_indptr_[u], self.history_indptr_[u + 1]
            items, times = self.history_items_[start:end], self.history_times_[start:end]
        recent = self.recent_events_.get(user_id)
        if recent:
            items = np.concatenate([items, np.asarray(recent[0], dtype=np.int64)])
            times = np.concatenate([times, np.asarray(recent[1], dtype=np.int64)])
            order = np.argsort(times, kind="stable")
            items, times = items[order], times[order]
        return items, times

    def _history_column(self, user_id: str, stored: np.ndarray, recent: Mapping[str, Sequence]) -> np.ndarray:
        """A per-event value (an event type, say) of the user's history, in ``_history``'s order:
        ``stored`` holds one per training event (aligned with ``history_items_``), ``recent[user_id]``
        one per event from ``update``."""
        u = self.user_index_.get(user_id)
        start, end = (0, 0) if u is None else (self.history_indptr_[u], self.history_indptr_[u + 1])
        column, times = stored[start:end], self.history_times_[start:end]
        events = self.recent_events_.get(user_id)
        if events:
            column = np.concatenate([column, np.asarray(recent.get(user_id, []), dtype=stored.dtype)])
            times = np.concatenate([times, np.asarray(events[1], dtype=np.int64)])
            column = column[np.argsort(times, kind="stable")]
        return column

    def _banned(self, history: np.ndarray, exclude: Iterable[str] | None) -> np.ndarray:
        extra = [self.item_index_[i] for i in map(_id, exclude or ()) if i in self.item_index_]
        return np.unique(np.concatenate([history, np.asarray(extra, dtype=np.int64)]))

    def _top(self, items: np.ndarray, scores: np.ndarray, n: int, banned: np.ndarray) -> list[tuple[str, float]]:
        """Best n by score, then popularity, then index; popular items fill up with score 0."""
        items, scores = np.asarray(items, dtype=np.int64), np.asarray(scores, dtype=np.float64)
        keep = scores > 0
        if len(banned):
            keep &= ~np.isin(items, banned)
        items, scores = items[keep], scores[keep]
        if len(items) > 2 * n:  # cheap cut before the exact sort; ties at the cut all stay
            cut = np.partition(scores, len(scores) - n)[len(scores) - n]
            keep = scores >= cut
            items, scores = items[keep], scores[keep]
        order = np.lexsort((items, -self.popularity_[items], -scores))[:n]
        items, scores = items[order], scores[order]
        if len(items) < n:
            taken = np.union1d(banned, items)
            head = self.popular_order_[: n - len(items) + len(taken)]
            fill = head[~np.isin(head, taken)][: n - len(items)]
            items = np.concatenate([items, fill])
            scores = np.concatenate([scores, np.zeros(len(fill))])
        return [(self.item_ids_[i], float(s)) for i, s in zip(items.tolist(), scores.tolist(), strict=True)]

    def _add_items(self, new: list[str]) -> None:
        start = len(self.item_ids_)
        self.item_ids_.extend(new)
        self.item_index_.update({item: start + k for k, item in enumerate(new)})
        self.popularity_ = np.concatenate([self.popularity_, np.zeros(len(new))])
        self.popular_order_ = np.concatenate([self.popular_order_, np.arange(start, start + len(new))])
        self._grow(len(new))


def get_recipe(name: str, *, exclude_seen_items: bool | str | None = None, **hyperparameters: Any) -> Recipe:
    """A recipe by Personalize's name ('sims', 'aws-sims' or its ARN), hyperparameters checked.

    Values may be strings, as Personalize's algorithmHyperParameters are: they are read as
    the type of the hyperparameter's default. ``exclude_seen_items`` is the recipe setting
    (None: the recipe's default, False as in Personalize).
    """
    key = name.rsplit("/", 1)[-1].removeprefix("aws-")
    if key not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {sorted(RECIPES)}")
    cls = RECIPES[key]
    defaults = cls.hyperparameter_defaults()
    unknown = sorted(set(hyperparameters) - set(defaults))
    if unknown:
        raise ValueError(f"recipe {key!r} has no hyperparameters {unknown}; it takes {sorted(defaults)}")
    recipe = cls(**{k: _coerce(v, defaults[k]) for k, v in hyperparameters.items()})
    recipe.validate()
    if exclude_seen_items is not None:
        recipe.exclude_seen_items = _setting_flag(exclude_seen_items, "exclude_seen_items")
    return recipe


def _setting_flag(value: Any, what: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{what} must be true or false, got {value!r}")


def _coerce(value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    if isinstance(default, bool):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def _id(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _check_count(n: int, what: str) -> int:
    if not 1 <= int(n) <= MAX_RESULTS:
        raise ValueError(f"{what} must be between 1 and {MAX_RESULTS}, got {n}")
    return int(n)


def _event(event: Any) -> tuple[str, int]:
    if isinstance(event, Mapping):
        item = event.get("itemId", event.get("ITEM_ID"))
        when = event.get("sentAt", event.get("TIMESTAMP"))
    else:
        item, when = event[0], event[1]
    if item is None or when is None:
        raise ValueError(f"an event needs an item id and a timestamp: {event!r}")
    return _id(item), epoch_seconds(when)


def event_type_name(event: Any) -> str | None:
    """An event's EVENT_TYPE as ``update`` takes it: eventType/EVENT_TYPE of a mapping, a tuple's third value."""
    if isinstance(event, Mapping):
        name = event.get("eventType", event.get("EVENT_TYPE"))
    else:
        name = event[2] if len(event) > 2 else None
    return None if name is None else str(name)


def epoch_seconds(value: Any) -> int:
    """Unix seconds from seconds, a datetime or ISO text (naive times are UTC)."""
    if isinstance(value, int | float | np.integer | np.floating):
        return int(value)
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp())
