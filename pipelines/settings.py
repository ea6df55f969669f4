"""Dataset group settings: one YAML file per group, loaded into pydantic models.

A settings file names the group, its kind (forecast or personalize), where each dataset's
file is, the dataset's schema and, where the file's columns are named otherwise, how they
map onto the schema. Errors name the file and the key. This module imports only pydantic
and PyYAML (both already loaded by Airflow), so DAG files may use it at parse time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines import domains as d
from pipelines.errors import SettingsError
from pipelines.forecast.what_if import Scenario
from pipelines.frequency import MONTHS, WEEKDAYS, Boundary, Frequency

NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$"
AGGREGATIONS = ("sum", "avg", "first", "min", "max")
TARGET_FILLS = ("zero", "nan", "value", "median", "mean", "min", "max")
RELATED_FILLS = ("zero", "value", "median", "mean", "min", "max")
TIMESTAMP_FORMATS = ("auto", "yyyy-MM-dd", "yyyy-MM-dd HH:mm:ss", "epoch")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Attribute(Strict):
    """One schema field. Accepts Forecast's (AttributeName/AttributeType) and Avro's spelling."""

    name: str = Field(validation_alias=AliasChoices("name", "AttributeName"))
    type: str = Field(validation_alias=AliasChoices("type", "AttributeType"))
    nullable: bool = False
    categorical: bool = False
    textual: bool = False

    @model_validator(mode="before")
    @classmethod
    def _avro_union(cls, value: Any) -> Any:
        # Avro writes an optional field as {"type": ["null", "string"]}.
        if isinstance(value, dict) and isinstance(value.get("type"), list):
            types = [t for t in value["type"] if t not in ("null", None)]
            value = {**value, "type": types[0] if len(types) == 1 else value["type"]}
            value.setdefault("nullable", True)
        return value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in d.FIELD_TYPES:
            raise ValueError(f"unknown field type {value!r}; use one of {sorted(set(d.FIELD_TYPES))}")
        return d.FIELD_TYPES[value]


def _schema_fields(value: Any) -> Any:
    # Accept a bare list, Forecast's {"Attributes": [...]} and Avro's {"fields": [...]}.
    if isinstance(value, dict):
        for key in ("Attributes", "attributes", "fields"):
            if key in value:
                return value[key]
    return value


class DatasetSettings(Strict):
    """Where one dataset's file is and how to read it."""

    path: str
    format: Literal["csv", "parquet"] | None = None
    header: bool = True
    delimiter: str = Field(",", min_length=1, max_length=1)
    columns: list[str] | None = None  # the file's columns in order, for files without a header
    column_mapping: dict[str, str] = Field(default_factory=dict)  # file column -> schema field
    constants: dict[str, str] = Field(default_factory=dict)  # fields the file lacks, same on every row
    fields: Annotated[list[Attribute], Field(min_length=1)] = Field(validation_alias=AliasChoices("schema", "fields"))
    timestamp_format: Literal[TIMESTAMP_FORMATS] = "auto"  # type: ignore[valid-type]
    import_mode: Literal["FULL", "INCREMENTAL"] = "FULL"
    max_rejected_fraction: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        return _schema_fields(value)

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSettings:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"schema names a field twice: {names}")
        if not self.header and not self.columns and self.resolved_format == "csv":
            # A headerless file's columns are the schema's fields in order, as Forecast reads it.
            self.columns = names
        unknown = sorted((set(self.column_mapping.values()) | set(self.constants)) - set(names))
        if unknown:
            raise ValueError(f"column_mapping or constants name fields not in the schema: {unknown}")
        return self

    @property
    def resolved_format(self) -> str:
        if self.format:
            return self.format
        return "parquet" if re.search(r"\.parq(uet)?$", self.path, re.I) else "csv"

    def field(self, name: str) -> Attribute | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


