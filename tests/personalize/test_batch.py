"""Batch inference: Personalize's JSON Lines shapes in and out, bad lines as error entries, atomic output."""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import tracemalloc

import pandas as pd
import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.batch import add_arguments, batch_infer, recommend_all_users, related_items_all, run

from .conftest import two_groups


@pytest.fixture(scope="module")
def shop() -> InteractionData:
    """The two taste groups, with a GENRE per item: 'A' for group a's items, 'B' for group b's."""
    interactions = two_groups()
    items = pd.DataFrame({"ITEM_ID": sorted(interactions["ITEM_ID"].unique())})
    items["GENRE"] = items["ITEM_ID"].str[0].str.upper()
    return InteractionData.from_frames(interactions, items)


@pytest.fixture(scope="module")
def sims(shop):
    return get_recipe("sims").fit(shop)


def write_lines(path, lines) -> str:
    path.write_bytes(
        b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)
    )
    return str(path)


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_each_request_shape_gets_personalizes_output(tmp_path, sims):
    source = write_lines(
        tmp_path / "in.jsonl",
        [{"userId": "a_u001"}, {"itemId": "a_i03"}, {"userId": "a_u001", "itemList": ["b_i01", "a_i05", "a_i09"]}],
    )
    summary = batch_infer(sims, source, tmp_path / "out.jsonl", num_results=7, progress=False)
    out = read_lines(tmp_path / "out.jsonl")
    assert [line["input"] for line in out] == [
        {"userId": "a_u001"},
        {"itemId": "a_i03"},
        {"userId": "a_u001", "itemList": ["b_i01", "a_i05", "a_i09"]},
    ]
    assert all(line["error"] is None for line in out)
    expected = [
        sims.recommend("a_u001", n=7, exclude_seen=False),  # the recipe's setting, as over HTTP
        sims.related_items("a_i03", n=7),
        sims.rank("a_u001", ["b_i01", "a_i05", "a_i09"]),
    ]
    for line, pairs in zip(out, expected, strict=True):
        assert line["output"] == {"recommendedItems": [i for i, _ in pairs], "scores": [s for _, s in pairs]}
    assert len(out[0]["output"]["recommendedItems"]) == 7
    assert summary["lines"] == summary["succeeded"] == 3 and summary["failed"] == 0
    assert summary["requests"] == {"recommendations": 1, "related_items": 1, "ranking": 1}


BAD_LINES = [
    (b"not json", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "expected a JSON object, got an array"),
    (b'{"userid": "a_u001"}', "unknown key(s) ['userid']"),
    (b'{"userId": "a_u001", "itemId": "a_i01"}', "not both"),
    (b'{"filterValues": {}}', "needs userId"),
    (b'{"itemId": "a_i01", "itemList": ["a_i02"]}', "itemList (personalized ranking) needs a userId"),
    (b'{"userId": "a_u001", "itemList": []}', "non-empty list"),
    (b'{"userId": true}', "userId must be a string"),
    (b'{"userId": ""}', "userId is empty"),
    (b'{"userId": {"id": 1}}', "userId must be a string (or an integer), got an object"),
    (b'{"userId": "a_u001", "itemList": ["a_i01", null]}', "itemList[1] must be a string"),
    (b'{"userId": "a_u001", "filterValues": {"G": "\\"A\\""}}', "the job has no filter"),
]


