"""What-if forecasts on demand (``POST /forecasts/what-if``): a scenario against the served model.

The served model is the one behind the group's latest published forecast: the registered version
it names, which was fitted on the published snapshot when it was promoted; when the champion kept
serving, its configuration refitted on that snapshot (what the forecast step published). Model,
data and calibration factors are prepared once per published version, in the background, and
kept; each request then forecasts its scenario with the fitted model (pipelines.forecast.what_if)
and answers in QueryForecast's shape. A request waits at most ``timeout`` seconds: past it, 504,
and the preparation goes on so that a retry finds it ready.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from pipelines.serving.forecasts import ForecastExport, ForecastHolder

DEFAULT_TIMEOUT = 30.0


class ScenarioUnavailable(RuntimeError):
    """The group has nothing to run a scenario on yet (no published forecast or model)."""


@dataclass
class Prepared:
    path: str
    as_of: str
    model: object
    data: object
    factors: dict
    types: list


class ScenarioRunner:
    def __init__(self, group, holder: ForecastHolder):
        self.group, self.holder = group, holder
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"what-if-{group.name}")
        self._lock = threading.Lock()
        self._prepared: Prepared | None = None

    def run(self, scenario, timeout: float = DEFAULT_TIMEOUT) -> ForecastExport:
        """The scenario's forecast of every series, as an export; TimeoutError past ``timeout``."""
        future = self._pool.submit(self._forecast, scenario)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise TimeoutError(f"the what-if forecast took longer than {timeout:g} s; it goes on: retry") from None

    def _forecast(self, scenario) -> ForecastExport:
        from pipelines.forecast import calibration, what_if
        from pipelines.forecast.workflow import export_frame

        ready = self._ready()
        frame = what_if.forecast(ready.model, ready.data, scenario, ready.types)
        levels = sorted(t for t in ready.types if t != "mean")
        frame = export_frame(calibration.calibrate_frame(frame, levels, ready.factors))
        return ForecastExport.from_frame(frame, ready.as_of, Path(ready.path) / "what_if" / scenario.name)

    def _ready(self) -> Prepared:
        pointer = self._pointer()
        with self._lock:
            if self._prepared is None or self._prepared.path != pointer["path"]:
                self._prepared = self._prepare(pointer)
            return self._prepared

    def _pointer(self) -> dict:
        try:
            return json.loads(self.holder.pointer_file.read_text())
        except FileNotFoundError:
            raise ScenarioUnavailable(f"forecast group {self.group.name!r} has no published forecast yet") from None

    def _prepare(self, pointer: dict) -> Prepared:
        import pandas as pd

        from pipelines import storage
        from pipelines.forecast.data import ForecastData
        from pipelines.training import pyfunc as models

        group, as_of = self.group, pd.Timestamp(pointer["as_of"])
        version = str(pointer.get("served_version") or pointer.get("version"))
        try:
            model = models.load_version("forecast", group.name, version)
        except Exception as exc:
            raise ScenarioUnavailable(f"model version {version} of {group.name} cannot be loaded: {exc}") from exc
        data = ForecastData.from_snapshot(storage.snapshot_dir(group.storage_root, as_of), group)
        if pointer.get("served") == "champion":  # the champion's configuration, refitted as the forecast step did
            model = model.clone().fit(data)
        factors_file = Path(pointer["path"]) / "calibration.json"
        factors = json.loads(factors_file.read_text()) if factors_file.is_file() else {}
        published = self.holder.export if self.holder.export is not None else ForecastExport.read(pointer)
        types = [t if t == "mean" else int(t[1:]) / 100 for t in published.forecast_types]
        return Prepared(
            pointer["path"], str(pointer["as_of"]), model, data, {float(k): v for k, v in factors.items()}, types
        )