class TargetFilling(Strict):
    """Forecast's missing-value filling for the target: no frontfill; zero by default."""

    middlefill: Literal[TARGET_FILLS] = "zero"  # type: ignore[valid-type]
    middlefill_value: float | None = None
    backfill: Literal[TARGET_FILLS] = "zero"  # type: ignore[valid-type]
    backfill_value: float | None = None
    frontfill: Literal["none"] = "none"

    @model_validator(mode="after")
    def _values(self):
        for kind in ("middlefill", "backfill"):
            if getattr(self, kind) == "value" and getattr(self, f"{kind}_value") is None:
                raise ValueError(f"{kind}: value needs {kind}_value")
        return self


class RelatedFilling(Strict):
    """Forecast's filling for related series; unset means gaps stay empty."""

    middlefill: Literal[RELATED_FILLS] | None = None  # type: ignore[valid-type]
    middlefill_value: float | None = None
    backfill: Literal[RELATED_FILLS] | None = None  # type: ignore[valid-type]
    backfill_value: float | None = None
    futurefill: Literal[RELATED_FILLS] | None = None  # type: ignore[valid-type]
    futurefill_value: float | None = None

    @model_validator(mode="after")
    def _values(self):
        for kind in ("middlefill", "backfill", "futurefill"):
            if getattr(self, kind) == "value" and getattr(self, f"{kind}_value") is None:
                raise ValueError(f"{kind}: value needs {kind}_value")
        return self


Aggregation = Literal[AGGREGATIONS]  # type: ignore[valid-type]


class TimeSeriesDataset(DatasetSettings):
    # None means: duplicate timestamps are an error, and finer data is summed into periods.
    aggregation: Aggregation | dict[str, Aggregation] | None = None

    def aggregation_for(self, field: str) -> str:
        if isinstance(self.aggregation, dict):
            return self.aggregation.get(field, "sum")
        return self.aggregation or "sum"


class TargetDataset(TimeSeriesDataset):
    filling: TargetFilling = Field(default_factory=TargetFilling)


class RelatedDataset(TimeSeriesDataset):
    filling: RelatedFilling = Field(default_factory=RelatedFilling)


class ForecastDatasets(Strict):
    TARGET_TIME_SERIES: TargetDataset
    RELATED_TIME_SERIES: RelatedDataset | None = None
    ITEM_METADATA: DatasetSettings | None = None


class AlignmentBoundary(Strict):
    """Forecast's TimeAlignmentBoundary."""

    month: Literal[MONTHS] | None = None  # type: ignore[valid-type]
    day_of_month: int | None = Field(None, ge=1, le=28)
    day_of_week: Literal[WEEKDAYS] | None = None  # type: ignore[valid-type]
    hour: int | None = Field(None, ge=0, le=23)

    def to_boundary(self) -> Boundary:
        return Boundary(
            month=MONTHS.index(self.month) + 1 if self.month else 1,
            day_of_month=self.day_of_month or 1,
            day_of_week=WEEKDAYS.index(self.day_of_week) if self.day_of_week else 0,
            hour=self.hour or 0,
        )


class TrainingBase(Strict):
    """How a run trains, scores and promotes: the group's defaults, which a UI trigger may override."""

    hpo_trials: int = Field(
        0,
        ge=0,
        le=500,
        title="HPO trials per candidate",
        description="Optuna trials for each candidate; 0 trains the defaults.",
    )
    hpo_timeout_seconds: float | None = Field(
        None, gt=0, title="HPO time budget (s)", description="Per candidate; empty: no limit."
    )
    # Mapped hpo_train tasks that run one candidate's trials at once, in one Optuna study in
    # ``hpo_storage`` (an Optuna storage URL; empty: $AIRSIGHT_OPTUNA_STORAGE, else SQLite in the run folder).
    hpo_workers: int = Field(1, ge=1, le=64)
    hpo_storage: str | None = None
    promotion_margin: float = Field(0.0, ge=0.0, lt=1.0)  # relative improvement the champion must see
    seed: int = 0
    keep_versions: int = Field(5, ge=1)  # published versions kept besides the latest


