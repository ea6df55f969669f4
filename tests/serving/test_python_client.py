"""The Python client (``pipelines.client``) against a live ``airsight serve`` app and a flaky server."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pipelines.client import ApiError, Client

GROUP = "clientshop"
CLICKED = ["a_i02", "a_i05"]


@pytest.fixture(scope="module")
def client(live_url, world):
    return Client(live_url, world.keys["writer"], timeout=10, retries=2, backoff=0.05)


def items(answer: dict) -> list[str]:
    return [i["itemId"] for i in answer["itemList"]]


def test_tracked_events_change_the_next_recommendations(client, world):
    before = items(client.get_recommendations(GROUP, user_id="py-newcomer", num_results=10))
    with client.tracker(GROUP, session_id="py-s1", user_id="py-newcomer", flush_seconds=0.05) as events:
        ids = [
            events.record("click", item_id=item, sent_at=1_800_000_000 + k) for k, item in enumerate(["a_i02", "a_i05"])
        ]
    assert len(set(ids)) == 2 and len(events.sent) == 2 and not events.pending
    after = items(client.get_recommendations(GROUP, user_id="py-newcomer", num_results=10))
    assert after != before and "a_i02" not in after and "a_i05" not in after


def test_long_lists_go_in_batches_of_ten(client):
    events = [{"eventType": "click", "itemId": f"a_i{k % 10:02d}", "sentAt": 1_800_000_100 + k} for k in range(23)]
    stored = client.put_events(GROUP, "py-s2", events, user_id="py-batcher")
    assert len(stored) == 23 and stored == sorted(stored)
    new_items = [{"itemId": f"py-item-{k}", "properties": {"genre": "Action", "price": 9.5}} for k in range(12)]
    assert len(client.put_items(new_items, dataset_arn=f"{GROUP}/ITEMS")) == 12
    ranked = client.get_personalized_ranking(GROUP, "py-batcher", ["py-item-3", "a_i01", "nowhere"])
    assert [r["itemId"] for r in ranked["personalizedRanking"]][-1] == "nowhere"


def test_a_refused_request_raises_with_the_servers_field_errors(client, live_url, world):
    with pytest.raises(ApiError) as refused:
        client.get_recommendations(GROUP, user_id="u", num_results=9999)
    assert refused.value.status == 422 and refused.value.errors[0]["field"] == "numResults"
    reader = Client(live_url, world.keys["reader"], retries=0)
    with pytest.raises(ApiError) as forbidden:
        reader.put_events(GROUP, "s", [{"eventType": "click", "itemId": "a_i01", "sentAt": 1}])
    assert forbidden.value.status == 403
    with pytest.raises(ApiError) as unauthenticated:
        Client(live_url, "", retries=0).get_recommendations(GROUP, user_id="u")
    assert unauthenticated.value.status == 401


def test_keys_and_url_come_from_the_environment(monkeypatch, live_url, world):
    monkeypatch.setenv("AIRSIGHT_URL", live_url)
    monkeypatch.setenv("AIRSIGHT_API_KEY", world.keys["reader"])
    assert items(Client().get_recommendations(GROUP, user_id="a_u000", num_results=3))
    monkeypatch.delenv("AIRSIGHT_URL")
    with pytest.raises(ValueError, match="AIRSIGHT_URL"):
        Client()


@contextmanager
def flaky(answers: list[tuple[int, dict]], delay: float = 0.0) -> Iterator[tuple[str, list[dict]]]:
    """A server that answers the given (status, body) in turn, the last one from then on; it records
    each request's JSON body."""
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            time.sleep(delay)
            status, body = answers[min(len(seen), len(answers)) - 1]
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_5xx_is_retried_with_the_same_event_ids_and_4xx_is_not():
    ok = (200, {"eventsStored": 1, "eventIds": [7]})
    with flaky([(503, {"message": "busy"}), (502, {"message": "gateway"}), ok]) as (url, seen):
        assert Client(url, "k", retries=3, backoff=0.01).put_events("g", "s", [{"eventType": "x", "sentAt": 1}]) == [7]
    assert len(seen) == 3 and len({s["eventList"][0]["eventId"] for s in seen}) == 1  # one id across the retries
    with flaky([(503, {"message": "busy"})]) as (url, seen), pytest.raises(ApiError, match="HTTP 503: busy"):
        Client(url, "k", retries=2, backoff=0.01).put_events("g", "s", [{"eventType": "x", "sentAt": 1}])
    assert len(seen) == 3  # the first attempt and two retries
    refusal = (400, {"message": "bad", "errors": [{"field": "eventList", "reason": "r"}]})
    with flaky([refusal, ok]) as (url, seen), pytest.raises(ApiError) as refused:
        Client(url, "k", retries=3, backoff=0.01).put_events("g", "s", [{"eventType": "x", "sentAt": 1}])
    assert len(seen) == 1 and refused.value.errors == [{"field": "eventList", "reason": "r"}]


def test_a_slow_server_times_out_and_is_retried_then_unreachable_raises():
    with flaky([(200, {"eventsStored": 1, "eventIds": [1]})], delay=0.5) as (url, seen), pytest.raises(TimeoutError):
        Client(url, "k", timeout=0.1, retries=1, backoff=0.01).put_events("g", "s", [{"eventType": "x", "sentAt": 1}])
    time.sleep(0.6)
    assert len(seen) == 2
    with pytest.raises(OSError):
        Client("http://127.0.0.1:9", "k", timeout=1, retries=1, backoff=0.01).get_recommendations("g", user_id="u")


def test_a_tracker_keeps_what_it_could_not_send_and_sends_it_later():
    answers = [(503, {"message": "down"})] * 2 + [(200, {"eventsStored": 2, "eventIds": [1, 2]})]
    with flaky(answers) as (url, seen):
        tracker = Client(url, "k", retries=0, backoff=0.01).tracker("g", "s", flush_seconds=3600)
        tracker.record("click", item_id="i1")
        tracker.record("click", item_id="i2")
        for _ in range(2):
            with pytest.raises(ApiError):
                tracker.flush()
        assert len(tracker.pending) == 2 and len(tracker.errors) == 2
        tracker.close()  # the server is back: the pending batch goes out
    assert tracker.sent == [1, 2] and not tracker.pending and [len(s["eventList"]) for s in seen] == [2, 2, 2]
