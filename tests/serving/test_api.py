"""The serving API end to end on a small generated world: recommendations, events, filters, forecasts."""

from __future__ import annotations

import io
import json
import logging

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.serving.app import create_app
from pipelines.serving.events import export_events
from pipelines.serving.observability import configure_logging
from pipelines.serving.store import Store
from tests.serving.conftest import forecast_frame, publish_forecast, recommend


def items_of(answer: dict) -> list[str]:
    return [entry["itemId"] for entry in answer["itemList"]]


def test_health_needs_no_key_and_reports_what_serves(client, world):
    answer = client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["models"]["shop"]["version"] == world.version and body["models"]["shop"]["filters_data"] is True
    assert body["forecasts"]["sales"] == {"status": "ok", "as_of": "2024-02-29T00:00:00", "series": 8, "error": None}


def test_recommendations_follow_the_users_history(client, world):
    answer = recommend(client, world, "a_u001", numResults=10)
    assert len(answer["itemList"]) == 10 and answer["recommendationId"].startswith("RID-")
    assert all(item.startswith("a_") for item in items_of(answer))
    assert all(isinstance(entry["score"], float) for entry in answer["itemList"])
    related = recommend(client, world, None, itemId="b_i03", numResults=5)
    assert all(item.startswith("b_") for item in items_of(related)) and "b_i03" not in items_of(related)


def test_an_unknown_user_gets_popular_items(client, world):
    answer = recommend(client, world, "nobody-ever", numResults=5)
    assert all(item.startswith("b_") for item in items_of(answer))  # group b is larger, so more popular


def test_put_events_changes_the_very_next_recommendations(client, world, runtime):
    before = items_of(recommend(client, world, "newcomer", numResults=10))
    assert before == items_of(recommend(client, world, "another-stranger", numResults=10))  # popular items
    event = {"eventType": "click", "itemId": "a_i02", "sentAt": 1_800_000_000}
    stored = client.post("/events", json={"trackingId": "shop", "userId": "newcomer", "sessionId": "s1",
                                          "eventList": [event, {**event, "itemId": "a_i05"}]},
                         headers=world.headers("writer"))  # fmt: skip
    assert stored.status_code == 200, stored.text
    assert stored.json()["eventsStored"] == 2
    after = items_of(recommend(client, world, "newcomer", numResults=10))
    assert after != before and "a_i02" not in after and "a_i05" not in after
    assert sum(item.startswith("a_") for item in after) >= 8  # the clicks pulled in their neighbours
    assert runtime.store.count_events("shop") >= 2


def test_new_items_and_anonymous_sessions_become_known(client, world, runtime):
    event = {"eventType": "click", "itemId": "brand-new-item", "sentAt": "2027-01-15T10:00:00Z"}
    answer = client.post("/events", json={"trackingId": "shop", "sessionId": "anon-7", "eventList": [event]},
                         headers=world.headers("writer"))  # fmt: skip
    assert answer.status_code == 200, answer.text
    model = runtime.models["shop"].state.model
    assert "brand-new-item" in model.item_index_
    ranking = client.post("/personalize-ranking", json={"campaignArn": "shop", "userId": "anon-7",
                                                         "inputList": ["brand-new-item", "never-seen", "a_i00"]},
                          headers=world.headers("reader")).json()["personalizedRanking"]  # fmt: skip
    assert [r["itemId"] for r in ranking][-1] == "never-seen"  # unknown to the model: last


def test_ranking_puts_the_users_taste_first(client, world):
    answer = client.post("/personalize-ranking", json={"campaignArn": "shop", "userId": "a_u002",
                                                        "inputList": ["b_i00", "a_i01", "b_i01", "a_i00"]},
                         headers=world.headers("reader"))  # fmt: skip
    assert answer.status_code == 200, answer.text
    order = [r["itemId"] for r in answer.json()["personalizedRanking"]]
    assert sorted(order) == ["a_i00", "a_i01", "b_i00", "b_i01"]
    assert all(item.startswith("a_") for item in order[:2])