class ForecastTraining(TrainingBase):
    algorithms: Annotated[list[Literal[d.FORECAST_ALGORITHMS]], Field(min_length=1)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["SeasonalNaive", "ETS", "Theta", "NPTS"], title="Algorithms"
    )
    forecast_types: Annotated[list[float | Literal["mean"]], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: [0.1, 0.5, 0.9], title="Forecast types", description="Quantiles 0.01-0.99 and 'mean'."
    )
    backtest_windows: int = Field(1, ge=1, le=5, title="Backtest windows")
    backtest_offset: int | None = Field(None, ge=1)
    optimization_metric: Literal[d.FORECAST_METRICS] = Field(  # type: ignore[valid-type]
        "AverageWeightedQuantileLoss", title="Optimization metric"
    )
    workers: int = Field(1, ge=1, le=64)  # processes for per-series fitting
    # Series per shard: a local algorithm's backtest in hpo_train is mapped over shards of this many
    # series (tasks Airflow spreads over its workers), merged before the candidates are compared.
    series_per_shard: int | None = Field(None, ge=1, le=10_000_000)
    plots: int = Field(12, ge=0, le=500)  # items drawn in the published plots
    # Published quantiles stretched or shrunk to their levels from the backtest (forecast/calibration.py).
    calibrate_intervals: bool = True
    # Hyperparameters by algorithm name, checked against each one's ranges (forecast/hyperparameters.py).
    algorithm_params: dict[str, Any] = Field(
        default_factory=dict,
        title="Hyperparameters per algorithm",
        description='e.g. {"DeepAR+": {"epochs": 20}, "AutoPredictor": {"time_limit": 600}}; '
        "checked against each algorithm's ranges when the run starts.",
    )

    @field_validator("forecast_types")
    @classmethod
    def _types(cls, value: list) -> list:
        bad = [v for v in value if v != "mean" and not 0.01 <= float(v) <= 0.99]
        if bad:
            raise ValueError(f"forecast types {bad} are outside 0.01-0.99 (or 'mean')")
        return value

    @field_validator("algorithm_params")
    @classmethod
    def _algorithm_params(cls, value: dict) -> dict:
        from pipelines.forecast import hyperparameters

        return hyperparameters.check(value)

    @model_validator(mode="after")
    def _metric_needs(self) -> ForecastTraining:
        # Forecast: wQL scores quantiles; the point metrics score the mean, which is always computed.
        if self.optimization_metric == "AverageWeightedQuantileLoss" and all(t == "mean" for t in self.forecast_types):
            raise ValueError(
                "optimization_metric AverageWeightedQuantileLoss needs at least one quantile among the "
                f"forecast_types (got {self.forecast_types}): add one (0.1, 0.5, 0.9) "
                "or optimize WAPE, RMSE, MASE or MAPE"
            )
        return self


class PersonalizeTraining(TrainingBase):
    recipes: Annotated[list[Literal[d.PERSONALIZE_RECIPES]], Field(min_length=1)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["popularity-count", "sims"], title="Recipes"
    )
    optimization_metric: Literal[d.PERSONALIZE_METRICS] = Field(  # type: ignore[valid-type]
        "normalized_discounted_cumulative_gain_at_25", title="Optimization metric"
    )
    num_results: int = Field(25, ge=1, le=500, title="Items per user in the batch recommendations")
    seed: int = 42  # the evaluation split's seed
    # The recipe setting: what the model serves (HTTP and batch) leaves out the user's seen items;
    # False as in Personalize, where a filter says which to drop (pipelines/personalize/base.py).
    exclude_seen_items: bool = Field(False, title="Leave out items the user interacted with")


WEEK_MINUTES = 7 * 24 * 60


