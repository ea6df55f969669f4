"""Filters: Personalize's expression language, checks at creation, semantics, hostile values, serving speed."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.example_data import INTERACTIONS_SETTINGS
from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.filters.masks import (
    Filter,
    FilterExpressionError,
    FilterValuesError,
    apply_filter,
    recommend_filtered,
    related_items_filtered,
)
from pipelines.personalize.filters.parser import tokenize
from pipelines.settings import PersonalizeGroup


@pytest.fixture(scope="module")
def shop() -> InteractionData:
    """Five items, two users: u1 clicked i1 and i3 (once as 'Click') and bought i2; u2 clicked i1 and bought i4."""
    interactions = pd.DataFrame(
        {
            "USER_ID": ["u1", "u1", "u1", "u2", "u2"],
            "ITEM_ID": ["i1", "i2", "i3", "i1", "i4"],
            "TIMESTAMP": [1, 2, 3, 4, 5],
            "EVENT_TYPE": ["click", "purchase", "Click", "click", "purchase"],
        }
    )
    items = pd.DataFrame(
        {
            "ITEM_ID": ["i1", "i2", "i3", "i4", "i5"],
            "GENRES": [["Comedy"], ["Drama", "Comedy"], ["Horror"], None, "Drama|SciFi"],
            "PRICE": [10.0, 200.0, 50.0, 150.0, None],
            "CREATION_TIMESTAMP": [1_600_000_000, 1_800_000_000, 1_750_000_000, 1_650_000_000, 1_710_000_000],
        }
    )
    users = pd.DataFrame(
        {"USER_ID": ["u1", "u2"], "AGE_GROUP": [["25-34"], ["35-44"]], "MEMBERSHIP": ["gold", "silver"]}
    )
    return InteractionData.from_frames(interactions, items, users)


def allowed(data, expression, values=None, user="u1", **kwargs) -> list[str]:
    bound = Filter.parse(expression, data).bind(values)
    return data.item_ids[bound.item_mask(data, data.user_index.get(user), **kwargs)].tolist()


@pytest.mark.parametrize(
    ("expression", "values", "user", "expected"),
    [
        ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")', None, "u1", ["i1", "i3", "i4", "i5"]),
        ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")', None, "u1", ["i2", "i4", "i5"]),  # any case
        ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', None, "u2", ["i1", "i4"]),
        (
            'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
            None,
            "nobody",
            ["i1", "i2", "i3", "i4", "i5"],
        ),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("Comedy", "Drama")', None, "u1", ["i1", "i2", "i5"]),  # any value
        ("EXCLUDE ItemID WHERE Items.PRICE > 100", None, "u1", ["i1", "i3", "i5"]),  # no price: not > 100
        ("INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > 1700000000", None, "u1", ["i2", "i3", "i5"]),
        ("EXCLUDE ItemID WHERE Items.GENRES IN ($GENRES)", {"GENRES": '"Comedy","Drama"'}, "u1", ["i3", "i4"]),
        ("EXCLUDE ItemID WHERE Items.GENRES IN ($GENRES)", {"GENRES": ["SciFi"]}, "u1", ["i1", "i2", "i3", "i4"]),
        ("EXCLUDE ItemID WHERE Items.GENRES IN ($GENRES)", None, "u1", ["i1", "i2", "i3", "i4", "i5"]),  # not given
        (
            'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")'
            ' | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
            None,
            "u1",
            ["i2"],
        ),
        (
            'INCLUDE ItemID WHERE Items.GENRES IN ("Horror") | INCLUDE ItemID WHERE Items.PRICE < 20',
            None,
            "u1",
            ["i1", "i3"],
        ),
        ('INCLUDE ItemID WHERE Items.GENRES NOT IN ("Comedy") AND Items.PRICE <= 60', None, "u1", ["i3"]),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("Horror") OR Items.PRICE = 10', None, "u1", ["i1", "i3"]),
        (
            'INCLUDE ItemID WHERE Items.GENRES NOT IN ("Comedy") AND (Items.PRICE < 60 OR Items.PRICE > 160)',
            None,
            "u1",
            ["i3"],
        ),
        ('INCLUDE ItemID WHERE Items.GENRES != "Comedy"', None, "u1", ["i3", "i4", "i5"]),  # no value differs
        (
            'INCLUDE ItemID WHERE Items.GENRES IN ($G) IF CurrentUser.AGE_GROUP = "25-34"',
            {"G": '"Horror"'},
            "u1",
            ["i3"],
        ),
        (  # the IF does not hold for u2: the expression does not apply
            'INCLUDE ItemID WHERE Items.GENRES IN ($G) IF CurrentUser.AGE_GROUP = "25-34"',
            {"G": '"Horror"'},
            "u2",
            ["i1", "i2", "i3", "i4", "i5"],
        ),
        ('include itemid where items.price >= 150 if currentuser.membership in ("silver")', None, "u2", ["i2", "i4"]),
    ],
)
def test_semantics(shop, expression, values, user, expected):
    assert allowed(shop, expression, values, user) == expected


def test_current_item_and_user_segments(shop):
    related = "INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRES IN CurrentItem.GENRES"
    assert allowed(shop, related, current_item=shop.item_index["i2"]) == ["i1"]  # cheaper, shares a genre
    with pytest.raises(ValueError, match="related-items"):
        allowed(shop, related)
    segment = Filter.parse('EXCLUDE UserID WHERE Users.MEMBERSHIP IN ("gold")', shop).bind()
    assert shop.user_ids[segment.user_mask(shop)].tolist() == ["u2"]
    buyers = Filter.parse('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("PURCHASE")', shop).bind()
    assert buyers.user_mask(shop).all()
    with pytest.raises(ValueError, match="use item_mask"):
        Filter.parse("INCLUDE ItemID WHERE Items.PRICE > 1", shop).bind().user_mask(shop)


def test_timestamps_compare_as_unix_seconds(shop):
    items = shop.item_metadata.assign(
        CREATION_TIMESTAMP=pd.to_datetime(shop.item_metadata["CREATION_TIMESTAMP"], unit="s")
    )
    dated = InteractionData.from_frames(shop.to_frame(), items=items)
    assert allowed(dated, "INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > 1700000000") == ["i2", "i3", "i5"]


def test_interactions_read_the_most_recent_events_per_type(shop):
    frame = pd.DataFrame({"USER_ID": "u", "ITEM_ID": [f"i{k}" for k in range(5)], "TIMESTAMP": range(5)})
    data = InteractionData.from_frames(frame.assign(EVENT_TYPE="click"))
    expression = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'
    recent = Filter.parse(expression, data, interaction_limit=2).bind()
    assert data.item_ids[recent.item_mask(data, 0)].tolist() == ["i3", "i4"]
    assert Filter.parse(expression, data).bind().item_mask(data, 0).all()  # Personalize's 100 by default


def test_live_events_join_the_snapshot_in_interactions_conditions(shop):
    bought = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")'
    live = [("i5", "Purchase", 10.0), ("i3", "click", 11.0), ("not-in-catalog", "purchase", 12.0)]
    assert allowed(shop, bought) == ["i2"]
    assert allowed(shop, bought, live=live) == ["i2", "i5"]  # types match ignoring case; unknown items drop
    assert allowed(shop, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', live=live) == ["i4"]
    assert allowed(shop, bought, user="stranger", live=live[:1]) == ["i5"]  # a user only PutEvents knows
    assert allowed(shop, bought, user="stranger") == []


def test_live_events_count_in_the_most_recent_events_per_type():
    frame = pd.DataFrame({"USER_ID": "u", "ITEM_ID": [f"i{k}" for k in range(5)], "TIMESTAMP": range(5)})
    data = InteractionData.from_frames(frame.assign(EVENT_TYPE="click"))
    recent = Filter.parse('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")', data, interaction_limit=2)
    mask = recent.bind().item_mask(data, 0, live=[("i0", "click", 10.0), ("i1", "view", 11.0)])
    assert data.item_ids[mask].tolist() == ["i0", "i4"]  # the live click is the newest; the view is another type


def test_expressions_print_canonically_and_filters_pickle(shop):
    text = 'include ItemID where items.genres in ("a \\"b\\"", $G) or Items.PRICE<=50 | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'  # noqa: E501
    parsed = Filter.parse(text, shop)
    assert " | ".join(map(str, parsed.expressions)) == (
        'INCLUDE ItemID WHERE Items.GENRES IN ("a \\"b\\"", $G) OR Items.PRICE <= 50'
        ' | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'
    )
    assert Filter.parse(str(parsed.expressions[0]), shop).expressions[0] == parsed.expressions[0]
    bound = parsed.bind({"G": '"x"'})
    assert parsed.bind({"G": ["x"]}) is bound  # cached per values
    assert shop.item_ids[bound.item_mask(shop, shop.user_index["u2"])].tolist() == ["i3"]  # u2 saw i1
    clone = pickle.loads(pickle.dumps(parsed))
    assert clone.bind({"G": '"x"'}).item_mask(shop, 0).tolist() == bound.item_mask(shop, 0).tolist()


@pytest.mark.parametrize(
    ("expression", "column", "reason"),
    [
        ('INCLUDE ItemID WHERE Items.GENRE IN ("Comedy")', 28, "Items has no field 'GENRE'"),
        ('INCLUDE ItemID WHERE Products.GENRES IN ("Comedy")', 22, "unknown dataset 'Products'"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("Comedy"', 47, "expected ) to close the list"),
        ("INCLUDE ItemID WHERE Items.GENRES IN ('Comedy')", 39, "double quotes"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("Comedy)', 39, "unterminated string"),
        ('INCLUDE ItemID Items.GENRES IN ("Comedy")', 16, "expected WHERE after ItemID"),
        ('KEEP ItemID WHERE Items.GENRES IN ("a")', 1, "starts with INCLUDE or EXCLUDE"),
        ('INCLUDE ActionID WHERE Items.GENRES IN ("a")', 9, "ActionID"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") AND Interactions.EVENT_TYPE IN ("click")', 48, "chain another"),
        ('INCLUDE ItemID WHERE Items.PRICE > "cheap"', 36, "expected a number"),
        ("INCLUDE ItemID WHERE Items.GENRES IN (5)", 39, "quote the value"),
        ("INCLUDE ItemID WHERE Items.PRICE IN (5)", 22, "compare it with ="),
        ('INCLUDE ItemID WHERE Items.GENRES > "a"', 22, "compares numbers"),
        ("EXCLUDE ItemID WHERE Items.GENRES NOT IN ($G)", 43, "NOT IN takes no placeholder"),
        ('INCLUDE ItemID WHERE Users.MEMBERSHIP IN ("gold")', 22, "IF CurrentUser"),
        ('INCLUDE ItemID WHERE CurrentUser.MEMBERSHIP IN ("gold")', 22, "final IF"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") IF Items.PRICE > 1', 47, "tests CurrentUser"),
        (
            'INCLUDE ItemID WHERE Items.GENRES IN ("a") IF CurrentUser.AGE_GROUP = "x" OR CurrentUser.MEMBERSHIP = "y"',
            75,
            "AND only",
        ),
        ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ("click")', 22, "takes IN"),
        ("INCLUDE ItemID WHERE Interactions.TIMESTAMP > 5", 22, "EVENT_TYPE only"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") | EXCLUDE UserID WHERE Users.MEMBERSHIP IN ("g")', 46, "one kind"),
        ('EXCLUDE UserID WHERE Users.MEMBERSHIP IN ("g") IF CurrentUser.AGE_GROUP = "x"', 48, "item filters only"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") extra', 44, "joined with |"),
        ("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.GENRES", 36, "not both numeric"),
        ('INCLUDE ItemID WHERE Items.GENRES IN ("a") ; DROP TABLE items', 44, "unexpected character ';'"),
        ("", 1, "empty"),
    ],
)
def test_errors_say_where_and_why(shop, expression, column, reason):
    with pytest.raises(FilterExpressionError) as error:
        Filter.parse(expression, shop)
    assert error.value.position + 1 == column and reason in error.value.reason
    assert f"column {column}:" in str(error.value) and str(error.value).endswith(" " * (column - 1) + "^")


def test_mangled_expressions_fail_cleanly_or_work(shop):
    """Valid expressions with tokens dropped, repeated or swapped: a FilterExpressionError or a working filter."""
    rng = np.random.default_rng(7)
    valid = [
        'INCLUDE ItemID WHERE Items.GENRES IN ($G) AND Items.PRICE < 5 IF CurrentUser.AGE_GROUP = "x"',
        'INCLUDE ItemID WHERE Items.GENRES IN ("a") | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
        "INCLUDE ItemID WHERE (Items.PRICE < CurrentItem.PRICE OR Items.PRICE > 9)"
        " AND Items.GENRES IN CurrentItem.GENRES",
    ]
    worked = 0
    for _ in range(600):
        tokens = [t.text for t in tokenize(valid[rng.integers(len(valid))]) if t.text]
        for _ in range(rng.integers(1, 3)):
            i, j, how = rng.integers(len(tokens)), rng.integers(len(tokens)), rng.integers(3)
            if how == 0:
                del tokens[i]
            elif how == 1:
                tokens.insert(i, tokens[j])
            else:
                tokens[i], tokens[j] = tokens[j], tokens[i]
        text = " ".join(tokens)
        try:
            parsed = Filter.parse(text, shop)
        except FilterExpressionError as error:
            assert 0 <= error.position <= len(text)
            continue
        bound = parsed.bind({name: '"a"' for name in parsed.placeholders})
        mask = bound.item_mask(shop, 0, 0) if parsed.target == "ItemID" else bound.user_mask(shop)
        assert mask.dtype == bool
        worked += 1
    assert worked > 0


def test_deep_nesting_is_refused(shop):
    with pytest.raises(FilterExpressionError, match="nest deeper"):
        Filter.parse("INCLUDE ItemID WHERE " + "(" * 600 + 'Items.GENRES IN ("a")' + ")" * 600, shop)


def test_schema_from_dataset_group_settings():
    group = PersonalizeGroup.model_validate(yaml.safe_load(INTERACTIONS_SETTINGS.format()))
    assert Filter.parse('INCLUDE ItemID WHERE Items.GENRES IN ($G) IF CurrentUser.AGE_GROUP = "25-34"', group)
    with pytest.raises(FilterExpressionError, match="textual field"):
        Filter.parse('INCLUDE ItemID WHERE Items.DESCRIPTION IN ("x")', group)
    with pytest.raises(FilterExpressionError, match="no USERS dataset"):
        Filter.parse(
            'INCLUDE ItemID WHERE Items.GENRES IN ("a") IF CurrentUser.AGE = 3',
            {"INTERACTIONS": [], "Items": ["GENRES"]},
        )
    fields = {"Interactions": {"fields": [{"name": "EVENT_TYPE", "type": ["null", "string"]}]}}
    assert Filter.parse('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("buy")', fields)


HOSTILE = [
    ") OR 1=1 --",
    '"Comedy") OR Items.PRICE > 0 OR ("x"',
    '"Comedy" | INCLUDE ItemID WHERE Items.PRICE > 0',
    '"Comedy",',
    "Comedy",
    "$OTHER",
    '"a"' + ',"a"' * 1000,  # too long
    ["ok", 5],
    {"nested": "dict"},
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filter_values_are_rejected(shop, value):
    parsed = Filter.parse("EXCLUDE ItemID WHERE Items.GENRES IN ($GENRES)", shop)
    with pytest.raises(FilterValuesError, match="GENRES"):
        parsed.bind({"GENRES": value})


def test_quoted_hostile_values_stay_literal_text(shop):
    parsed = Filter.parse(
        "INCLUDE ItemID WHERE Items.GENRES IN ($GENRES) | EXCLUDE ItemID WHERE Items.PRICE > 100", shop
    )
    sneaky = '"\\") OR Items.PRICE > 0 OR (\\"", "Comedy\\" | EXCLUDE ItemID WHERE Items.PRICE < 0"'
    bound = parsed.bind({"GENRES": sneaky})
    assert bound.values["GENRES"] == ('") OR Items.PRICE > 0 OR ("', 'Comedy" | EXCLUDE ItemID WHERE Items.PRICE < 0')
    assert [type(e.where).__name__ for e in bound.expressions] == ["Condition", "Condition"]  # the same shape
    assert str(bound) == (
        'INCLUDE ItemID WHERE Items.GENRES IN ("\\") OR Items.PRICE > 0 OR (\\"", '
        '"Comedy\\" | EXCLUDE ItemID WHERE Items.PRICE < 0") | EXCLUDE ItemID WHERE Items.PRICE > 100'
    )
    assert not bound.item_mask(shop, 0).any()  # no genre is called that
    for bad in ({"$GENRES": '"a"'}, {"GENRES) OR (1": '"a"'}, {"OTHER": '"a"'}, {f"K{i}": '"a"' for i in range(26)}):
        with pytest.raises(FilterValuesError):
            parsed.bind(bad)
    with pytest.raises(FilterValuesError, match="INCLUDE expression needs"):
        parsed.bind({})
    numeric = Filter.parse("INCLUDE ItemID WHERE Items.PRICE < $MAX", shop)
    assert numeric.bind({"MAX": '"60"'}).item_mask(shop, 0).sum() == 2 and numeric.bind({"MAX": "60"})
    for bad in ('"60 OR 1=1"', '"nan"', '"1", "2"'):
        with pytest.raises(FilterValuesError):
            numeric.bind({"MAX": bad})


def test_filtered_recommendations_equal_filtering_the_full_ranking(groups_data):
    model = get_recipe("sims").fit(groups_data)
    filters = [
        Filter.parse('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")', groups_data).bind(),
        Filter.parse('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")', groups_data).bind(),
    ]
    for user in ("a_u000", "b_u005", "stranger"):
        index = groups_data.user_index.get(user)
        full = model.recommend(user, n=500, exclude_seen=False)
        for bound in filters:
            mask = bound.item_mask(groups_data, index)
            expected = [pair for pair in full if mask[groups_data.item_index[pair[0]]]][:5]
            assert recommend_filtered(model, bound, groups_data, user, n=5, exclude_seen=False) == expected
    with pytest.raises(FilterExpressionError, match="no ITEMS dataset"):  # these data have no item metadata
        Filter.parse('EXCLUDE ItemID WHERE Items.GENRES IN ("x")', groups_data)


def test_both_ways_of_filtering_agree_and_fill_from_what_passes():
    rng = np.random.default_rng(0)
    n_items = 2_000
    items = pd.DataFrame({"ITEM_ID": [f"i{k}" for k in range(n_items)], "GENRES": rng.choice(["a", "b", "c"], n_items)})
    items.loc[:4, "GENRES"] = "rare"
    frame = pd.DataFrame(
        {
            "USER_ID": rng.integers(0, 300, 6_000).astype(str),
            "ITEM_ID": "i" + pd.Series(rng.zipf(1.3, 6_000) % n_items).astype(str),
            "TIMESTAMP": np.arange(6_000),
        }
    )
    data = InteractionData.from_frames(frame, items=items)
    model = get_recipe("popularity-count").fit(data)
    rare = Filter.parse('INCLUDE ItemID WHERE Items.GENRES IN ("rare")', data).bind()  # 5 of 2,000: straight to exact
    common = Filter.parse('EXCLUDE ItemID WHERE Items.GENRES IN ("a")', data).bind()  # ~2/3 pass: over-fetch
    user = data.user_index["0"]
    for bound, n in ((rare, 10), (common, 25)):
        mask = bound.item_mask(data, user)
        full = model.recommend("0", n=500)
        expected = [pair for pair in full if mask[data.item_index[pair[0]]]]
        got = recommend_filtered(model, bound, data, "0", n=n)
        assert all(mask[data.item_index[item]] for item, _ in got)
        if bound is common:
            assert got == expected[:n]
    seen = set(data.item_ids[data.user_item[user].indices])
    unseen_rare = [f"i{k}" for k in range(5) if f"i{k}" not in seen]
    assert [item for item, _ in recommend_filtered(model, rare, data, "0", n=10)] == unseen_rare  # all there is
    calls = []

    def counting(k, exclude):
        calls.append((k, len(exclude)))
        return model.recommend("0", n=k, exclude=exclude)

    apply_filter(counting, common, data, n=25, user_id="0")
    assert calls[0][0] < 100 and calls[0][1] == 0  # about 2n candidates at a 2/3 pass rate, nothing excluded


def test_related_items_with_current_item(groups_data):
    items = pd.DataFrame({"ITEM_ID": groups_data.item_ids, "PRICE": np.arange(groups_data.n_items, dtype=float)})
    data = InteractionData.from_frames(groups_data.to_frame(), items=items)
    model = get_recipe("sims").fit(data)
    cheaper = Filter.parse("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE", data).bind()
    related = related_items_filtered(model, cheaper, data, "a_i10", n=5)
    assert related and all(data.item_index[i] < data.item_index["a_i10"] for i, _ in related)


def test_filtering_a_25_item_request_over_10k_items_is_fast():
    rng = np.random.default_rng(1)
    n_items, n_events = 10_000, 100_000
    genres = np.array(["Action", "Comedy", "Drama", "Horror", "SciFi"], dtype=object)
    items = pd.DataFrame(
        {
            "ITEM_ID": [f"i{k}" for k in range(n_items)],
            "GENRES": [list(genres[rng.choice(5, 2, replace=False)]) for _ in range(n_items)],
            "PRICE": rng.uniform(1, 100, n_items),
        }
    )
    frame = pd.DataFrame(
        {
            "USER_ID": rng.integers(0, 2_000, n_events).astype(str),
            "ITEM_ID": "i" + pd.Series(rng.integers(0, n_items, n_events)).astype(str),
            "TIMESTAMP": np.arange(n_events),
            "EVENT_TYPE": rng.choice(["click", "purchase"], n_events),
        }
    )
    data = InteractionData.from_frames(frame, items=items)
    model = get_recipe("popularity-count").fit(data)
    parsed = Filter.parse(
        "INCLUDE ItemID WHERE Items.GENRES IN ($G) AND Items.PRICE < 50"
        ' | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
        data,
    )
    users = [str(u) for u in range(200)]
    recommend_filtered(model, parsed.bind({"G": '"Comedy"'}), data, users[0])  # builds the columns once
    start = time.perf_counter()
    for user in users:
        recs = recommend_filtered(model, parsed.bind({"G": '"Comedy"'}), data, user, n=25)
        assert len(recs) == 25
    per_request = (time.perf_counter() - start) / len(users)
    assert per_request < 0.02, f"{1000 * per_request:.2f} ms per filtered request"
