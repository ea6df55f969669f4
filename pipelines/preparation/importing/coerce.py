"""Turn text columns into the schema's types, and say which values would not turn.

The raw Great Expectations stage has already checked each value's shape with a regular
expression (TYPE_PATTERNS); what can still fail here is meaning, such as 2023-02-30.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.preparation.importing.reader import STRING

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DATE = r"\d{4}-\d{2}-\d{2}"
_DATETIME = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}"
TIMESTAMP_PATTERNS = {
    "yyyy-MM-dd": rf"^{_DATE}$",
    "yyyy-MM-dd HH:mm:ss": rf"^{_DATETIME}$",
    "auto": rf"^{_DATE}(?:[ T]\d{{2}}:\d{{2}}:\d{{2}})?$",
    "epoch": r"^\d{1,13}$",  # 13 digits are let through so the typed stage can say "milliseconds"
}
TYPE_PATTERNS = {
    "integer": r"^[+-]?\d+(?:\.0*)?$",
    "float": rf"^{_NUMBER}$",
    "geolocation": r"^(?:[A-Z]{2}_\d{5}|[+-]?\d{1,2}(?:\.\d+)?_[+-]?\d{1,3}(?:\.\d+)?)$",
    "boolean": r"^(?:true|false|True|False|TRUE|FALSE|0|1)$",
}


def value_pattern(field_type: str, timestamp_format: str, epoch_allowed: bool) -> str | None:
    """The regular expression a text value of this type must match (None: any text)."""
    if field_type == "timestamp" or epoch_allowed:
        pattern = TIMESTAMP_PATTERNS[timestamp_format]
        if epoch_allowed and timestamp_format == "auto":
            pattern = f"(?:{pattern})|(?:{TIMESTAMP_PATTERNS['epoch']})"
        return pattern
    return TYPE_PATTERNS.get(field_type)


def _arrow(series: pd.Series) -> pa.Array:
    # No trimming: the raw stage's patterns already refuse values with surrounding spaces.
    return pa.array(series, type=pa.string(), from_pandas=True)


def to_float(series: pd.Series) -> pd.Series:
    if not isinstance(series.dtype, pd.StringDtype):
        return pd.to_numeric(series, errors="coerce").astype("float64")
    return pd.Series(pc.cast(_arrow(series), pa.float64()).to_numpy(zero_copy_only=False), index=series.index)


def to_integer(series: pd.Series) -> pd.Series:
    values = to_float(series)
    return values.round().astype("Int64")


def to_boolean(series: pd.Series) -> pd.Series:
    text = series.astype(STRING).str.lower()
    return text.map({"true": True, "1": True, "false": False, "0": False}).astype("boolean")


_FORMATS = {
    "yyyy-MM-dd": ["%Y-%m-%d"],
    "yyyy-MM-dd HH:mm:ss": ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"],
    "auto": ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
    "epoch": [],
}


def to_datetime(series: pd.Series, timestamp_format: str = "auto") -> pd.Series:
    """Parse Forecast's timestamp formats (and epoch seconds); NaT where a value won't parse."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.astype("datetime64[ns]")
    if pd.api.types.is_numeric_dtype(series.dtype):
        return pd.to_datetime(series, unit="s", errors="coerce").astype("datetime64[ns]")
    arr = _arrow(series)
    seconds = np.full(len(arr), np.iinfo(np.int64).min)  # NaT
    todo = np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False))
    formats = _FORMATS[timestamp_format]
    if len(todo) and len(arr[int(todo[0])].as_py()) == 10:
        formats = sorted(formats, key=len)  # date-only data: try the date format first
    for fmt in formats:
        if not len(todo):
            break
        # Each format only sees the values the ones before it could not parse.
        text = arr if len(todo) == len(arr) else arr.take(pa.array(todo))
        parsed = _strict(text, pc.strptime(text, format=fmt, unit="s", error_is_null=True))
        ok = parsed.is_valid().to_numpy(zero_copy_only=False)
        seconds[todo[ok]] = parsed.filter(pa.array(ok)).cast(pa.int64()).to_numpy()
        todo = todo[~ok]
    if len(todo) and timestamp_format in ("auto", "epoch"):
        text = arr.take(pa.array(todo))
        ok = pc.fill_null(pc.match_substring_regex(text, TIMESTAMP_PATTERNS["epoch"]), False).to_numpy(
            zero_copy_only=False
        )
        seconds[todo[ok]] = pc.cast(text.filter(pa.array(ok)), pa.int64()).to_numpy()
    values = np.where(seconds == np.iinfo(np.int64).min, np.iinfo(np.int64).min, seconds * 10**9)
    return pd.Series(values.astype("datetime64[ns]"), index=series.index)