class TaskTimeouts(Strict):
    """Minutes each DAG task may run before Airflow fails it (its ``execution_timeout``).

    ``default`` holds for every task the group does not name; a task times out as any failure
    does: red in the grid, retried where the task retries, nothing published by the run.
    """

    default: float = Field(360.0, gt=0, le=WEEK_MINUTES)
    plan: float | None = Field(None, gt=0, le=WEEK_MINUTES)
    validate_schema: float | None = Field(None, gt=0, le=WEEK_MINUTES)
    import_data: float | None = Field(None, gt=0, le=WEEK_MINUTES)
    partition: float | None = Field(None, gt=0, le=WEEK_MINUTES)
    hpo_train: float | None = Field(None, gt=0, le=WEEK_MINUTES)  # each mapped candidate (or shard)
    backtest: float | None = Field(None, gt=0, le=WEEK_MINUTES)
    plan_fit: float | None = Field(None, gt=0, le=WEEK_MINUTES)
    fit_shard: float | None = Field(None, gt=0, le=WEEK_MINUTES)  # each mapped shard of the final fit
    forecast: float | None = Field(None, gt=0, le=WEEK_MINUTES)  # Forecast's predict step
    recommend: float | None = Field(None, gt=0, le=WEEK_MINUTES)  # Personalize's predict step
    publish: float | None = Field(None, gt=0, le=WEEK_MINUTES)
    check_accuracy: float | None = Field(None, gt=0, le=WEEK_MINUTES)  # the monitor DAG's check

    def minutes(self, task_id: str) -> float:
        given = getattr(self, task_id, None)
        return self.default if given is None else given