def test_filters_are_created_checked_applied_and_deleted(client, world):
    admin, reader = world.headers("admin"), world.headers("reader")
    body = {"name": "by-genre", "datasetGroup": "shop", "filterExpression": "INCLUDE ItemID WHERE Items.GENRE IN ($G)"}
    assert client.post("/filters", json=body, headers=reader).status_code == 403
    created = client.post("/filters", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert client.post("/filters", json=body, headers=admin).status_code == 409
    listed = client.get("/filters", params={"datasetGroup": "shop"}, headers=reader).json()["filters"]
    assert [f["name"] for f in listed] == ["by-genre"]

    answer = recommend(client, world, "a_u003", numResults=8, filterArn="filter/by-genre", filterValues={"G": '"b"'})
    assert len(answer["itemList"]) == 8 and all(item.startswith("b_") for item in items_of(answer))
    missing = client.post("/recommendations", json={"campaignArn": "shop", "userId": "a_u003",
                                                     "filterArn": "by-genre"}, headers=reader)  # fmt: skip
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "filterValues"

    assert client.delete("/filters/by-genre", headers=admin).status_code == 204
    gone = client.post("/recommendations", json={"campaignArn": "shop", "userId": "a_u003", "filterArn": "by-genre",
                                                  "filterValues": {"G": '"b"'}}, headers=reader)  # fmt: skip
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("INCLUDE ItemID WHERE Items.COLOR IN ($C)", "COLOR"),
        ("INCLUDE ItemID WHERE Items.GENRE IN (", ""),
        ("DROP TABLE airsight_filters", ""),
    ],
)
def test_a_bad_filter_expression_is_refused_at_creation(client, world, expression, reason):
    answer = client.post("/filters", json={"name": "bad", "datasetGroup": "shop", "filterExpression": expression},
                         headers=world.headers("admin"))  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "filterExpression" and reason in answer.json()["message"]


@pytest.mark.parametrize(
    "value",
    [
        '"a") | EXCLUDE ItemID WHERE Items.PRICE >= 0 | INCLUDE ItemID WHERE Items.GENRE IN ("b"',
        '"a" OR 1=1',
        "a'; DROP TABLE airsight_events; --",
        '"x\\") | EXCLUDE ItemID WHERE Items.PRICE >= 0 | INCLUDE ItemID WHERE Items.GENRE IN (\\"b"',
        "$G",
    ],
)
def test_filter_values_are_data_never_expression(client, world, value):
    admin = world.headers("admin")
    body = {"name": "genre-inj", "datasetGroup": "shop", "filterExpression": "INCLUDE ItemID WHERE Items.GENRE IN ($G)"}
    client.post("/filters", json=body, headers=admin)
    answer = client.post("/recommendations", json={"campaignArn": "shop", "userId": "a_u000", "numResults": 5,
                                                    "filterArn": "genre-inj", "filterValues": {"G": value}},
                         headers=world.headers("reader"))  # fmt: skip
    if answer.status_code == 400:
        assert answer.json()["errors"][0]["field"] == "filterValues"
    else:  # taken as one literal genre that no item has: nothing passes
        assert answer.status_code == 200 and answer.json()["itemList"] == []
    assert client.app.state.runtime.store.count_events() >= 0  # the tables are still there
    bad_key = client.post("/recommendations", json={"campaignArn": "shop", "userId": "a_u000", "filterArn": "genre-inj",
                                                     "filterValues": {"G) OR (1": '"a"'}},
                          headers=world.headers("reader"))  # fmt: skip
    assert bad_key.status_code == 400


