"""Read a dataset file as it is: every column as text, named by the schema.

CSV (with or without a header) and Parquet, from local paths or fsspec URLs. The raw file is
only ever opened for reading. Problems with the file as a whole (missing, empty, header only,
wrong delimiter, bytes that are not UTF-8, rows of the wrong width, columns the schema needs
but the file lacks) raise a DataError that names the file, the line and the rule.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.errors import DataError, Violation
from pipelines.settings import DatasetSettings

NULL_VALUES = ["", "NaN", "nan", "NULL", "null"]
OTHER_DELIMITERS = (";", "\t", "|", ",")
STRING = pd.StringDtype("pyarrow")


@dataclass
class RawTable:
    """A dataset file read as text, with what it takes to point back into the file."""

    dataset: str
    path: str
    frame: pd.DataFrame  # one column per schema field present in the file
    source_columns: dict[str, str]  # schema field -> the file's column name
    sha256: str
    header_lines: int = 1
    is_csv: bool = True
    ignored_columns: list[str] = field(default_factory=list)
    _lines: np.ndarray | None = field(default=None, repr=False)

    def lines(self, positions) -> list[int]:
        """1-based file line numbers (CSV) or row numbers (Parquet) of data rows by position."""
        positions = np.asarray(list(positions), dtype="int64")
        if not self.is_csv:
            return (positions + 1).tolist()
        if self._lines is None:
            # Only error reports need line numbers, so the file is read again here rather than kept.
            # Blank lines are skipped by the parser, so count only lines with content.
            buf = np.frombuffer(_open_bytes(self.path), dtype=np.uint8)
            ends = np.flatnonzero(buf == 10)
            if len(buf) and buf[-1] != 10:
                ends = np.append(ends, len(buf))
            starts = np.concatenate(([0], ends[:-1] + 1))
            length = ends - starts
            blank = (length == 0) | ((length == 1) & (buf[np.minimum(starts, len(buf) - 1)] == 13))
            self._lines = np.flatnonzero(~blank)[self.header_lines :] + 1
        valid = positions[(positions >= 0) & (positions < len(self._lines))]
        return self._lines[valid].tolist()

    def column_label(self, name: str) -> str:
        source = self.source_columns.get(name, name)
        return name if source == name else f"{source} (schema field {name})"


def file_sha256(path: str) -> str:
    """The sha256 of a file, read in blocks (local paths and fsspec URLs)."""
    import fsspec

    digest = hashlib.sha256()
    with fsspec.open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _open_bytes(path: str) -> bytes:
    if "://" in path and not path.startswith("file://"):
        import fsspec

        with fsspec.open(path, "rb") as handle:
            return handle.read()
    with open(path.removeprefix("file://"), "rb") as handle:
        return handle.read()


def _fail(dataset: str, path: str, rule: str, message: str, **kw) -> DataError:
    return DataError(dataset, [Violation(rule=rule, message=message, file=path, **kw)])


def read_raw(ds: DatasetSettings, dataset: str) -> RawTable:
    """Read ``ds.path`` into a RawTable or raise a DataError naming what is wrong."""
    path = ds.path
    try:
        data = _open_bytes(path)
    except FileNotFoundError:
        raise _fail(dataset, path, "file_exists", "no such file") from None
    except OSError as exc:
        raise _fail(dataset, path, "file_readable", f"cannot read the file: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if not data.strip():
        raise _fail(dataset, path, "non_empty_file", "the file is empty")
    if ds.resolved_format == "parquet":
        return _read_parquet(ds, dataset, data, digest)
    return _read_csv(ds, dataset, data, digest)


def _read_parquet(ds: DatasetSettings, dataset: str, data: bytes, digest: str) -> RawTable:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise _fail(dataset, ds.path, "parquet_readable", f"not a readable Parquet file: {exc}") from None
    table = table.rename_columns([ds.column_mapping.get(c, c) for c in table.column_names])
    sources = {ds.column_mapping.get(c, c): c for c in table.schema.names}
    return _finish(ds, dataset, table, sources, digest, header_lines=0, is_csv=False)


def _read_csv(ds: DatasetSettings, dataset: str, data: bytes, digest: str) -> RawTable:
    path = ds.path
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first_line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if ds.header:
        try:
            names = first_line.decode("utf-8").split(ds.delimiter)
        except UnicodeDecodeError as exc:
            raise _fail(dataset, path, "utf8", f"the header is not UTF-8 ({exc.reason})", rows=[1], count=1) from None
        names = [n.strip().strip('"') for n in names]
        if not data[len(first_line) :].strip():
            raise _fail(dataset, path, "has_rows", f"the file has a header ({', '.join(names)}) but no rows")
    else:
        names = list(ds.columns or ds.field_names)
    text = first_line.decode("utf-8", "replace")
    observed = len(text.split(ds.delimiter))
    expected = None if ds.header else len(names)
    if observed == 1 and (expected or len(ds.fields) - len(ds.constants)) > 1:
        counts = {other: len(text.split(other)) for other in OTHER_DELIMITERS if other != ds.delimiter}
        best = max(counts, key=counts.get)
        if counts[best] > 1:
            message = (
                f"line 1 has one column when split on {ds.delimiter!r} but {counts[best]} on {best!r}: "
                f"set delimiter: {best!r} in the settings"
            )
            raise _fail(dataset, path, "delimiter", message, rows=[1], count=1)
    if expected and observed != expected:
        message = f"line 1 has {observed} columns; the settings list {expected} ({names})"
        raise _fail(dataset, path, "row_width", message, rows=[1], count=1)
    bad_rows: list[str] = []

    def on_invalid(row) -> str:
        bad_rows.append(row.text)
        return "skip"

    read = pacsv.ReadOptions(column_names=names, skip_rows=1 if ds.header else 0, use_threads=True, block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter=ds.delimiter, invalid_row_handler=on_invalid)
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        null_values=NULL_VALUES,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    try:
        table = pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc):
            raise _utf8_error(dataset, path, data) from None
        raise _fail(dataset, path, "csv_parse", f"not a readable CSV file: {exc}") from None
    if bad_rows:
        raise _ragged_error(dataset, path, data, ds.delimiter, len(names), ds.header, len(bad_rows))
    if table.num_rows == 0:
        raise _fail(dataset, path, "has_rows", "the file has no data rows")
    table = table.rename_columns([ds.column_mapping.get(c, c) for c in names])
    sources = {ds.column_mapping.get(c, c): c for c in names}
    del data
    return _finish(ds, dataset, table, sources, digest, header_lines=int(ds.header), is_csv=True)


def _finish(ds, dataset, table: pa.Table, sources, digest, header_lines, is_csv) -> RawTable:
    wanted = ds.field_names
    for name, value in ds.constants.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
            sources[name] = name
    missing = [f for f in wanted if f not in table.column_names and not ds.field(f).nullable]
    if missing:
        hint = ""
        unmapped = [c for c in table.column_names if c not in wanted]
        if unmapped:
            hint = f"; the file's other columns are {unmapped}: map them with column_mapping"
        raise DataError(
            dataset,
            [
                Violation(
                    rule="required_columns",
                    message=f"the schema needs {missing} but the file has {list(sources.values())}{hint}",
                    file=ds.path,
                    column=", ".join(missing),
                    count=len(missing),
                )
            ],
        )
    if len(set(table.column_names)) != len(table.column_names):
        dupes = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
        raise _fail(
            dataset, ds.path, "unique_columns", f"columns {dupes} appear more than once", column=", ".join(dupes)
        )
    present = [f for f in wanted if f in table.column_names]
    ignored = [sources[c] for c in table.column_names if c not in wanted]
    table = table.select(present)
    frame = table.to_pandas(
        types_mapper=lambda t: STRING if pa.types.is_string(t) or pa.types.is_large_string(t) else None
    )
    return RawTable(
        dataset=dataset,
        path=ds.path,
        frame=frame,
        source_columns={k: v for k, v in sources.items() if k in present},
        sha256=digest,
        header_lines=header_lines,
        is_csv=is_csv,
        ignored_columns=ignored,
    )


def _utf8_error(dataset: str, path: str, data: bytes) -> DataError:
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _fail(
                dataset, path, "utf8",
                f"byte {line[exc.start:exc.start + 4]!r} at character {exc.start + 1} is not UTF-8; "
                "save the file as UTF-8",
                rows=[number], count=1,
            )  # fmt: skip
    return _fail(dataset, path, "utf8", "the file is not UTF-8")


def _ragged_error(dataset, path, data: bytes, delimiter, width, header, count) -> DataError:
    rows, samples = [], []
    # The parser only says how many; a second, slow pass on this error path finds where.
    text = io.StringIO(data.decode("utf-8", "replace"))
    for number, record in enumerate(csv.reader(text, delimiter=delimiter), start=1):
        if number == 1 and header:
            continue
        if record and len(record) != width:
            rows.append(number)
            if len(samples) < 5:
                samples.append(delimiter.join(record)[:200])
            if len(rows) >= 20:
                break
    return DataError(
        dataset,
        [
            Violation(
                rule="row_width",
                message=f"{count} row(s) do not have {width} columns",
                file=path,
                rows=rows,
                count=count,
                samples=samples,
            )
        ],
    )