class GroupBase(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    schedule: str | None = None  # cron or an Airflow preset, for the DAG
    task_timeouts: TaskTimeouts = Field(default_factory=TaskTimeouts)  # minutes per DAG task
    storage: str | None = None  # where snapshots go; default $AIRSIGHT_HOME/<name>
    source_file: str | None = Field(None, exclude=True)

    @property
    def storage_root(self) -> str:
        if self.storage:
            return self.storage
        home = os.environ.get("AIRSIGHT_HOME") or str(Path.cwd() / ".airsight")
        return str(Path(home) / "groups" / self.name)


class Monitoring(Strict):
    """Predictor monitoring (Forecast's CreateMonitor): each training run scores the last published
    forecast; with ``max_wape_increase`` the monitor DAG also does, on ``schedule``, and retrains
    the group (an Airflow asset event) once the live WAPE is that share above the backtest's."""

    max_wape_increase: float | None = Field(None, gt=0, le=100)
    schedule: str | None = "@daily"  # the monitor DAG's; None: only when triggered


class ForecastGroup(GroupBase):
    kind: Literal["forecast"]
    domain: Literal[tuple(d.FORECAST_DOMAINS)]  # type: ignore[valid-type]
    frequency: str
    horizon: int = Field(ge=1, le=d.MAX_HORIZON, title="Forecast horizon")
    forecast_dimensions: list[str] = Field(default_factory=list, max_length=d.MAX_FORECAST_DIMENSIONS)
    time_alignment_boundary: AlignmentBoundary | None = None
    holidays_country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    # What-if scenarios forecast by the served model beside the baseline (forecast/what_if.py).
    what_if: list[Scenario] = Field(default_factory=list)
    # Impact scores of the served model (forecast/explainability.py): true for every item, or a list of items.
    explainability: bool | list[str] = False
    # Predictor monitoring (forecast/monitoring.py); with a threshold, a monitor DAG retrains on degradation.
    monitoring: Monitoring = Field(default_factory=lambda: Monitoring())
    datasets: ForecastDatasets
    training: ForecastTraining = Field(default_factory=ForecastTraining)

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        return str(Frequency.parse(value))

    @property
    def freq(self) -> Frequency:
        return Frequency.parse(self.frequency)

    @property
    def boundary(self) -> Boundary:
        return self.time_alignment_boundary.to_boundary() if self.time_alignment_boundary else Boundary()

    @property
    def domain_info(self) -> d.ForecastDomain:
        return d.FORECAST_DOMAINS[self.domain]

    @property
    def series_keys(self) -> list[str]:
        return [self.domain_info.identifier, *self.forecast_dimensions]

    def dataset(self, kind: str) -> DatasetSettings | None:
        return getattr(self.datasets, kind)

    @model_validator(mode="after")
    def _schemas(self) -> ForecastGroup:
        dom = self.domain_info
        tb = self.time_alignment_boundary
        if tb:
            allowed = {"D": {"hour"}, "W": {"day_of_week", "hour"}, "M": {"day_of_month", "hour"}}
            allowed["Y"] = {"month", "day_of_month", "hour"}
            given = {k for k, v in tb.model_dump().items() if v is not None}
            ok = allowed.get(self.freq.unit, set())
            if given - ok:
                raise ValueError(
                    f"time_alignment_boundary {sorted(given - ok)} does not apply to frequency "
                    f"{self.frequency} (it takes {sorted(ok) or 'none'})"
                )
        target = self.datasets.TARGET_TIME_SERIES
        _require(target, "TARGET_TIME_SERIES", {dom.identifier: "string", "timestamp": "timestamp"})
        _require(target, "TARGET_TIME_SERIES", {dom.target: ("float", "integer")})
        for dim in self.forecast_dimensions:
            _require(target, "TARGET_TIME_SERIES", {dim: ("string", "integer")}, "forecast dimension ")
        extra = set(target.field_names) - {dom.identifier, "timestamp", dom.target, *self.forecast_dimensions}
        if extra:
            raise ValueError(
                f"datasets.TARGET_TIME_SERIES: fields {sorted(extra)} are neither required nor forecast "
                "dimensions; list them in forecast_dimensions or move them to RELATED_TIME_SERIES"
            )
        related = self.datasets.RELATED_TIME_SERIES
        if related:
            _require(related, "RELATED_TIME_SERIES", {dom.identifier: "string", "timestamp": "timestamp"})
            features = [
                f for f in related.field_names if f not in {dom.identifier, "timestamp", *self.forecast_dimensions}
            ]
            if not features:
                raise ValueError("datasets.RELATED_TIME_SERIES: the schema has no related feature")
            if len(features) > d.MAX_RELATED_FEATURES:
                raise ValueError(
                    f"datasets.RELATED_TIME_SERIES: {len(features)} related features; Forecast allows "
                    f"{d.MAX_RELATED_FEATURES}"
                )
        meta = self.datasets.ITEM_METADATA
        if meta:
            _require(meta, "ITEM_METADATA", {dom.identifier: "string"})
            if len(meta.fields) < 2:
                raise ValueError("datasets.ITEM_METADATA: the schema needs at least one field besides the id")
        for kind, ds in (("TARGET_TIME_SERIES", target), ("RELATED_TIME_SERIES", related), ("ITEM_METADATA", meta)):
            if ds and len(ds.fields) > d.MAX_COLUMNS[kind]:
                raise ValueError(f"datasets.{kind}: {len(ds.fields)} columns; Forecast allows {d.MAX_COLUMNS[kind]}")
        _check_what_if(self)
        return self


def _check_what_if(group: ForecastGroup) -> None:
    """Scenarios change related features, on conditions over metadata fields, series keys or timestamp."""
    if not group.what_if:
        return
    from pipelines.forecast import what_if

    dom = group.domain_info
    related = group.datasets.RELATED_TIME_SERIES
    features = [f for f in (related.field_names if related else []) if f not in {*group.series_keys, "timestamp"}]
    meta = group.datasets.ITEM_METADATA
    fields = {*group.series_keys, *(f for f in (meta.field_names if meta else []) if f != dom.identifier)}
    what_if.check(group.what_if, features, fields)


class PersonalizeDatasets(Strict):
    INTERACTIONS: DatasetSettings
    ITEMS: DatasetSettings | None = None
    USERS: DatasetSettings | None = None


class TrainingFilter(Strict):
    """Which interactions train a solution, as Personalize's eventType and eventValueThreshold."""

    event_types: list[str] = Field(default_factory=list)
    event_value_threshold: float | None = None


class BatchSegments(Strict):
    """User segments each run publishes beside its batch recommendations (``batch_segments.jsonl``), as a
    batch segment job writes them (``pipelines.personalize.segments``): Personalize's queries, given here
    (``{itemId: …}`` or ``{itemAttributes: 'ITEMS.GENRES = "Comedy"'}``) or in a JSON Lines file.

    ``batch_segments:`` may also be the list of queries itself, or the file's path.
    """

    queries: list[dict[str, str | int]] = Field(default_factory=list, max_length=1000)
    path: str | None = None  # JSON Lines queries, relative to the settings file (or a URL)
    num_results: int = Field(25, ge=1, le=100_000, title="Users per segment")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"queries": value}
        return {"path": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> BatchSegments:
        if bool(self.queries) == bool(self.path):
            raise ValueError("give the queries or the path of a JSON Lines file of them, one of the two")
        for k, query in enumerate(self.queries):
            if len(query) != 1 or next(iter(query)) not in ("itemId", "itemAttributes"):
                raise ValueError(f"queries[{k}]: one key, itemId or itemAttributes; got {sorted(query)}")
        return self


class PersonalizeGroup(GroupBase):
    kind: Literal["personalize"]
    domain: Literal["CUSTOM", "ECOMMERCE", "VIDEO_ON_DEMAND"] = "CUSTOM"
    datasets: PersonalizeDatasets
    training_filter: TrainingFilter = Field(default_factory=TrainingFilter)
    training: PersonalizeTraining = Field(default_factory=PersonalizeTraining)
    batch_segments: BatchSegments | None = None
    # Domain recommenders (Personalize's use cases of the domain, domains.RECOMMENDERS): each is trained
    # by a DAG of its own and served under ``<group>__<recommender>`` (``recommender_group``).
    recommenders: list[str] = Field(default_factory=list)
    # The group's EVENT_TYPE values that stand for each of the domain's event types (View, Purchase,
    # Watch, Click); a type not listed matches itself, capitalized or in lower case.
    recommender_event_types: dict[str, list[str]] = Field(default_factory=dict)
    recommender_of: str | None = Field(None, exclude=True)  # a recommender's group: the dataset group it serves

    @model_validator(mode="after")
    def _recommenders(self) -> PersonalizeGroup:
        presets = d.RECOMMENDERS.get(self.domain, {})
        if self.recommenders and not presets:
            raise ValueError(f"recommenders: a {self.domain} dataset group has none; set domain: ECOMMERCE or "
                             "VIDEO_ON_DEMAND")  # fmt: skip
        unknown = [r for r in self.recommenders if r not in presets]
        if unknown:
            raise ValueError(f"recommenders: {unknown[0]!r} is not a {self.domain} recommender; choose from "
                             f"{', '.join(presets)}")  # fmt: skip
        if len(set(self.recommenders)) != len(self.recommenders):
            raise ValueError("recommenders: each recommender once")
        domain_events = {e for p in presets.values() for e in p.events}
        extra = sorted(set(self.recommender_event_types) - domain_events)
        if extra:
            raise ValueError(f"recommender_event_types: {extra[0]!r} is not an event type of the {self.domain} "
                             f"domain ({', '.join(sorted(domain_events))})")  # fmt: skip
        return self

    def recommender_group(self, name: str) -> PersonalizeGroup:
        """The group a recommender trains and serves as: the dataset group's datasets, the preset's recipe,
        only its event types (the training filter), a storage folder of its own under the group's."""
        preset = d.RECOMMENDERS[self.domain][name]
        events = [v for e in preset.events for v in self.recommender_event_types.get(e, [e, e.lower()])]
        derived = self.model_copy(deep=True, update={
            "name": f"{self.name}{d.RECOMMENDER_SEP}{name}", "recommenders": [], "recommender_event_types": {},
            "recommender_of": self.name, "batch_segments": None,
            "description": f"{self.name}'s {name} recommender: {preset.description}",
            "storage": str(Path(self.storage_root) / "recommenders" / name),
            "training_filter": TrainingFilter(event_types=list(dict.fromkeys(events)),
                                              event_value_threshold=self.training_filter.event_value_threshold),
            "training": self.training.model_copy(update={"recipes": [preset.recipe]}),
        })  # fmt: skip
        derived.source_file = self.source_file
        return derived

    def with_recommenders(self) -> list[PersonalizeGroup]:
        """The group, then each of its recommenders' groups."""
        return [self, *(self.recommender_group(r) for r in self.recommenders)]

    @model_validator(mode="after")
    def _segment_fields(self) -> PersonalizeGroup:
        """The fields itemAttributes queries name are ITEMS fields (the full check runs with the job: DAG
        files parse settings and may not import the engine)."""
        if self.batch_segments is None:
            return self
        fields = self.datasets.ITEMS.field_names if self.datasets.ITEMS is not None else None
        for k, query in enumerate(self.batch_segments.queries):
            if "itemAttributes" not in query:
                continue
            where = f"batch_segments.queries[{k}].itemAttributes"
            if fields is None:
                raise ValueError(f"{where}: the group has no ITEMS dataset to take attributes from")
            named = re.findall(r"\bITEMS\s*\.\s*([A-Za-z_]\w*)", str(query["itemAttributes"]), re.I)
            unknown = [n for n in named if n.upper() not in {f.upper() for f in fields}]
            if unknown:
                raise ValueError(f"{where}: ITEMS has no field {unknown[0]!r}; its fields: {', '.join(fields)}")
        return self

    def dataset(self, kind: str) -> DatasetSettings | None:
        return getattr(self.datasets, kind)

    @model_validator(mode="after")
    def _schemas(self) -> PersonalizeGroup:
        for kind in d.PERSONALIZE_DATASET_TYPES:
            ds = self.dataset(kind)
            if ds is None:
                continue
            required = {name: ("string", "integer") for name in d.PERSONALIZE_REQUIRED[kind]}
            if kind == d.INTERACTIONS:
                required["TIMESTAMP"] = ("integer", "timestamp")
            _require(ds, kind, required)
            reserved = {"EVENT_TYPE": ("string",), "EVENT_VALUE": ("float", "integer"), "IMPRESSION": ("string",),
                        "CREATION_TIMESTAMP": ("integer", "timestamp")}  # fmt: skip
            present = {name: types for name, types in reserved.items() if ds.field(name) is not None}
            _require(ds, kind, present)
            others = [n for n in ds.field_names if n not in d.PERSONALIZE_REQUIRED[kind]]
            low, high = d.PERSONALIZE_EXTRA_FIELDS[kind]
            if not low <= len(others) <= high:
                raise ValueError(
                    f"datasets.{kind}: {len(others)} fields besides {list(d.PERSONALIZE_REQUIRED[kind])}; "
                    f"Personalize takes {low} to {high}"
                )
        return self


Group = ForecastGroup | PersonalizeGroup


def _require(ds: DatasetSettings, kind: str, fields: dict, what: str = "") -> None:
    for name, types in fields.items():
        types = (types,) if isinstance(types, str) else types
        attr = ds.field(name)
        if attr is None:
            raise ValueError(f"datasets.{kind}.schema: {what}field {name!r} is required")
        if attr.type not in types:
            raise ValueError(
                f"datasets.{kind}.schema: {what}field {name!r} has type {attr.type}, expected {' or '.join(types)}"
            )


# The settings a run may override (the Airflow params form): training options, and the horizon.
RUN_PARAMS = {
    "forecast": (
        "algorithms",
        "horizon",
        "forecast_types",
        "backtest_windows",
        "hpo_trials",
        "hpo_timeout_seconds",
        "optimization_metric",
        "algorithm_params",
    ),
    "personalize": ("recipes", "optimization_metric", "num_results", "hpo_trials", "hpo_timeout_seconds"),
}


def run_param_schemas(group: Group) -> dict[str, dict]:
    """The JSON Schema of each run param, from the settings models, with the group's value as default.

    The models' bounds, enums, titles and descriptions are the form's: nothing is restated. Forecast
    types are offered as text (a form field per value) and parsed back by the settings model.
    """
    schemas = {
        **type(group).model_json_schema()["properties"],
        **type(group.training).model_json_schema()["properties"],
    }
    out = {}
    for name in RUN_PARAMS[group.kind]:
        schema = {k: v for k, v in schemas[name].items() if k != "default"}
        nullable = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
        if nullable:  # Optional[X]: X's schema with null allowed, as Airflow's form renders it
            schema = {**schema, **nullable[0], "type": ["null", nullable[0]["type"]]}
        if schema.get("type") == "array" and "enum" in schema.get("items", {}):
            schema.update(uniqueItems=True, examples=list(schema["items"]["enum"]))  # a multi-select
        value = getattr(group.training, name, None)
        if name == "horizon":
            value, schema["description"] = group.horizon, f"Periods of {group.frequency}."
        if name == "forecast_types":
            schema["items"] = {"type": "string", "pattern": r"^(mean|0?\.\d+)$"}
            value = [str(v) for v in value]
        out[name] = {"default": value.copy() if isinstance(value, list | dict) else value, **schema}
    return out


def _format_error(path: str, error: ValidationError) -> str:
    lines = [f"{path}: invalid dataset group settings"]
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("ForecastGroup", "PersonalizeGroup"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  key {loc}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


def resolve_path(base: Path, path: str) -> str:
    """Paths in a settings file are relative to it; URLs (s3://, memory://) pass through."""
    if "://" in path or os.path.isabs(path):
        return path
    return str((base / path).resolve())


def load_group(path: str | os.PathLike) -> Group:
    """Load and check one settings file; raise SettingsError naming the file and the key.

    ``<file>#<recommender>`` gives that domain recommender's group (``recommender_group``).
    """
    file, sep, recommender = str(path).rpartition("#")
    if sep:
        group = load_group(file)
        if recommender not in getattr(group, "recommenders", []):
            raise SettingsError(f"{file}: key recommenders: has no {recommender!r}")
        return group.recommender_group(recommender)
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(f"{path}: no such settings file") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    kind = raw.get("kind")
    model = {"forecast": ForecastGroup, "personalize": PersonalizeGroup}.get(kind)
    if model is None:
        raise SettingsError(f"{path}: key kind: must be 'forecast' or 'personalize', got {kind!r}")
    try:
        group = model.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_format_error(str(path), exc)) from None
    group.source_file = str(path.resolve())
    for _, ds in group.datasets:
        if ds is not None:
            ds.path = resolve_path(path.parent, ds.path)
    for scenario in getattr(group, "what_if", []):
        if scenario.replacement is not None:
            scenario.replacement.path = resolve_path(path.parent, scenario.replacement.path)
    if group.storage:
        group.storage = resolve_path(path.parent, group.storage)
    if getattr(group, "batch_segments", None) is not None and group.batch_segments.path:
        group.batch_segments.path = resolve_path(path.parent, group.batch_segments.path)
    return group


def groups_dir() -> Path:
    """Where dataset group settings live: $AIRSIGHT_GROUPS_DIR, else $AIRSIGHT_HOME/groups.d."""
    if os.environ.get("AIRSIGHT_GROUPS_DIR"):
        return Path(os.environ["AIRSIGHT_GROUPS_DIR"])
    home = os.environ.get("AIRSIGHT_HOME") or str(Path.cwd() / ".airsight")
    return Path(home) / "groups.d"


def discover_groups(directory: str | os.PathLike | None = None) -> list[Path]:
    """Every settings file in the groups directory, sorted by name."""
    root = Path(directory) if directory else groups_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml"))


def find_group(name_or_path: str) -> Group:
    """A group by its settings file path or by its name in the groups directory."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return load_group(candidate)
    for path in discover_groups():
        if path.stem == name_or_path:
            return load_group(path)
    for path in discover_groups():
        try:
            group = load_group(path)
        except SettingsError:
            continue
        if group.name == name_or_path:
            return group
    raise SettingsError(f"no dataset group named {name_or_path!r} in {groups_dir()}")
