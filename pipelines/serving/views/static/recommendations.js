// The campaign test page: GetRecommendations for a user or an item, with a filter and a promotion,
// and PutEvents for a test event, after which the recommendations are fetched again and compared.
import { api, el, fill, showError, table } from "./common.js";

const $ = (id) => document.getElementById(id);
const session = `airsight-ui-${crypto.randomUUID ? crypto.randomUUID() : Date.now()}`;
let campaigns = [], campaign = null, last = null, sent = 0;

async function start() {
  try {
    campaigns = await api("campaigns");
  } catch (error) { return showError($("message"), error); }
  if (!campaigns.length) return showError($("message"), new Error("no Personalize dataset group is served"));
  fill($("campaign"), campaigns.map((c) => c.name), campaigns[0].name);
  $("campaign").addEventListener("change", chooseCampaign);
  $("filter").addEventListener("change", filterValues);
  $("form").addEventListener("submit", (event) => { event.preventDefault(); recommend(); });
  $("send").addEventListener("click", () => sendEvent($("event-item").value));
  chooseCampaign();
}

function chooseCampaign() {
  campaign = campaigns.find((c) => c.name === $("campaign").value);
  $("model").textContent = campaign.version
    ? `serving ${campaign.recipe}, model version ${campaign.version}`
    : `no serving model yet${campaign.error ? `: ${campaign.error}` : ""}`;
  $("ids").replaceChildren(...campaign.users.map((u) => el("option", { value: u })));
  $("items").replaceChildren(...campaign.items.map((i) => el("option", { value: i })));
  if (!$("id").value && campaign.users.length) $("id").value = campaign.users[0];
  const names = ["", ...campaign.filters.map((f) => f.name)];
  for (const id of ["filter", "promotion"]) {
    fill($(id), names, "");
    $(id).options[0].textContent = "none";
  }
  fill($("event-type"), campaign.eventTypes.length ? campaign.eventTypes : ["click"], campaign.eventTypes[0]);
  filterValues();
}

function placeholders(name) {
  const found = campaign.filters.find((f) => f.name === name);
  return found ? [...new Set([...found.filterExpression.matchAll(/\$([A-Za-z0-9_]+)/g)].map((m) => m[1]))] : [];
}

function filterValues() {
  $("filter-values").replaceChildren(...placeholders($("filter").value).map((p) =>
    el("label", {}, `$${p}`, el("input", { "data-placeholder": p, placeholder: '"value1","value2"' }))));
}

function request() {
  const body = { campaignArn: campaign.name, numResults: Number($("count").value) || 10 };
  body[$("mode").value] = $("id").value.trim();
  if ($("filter").value) {
    body.filterArn = $("filter").value;
    const values = {};
    for (const input of document.querySelectorAll("[data-placeholder]")) {
      if (input.value) values[input.dataset.placeholder] = input.value;
    }
    if (Object.keys(values).length) body.filterValues = values;
  }
  if ($("promotion").value) {
    body.promotions = [{ name: "promotion", filterArn: $("promotion").value,
                         percentPromotedItems: Number($("percent").value) || 20 }];
  }
  return body;
}

async function recommend() {
  $("message").replaceChildren();
  try {
    const answer = await api("recommendations", request());
    const before = last;
    last = answer.itemList;
    render(answer, before);
    return answer;
  } catch (error) { showError($("message"), error); }
}

function render(answer, before) {
  const rank = new Map((before || []).map((r, i) => [r.itemId, i]));
  const moved = (r, i) => before && rank.get(r.itemId) !== i;
  const rows = answer.itemList.map((r, i) => ({ ...r, rank: i + 1, was: rank.has(r.itemId) ? rank.get(r.itemId) + 1 : before ? "new" : "" }));
  const list = table(rows, [["rank", "#"], ["itemId", "item"], ["score", "score"], ["promotionName", "promotion"],
    ...(before ? [["was", "before"]] : []),
    [(r) => el("button", { class: "secondary", "data-send": r.itemId, onclick: () => sendEvent(r.itemId),
                           text: "send" }), ""]], { "data-testid": "items" });
  list.querySelectorAll("tbody tr").forEach((tr, i) => tr.classList.toggle("moved", moved(answer.itemList[i], i)));
  const changes = before ? answer.itemList.filter(moved).length : 0;
  $("results").replaceChildren(
    el("p", { class: "muted", "data-testid": "recommendation-id" },
       `${answer.itemList.length} items · ${answer.recommendationId} · model v${answer.modelVersion}` +
       (before ? ` · ${changes} changed since the previous list` : "")), list);
}

async function sendEvent(itemId) {
  const user = $("mode").value === "userId" ? $("id").value.trim() : "";
  if (!itemId) return showError($("message"), new Error("name the item of the event"));
  const event = { eventType: $("event-type").value, itemId, sentAt: Date.now() / 1000, eventId: `${session}-${++sent}` };
  const body = { trackingId: campaign.name, sessionId: session, eventList: [event] };
  if (user) body.userId = user;
  try {
    const answer = await api("events", body);
    $("sent").prepend(el("p", { class: "ok" }, `${event.eventType} on ${itemId}${user ? ` by ${user}` : ""}: ` +
                                              `${answer.eventsStored} stored`));
    if (last) await recommend();
  } catch (error) { showError($("message"), error); }
}

start();
