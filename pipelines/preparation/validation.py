"""The validate step: Great Expectations suites over every dataset before anything is trained.

Each dataset file goes through three GX Core runs: the raw stage over its text (shapes of
values, keys present), the typed stage over its converted values (uniqueness, ranges) and
the as_of stage over the rows at or before as_of (row counts, Personalize's minimums). Their
results become one Data Docs site. A failure raises a DataError that names the dataset, the
expectation, the column, the failing count, sample bad values and the lines they are on.
Where a dataset allows a fraction of bad rows (max_rejected_fraction), those rows are set
aside with their reasons for the quarantine file instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import domains as d
from pipelines.errors import DataError, Violation
from pipelines.preparation.importing import calendar
from pipelines.preparation.importing.coerce import CONTROL_CHARACTERS, coerce, value_pattern
from pipelines.preparation.importing.reader import RawTable, read_raw
from pipelines.settings import DatasetSettings, ForecastGroup, Group, PersonalizeGroup

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")
FREQUENCY_SAMPLE_ROWS = 500_000


@dataclass
class CheckedDataset:
    """A dataset that passed its suites: typed rows at or before as_of, and what was set aside."""

    dataset: str
    raw: RawTable
    frame: pd.DataFrame
    rejected: pd.DataFrame  # line, rule, column, value: rows quarantined, one reason each
    rows_read: int
    rows_after_as_of: int
    results: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "file": self.raw.path,
            "sha256": self.raw.sha256,
            "rows_read": self.rows_read,
            "rows_rejected": int(self.rejected["line"].nunique()) if len(self.rejected) else 0,
            "rows_after_as_of": self.rows_after_as_of,
            "ignored_columns": self.raw.ignored_columns,
            "expectations": self.results,
        }


def suites_dir() -> Traversable:
    """The suite templates: package data in ``pipelines/expectations`` (in the wheel too), or
    ``$AIRSIGHT_EXPECTATIONS_DIR`` where a deployment reviews its own."""
    override = os.environ.get("AIRSIGHT_EXPECTATIONS_DIR")
    return Path(override) if override else resources.files("pipelines") / "expectations"


def load_suite_template(dataset: str) -> dict:
    suite = suites_dir() / f"{dataset}.json"
    if not suite.is_file():
        raise FileNotFoundError(f"no Great Expectations suite for dataset type {dataset}: {suite} is missing")
    return json.loads(suite.read_text(encoding="utf-8"))


def _context(group: Group, dataset: str) -> dict:
    if isinstance(group, ForecastGroup):
        dom = group.domain_info
        ds = group.dataset(dataset)
        keys = [k for k in group.series_keys if k in ds.field_names]  # related series may omit dimensions
        return {
            "identifier": dom.identifier,
            "target": dom.target,
            "keys": keys,
            "keys_and_timestamp": [*keys, "timestamp"],
            "non_negative_target": dom.non_negative,
            "no_aggregation": getattr(ds, "aggregation", None) is None,
            "fields": set(ds.field_names),
        }
    ds = group.dataset(dataset)
    return {
        "keys_and_timestamp": ["USER_ID", "ITEM_ID", "TIMESTAMP"],
        "fields": set(ds.field_names),
        "non_negative_target": False,
        "no_aggregation": False,
    }


def _fill(value, ctx: dict):
    if isinstance(value, str):
        match = _PLACEHOLDER.match(value)
        if match:
            return ctx[match.group(1)]
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    return value


def _wanted(meta: dict, ctx: dict) -> bool:
    when = meta.get("when")
    if not when:
        return True
    if when.startswith("has_field:"):
        return when.split(":", 1)[1] in ctx["fields"]
    return bool(ctx[when])


def render_suite(group: Group, dataset: str, raw: RawTable | None = None) -> list[dict]:
    """The suite template for ``dataset`` filled from the group, plus schema-implied checks."""
    ctx = _context(group, dataset)
    expectations = []
    for exp in load_suite_template(dataset)["expectations"]:
        meta = dict(exp.get("meta", {}))
        if not _wanted(meta, ctx):
            continue
        for_each = meta.pop("for_each", None)
        columns = ctx[for_each] if for_each else [None]
        for column in columns:
            kwargs = _fill(exp["kwargs"], {**ctx, "column": column})
            expectations.append({"type": exp["type"], "kwargs": kwargs, "meta": meta})
    expectations += _schema_expectations(group, dataset, raw)
    return expectations


def _epoch_fields(group: Group, dataset: str) -> tuple[str, ...]:
    if isinstance(group, PersonalizeGroup):
        return ("TIMESTAMP", "CREATION_TIMESTAMP")
    return ()


def _schema_expectations(group: Group, dataset: str, raw: RawTable | None) -> list[dict]:
    ds = group.dataset(dataset)
    out = []
    epoch = _epoch_fields(group, dataset)
    for attr in ds.fields:
        dtype = raw.frame[attr.name].dtype if raw is not None and attr.name in raw.frame else None
        textual = dtype is None or isinstance(dtype, pd.StringDtype) or pd.api.types.is_object_dtype(dtype)
        pattern = value_pattern(attr.type, ds.timestamp_format, attr.name in epoch)
        if pattern and textual:
            out.append(
                {
                    "type": "expect_column_values_to_match_regex",
                    "kwargs": {"column": attr.name, "regex": pattern},
                    "meta": {"stage": "raw", "rule": f"{attr.type}_format", "row_level": True},
                }
            )
        elif pattern:
            allowed = {
                "integer": ["int", "Int", "float", "uint", "UInt"],
                "float": ["int", "Int", "float", "Float", "uint", "UInt"],
                "timestamp": ["datetime64", "int", "Int", "timestamp"],
                "boolean": ["bool", "boolean"],
                "geolocation": ["str", "string"],
            }[attr.type if attr.name not in epoch else "timestamp"]
            out.append(
                {
                    "type": "expect_column_values_to_be_in_type_list",
                    "kwargs": {"column": attr.name, "type_list": _dtype_names(allowed)},
                    "meta": {"stage": "raw", "rule": f"{attr.type}_type"},
                }
            )
        if textual:  # NUL and other control characters are never data, whatever the type
            out.append(
                {
                    "type": "expect_column_values_to_not_match_regex",
                    "kwargs": {"column": attr.name, "regex": CONTROL_CHARACTERS},
                    "meta": {"stage": "raw", "rule": "no_control_characters", "row_level": True},
                }
            )
        present = raw is not None and attr.name in raw.frame
        required = attr.name in (*d.PERSONALIZE_REQUIRED.get(dataset, ()), "TIMESTAMP")
        if isinstance(group, PersonalizeGroup) and not attr.nullable and present and not required:
            out.append(
                {
                    "type": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": attr.name},
                    "meta": {"stage": "raw", "rule": "non_null_field", "row_level": True},
                }
            )
    return out


def _dtype_names(prefixes: list[str]) -> list[str]:
    names = ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64", "uint8", "uint16",
             "uint32", "uint64", "float16", "float32", "float64", "Float32", "Float64", "bool", "boolean",
             "datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]", "str", "string"]  # fmt: skip
    return [n for n in names if any(n.startswith(p) for p in prefixes)]


def _is_row_level(exp: dict) -> bool:
    return exp["type"].startswith("expect_column_values_to") or exp["meta"].get("row_level", False)


class _Runner:
    """One GX context for one validation: suites, checkpoints and Data Docs in ``docs_dir``."""

    def __init__(self, docs_dir: Path | None):
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )
        from great_expectations.execution_engine import pandas_execution_engine

        # GX fingerprints every batch by hashing each row (6 s for 10 million rows); files are
        # identified by their sha256 instead, so the fingerprint is switched off.
        pandas_execution_engine.HASH_THRESHOLD = 0
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.gx = gx
        self.docs_dir = docs_dir
        sites = {}
        if docs_dir is not None:
            sites["airsight"] = {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        # In memory, with only our Data Docs site (GX's default would add a temporary folder per run).
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            data_docs_sites=sites,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.source = self.context.data_sources.add_pandas("airsight")
        self._results: list = []  # identifiers of validation results and suites not yet in Data Docs

    def build_docs(self) -> None:
        """Render every validation run so far into the Data Docs site, in one pass."""
        if self.docs_dir is None or not self._results:
            return
        self.context.build_data_docs(site_names=["airsight"], resource_identifiers=self._results)
        self._results = []

    def run(self, name: str, frame: pd.DataFrame, expectations: list[dict], complete: bool):
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        gx = self.gx
        suite = gx.ExpectationSuite(name=name)
        for index, exp in enumerate(expectations):
            kwargs = dict(exp["kwargs"])
            if exp.get("mostly") is not None:
                kwargs["mostly"] = exp["mostly"]
            meta = {**exp["meta"], "order": index}  # GX groups results its own way: put them back in order
            suite.add_expectation_configuration(ExpectationConfiguration(type=exp["type"], kwargs=kwargs, meta=meta))
        suite = self.context.suites.add(suite)
        asset = self.source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(f"{name}.all")
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        result_format = {"result_format": "COMPLETE" if complete else "SUMMARY", "partial_unexpected_count": 20}
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(name=name, validation_definitions=[definition], result_format=result_format)
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        (identifier, result), *_ = outcome.run_results.items()
        self._results += [identifier, ExpectationSuiteIdentifier(name=name)]
        return sorted(result.results, key=lambda r: r.expectation_config.meta["order"])


def _violation(raw: RawTable, exp: dict, result: dict) -> Violation:
    kwargs = exp["kwargs"]
    column = kwargs.get("column") or ", ".join(kwargs.get("column_list", []))
    count = int(result.get("unexpected_count") or 0)
    positions = result.get("partial_unexpected_index_list") or []
    samples = result.get("partial_unexpected_list") or []
    message = f"expectation {exp['type']} failed"
    if count:
        message += f" for {count} row(s)"
        total = result.get("element_count")
        if total:
            message += f" of {total}"
    elif "observed_value" in result:
        message += f": observed {result['observed_value']}, expected {_bounds(kwargs)}"
    if exp["meta"].get("notes"):
        message += f" ({exp['meta']['notes']})"
    return Violation(
        rule=exp["meta"].get("rule", exp["type"]),
        message=message,
        file=raw.path,
        column=raw.column_label(column) if column and "," not in column else column or None,
        rows=raw.lines(positions),
        count=count,
        samples=samples[:5],
    )


def _indexes(index_list) -> list[int]:
    # GX lists unexpected rows as index values, or as dicts when index columns are named.
    return [i if isinstance(i, (int, np.integer)) else next(iter(i.values())) for i in index_list]


def _positions(info: dict, positions: np.ndarray) -> list[int]:
    index = info.get("partial_unexpected_index_list") or info.get("unexpected_index_list") or []
    return positions[np.asarray(_indexes(index[:20]), dtype="int64")].tolist() if index else []


def _bounds(kwargs: dict) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


class _DatasetRun:
    """One dataset's pass through the stages: GX results so far and the rows set aside, by position."""

    def __init__(self, runner: _Runner, dataset: str, raw: RawTable, allowance: float):
        self.runner, self.dataset, self.raw, self.allowance = runner, dataset, raw, allowance
        self.results: list[dict] = []
        self.rejected: list[pd.DataFrame] = []  # position (0-based data row), rule, column, value

    def set_aside(self, positions: np.ndarray, rule: str, column: str | None, values) -> None:
        self.rejected.append(
            pd.DataFrame(
                {
                    "position": positions,
                    "rule": rule,
                    "column": self.raw.source_columns.get(column, column) if column else "",
                    "value": np.asarray(values, dtype=object).astype(str) if column else "",
                }
            )
        )

    def stage(self, name: str, frame: pd.DataFrame, exps: list[dict], positions: np.ndarray) -> None:
        """Run one stage's expectations; raise DataError (with the Data Docs) if any rule is broken."""
        if not exps:
            return
        outcome = self.runner.run(f"{self.dataset}.{name}", frame, exps, complete=bool(self.allowance))
        failures = []
        for exp, res in zip(exps, outcome, strict=True):
            info = res.result or {}
            self.results.append(
                {
                    "expectation": exp["type"],
                    "column": exp["kwargs"].get("column") or exp["kwargs"].get("column_list"),
                    "rule": exp["meta"].get("rule"),
                    "stage": name,
                    "success": bool(res.success),
                    "unexpected_count": int(info.get("unexpected_count") or 0),
                }
            )
            if not res.success:
                info = {**info, "partial_unexpected_index_list": _positions(info, positions)}
                failures.append(_violation(self.raw, exp, info))
            elif self.allowance and info.get("unexpected_index_list"):
                idx = np.asarray(_indexes(info["unexpected_index_list"]), dtype="int64")
                column = exp["kwargs"].get("column")
                self.set_aside(positions[idx], exp["meta"].get("rule"), column, frame[column].to_numpy()[idx])
        if failures:
            self.runner.build_docs()
            report = self.runner.docs_dir / "index.html" if self.runner.docs_dir else None
            raise DataError(self.dataset, failures, report=str(report) if report else None)

    def without_rejected(self, frame: pd.DataFrame, positions: np.ndarray):
        if not self.rejected:
            return frame, positions
        gone = np.concatenate([r["position"] for r in self.rejected])
        return _subset(frame, positions, ~np.isin(positions, gone))

    def unparseable(self, ds: DatasetSettings, frame, typed, failures: dict, positions: np.ndarray):
        """Values that have their type's shape but are not one (or are not finite): set aside or refused."""
        if not failures:
            return typed, positions
        raw = self.raw
        bad = np.zeros(len(typed), dtype=bool)
        violations = []
        for (column, rule), mask in failures.items():
            bad |= mask
            values = frame[column].to_numpy()[mask]
            if self.allowance and mask.sum() <= self.allowance * len(raw.frame):
                self.set_aside(positions[mask], rule, column, values)
                continue
            what = (
                "are not finite numbers (they overflow to infinity)"
                if rule == "finite_number"
                else "but are not one (e.g. a date that does not exist)"
            )
            violations.append(
                Violation(
                    rule=rule,
                    message=f"{int(mask.sum())} value(s) have the shape of a {ds.field(column).type} {what}",
                    file=raw.path,
                    column=raw.column_label(column),
                    rows=raw.lines(positions[mask][:20]),
                    count=int(mask.sum()),
                    samples=values[:5].tolist(),
                )
            )
        if violations:
            raise DataError(self.dataset, violations)
        return _subset(typed, positions, ~bad)

    def quarantine(self) -> pd.DataFrame:
        """The rows set aside, by file line, with the rule, column and value."""
        if not self.rejected:
            return _empty_quarantine()
        quarantine = pd.concat(self.rejected, ignore_index=True).sort_values("position", kind="stable")
        quarantine.insert(0, "line", self.raw.lines(quarantine.pop("position").to_numpy()))
        return quarantine.reset_index(drop=True)


