"""The import step reuses the validate step's work only for the same bytes and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import DataError
from pipelines.preparation.steps import import_data, validate_schema
from pipelines.preparation.validation import Validator
from tests.conftest import retail

AS_OF = "2024-02-01"
GOOD = "item_id,timestamp,demand\n" + "".join(f"a,2024-01-{d:02d},{d}\n" for d in range(1, 11))


def test_import_after_validate_checks_nothing_twice(groups, monkeypatch):
    group = groups.group(retail(groups.file("t.csv", GOOD)))
    validated = validate_schema(group, AS_OF)
    docs = Path(validated["data_docs"])
    assert docs.is_file() and list(docs.parent.glob("validations/**/*.html"))  # GX Data Docs, one page a stage

    def no_second_check(self, dataset):
        raise AssertionError(f"{dataset} was validated twice")

    monkeypatch.setattr(Validator, "check", no_second_check)
    manifest = import_data(group, AS_OF, validated=validated)
    assert manifest["datasets"]["TARGET_TIME_SERIES"]["rows"] == 10


def test_a_file_changed_after_validation_is_checked_again(groups):
    group = groups.group(retail(groups.file("t.csv", GOOD)))
    validated = validate_schema(group, AS_OF)
    groups.file("t.csv", GOOD + "a,2024-01-11,-5\n")
    with pytest.raises(DataError, match="non_negative_target"):
        import_data(group, AS_OF, validated=validated)
    groups.file("t.csv", GOOD + "a,2024-01-11,5\n")
    assert import_data(group, AS_OF)["datasets"]["TARGET_TIME_SERIES"]["rows"] == 11


def test_changed_settings_are_checked_again(groups):
    path = groups.file("t.csv", GOOD + "a,2024-01-10,1\n")
    group = groups.group(retail(path, target={"aggregation": "sum"}))
    validate_schema(group, AS_OF)
    strict = groups.group(retail(path))  # same name and storage, no aggregation: duplicates are errors
    with pytest.raises(DataError, match="unique_keys"):
        import_data(strict, AS_OF)
