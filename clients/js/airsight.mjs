// Airsight's serving API from JavaScript (browsers and Node 18+): an ES module with no dependencies.
//
//   import { AirsightClient } from "./airsight.mjs";
//   const client = new AirsightClient({ baseUrl: "https://recs.example.com", apiKey: KEY });
//   const tracker = client.tracker({ trackingId: "shop", sessionId, userId });
//   tracker.record("click", { itemId: "i-7" });          // batched: 10 at a time, or every second
//   const { itemList } = await client.getRecommendations({ campaignArn: "shop", userId, numResults: 10 });
//
// Every call has a timeout and is retried with exponential backoff (and jitter) on network
// errors, timeouts, 429 and 5xx; a 4xx is not retried and throws an ApiError with the status and
// the server's field errors. Events get an eventId when they have none, so a retried batch keeps
// its ids. Lists longer than Personalize's batch of 10 are split. In Node, baseUrl and apiKey
// default to AIRSIGHT_URL and AIRSIGHT_API_KEY.

export const MAX_BATCH = 10;
const RETRIED = new Set([408, 429, 500, 502, 503, 504]);
const env = (name) => (typeof process !== "undefined" && process.env ? process.env[name] : undefined);

export class ApiError extends Error {
  constructor(status, message, errors = []) {
    super(`HTTP ${status}: ${message}`);
    this.name = "ApiError";
    this.status = status;
    this.errors = errors;
  }
}

export class AirsightClient {
  constructor({ baseUrl = env("AIRSIGHT_URL"), apiKey = env("AIRSIGHT_API_KEY"), timeoutMs = 10000, retries = 3,
                backoffMs = 200, fetch = globalThis.fetch } = {}) {
    if (!baseUrl) throw new Error("no server: pass baseUrl or set AIRSIGHT_URL");
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    Object.assign(this, { apiKey, timeoutMs, retries, backoffMs, fetch });
  }

  /** PutEvents: the events in batches of 10; resolves to the stored ids, in order. */
  async putEvents({ trackingId, sessionId, userId, eventList }) {
    const stored = [];
    for (const batch of batches(eventList.map(withEventId))) {
      const body = { trackingId, sessionId, eventList: batch, ...(userId == null ? {} : { userId }) };
      stored.push(...(await this.request("POST", "/events", body)).eventIds);
    }
    return stored;
  }

  /** PutItems: each {itemId, properties} (an object or a JSON string), in batches of 10. */
  putItems({ items, datasetArn }) {
    return this.#putRecords("/items", "items", items, datasetArn);
  }

  /** PutUsers: each {userId, properties}, in batches of 10. */
  putUsers({ users, datasetArn }) {
    return this.#putRecords("/users", "users", users, datasetArn);
  }

  /** GetRecommendations: {campaignArn, userId | itemId, numResults, filterArn, filterValues, context, ...}. */
  getRecommendations(request) {
    return this.request("POST", "/recommendations", request);
  }

  /** GetPersonalizedRanking: {campaignArn, userId, inputList, context, filterArn, ...}. */
  getPersonalizedRanking(request) {
    return this.request("POST", "/personalize-ranking", request);
  }

  /** An EventTracker for one session. */
  tracker(options) {
    return new EventTracker(this, options);
  }

  /** One call, retried on network errors, timeouts, 429 and 5xx; resolves to the decoded JSON answer. */
  async request(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= this.retries;
      let wait;
      try {
        const answer = await this.fetch(this.baseUrl + path, {
          method, headers, body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const data = parseJson(await answer.text());
        if (answer.ok) return data;
        if (!RETRIED.has(answer.status) || last) {
          throw new ApiError(answer.status, (data && (data.message || data.detail)) || answer.statusText,
                             (data && data.errors) || []);
        }
        const after = Number(answer.headers.get("Retry-After"));
        wait = Number.isFinite(after) && after > 0 ? Math.min(after, 30) * 1000 : undefined;
      } catch (error) {
        if (error instanceof ApiError || last) throw error;
      }
      const delay = wait ?? this.backoffMs * 2 ** attempt * (0.5 + Math.random() / 2);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  async #putRecords(path, field, records, datasetArn) {
    const stored = [];
    const encoded = records.map((r) => (typeof r.properties === "object" && r.properties !== null
      ? { ...r, properties: JSON.stringify(r.properties) } : { ...r }));
    for (const batch of batches(encoded)) {
      const body = { [field]: batch, ...(datasetArn ? { datasetArn } : {}) };
      stored.push(...(await this.request("POST", path, body)).recordIds);
    }
    return stored;
  }
}

/**
 * Events of one session, sent in batches of maxBatch or every flushMs. A batch that fails after
 * the client's retries stays pending for the next flush (errors holds the last failures); beyond
 * maxPending the oldest events are dropped. In a browser, call flush() on "pagehide".
 */
export class EventTracker {
  constructor(client, { trackingId, sessionId, userId, maxBatch = MAX_BATCH, flushMs = 1000, maxPending = 10000 }) {
    if (!(maxBatch >= 1 && maxBatch <= MAX_BATCH)) throw new RangeError(`maxBatch must be between 1 and ${MAX_BATCH}`);
    Object.assign(this, { client, trackingId, sessionId, userId, maxBatch, maxPending });
    this.pending = [];
    this.sent = [];
    this.errors = [];
    this.sending = Promise.resolve();
    this.timer = setInterval(() => this.flush().catch(() => {}), flushMs);
    if (this.timer.unref) this.timer.unref();
  }

  /** Queue one event (sentAt now by default); returns its eventId. */
  record(eventType, { itemId, sentAt, ...fields } = {}) {
    const event = withEventId({ eventType, sentAt: sentAt ?? Date.now() / 1000, ...fields,
                                ...(itemId == null ? {} : { itemId }) });
    this.pending.push(event);
    if (this.pending.length > this.maxPending) this.pending.splice(0, this.pending.length - this.maxPending);
    if (this.pending.length % this.maxBatch === 0) this.flush().catch(() => {});  // each full batch, once
    return event.eventId;
  }

  /** Send every pending event now; rejects with the error if a batch could not be sent. */
  flush() {
    this.sending = this.sending.catch(() => {}).then(async () => {
      while (this.pending.length) {
        const batch = this.pending.slice(0, this.maxBatch);
        try {
          const ids = await this.client.putEvents({ trackingId: this.trackingId, sessionId: this.sessionId,
                                                   userId: this.userId, eventList: batch });
          this.pending.splice(0, batch.length);
          this.sent.push(...ids);
        } catch (error) {
          this.errors = [...this.errors.slice(-9), error];
          throw error;
        }
      }
    });
    return this.sending;
  }

  /** Stop the timer and send what is pending. */
  close() {
    clearInterval(this.timer);
    return this.flush();
  }
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return { message: text.slice(0, 200) };
  }
}

function withEventId(event) {
  const id = event.eventId ?? globalThis.crypto.randomUUID().replaceAll("-", "");
  return Object.fromEntries(Object.entries({ ...event, eventId: id }).filter(([, v]) => v != null));
}

function* batches(records, size = MAX_BATCH) {
  for (let i = 0; i < records.length; i += size) yield records.slice(i, i + size);
}
