"""Campaign configuration (Personalize's UpdateCampaign campaignConfig), kept in the serving store.

A dataset group's campaign is its serving model (``campaignArn`` names the group). Its config
holds ``itemExplorationConfig`` (explorationWeight, explorationItemAgeCutOff), which overrides
the trained user-personalization hyperparameters for every request; a request's own
``itemExplorationConfig`` overrides the campaign's, field by field. Each process reads the
stored config at most every ``cache_seconds``, so an update reaches every server within that.
"""

from __future__ import annotations

import threading
import time

from pipelines.serving.store import Store

EXPLORATION_FIELDS = ("explorationWeight", "explorationItemAgeCutOff")


class CampaignConfigs:
    def __init__(self, store: Store, cache_seconds: float = 1.0):
        self.store, self.cache_seconds = store, cache_seconds
        self._cache: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> dict:
        """The campaign's stored config ({} if none)."""
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        row = self.store.get_campaign(name)
        config = row[0] if row else {}
        with self._lock:
            self._cache[name] = (now, config)
        return config

    def put(self, name: str, config: dict) -> dict:
        self.store.put_campaign(name, config)
        with self._lock:
            self._cache[name] = (time.monotonic(), config)
        return config

    def exploration(self, name: str, override: dict | None = None) -> tuple[float | None, float | None]:
        """(weight, cut-off days) from the request's override, else the campaign's; None: the model's own."""
        stored = self.get(name).get("itemExplorationConfig") or {}
        chosen = {k: (override or {}).get(k) for k in EXPLORATION_FIELDS}
        weight, cut_off = (stored.get(k) if chosen[k] is None else chosen[k] for k in EXPLORATION_FIELDS)
        return weight, cut_off
