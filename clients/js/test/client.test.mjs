// The JavaScript client against a flaky local server (retries, timeouts, batching) and, when
// AIRSIGHT_URL and AIRSIGHT_API_KEY name a live `airsight serve`, against the real API.
import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";

import { AirsightClient, ApiError } from "../airsight.mjs";

/** A server that answers [status, body] in turn (the last one from then on), recording each request's body. */
async function flaky(answers, delayMs = 0) {
  const seen = [];
  const server = http.createServer((request, response) => {
    let raw = "";
    request.on("data", (chunk) => (raw += chunk));
    request.on("end", () => {
      seen.push(JSON.parse(raw || "null"));
      const [status, body] = answers[Math.min(seen.length, answers.length) - 1];
      setTimeout(() => {
        response.writeHead(status, { "Content-Type": "application/json" });
        response.end(JSON.stringify(body));
      }, delayMs);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const close = () => new Promise((resolve) => { server.close(resolve); server.closeAllConnections(); });
  return { url, seen, close };
}

const event = { eventType: "click", itemId: "i1", sentAt: 1 };
const ok = [200, { eventsStored: 1, eventIds: [7] }];

test("5xx is retried with the same event ids, 4xx is not", async () => {
  const busy = await flaky([[503, { message: "busy" }], [502, { message: "gateway" }], ok]);
  const client = new AirsightClient({ baseUrl: busy.url, apiKey: "k", retries: 3, backoffMs: 5 });
  assert.deepEqual(await client.putEvents({ trackingId: "g", sessionId: "s", eventList: [event] }), [7]);
  assert.equal(busy.seen.length, 3);
  assert.equal(new Set(busy.seen.map((b) => b.eventList[0].eventId)).size, 1);
  await busy.close();

  const refusing = await flaky([[400, { message: "bad", errors: [{ field: "eventList", reason: "r" }] }], ok]);
  const strict = new AirsightClient({ baseUrl: refusing.url, apiKey: "k", retries: 3, backoffMs: 5 });
  await assert.rejects(strict.putEvents({ trackingId: "g", sessionId: "s", eventList: [event] }), (error) => {
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 400);
    assert.deepEqual(error.errors, [{ field: "eventList", reason: "r" }]);
    return true;
  });
  assert.equal(refusing.seen.length, 1);
  await refusing.close();
});

test("a slow server times out after the retries; an unreachable one rejects", async () => {
  const slow = await flaky([ok], 400);
  const client = new AirsightClient({ baseUrl: slow.url, apiKey: "k", timeoutMs: 50, retries: 1, backoffMs: 5 });
  await assert.rejects(client.getRecommendations({ campaignArn: "g", userId: "u" }), /timeout|abort/i);
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(slow.seen.length, 2);
  await slow.close();
  const nowhere = new AirsightClient({ baseUrl: "http://127.0.0.1:9", retries: 1, backoffMs: 5 });
  await assert.rejects(nowhere.getRecommendations({ campaignArn: "g", userId: "u" }));
});

test("a tracker batches events and keeps a failed batch for the next flush", async () => {
  const server = await flaky([[503, { message: "down" }], [200, { eventsStored: 10, eventIds: [...Array(10).keys()] }],
                              [200, { eventsStored: 3, eventIds: [10, 11, 12] }]]);
  const client = new AirsightClient({ baseUrl: server.url, apiKey: "k", retries: 0, backoffMs: 5 });
  const tracker = client.tracker({ trackingId: "g", sessionId: "s", flushMs: 60000 });
  for (let k = 0; k < 13; k++) tracker.record("click", { itemId: `i${k}`, sentAt: 1 + k });
  await tracker.sending.catch(() => {});  // the 10th event sent a batch at once: it met the outage
  assert.equal(tracker.errors.length, 1);
  assert.ok(tracker.errors[0] instanceof ApiError);
  assert.equal(tracker.pending.length, 13);
  await tracker.close();
  assert.deepEqual(server.seen.map((b) => b.eventList.length), [10, 10, 3]);
  assert.equal(tracker.sent.length, 13);
  assert.equal(tracker.pending.length, 0);
  await server.close();
});

const live = process.env.AIRSIGHT_URL && process.env.AIRSIGHT_API_KEY;
const group = process.env.AIRSIGHT_GROUP;

test("against a live server: tracked events change the next recommendations", { skip: !live && "no AIRSIGHT_URL" }, async () => {
  const client = new AirsightClient({ retries: 2 });
  const names = (answer) => answer.itemList.map((i) => i.itemId);
  const before = names(await client.getRecommendations({ campaignArn: group, userId: "js-newcomer", numResults: 10 }));
  const tracker = client.tracker({ trackingId: group, sessionId: "js-s1", userId: "js-newcomer" });
  tracker.record("click", { itemId: "a_i02", sentAt: 1800000000 });
  tracker.record("click", { itemId: "a_i05", sentAt: 1800000001 });
  await tracker.close();
  assert.equal(tracker.sent.length, 2);
  const after = names(await client.getRecommendations({ campaignArn: group, userId: "js-newcomer", numResults: 10 }));
  assert.notDeepEqual(after, before);
  assert.ok(!after.includes("a_i02") && !after.includes("a_i05"));

  const stored = await client.putItems({ datasetArn: `${group}/ITEMS`,
    items: [...Array(12).keys()].map((k) => ({ itemId: `js-item-${k}`, properties: { genre: "Drama", price: 3 } })) });
  assert.equal(stored.length, 12);
  const ranked = await client.getPersonalizedRanking({ campaignArn: group, userId: "js-newcomer",
                                                        inputList: ["js-item-1", "a_i01", "nowhere"] });
  assert.equal(ranked.personalizedRanking.at(-1).itemId, "nowhere");
  await assert.rejects(client.getRecommendations({ campaignArn: group, userId: "u", numResults: 9999 }),
                       (error) => error.status === 422 && error.errors[0].field === "numResults");
});