def test_promotions_mix_promoted_items_into_the_list(client, world):
    admin = world.headers("admin")
    expression = "INCLUDE ItemID WHERE Items.GENRE IN ($G)"
    client.post("/filters", json={"name": "genre-promo", "datasetGroup": "shop", "filterExpression": expression},
                headers=admin)  # fmt: skip
    promotion = {"name": "b-week", "percentPromotedItems": 30, "filterArn": "genre-promo", "filterValues": {"G": '"b"'}}
    answer = recommend(client, world, "a_u004", numResults=10, promotions=[promotion])
    promoted = [e for e in answer["itemList"] if e.get("promotionName") == "b-week"]
    assert len(answer["itemList"]) == 10 and len(promoted) == 3
    assert all(e["itemId"].startswith("b_") for e in promoted)
    assert len(set(items_of(answer))) == 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"userId": "u", "numResults": 0}, "numResults"),
        ({"userId": "u", "numResults": 501}, "numResults"),
        ({"userId": "u", "numResults": "ten"}, "numResults"),
        ({"userId": 5}, "userId"),
        ({"userId": "u", "surprise": 1}, "surprise"),
        ({}, "userId"),
        (
            {"userId": "u", "promotions": [{"name": "p", "percentPromotedItems": 101, "filterArn": "f"}]},
            "promotions.0.percentPromotedItems",
        ),
    ],
)
def test_invalid_requests_get_422_naming_the_field(client, world, body, field):
    answer = client.post("/recommendations", json={"campaignArn": "shop", **body}, headers=world.headers("reader"))
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]]


def test_ranking_takes_at_most_500_items(client, world):
    body = {"campaignArn": "shop", "userId": "a_u000", "inputList": [f"i{k}" for k in range(501)]}
    answer = client.post("/personalize-ranking", json=body, headers=world.headers("reader"))
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "inputList"
    events = {"trackingId": "shop", "sessionId": "s", "eventList": [{"eventType": "c", "sentAt": 1}] * 11}
    assert client.post("/events", json=events, headers=world.headers("writer")).json()["errors"][0]["field"] == (
        "eventList"
    )


def test_malformed_json_and_oversized_bodies(client, world):
    headers = {**world.headers("reader"), "Content-Type": "application/json"}
    broken = client.post("/recommendations", content=b'{"campaignArn": "shop", "userId": ', headers=headers)
    assert broken.status_code == 422 and "malformed JSON" in broken.json()["errors"][0]["reason"]
    huge = json.dumps({"campaignArn": "shop", "userId": "x" * 300_000}).encode()
    assert client.post("/recommendations", content=huge, headers=headers).status_code == 413

    def chunks():  # no Content-Length: counted while read
        for _ in range(40):
            yield b" " * 10_000

    assert client.post("/recommendations", content=chunks(), headers=headers).status_code == 413