def test_bad_lines_become_numbered_error_entries_and_the_job_goes_on(tmp_path, sims):
    too_long = json.dumps({"userId": "a_u001", "itemList": [f"a_i{k}" for k in range(501)]}).encode()
    lines = [b'{"userId": "a_u002"}', b"   ", *(line for line, _ in BAD_LINES), too_long, b'{"itemId": 7}']
    summary = batch_infer(sims, write_lines(tmp_path / "in.jsonl", lines), tmp_path / "out.jsonl", progress=False)
    out = read_lines(tmp_path / "out.jsonl")
    assert len(out) == len(lines) - 1  # the blank line is skipped, not answered
    assert out[0]["error"] is None and out[-1]["error"] is None  # good lines around bad ones are answered
    assert out[-1]["input"] == {"itemId": 7}  # echoed as given; answered with the id as text
    for k, (_, reason) in enumerate(BAD_LINES):
        line_number = k + 3
        entry = out[k + 1]
        assert entry["output"] is None
        assert entry["error"].startswith(f"line {line_number}: ") and reason in entry["error"], entry
    assert "itemList has 501 items; at most 500" in out[-2]["error"]
    assert summary["failed"] == len(BAD_LINES) + 1
    assert summary["succeeded"] == 2 and summary["blank_lines"] == 1
    assert summary["lines"] == summary["failed"] + summary["succeeded"]
    assert summary["first_errors"][0].startswith("line 3: not JSON")


def test_a_recipe_without_related_items_answers_with_an_error_entry(tmp_path, shop):
    popular = get_recipe("popularity-count").fit(shop)
    source = write_lines(tmp_path / "in.jsonl", [{"itemId": "a_i01"}, {"userId": "a_u001"}])
    summary = batch_infer(popular, source, tmp_path / "out.jsonl", progress=False)
    first, second = read_lines(tmp_path / "out.jsonl")
    assert first["error"] == "line 1: recipe 'popularity-count' does not recommend related items; use 'sims'"
    assert second["output"]["recommendedItems"] == [i for i, _ in popular.recommend("a_u001", exclude_seen=False)]
    assert summary["failed"] == summary["succeeded"] == 1


def test_fallbacks_are_said_in_the_output(tmp_path, sims):
    source = write_lines(
        tmp_path / "in.jsonl",
        [{"userId": "stranger"}, {"itemId": "new_item"}, {"userId": "a_u001", "itemList": ["a_i01", "ghost"]}],
    )
    summary = batch_infer(sims, source, tmp_path / "out.jsonl", num_results=5, progress=False)
    user, item, ranking = read_lines(tmp_path / "out.jsonl")
    assert "userId unknown" in user["output"]["fallback"]
    assert user["output"]["recommendedItems"] == [i for i, _ in sims.recommend("stranger", n=5)]
    assert "itemId unknown" in item["output"]["fallback"]
    assert ranking["output"]["recommendedItems"][-1] == "ghost"
    assert ranking["output"]["fallback"] == "1 listed item(s) unknown to the model, ranked last"
    assert summary["fallbacks"] == 3


def test_filter_values_restrict_each_request(tmp_path, sims, shop):
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            {"userId": "a_u001", "filterValues": {"GENRE": '"B"'}},
            {"userId": "a_u001", "filterValues": {"GENRE": '"A"'}},
            {"itemId": "a_i03", "filterValues": {"GENRE": '"B"'}},
            {"userId": "a_u001", "itemList": ["a_i05", "b_i01", "a_i09"], "filterValues": {"GENRE": '"A"'}},
            {"userId": "a_u001"},
            {"userId": "a_u001", "filterValues": {"OTHER": '"A"'}},
        ],
    )
    expression = "INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)"
    summary = batch_infer(sims, source, tmp_path / "out.jsonl", 5, expression, progress=False, data=shop)
    b_only, a_only, related, ranked, missing, unknown = read_lines(tmp_path / "out.jsonl")
    assert len(b_only["output"]["recommendedItems"]) == 5
    assert all(i.startswith("b_") for i in b_only["output"]["recommendedItems"])
    assert all(i.startswith("a_") for i in a_only["output"]["recommendedItems"])
    assert all(i.startswith("b_") for i in related["output"]["recommendedItems"])
    assert ranked["output"]["recommendedItems"] == [i for i, _ in sims.rank("a_u001", ["a_i05", "a_i09"])]
    assert "lacks 'GENRE'" in missing["error"] and missing["error"].startswith("line 5: ")
    assert "names 'OTHER'" in unknown["error"]
    assert summary["filter"] == expression and summary["failed"] == 2


