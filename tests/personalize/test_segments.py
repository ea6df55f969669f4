"""User segments: the itemAttributes expression parser, the items it matches, and the users any recipe ranks."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.filters.schema import schema_of
from pipelines.personalize.segments import AttributeExpressionError, matching_items, parse_item_attributes, segments_for
from tests.personalize.conftest import two_groups

SCHEMA = schema_of({
    "INTERACTIONS": ["USER_ID", "ITEM_ID", "TIMESTAMP"],
    "ITEMS": [{"name": "ITEM_ID", "type": "string"}, {"name": "GENRES", "type": "string", "categorical": True},
              {"name": "PRICE", "type": "float"}, {"name": "BLURB", "type": "string", "textual": True},
              {"name": "ON_SALE", "type": "boolean"}],
})  # fmt: skip


@pytest.fixture(scope="module")
def data() -> InteractionData:
    ids = [f"{g}_i{i:02d}" for g in "ab" for i in range(30)]
    genres = ["Comedy|Action" if i.endswith(("0", "1")) else "Comedy" if i[0] == "a" else "Drama" for i in ids]
    items = pd.DataFrame({"ITEM_ID": ids, "GENRES": genres, "PRICE": [float(k % 10) for k in range(60)]})
    return InteractionData.from_frames(two_groups(), items)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('ITEMS.GENRES = "Comedy"', 'Items.GENRES = "Comedy"'),
        ('items.genres="Comedy" AND ITEMS.Genres = "Action"', 'Items.GENRES = "Comedy" AND Items.GENRES = "Action"'),
        ('ITEMS.GENRES = "Drama" OR ITEMS.PRICE = 3 AND ITEMS.GENRES = "Comedy"',
         'Items.GENRES = "Drama" OR Items.PRICE = 3 AND Items.GENRES = "Comedy"'),
        ('ITEMS.GENRES = "Sci \\"Fi\\""', 'Items.GENRES = "Sci \\"Fi\\""'),
        ('ITEMS.PRICE = "2.5"', "Items.PRICE = 2.5"),
    ],
)  # fmt: skip
def test_expressions_parse_to_the_filter_tree(text, parsed):
    assert str(parse_item_attributes(text, SCHEMA)) == parsed


def test_and_binds_tighter_than_or():
    tree = parse_item_attributes('ITEMS.GENRES = "a" OR ITEMS.PRICE = 3 AND ITEMS.GENRES = "b"', SCHEMA)
    assert tree.op == "OR" and [getattr(p, "op", "=") for p in tree.parts] == ["=", "AND"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "column 1: the expression is empty"),
        ('ITEMS.COLOUR = "red"', "column 7: ITEMS has no field 'COLOUR'; its fields: GENRES, PRICE"),
        ('ITEMS.BLURB = "x"', "column 7: ITEMS.BLURB is unstructured text (textual)"),
        ('ITEMS.ON_SALE = "true"', "ITEMS.ON_SALE is boolean"),
        ('ITEMS.ITEM_ID = "a"', "is the item id (use an itemId query)"),
        ('ITEMS.PRICE = "cheap"', 'ITEMS.PRICE is numeric; "cheap" is not a number'),
        ("ITEMS.GENRES = Comedy", "expected a value"),
        ('ITEMS.GENRES != "Comedy"', "unexpected character '!'"),
        ('USERS.AGE = "3"', "expected ITEMS.<field>, got 'USERS'"),
        ('ITEMS.GENRES = "a" AND', "expected ITEMS.<field>, got 'the end'"),
        ('ITEMS.GENRES = "a" NOT ITEMS.GENRES = "b"', "expected AND, OR or the end, got 'NOT'"),
        ('ITEMS.GENRES = "a' + "x" * 3000 + '"', "at most 2500"),
        (" OR ".join(['ITEMS.GENRES = "a"'] * 51), "more than 50 conditions"),
    ],
)
def test_bad_expressions_say_where_and_why(text, error):
    with pytest.raises(AttributeExpressionError) as raised:
        parse_item_attributes(text, SCHEMA)
    assert str(raised.value).startswith("itemAttributes, column ") and error in str(raised.value)


def test_no_items_schema_is_an_error():
    with pytest.raises(AttributeExpressionError, match="no ITEMS dataset"):
        parse_item_attributes('ITEMS.GENRES = "a"', schema_of({"INTERACTIONS": ["USER_ID", "ITEM_ID", "TIMESTAMP"]}))


def test_multi_valued_fields_equal_each_value(data):
    schema = schema_of(data)
    both = matching_items(parse_item_attributes('ITEMS.GENRES = "Comedy" AND ITEMS.GENRES = "Action"', schema),
                          data, schema)  # fmt: skip
    assert sorted(both) == sorted(i for i in data.item_ids if i[-2:] in ("00", "01", "10", "11", "20", "21"))
    either = matching_items(parse_item_attributes('ITEMS.GENRES = "Drama" OR ITEMS.PRICE = 0', schema), data, schema)
    assert {i[0] for i in either} == {"a", "b"} and "a_i10" in either and "b_i05" in either


@pytest.mark.parametrize("recipe", ["sims", "popularity-count"])
def test_every_recipe_ranks_users_for_items(data, recipe):
    model = get_recipe(recipe).fit(data)
    users = model.users_for_items(["a_i03", "a_i04", "unknown"], n=10)
    assert len(users) == 10 and len({u for u, _ in users}) == 10
    scores = [s for _, s in users]
    assert scores == sorted(scores, reverse=True)
    if recipe == "sims":  # a recipe that reads histories finds the a_ side
        assert all(u.startswith("a_") for u, _ in users)
    model.update("newcomer", [("a_i03", 2_000_000_000)])
    assert "newcomer" in {u for u, _ in model.users_for_items(["a_i03"], n=200)}
    with pytest.raises(ValueError, match="none of the items is known"):
        model.users_for_items(["unknown"])


def test_segments_for_writes_one_line_per_query(data, tmp_path):
    model = get_recipe("sims").fit(data)
    queries = [{"itemId": "b_i02"}, {"itemAttributes": 'ITEMS.GENRES = "Drama"'}, {"itemId": "nope"}]
    summary = segments_for(model, queries, tmp_path / "segments.jsonl", 4, data, schema_of(data))
    assert (summary["lines"], summary["failed"]) == (3, 1)
    lines = [json.loads(line) for line in (tmp_path / "segments.jsonl").read_text().splitlines()]
    assert [line["input"] for line in lines] == queries
    assert all(u.startswith("b_") for line in lines[:2] for u in line["output"]["usersList"])
    assert lines[2] == {
        "input": {"itemId": "nope"},
        "output": None,
        "error": "line 3: itemId 'nope' is unknown to the model",
    }