def test_api_keys_401_and_403(client, world):
    body = {"campaignArn": "shop", "userId": "a_u000"}
    missing = client.post("/recommendations", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/recommendations", json=body, headers={"X-API-Key": "as_0000_wrong"}).status_code == 401
    assert client.post("/recommendations", json=body, headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert client.post("/recommendations", json=body, headers={"X-API-Key": world.keys["reader"]}).status_code == 200
    events = {"trackingId": "shop", "sessionId": "s", "eventList": [{"eventType": "c", "itemId": "a_i00", "sentAt": 1}]}
    assert client.post("/events", json=events, headers=world.headers("reader")).status_code == 403
    assert client.get("/metrics").status_code == 401
    assert client.get("/filters").status_code == 401


def test_a_revoked_key_stops_working(world):
    from pipelines.serving.auth import create_key

    store = Store(world.database_url)
    key = create_key(store, "short-lived", ["read"])
    with TestClient(create_app(world.settings(key_cache_seconds=0))) as fresh:
        headers = {"Authorization": f"Bearer {key}"}
        assert fresh.get("/filters", headers=headers).status_code == 200
        assert store.revoke_key("short-lived")
        assert fresh.get("/filters", headers=headers).status_code == 401
    store.close()


def test_unknown_groups_are_404(client, world):
    answer = client.post("/recommendations", json={"campaignArn": "nope", "userId": "u"}, headers=world.headers())
    assert answer.status_code == 404 and answer.json()["errors"][0]["field"] == "campaignArn"
    events = {"trackingId": "nope", "sessionId": "s", "eventList": [{"eventType": "c", "sentAt": 1}]}
    assert client.post("/events", json=events, headers=world.headers()).status_code == 404


def test_forecast_query_by_item_dates_and_types(client, world):
    body = {"forecastArn": "sales", "filters": {"item_id": "i1", "store": "s2"}, "startDate": "2024-03-03",
            "endDate": "2024-03-05", "forecastTypes": ["p50", "p90"]}  # fmt: skip
    answer = client.post("/forecasts/query", json=body, headers=world.headers("reader"))
    assert answer.status_code == 200, answer.text
    (series,) = answer.json()["forecast"]["series"]
    assert series["item"] == {"item_id": "i1", "store": "s2"} and sorted(series["predictions"]) == ["p50", "p90"]
    assert [p["timestamp"][:10] for p in series["predictions"]["p50"]] == ["2024-03-03", "2024-03-04", "2024-03-05"]
    assert [p["value"] for p in series["predictions"]["p50"]] == [12.0, 13.0, 14.0]
    assert [p["value"] for p in series["predictions"]["p90"]] == [14.0, 15.0, 16.0]


def test_forecast_paging_and_errors(client, world):
    reader = world.headers("reader")
    first = client.post("/forecasts/query", json={"forecastArn": "sales", "filters": {"store": "s1"}, "maxResults": 3},
                        headers=reader).json()  # fmt: skip
    assert len(first["forecast"]["series"]) == 3 and first["nextToken"]
    second = client.post("/forecasts/query", json={"forecastArn": "sales", "filters": {"store": "s1"}, "maxResults": 3,
                                                   "nextToken": first["nextToken"]}, headers=reader).json()  # fmt: skip
    assert len(second["forecast"]["series"]) == 1 and second["nextToken"] is None
    seen = [s["item"]["item_id"] for s in first["forecast"]["series"] + second["forecast"]["series"]]
    assert seen == ["i0", "i1", "i2", "i3"]
    items = client.get("/forecasts/sales/items", params={"maxResults": 5}, headers=reader).json()
    assert len(items["items"]) == 5 and items["keys"] == ["item_id", "store"]

    def error(body):
        answer = client.post("/forecasts/query", json={"forecastArn": "sales", **body}, headers=reader)
        return answer.status_code, answer.json()["errors"][0]["field"]

    assert error({"filters": {"item_id": "i0"}, "forecastTypes": ["p42"]}) == (400, "forecastTypes")
    assert error({"filters": {"colour": "red"}}) == (400, "filters")
    assert error({"filters": {"item_id": "zzz"}}) == (404, "filters")
    assert error({"filters": {"item_id": "i0"}, "startDate": "yesterday-ish"}) == (400, "startDate")
    assert error({"nextToken": "garbage!"}) == (400, "nextToken")
    assert error({"forecastArn": "nope"}) == (404, "forecastArn")


def test_a_new_forecast_export_is_served_after_the_pointer_moves(client, world, runtime):
    reader = world.headers("reader")
    query = {"forecastArn": "sales", "filters": {"item_id": "i0", "store": "s1"}, "maxResults": 1}
    page = client.post("/forecasts/query", json={**query, "filters": {"store": "s1"}}, headers=reader).json()
    publish_forecast(str(world.groups_dir / "sales_store"), forecast_frame(level=100.0), "2024-03-31")
    runtime.poll_once()
    answer = client.post("/forecasts/query", json=query, headers=reader).json()
    assert answer["forecast"]["asOf"] == "2024-03-31T00:00:00"
    assert answer["forecast"]["series"][0]["predictions"]["p50"][0]["value"] == 100.0
    stale = client.post("/forecasts/query", json={**query, "filters": {"store": "s1"}, "nextToken": page["nextToken"]},
                        headers=reader)  # fmt: skip
    assert stale.status_code == 400 and "start again" in stale.json()["message"]


def test_metrics_openapi_and_json_logs(client, world):
    recommend(client, world, "a_u000")
    metrics = client.get("/metrics", headers=world.headers("reader"))
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
    assert 'airsight_requests_total{method="POST",route="/recommendations",status="200"}' in metrics.text
    assert "airsight_request_seconds_bucket" in metrics.text
    spec = client.get("/openapi.json").json()
    assert {"/recommendations", "/personalize-ranking", "/events", "/filters", "/forecasts/query"} <= set(spec["paths"])

    stream = io.StringIO()
    configure_logging("info", stream)
    try:
        recommend(client, world, "a_u000")
    finally:
        configure_logging("info")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["message"] == "request" and line["route"] == "/recommendations" and line["status"] == 200
    assert line["level"] == "info" and line["ms"] >= 0
    assert logging.getLogger("airsight").propagate is False


def test_events_are_exported_for_the_next_training_import(client, world, tmp_path):
    store = Store(world.database_url)
    event = {"eventType": "purchase", "eventValue": 9.5, "itemId": "a_i07", "sentAt": 1_800_000_100}
    client.post("/events", json={"trackingId": "shop", "userId": "exporter", "sessionId": "s", "eventList": [event]},
                headers=world.headers("writer"))  # fmt: skip
    path = tmp_path / "events.csv"
    first = export_events(store, "shop", path)
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"]
    row = frame[frame.USER_ID == "exporter"].iloc[0]
    assert (row.ITEM_ID, row.TIMESTAMP, row.EVENT_TYPE, row.EVENT_VALUE) == ("a_i07", 1_800_000_100, "purchase", 9.5)
    assert first["events"] == len(frame) and export_events(store, "shop", path)["events"] == 0
    more = {"trackingId": "shop", "userId": "exporter", "sessionId": "s", "eventList": [{**event, "itemId": "a_i08"}]}
    client.post("/events", json=more, headers=world.headers("writer"))
    assert export_events(store, "shop", path)["events"] == 1 and len(pd.read_csv(path)) == len(frame) + 1
    store.close()


def test_a_second_server_process_sees_events_the_first_stored(client, world):
    with TestClient(create_app(world.settings())) as other:
        before = items_of(recommend(other, world, "roamer", numResults=10))
        event = {"eventType": "click", "itemId": "a_i01", "sentAt": 1_800_000_000}
        client.post("/events", json={"trackingId": "shop", "userId": "roamer", "sessionId": "s", "eventList": [event]},
                    headers=world.headers("writer"))  # fmt: skip
        after = items_of(recommend(other, world, "roamer", numResults=10))
        assert after != before and "a_i01" not in after


def test_batch_inference_jobs_run_the_serving_model_inside_the_batch_folder(client, world, runtime):
    import time

    admin = world.headers("admin")
    folder = runtime.settings.resolved_batch_dir()
    (folder / "in").mkdir(parents=True, exist_ok=True)
    lines = [{"userId": "a_u000"}, {"itemId": "b_i01"}, {"userId": "b_u001", "itemList": ["a_i00", "b_i00"]}, "oops"]
    (folder / "in" / "requests.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    job = {"jobName": "nightly", "datasetGroup": "shop", "jobInput": {"path": "in/requests.jsonl"},
           "jobOutput": {"path": "out/results.jsonl"}, "numResults": 5}  # fmt: skip
    assert client.post("/batch-inference-jobs", json=job, headers=world.headers("writer")).status_code == 403
    started = client.post("/batch-inference-jobs", json=job, headers=admin)
    assert started.status_code == 202, started.text
    for _ in range(200):
        described = client.get("/batch-inference-jobs/nightly", headers=world.headers("reader")).json()
        if described["status"] != "IN_PROGRESS":
            break
        time.sleep(0.05)
    assert described["status"] == "ACTIVE", described
    assert described["summary"]["lines"] == 4 and described["summary"]["failed"] == 1
    results = [json.loads(line) for line in (folder / "out" / "results.jsonl").read_text().splitlines()]
    assert len(results[0]["output"]["recommendedItems"]) == 5
    assert results[2]["output"]["recommendedItems"][0] == "b_i00" and results[3]["error"]
    assert client.post("/batch-inference-jobs", json=job, headers=admin).status_code == 409

    for field, path in (("jobInput", "../../etc/passwd"), ("jobOutput", "/tmp/x.jsonl"), ("jobInput", "s3://b/k")):
        escaped = client.post("/batch-inference-jobs", json={**job, "jobName": "escape", field: {"path": path}},
                              headers=admin)  # fmt: skip
        assert escaped.status_code == 422 and escaped.json()["errors"][0]["field"] == f"{field}.path"


def test_a_request_without_a_key_learns_nothing_about_its_body(client):
    assert client.post("/recommendations", json={"numResults": 9999}).status_code == 401
    assert client.post("/events", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 401
