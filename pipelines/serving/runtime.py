"""What one server process holds: the store, keys, filters, models, forecasts and the poll thread."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from pipelines.serving.answers import RecentAnswers
from pipelines.serving.auth import KeyChecker
from pipelines.serving.batch_jobs import fail_orphaned
from pipelines.serving.campaigns import CampaignConfigs
from pipelines.serving.filter_registry import FilterRegistry
from pipelines.serving.forecasts import ForecastHolder
from pipelines.serving.observability import Metrics
from pipelines.serving.recommender import EventTail, ModelHolder, training_filter
from pipelines.serving.scenarios import ScenarioRunner
from pipelines.serving.settings import ServingSettings
from pipelines.serving.store import Store

log = logging.getLogger("airsight.serving")


def latest_snapshot_data(*storage_roots: str) -> Any:
    """The newest complete snapshot of the first of ``storage_roots`` that has one, as InteractionData
    (what filters read), or None. A recommender's filters read its dataset group's snapshot, else its own."""
    import pandas as pd

    from pipelines import storage
    from pipelines.personalize.data import InteractionData

    for root in storage_roots:
        folder = storage.previous_snapshot(root, pd.Timestamp.max)
        if folder is not None:
            return InteractionData.from_snapshot(folder)
    return None


def _model_holder(name: str, roots: tuple[str, ...], store: Store, trains_on=None,
                  dataset_group: str | None = None) -> ModelHolder:  # fmt: skip
    def champion_version() -> str | None:
        from pipelines.training import pyfunc as models
        from pipelines.training import registry

        champion = registry.current_champion(models.registered_name("personalize", name))
        return None if champion is None else str(champion.version)

    def load_version(version: str) -> Any:
        import mlflow

        from pipelines.training import pyfunc as models
        from pipelines.training import registry

        # models:/ URIs resolve through MLflow's registry URI, which is not the project's store
        # unless MLFLOW_TRACKING_URI is set: point it there, as registry.client() does.
        mlflow.set_registry_uri(registry.tracking_uri())
        return models.load_version("personalize", name, version)

    return ModelHolder(
        name, store, champion_version, load_version, lambda: latest_snapshot_data(*roots), trains_on, dataset_group
    )


class Runtime:
    def __init__(self, settings: ServingSettings):
        from pipelines.settings import discover_groups, find_group, load_group

        self.settings = settings
        self.store = Store(settings.resolved_database_url())
        fail_orphaned(self.store)  # jobs a stopped server left IN_PROGRESS
        self.keys = KeyChecker(self.store, settings.key_cache_seconds)
        self.metrics = Metrics()
        if settings.groups is not None:
            groups = [find_group(g) for g in settings.groups]
        else:
            groups = [load_group(p) for p in discover_groups(settings.groups_dir)]
        # a domain recommender serves as a group of its own, on its dataset group's events and filters
        groups = [r for g in groups for r in (g.with_recommenders() if g.kind == "personalize" else [g])]
        self.groups = {g.name: g for g in groups}
        self.dataset_groups = {g.name: getattr(g, "recommender_of", None) or g.name for g in groups}
        self.models: dict[str, ModelHolder] = {}
        self.forecasts: dict[str, ForecastHolder] = {}
        self.scenarios: dict[str, ScenarioRunner] = {}  # what-if forecasts on demand, per forecast group
        for group in groups:
            if group.kind == "personalize" and settings.load_models:
                rule = group.training_filter
                trains_on = training_filter(rule.event_types, rule.event_value_threshold)
                # what filters read: the dataset group's snapshot (a recommender's own, until it has one)
                data_root = (self.groups[self.dataset_groups[group.name]].storage_root, group.storage_root)
                self.models[group.name] = _model_holder(
                    group.name, data_root, self.store, trains_on, self.dataset_groups[group.name]
                )
            elif group.kind == "forecast":
                self.forecasts[group.name] = ForecastHolder(group.name, group.storage_root)
                self.scenarios[group.name] = ScenarioRunner(group, self.forecasts[group.name])
        self.personalize_groups = {g.name for g in groups if g.kind == "personalize"}
        # filters belong to dataset groups; a recommender's requests use its dataset group's
        own = {g.name: g for g in groups if g.kind == "personalize" and not getattr(g, "recommender_of", None)}
        self.filters = FilterRegistry(self.store, own)
        self.tail = EventTail(self.store, self.models, self.dataset_groups)
        self.campaigns = CampaignConfigs(self.store)
        self.answers = RecentAnswers(self.store, settings.recommendation_id_seconds)  # recommendationId -> items
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def poll_once(self) -> None:
        """Check every champion alias and latest.json once; load what moved."""
        for name, holder in self.models.items():
            failed_before = holder.failed_version
            if holder.poll(self.tail):
                self.metrics.swaps.labels(name).inc()
                self.metrics.model_version.labels(name).set(_number(holder.state.version))
            elif holder.failed_version and holder.failed_version != failed_before:
                self.metrics.load_failures.labels(name).inc()
        for holder in self.forecasts.values():
            holder.poll()

    def start(self, first_poll: bool = True) -> None:
        """Start the poll thread once; with ``first_poll``, load what there is before returning."""
        with self._start_lock:
            if self._thread is not None:
                return
            if first_poll:
                self.poll_once()
            self._thread = threading.Thread(target=self._run, name="airsight-poll", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            try:
                self.poll_once()
            except Exception:
                log.exception("poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.answers.close()
        self.store.close()

    def health(self) -> dict:
        models = {name: h.health() for name, h in self.models.items()}
        forecasts = {name: h.health() for name, h in self.forecasts.items()}
        states = [v["status"] for v in (*models.values(), *forecasts.values())]
        status = "ok" if all(s == "ok" for s in states) else "degraded"
        return {"status": status, "models": models, "forecasts": forecasts, "database": _safe_url(self.store.url)}


def _number(version: str) -> float:
    try:
        return float(version)
    except ValueError:
        return 0.0


def _safe_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).name}"
    return url.split("@")[-1] if "@" in url else url.split("://")[0] + "://…"