def test_job_level_mistakes_raise_before_anything_is_written(tmp_path, sims, shop):
    source = write_lines(tmp_path / "in.jsonl", [{"userId": "a_u001"}])
    target = tmp_path / "out.jsonl"
    for bad in (0, 501, 2.5):
        with pytest.raises(ValueError, match="numResults must be an integer between 1 and 500"):
            batch_infer(sims, source, target, num_results=bad, progress=False)
    with pytest.raises(ValueError, match="column 9"):
        batch_infer(sims, source, target, filter_expression="INCLUDE ItemIDX WHERE", progress=False, data=shop)
    with pytest.raises(ValueError, match="pass data="):
        batch_infer(sims, source, target, filter_expression='INCLUDE ItemID WHERE Items.GENRE IN ("A")')
    with pytest.raises(FileNotFoundError, match="does not exist"):
        batch_infer(sims, tmp_path / "missing.jsonl", target, progress=False)
    with pytest.raises(ValueError, match="not trained"):
        batch_infer(get_recipe("sims"), source, target, progress=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "in.jsonl"]


def test_output_is_replaced_whole_or_not_at_all(tmp_path, sims):
    target = tmp_path / "out" / "recs.jsonl"
    recommend_all_users(sims, ["a_u001", "b_u002"], target, num_results=3, progress=False)
    before = target.read_bytes()

    def users_then_failure():
        yield "a_u003"
        raise RuntimeError("the source of user ids broke")

    with pytest.raises(RuntimeError, match="broke"):
        recommend_all_users(sims, users_then_failure(), target, progress=False)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["recs.jsonl"]  # no temporary file left behind


def test_every_user_and_every_item_share_the_output_shape(tmp_path, sims, shop):
    users = recommend_all_users(sims, shop.user_ids, tmp_path / "users.jsonl", num_results=4, progress=False)
    items = related_items_all(sims, shop.item_ids, tmp_path / "items.jsonl", num_results=4, progress=False)
    by_user = read_lines(tmp_path / "users.jsonl")
    by_item = read_lines(tmp_path / "items.jsonl")
    assert [line["input"] for line in by_user] == [{"userId": u} for u in shop.user_ids]
    assert [line["input"] for line in by_item] == [{"itemId": i} for i in shop.item_ids]
    assert by_user[5]["output"]["recommendedItems"] == [
        i for i, _ in sims.recommend(shop.user_ids[5], n=4, exclude_seen=False)
    ]
    assert by_item[2]["output"]["recommendedItems"] == [i for i, _ in sims.related_items(shop.item_ids[2], n=4)]
    assert users["succeeded"] == shop.n_users and users["requests"]["recommendations"] == shop.n_users
    assert items["succeeded"] == shop.n_items and items["failed"] == 0


def test_compressed_input_streams_without_holding_the_file(tmp_path, sims):
    lines = 3000
    with gzip.open(tmp_path / "in.jsonl.gz", "wt") as handle:
        for k in range(lines):
            handle.write(json.dumps({"userId": f"a_u{k % 40:03d}"}) + "\n")
    tracemalloc.start()
    try:
        summary = batch_infer(sims, tmp_path / "in.jsonl.gz", tmp_path / "out.jsonl", progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary["succeeded"] == lines
    written = (tmp_path / "out.jsonl").stat().st_size
    assert written > 1_000_000 and peak < written / 4  # output is not gathered in memory


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(argv))


def test_cli_runs_a_pickled_model_and_prints_the_summary(tmp_path, sims, capsys):
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(sims))
    source = write_lines(tmp_path / "in.jsonl", [{"userId": "a_u001"}, b"oops"])
    code = cli(["--model", str(model), "--input", source, "--output", str(tmp_path / "o.jsonl"), "--num-results", "3"])
    captured = capsys.readouterr()
    assert code == 0
    assert json.loads(captured.out)["succeeded"] == 1
    assert "1 of 2 line(s) failed" in captured.err
    assert len(read_lines(tmp_path / "o.jsonl")[0]["output"]["recommendedItems"]) == 3