def _strict(text: pa.Array, parsed: pa.Array) -> pa.Array:
    """Null where strptime rolled an impossible day over (2024-02-30 became March 1)."""
    written = pc.utf8_slice_codeunits(text, 8, 10)
    late = pc.fill_null(pc.and_(pc.greater_equal(written, "29"), pc.is_valid(parsed)), False)
    if not pc.any(late).as_py():  # only days 29-31 can roll over into the next month
        return parsed
    rolled = pc.and_(late, pc.not_equal(pc.day(parsed), pc.cast(pc.if_else(late, written, None), pa.int64())))
    return pc.if_else(pc.fill_null(rolled, False), pa.scalar(None, parsed.type), parsed)


def to_epoch_seconds(series: pd.Series, timestamp_format: str = "auto") -> pd.Series:
    """Personalize keeps timestamps as Unix epoch seconds."""
    if isinstance(series.dtype, pd.StringDtype):
        arr = _arrow(series)
        digits = pc.match_substring_regex(arr, TIMESTAMP_PATTERNS["epoch"])
        if pc.all(pc.fill_null(digits, True)).as_py():
            values = pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
            return pd.Series(pd.array(values, dtype="Int64") if arr.null_count else values, index=series.index)
    elif pd.api.types.is_integer_dtype(series.dtype):
        return series.astype("Int64")
    parsed = to_datetime(series, timestamp_format)
    seconds = parsed.to_numpy("datetime64[ns]").astype("int64") // 10**9
    return pd.Series(seconds, index=series.index).where(parsed.notna()).astype("Int64")


# C0 control characters and DEL (tab, newline and carriage return aside): NUL and friends in a field
# are hostile or broken input, never data. The raw stage refuses them in every text column.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"


def coerce(frame: pd.DataFrame, fields, timestamp_format: str, epoch_fields=()) -> tuple[pd.DataFrame, dict]:
    """Typed copy of ``frame``; and by (column, rule), a mask of the values present that break the rule.

    Rules: ``parseable_value`` (the shape of the type, but not one: 2023-02-30) and ``finite_number``
    (a number that overflows to infinity, such as 1e999, or an infinity in a Parquet file; the
    text ``inf`` and ``nan`` already fail the raw stage's number format).
    """
    typed, failures = {}, {}
    for attr in fields:
        if attr.name not in frame:
            continue
        raw = frame[attr.name]
        if attr.name in epoch_fields:
            value = to_epoch_seconds(raw, timestamp_format)
        elif attr.type == "timestamp":
            value = to_datetime(raw, timestamp_format)
        elif attr.type == "float":
            value = to_float(raw)
        elif attr.type == "integer":
            value = to_integer(raw)
        elif attr.type == "boolean":
            value = to_boolean(raw)
        else:
            value = raw if isinstance(raw.dtype, pd.StringDtype) else _as_text(raw)
        bad = value.isna().to_numpy() & raw.notna().to_numpy()
        if bad.any():
            failures[(attr.name, "parseable_value")] = bad
        if attr.type in ("float", "integer") and attr.name not in epoch_fields:
            infinite = np.isinf(to_float(raw).to_numpy(dtype="float64", na_value=np.nan))
            if infinite.any():
                failures[(attr.name, "finite_number")] = infinite
                value = value.mask(infinite)
        typed[attr.name] = value
    return pd.DataFrame(typed, index=frame.index), failures


def _as_text(series: pd.Series) -> pd.Series:
    # Ids that arrive as numbers (Parquet ints, floats like 12.0) become their integer text.
    if pd.api.types.is_float_dtype(series.dtype):
        whole = series.dropna()
        if (whole == np.floor(whole)).all():
            series = series.astype("Int64")
    return series.astype(STRING)
