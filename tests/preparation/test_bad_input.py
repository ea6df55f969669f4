"""Bad input: each case gets an error naming file, row, column and rule; nothing is lost.

Every case first imports a good file at the same as_of, then replaces the file with bad
bytes and imports again: the error must be clear, the raw file byte-for-byte unchanged, and
the earlier snapshot exactly as it was.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from pipelines.errors import DataError, SettingsError
from pipelines.preparation.steps import import_data, validate_schema
from pipelines.storage import resolve_as_of, snapshot_dir
from tests.conftest import interactions_csv, personalize, retail, sha256

AS_OF = "2024-02-01"
GOOD = "item_id,timestamp,demand\n" + "".join(
    f"{item},2024-01-{day:02d},{day * 2}\n" for item in ("a", "b") for day in range(1, 11)
)


def snapshot_digest(group) -> dict:
    folder = snapshot_dir(group.storage_root, resolve_as_of(AS_OF))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def replace_line(text: str, number: int, line: str) -> str:
    lines = text.splitlines()
    lines[number - 1] = line
    return "\n".join(lines) + "\n"


def fails_cleanly(groups, content: bytes | str, rule: str, line: int | None = None, column: str | None = None, **body):
    """Import good data, swap in ``content``, import again; check the error and that nothing moved."""
    path = groups.file("target.csv", GOOD)
    group = groups.group(retail(path, **body))
    import_data(group, AS_OF)
    before = snapshot_digest(group)
    path = groups.file("target.csv", content)
    raw_digest = sha256(path)
    with pytest.raises(DataError) as info:
        import_data(group, AS_OF)
    violation = next((v for v in info.value.violations if v.rule == rule), None)
    assert violation is not None, f"expected rule {rule}, got {info.value}"
    assert violation.file == str(path)
    assert str(path) in str(info.value)
    if line is not None:
        assert line in violation.rows, (line, violation.rows)
        assert re.search(rf"line [0-9, ]*\b{line}\b", str(info.value)), str(info.value)
    if column is not None:
        assert column in (violation.column or "")
    assert sha256(path) == raw_digest, "the raw file was modified"
    assert snapshot_digest(group) == before, "the previous snapshot changed"
    return info.value


def test_missing_required_column(groups):
    err = fails_cleanly(groups, GOOD.replace("demand", "qty", 1), "required_columns", column="demand")
    assert "column_mapping" in str(err)  # says how to fix it


def test_wrong_type(groups):
    err = fails_cleanly(groups, replace_line(GOOD, 4, "a,2024-01-03,lots"), "float_format", line=4, column="demand")
    assert "lots" in str(err)
    assert "expect_column_values_to_match_regex" in str(err)


def test_unparseable_timestamp(groups):
    fails_cleanly(groups, replace_line(GOOD, 5, "a,yesterday,3"), "timestamp_format", line=5, column="timestamp")


def test_timestamp_with_impossible_date(groups):
    err = fails_cleanly(groups, replace_line(GOOD, 6, "a,2024-02-30,3"), "parseable_value", line=6, column="timestamp")
    assert "2024-02-30" in str(err)


def test_duplicate_keys(groups):
    bad = GOOD + "a,2024-01-03,99\n"
    err = fails_cleanly(groups, bad, "unique_keys", line=22, column="timestamp")
    assert 4 in err.violations[0].rows  # both copies are named


def test_duplicate_keys_are_summed_when_aggregation_is_set(groups):
    path = groups.file("target.csv", GOOD + "a,2024-01-03,99\n")
    group = groups.group(retail(path, target={"aggregation": "sum"}))
    manifest = import_data(group, AS_OF)
    assert manifest["datasets"]["TARGET_TIME_SERIES"]["rows"] == 20


def test_negative_demand(groups):
    err = fails_cleanly(groups, replace_line(GOOD, 7, "a,2024-01-06,-4"), "non_negative_target", line=7)
    assert "-4" in str(err)


def test_negative_values_are_fine_where_the_domain_allows_them(groups):
    path = groups.file("target.csv", replace_line(GOOD, 7, "a,2024-01-06,-4").replace("demand", "target_value"))
    body = retail(path, domain="CUSTOM")
    body["datasets"]["TARGET_TIME_SERIES"]["schema"][2]["name"] = "target_value"
    assert import_data(groups.group(body), AS_OF)["datasets"]["TARGET_TIME_SERIES"]["rows"] == 20


def test_empty_file(groups):
    fails_cleanly(groups, b"", "non_empty_file")


def test_header_only_file(groups):
    fails_cleanly(groups, "item_id,timestamp,demand\n", "has_rows")


def test_wrong_delimiter(groups):
    err = fails_cleanly(groups, GOOD.replace(",", ";"), "delimiter", line=1)
    assert "';'" in str(err)


def test_non_utf8_bytes(groups):
    bad = GOOD.encode().replace(b"b,2024-01-02", b"b\xff\xfe,2024-01-02")
    err = fails_cleanly(groups, bad, "utf8", line=13)
    assert "UTF-8" in str(err)


def test_ragged_rows(groups):
    bad = replace_line(GOOD, 3, "a,2024-01-02,4,extra")
    bad = replace_line(bad, 9, "a,2024-01-08")
    err = fails_cleanly(groups, bad, "row_width", line=3)
    assert 9 in err.violations[0].rows


@pytest.mark.parametrize("bad_id", ["", "NaN", "null"])
def test_empty_or_nan_ids(groups, bad_id):
    fails_cleanly(groups, replace_line(GOOD, 8, f"{bad_id},2024-01-07,1"), "non_null_key", line=8, column="item_id")


def test_line_numbers_count_blank_lines(groups):
    bad = "item_id,timestamp,demand\n\na,2024-01-01,1\n\n\na,2024-01-02,oops\n"
    fails_cleanly(groups, bad, "float_format", line=6)


def test_rows_after_as_of_are_left_out_and_counted(groups):
    path = groups.file("target.csv", GOOD + "a,2024-03-01,5\nb,2024-03-02,6\n")
    manifest = import_data(groups.group(retail(path)), AS_OF)
    entry = manifest["datasets"]["TARGET_TIME_SERIES"]
    assert entry["rows_after_as_of"] == 2
    assert entry["end"] == "2024-01-10 00:00:00"


def test_every_row_after_as_of_is_an_error(groups):
    future = GOOD.replace("2024-01", "2025-01")
    fails_cleanly(groups, future, "rows_at_or_before_as_of")


def test_frequency_finer_than_the_data(groups):
    monthly = "item_id,timestamp,demand\n" + "".join(f"a,2023-{m:02d}-01,{m}\n" for m in range(1, 13))
    path = groups.file("target.csv", monthly)
    with pytest.raises(DataError) as info:
        validate_schema(groups.group(retail(path, frequency="1W")), AS_OF)
    assert info.value.violations[0].rule == "frequency"
    assert "1W" in str(info.value)


def test_settings_with_unknown_key_names_file_and_key(groups):
    body = retail("x.csv")
    body["datasets"]["TARGET_TIME_SERIES"]["delimeter"] = ";"
    path = groups.settings(body)
    from pipelines.settings import load_group

    with pytest.raises(SettingsError) as info:
        load_group(path)
    assert str(path) in str(info.value)
    assert "datasets.TARGET_TIME_SERIES.delimeter: unknown key" in str(info.value)


def test_settings_with_unknown_domain(groups):
    from pipelines.settings import load_group

    path = groups.settings(retail("x.csv", domain="GROCERY"))
    with pytest.raises(SettingsError) as info:
        load_group(path)
    assert "key domain" in str(info.value) and "RETAIL" in str(info.value)


def test_hostile_values_are_data_not_code(groups):
    hostile = "item_id,timestamp,demand\n" + "".join(
        f'"=cmd|\' /C calc\'!A0{i}",2024-01-0{i},1\n"; DROP TABLE x; --",2024-01-0{i},2\n' for i in range(1, 4)
    )
    path = groups.file("target.csv", hostile)
    manifest = import_data(groups.group(retail(path)), AS_OF)
    assert manifest["datasets"]["TARGET_TIME_SERIES"]["series"] == 4


def test_huge_field(groups):
    big = "x" * 2_000_000
    path = groups.file("target.csv", f"item_id,timestamp,demand\n{big},2024-01-01,1\n{big},2024-01-02,2\n")
    manifest = import_data(groups.group(retail(path)), AS_OF)
    assert manifest["datasets"]["TARGET_TIME_SERIES"]["rows"] == 2


def test_out_of_order_rows_import_sorted(groups):
    shuffled = "item_id,timestamp,demand\n" + "".join(reversed(GOOD.splitlines(keepends=True)[1:]))
    path = groups.file("target.csv", shuffled)
    import pandas as pd

    manifest = import_data(groups.group(retail(path)), AS_OF)
    frame = pd.read_parquet(f"{manifest['snapshot']}/TARGET_TIME_SERIES.parquet")
    assert (
        frame["timestamp"].is_monotonic_increasing
        or frame.groupby("item_id", observed=True)["timestamp"].is_monotonic_increasing.all()
    )
    assert frame.loc[frame.item_id == "a", "demand"].tolist() == [d * 2 for d in range(1, 11)]


# Personalize


def personalize_fails(groups, content: str, rule: str, line: int | None = None):
    path = groups.file("interactions.csv", content)
    raw = sha256(path)
    with pytest.raises(DataError) as info:
        import_data(groups.group(personalize(path)), AS_OF)
    violation = next((v for v in info.value.violations if v.rule == rule), None)
    assert violation is not None, str(info.value)
    if line:
        assert line in violation.rows
    assert sha256(path) == raw
    return info.value


def test_too_few_interactions(groups):
    err = personalize_fails(groups, interactions_csv(users=30, per_user=10), "min_interactions")
    assert "1000" in str(err)


def test_too_few_users_with_two_interactions(groups):
    personalize_fails(groups, interactions_csv(users=20, per_user=60), "min_active_users")


def test_millisecond_timestamps(groups):
    text = interactions_csv().replace(",1700", ",1700000")
    personalize_fails(groups, text, "epoch_seconds")


def test_missing_user_id(groups):
    text = replace_line(interactions_csv(), 10, ",i3,1700000000,click,")
    personalize_fails(groups, text, "non_null_key", line=10)


# Non-finite numbers and control characters, in both services


def test_a_number_that_overflows_to_infinity_is_a_bad_row(groups):
    err = fails_cleanly(groups, replace_line(GOOD, 4, "a,2024-01-03,1e999"), "finite_number", line=4, column="demand")
    assert "1e999" in str(err)


@pytest.mark.parametrize("text", ["inf", "-Infinity", "+INF", "infinity"])
def test_infinity_as_text_is_a_bad_number(groups, text):
    fails_cleanly(groups, replace_line(GOOD, 5, f"a,2024-01-04,{text}"), "float_format", line=5, column="demand")


def test_nan_text_is_a_missing_value_that_filling_replaces_as_in_forecast(groups):
    import pandas as pd

    path = groups.file("target.csv", replace_line(GOOD, 5, "a,2024-01-04,NaN"))
    manifest = import_data(groups.group(retail(path)), AS_OF)
    frame = pd.read_parquet(f"{manifest['snapshot']}/TARGET_TIME_SERIES.parquet")
    filled = frame[(frame.item_id == "a") & (frame.timestamp == pd.Timestamp("2024-01-04"))]
    assert filled["demand"].tolist() == [0] and filled["filled_by"].notna().all()


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f"])
def test_control_characters_in_a_field_are_bad_rows(groups, char):
    content = replace_line(GOOD, 3, f"a{char}x,2024-01-02,4")
    fails_cleanly(groups, content, "no_control_characters", line=3, column="item_id")


def test_infinity_in_a_parquet_file_is_a_bad_row(groups, tmp_path):
    import numpy as np
    import pandas as pd

    path = tmp_path / "data" / "t.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    days = pd.date_range("2024-01-01", periods=5)
    frame = pd.DataFrame({"item_id": "a", "timestamp": days, "demand": [1.0, 2, 3, 4, 5]})
    frame.loc[2, "demand"] = np.inf
    frame.to_parquet(path)
    with pytest.raises(DataError) as info:
        import_data(groups.group(retail(path)), AS_OF)
    (violation,) = [v for v in info.value.violations if v.rule == "finite_number"]
    assert violation.count == 1 and violation.file == str(path)


def test_non_finite_and_control_characters_are_quarantined_where_allowed(groups):
    import pandas as pd

    rows = "item_id,timestamp,demand\n" + "".join(f"a,2024-01-{d:02d},{d}\n" for d in range(1, 29))
    rows += "a,2024-01-29,1e400\nb\x00,2024-01-01,1\n"
    path = groups.file("t.csv", rows)
    manifest = import_data(groups.group(retail(path, target={"max_rejected_fraction": 0.1})), AS_OF)
    entry = manifest["datasets"]["TARGET_TIME_SERIES"]
    quarantine = pd.read_csv(f"{manifest['snapshot']}/{entry['quarantine']}")
    assert quarantine[["line", "rule", "column"]].to_dict("records") == [
        {"line": 30, "rule": "finite_number", "column": "demand"},
        {"line": 31, "rule": "no_control_characters", "column": "item_id"},
    ]
    frame = pd.read_parquet(f"{manifest['snapshot']}/TARGET_TIME_SERIES.parquet")
    assert frame["item_id"].unique().tolist() == ["a"] and len(frame) == 28


def test_personalize_refuses_control_characters_and_infinite_event_values(groups):
    hostile = replace_line(interactions_csv(), 7, "u0,i\x005,1700000300,click,")
    personalize_fails(groups, hostile, "no_control_characters", line=7)
    overflow = replace_line(interactions_csv(), 9, "u0,i7,1700000420,click,1e999")
    personalize_fails(groups, overflow, "finite_number", line=9)


def test_the_cli_exits_3_on_non_finite_numbers_and_writes_nothing(groups, capsys):
    from pipelines.cli import main

    path = groups.file("t.csv", replace_line(GOOD, 6, "a,2024-01-05,-1e309"))
    groups.settings(retail(path))
    assert main(["import", "shop", "--as-of", AS_OF]) == 3
    err = capsys.readouterr().err
    assert "finite_number" in err and "line 6" in err and "demand" in err
    assert not snapshot_dir(groups.group(retail(path)).storage_root, resolve_as_of(AS_OF)).exists()