def test_cli_uses_the_groups_champion(tmp_path, sims, monkeypatch, capsys):
    from pipelines.training import pyfunc as models

    asked = []
    monkeypatch.setattr(models, "load_champion", lambda kind, group: asked.append((kind, group)) or ("4", sims))
    source = write_lines(tmp_path / "in.jsonl", [{"itemId": "a_i01"}])
    assert cli(["--group", "shop", "--input", source, "--output", str(tmp_path / "o.jsonl"), "--no-progress"]) == 0
    assert asked == [("personalize", "shop")]
    assert json.loads(capsys.readouterr().out)["model"] == "personalize.shop version 4"

    monkeypatch.setattr(models, "load_champion", lambda kind, group: None)
    assert cli(["--group", "shop", "--input", source, "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "has no champion model yet" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-results", "0"], "--num-results must be between 1 and 500"),
        (["--num-results", "501"], "--num-results must be between 1 and 500"),
        ([], "give either --group"),
        (["--model", "m.pkl", "--group", "g"], "give either --group"),
        (["--model", "m.pkl", "--model-version", "3"], "--model-version needs --group"),
    ],
)
def test_cli_argument_mistakes_exit_2_with_a_message(argv, message, capsys):
    assert cli(["--input", "in.jsonl", "--output", "out.jsonl", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_filter_needs_a_snapshot(tmp_path, sims, capsys):
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(sims))
    argv = ["--model", str(model), "--input", "in.jsonl", "--output", "o.jsonl", "--filter", "EXCLUDE ItemID WHERE"]
    assert cli(argv) == 2
    assert "--snapshot" in capsys.readouterr().err


def test_cli_filter_reads_the_snapshot(tmp_path, sims, capsys):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    interactions = two_groups()
    interactions.to_parquet(snapshot / "INTERACTIONS.parquet")
    items = pd.DataFrame({"ITEM_ID": sorted(interactions["ITEM_ID"].unique())})
    items.assign(GENRE=items["ITEM_ID"].str[0].str.upper()).to_parquet(snapshot / "ITEMS.parquet")
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(sims))
    source = write_lines(tmp_path / "in.jsonl", [{"userId": "a_u001", "filterValues": {"G": '"B"'}}])
    argv = ["--model", str(model), "--input", source, "--output", str(tmp_path / "o.jsonl"), "--num-results", "4"]
    argv += ["--filter", "INCLUDE ItemID WHERE Items.GENRE IN ($G)", "--snapshot", str(snapshot)]
    assert cli(argv) == 0
    (line,) = read_lines(tmp_path / "o.jsonl")
    assert len(line["output"]["recommendedItems"]) == 4
    assert all(i.startswith("b_") for i in line["output"]["recommendedItems"])
    assert json.loads(capsys.readouterr().out)["filter"] == "INCLUDE ItemID WHERE Items.GENRE IN ($G)"


def test_batch_recommendations_follow_the_recipes_seen_items_setting(tmp_path, shop):
    seen = set(shop.to_frame().query("USER_ID == 'a_u001'")["ITEM_ID"])
    for setting in (False, True):
        model = get_recipe("sims", exclude_seen_items=setting).fit(shop)
        recommend_all_users(model, ["a_u001"], tmp_path / f"{setting}.jsonl", num_results=30, progress=False)
        written = read_lines(tmp_path / f"{setting}.jsonl")[0]["output"]["recommendedItems"]
        assert written == [i for i, _ in model.recommend("a_u001", n=30, exclude_seen=setting)]  # what HTTP serves
        assert bool(seen & set(written)) is not setting  # seen items come back unless the setting drops them
        source = write_lines(tmp_path / f"in-{setting}.jsonl", [{"userId": "a_u001"}])
        batch_infer(model, source, tmp_path / f"out-{setting}.jsonl", 30, 'EXCLUDE ItemID WHERE Items.GENRE IN ("B")',
                    progress=False, data=shop)  # fmt: skip
        filtered = read_lines(tmp_path / f"out-{setting}.jsonl")[0]["output"]["recommendedItems"]
        assert filtered == [i for i in written if i.startswith("a_")][: len(filtered)] and filtered