class Validator:
    """Runs the suites of one dataset group; one instance per validate or import call."""

    def __init__(self, group: Group, as_of: pd.Timestamp, docs_dir: Path | None = None):
        self.group = group
        self.as_of = as_of
        self.runner = _Runner(docs_dir)

    def check(self, dataset: str) -> CheckedDataset:
        """Read, check stage by stage (raw text, typed values, the as_of cut) and type one dataset.

        A broken rule raises DataError; with ``max_rejected_fraction`` the rows that break a
        row-level rule are set aside (the quarantine) while the rest go on.
        """
        group = self.group
        ds: DatasetSettings = group.dataset(dataset)
        raw = read_raw(ds, dataset)
        expectations = render_suite(group, dataset, raw)
        for exp in expectations:
            if ds.max_rejected_fraction and _is_row_level(exp) and exp["meta"].get("rule") != "non_null_key":
                exp["mostly"] = 1.0 - ds.max_rejected_fraction
        run = _DatasetRun(self.runner, dataset, raw, ds.max_rejected_fraction)
        by_stage = {name: [e for e in expectations if e["meta"]["stage"] == name] for name in ("raw", "typed", "as_of")}
        positions = np.arange(len(raw.frame))
        run.stage("raw", raw.frame, by_stage["raw"], positions)
        frame, positions = run.without_rejected(raw.frame, positions)
        typed, unparseable = coerce(frame, ds.fields, ds.timestamp_format, _epoch_fields(group, dataset))
        typed, positions = run.unparseable(ds, frame, typed, unparseable, positions)
        typed = typed.reset_index(drop=True)
        run.stage("typed", typed, by_stage["typed"], positions)
        typed, positions = run.without_rejected(typed, positions)
        keep = self._in_range(dataset, typed)
        typed, positions = _subset(typed, positions, keep)
        run.stage("as_of", typed, [e for e in by_stage["as_of"] if not e["meta"].get("batch")], positions)
        for exp in (e for e in by_stage["as_of"] if e["meta"].get("batch")):
            derived = self._derived(exp["meta"]["batch"], typed)
            run.stage(exp["meta"]["batch"], derived, [exp], np.arange(len(derived)))
        if isinstance(group, ForecastGroup) and dataset == d.TARGET_TIME_SERIES:
            self._check_frequency(raw, typed)
        rows_read = len(raw.frame)
        raw.frame = raw.frame.iloc[:0]  # the text is no longer needed; the typed frame is
        return CheckedDataset(
            dataset=dataset,
            raw=raw,
            frame=typed,
            rejected=run.quarantine(),
            rows_read=rows_read,
            rows_after_as_of=int((~keep).sum()),
            results=run.results,
        )

    def cutoff(self, dataset: str) -> pd.Timestamp:
        """Rows after this are not read; related series may run a horizon past as_of."""
        group = self.group
        if isinstance(group, ForecastGroup) and dataset == d.RELATED_TIME_SERIES:
            return calendar.shift(group.freq, self.as_of, group.horizon, group.boundary)
        return self.as_of

    def _in_range(self, dataset: str, typed: pd.DataFrame) -> np.ndarray:
        """Which rows the as_of cut-off keeps."""
        column = {
            d.TARGET_TIME_SERIES: "timestamp",
            d.RELATED_TIME_SERIES: "timestamp",
            d.INTERACTIONS: "TIMESTAMP",
            d.ITEMS: "CREATION_TIMESTAMP",
        }.get(dataset)
        if column is None or column not in typed:
            return np.ones(len(typed), dtype=bool)
        limit = self.cutoff(dataset)
        values = typed[column]
        if isinstance(self.group, PersonalizeGroup):
            keep = (values.fillna(0) <= int(limit.timestamp())).to_numpy(bool)
        else:
            keep = (values <= limit).to_numpy(bool)
        if not keep.all():
            log.info("%s: %d row(s) after %s left out by the as_of cut-off", dataset, (~keep).sum(), limit)
        return keep

    def _derived(self, name: str, typed: pd.DataFrame) -> pd.DataFrame:
        if name == "users_with_two_or_more_interactions":
            counts = typed.groupby("USER_ID", observed=True).size()
            return counts[counts >= 2].rename("interactions").reset_index()
        raise ValueError(f"unknown derived batch {name!r}")

    def _check_frequency(self, raw: RawTable, typed: pd.DataFrame) -> None:
        group: ForecastGroup = self.group
        keys = [k for k in group.series_keys if k in typed]
        if typed.empty or not keys:
            return
        sample = typed.iloc[:FREQUENCY_SAMPLE_ROWS]  # the data's resolution shows in any large part of it
        codes = sample.groupby(keys, sort=False, observed=True).ngroup().to_numpy()
        spacing = calendar.finest_spacing(sample["timestamp"], codes)
        _, longest = group.freq.nominal_range()
        if spacing is not None and spacing > longest:
            raise DataError(
                raw.dataset,
                [
                    Violation(
                        rule="frequency",
                        message=f"frequency {group.frequency} is finer than the data allows: no two "
                        f"observations of a series are less than {spacing} apart; use a coarser frequency",
                        file=raw.path,
                        column=raw.column_label("timestamp"),
                    )
                ],
            )


def _subset(frame: pd.DataFrame, positions: np.ndarray, keep: np.ndarray):
    """Rows where ``keep``; the frame itself when that is all of them (copies cost seconds)."""
    if keep.all():
        return frame, positions
    return frame[keep].reset_index(drop=True), positions[keep]


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({"line": pd.Series(dtype="int64"), "rule": [], "column": [], "value": []}, dtype=object)
