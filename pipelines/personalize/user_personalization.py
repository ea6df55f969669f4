"""User-Personalization: HRNN-Coldstart that also explores new and rarely shown items (aws-user-personalization).

A model that only exploits never learns about an item nobody has been shown: it has no
interactions, so it never scores high, so it is never shown. Exploration gives such items
impressions. An item is in scope when it was created within ``exploration_item_age_cut_off``
days of the data's newest event (ITEMS' CREATION_TIMESTAMP; without one, its first event;
items first seen in ``update`` are new). In scope, an item's bonus is upper-confidence
style, 1 / sqrt(1 + exposures), where exposures are its impressions when interactions carry
an IMPRESSION column (an event counts as one too) and its events otherwise: the less an item
has been shown, the more it is worth showing.

The score blends ``(1 - w) * exploitation + w * bonus`` with ``w = exploration_weight``:
exploitation is the HRNN probability over the best item's, 0 is pure exploitation (the same
list as hrnn-coldstart) and 1 ranks only by the bonus. Each bonus is scaled by a random
factor in [0.5, 1], seeded by ``seed``, the user and the length of the user's history: a
request is reproducible, while different users, and the same user after new events, are
shown different new items instead of all the same few.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from pipelines.personalize.data import InteractionData, _epoch_seconds
from pipelines.personalize.hrnn import DAY, REQUEST_USER, extends, top_n
from pipelines.personalize.hrnn_metadata import HrnnColdstart


class UserPersonalization(HrnnColdstart):
    name = "user-personalization"

    @extends(HrnnColdstart.__init__)
    def __init__(self, exploration_weight: float = 0.3, exploration_item_age_cut_off: float = 30.0, **hrnn):
        super().__init__(**hrnn)
        self.exploration_weight = exploration_weight
        self.exploration_item_age_cut_off = exploration_item_age_cut_off

    def _rules(self) -> list[tuple[str, bool]]:
        return [
            *super()._rules(),
            ("exploration_weight", 0 <= self.exploration_weight <= 1),
            ("exploration_item_age_cut_off", self.exploration_item_age_cut_off > 0),
        ]

    def _fit(self, data: InteractionData) -> None:
        super()._fit(data)
        self.created_ = creation_times(data)
        events = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
        self.exposures_ = np.maximum(events, impressions(data))

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        state = self._serving_state(history, times)
        weight = self.exploration_weight
        if state is None:  # nothing to exploit: popularity fills in after the explored items
            scores = weight * self._bonus(len(history))
        else:
            exploitation = self._scores(state)
            scores = (1 - weight) * exploitation / exploitation.max() + weight * self._bonus(len(history))
            scores /= scores.sum()
        return top_n(scores, n)

    def _bonus(self, history_length: int) -> np.ndarray:
        if self.exploration_weight == 0:
            return np.zeros(len(self.exposures_))
        in_scope = self.created_ >= self.latest_timestamp_ - self.exploration_item_age_cut_off * DAY
        user = zlib.crc32((REQUEST_USER.get() or "").encode())
        rng = np.random.default_rng([self.seed, user, history_length])
        return in_scope / np.sqrt(1 + self.exposures_) * rng.uniform(0.5, 1.0, len(self.exposures_))

    def _grow(self, count: int) -> None:
        super()._grow(count)
        self.created_ = np.concatenate([self.created_, np.full(count, np.inf)])
        self.exposures_ = np.concatenate([self.exposures_, np.zeros(count)])

    def _observe(self, items: np.ndarray, times: np.ndarray) -> None:
        np.add.at(self.exposures_, items, 1.0)


def creation_times(data: InteractionData) -> np.ndarray:
    """Each item's creation time: CREATION_TIMESTAMP, else its first event, else +inf (new)."""
    created = np.full(data.n_items, np.inf)
    np.minimum.at(created, data.items, data.timestamps.astype(np.float64))
    meta = data.item_metadata
    if meta is not None and "CREATION_TIMESTAMP" in meta:
        column = meta["CREATION_TIMESTAMP"]
        given = column.notna().to_numpy()
        if given.any():
            created[given] = _epoch_seconds(column[given]).astype(np.float64)
    return created


def impressions(data: InteractionData) -> np.ndarray:
    """How often each item was shown, from the IMPRESSION lists of the interactions (0 without them)."""
    shown = np.zeros(data.n_items)
    if data.context is None or "IMPRESSION" not in data.context:
        return shown
    ids = pd.Series(data.context["IMPRESSION"].tolist()).map(_impression_list).explode().dropna()
    codes = pd.Index(data.item_ids).get_indexer(ids.astype(str))
    np.add.at(shown, codes[codes >= 0], 1.0)
    return shown


def _impression_list(cell) -> list:
    if isinstance(cell, str):
        return cell.split("|")
    if isinstance(cell, list | tuple | np.ndarray):
        return list(cell)
    return []
