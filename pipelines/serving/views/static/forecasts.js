// The forecast explorer: find a series by item and dimensions, chart its history, backtests,
// P10/P50/P90 band and what-if scenarios; show impact scores, accuracy and the model decision.
import { api, el, fill, number, showError, table } from "./common.js";
import { drawChart, time } from "./chart.js";

const $ = (id) => document.getElementById(id);
const COLORS = { history: "#52606d", p50: "#2563eb", band: "#2563eb", backtest: "#d97706", actual: "#111827" };
const SCENARIO_COLORS = ["#16a34a", "#db2777", "#7c3aed", "#0891b2"];
let groups = [], current = null, timer = null, shown = null;

async function start() {
  try {
    groups = await api("forecast-groups");
  } catch (error) { return showError($("message"), error); }
  if (!groups.length) return showError($("message"), new Error("no forecast group is served"));
  fill($("group"), groups.map((g) => g.name), new URLSearchParams(location.search).get("group") || groups[0].name);
  $("group").addEventListener("change", chooseGroup);
  $("search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 200); });
  $("range").addEventListener("change", () => shown && draw(shown));
  await chooseGroup();
}

async function chooseGroup() {
  current = groups.find((g) => g.name === $("group").value);
  $("message").replaceChildren();
  $("summary").textContent = current.asOf
    ? `${current.series} series · forecast as of ${current.asOf} · ${current.frequency}, horizon ${current.horizon}`
    : `no published forecast yet${current.error ? `: ${current.error}` : ""}`;
  $("dimensions").replaceChildren(...Object.entries(current.dimensions || {}).map(([name, values]) => {
    const select = el("select", { "data-dimension": name, onchange: search });
    fill(select, ["", ...values], "");
    select.options[0].textContent = "any";
    return el("label", {}, name, select);
  }));
  if (current.asOf) await search();
}

async function search() {
  const params = new URLSearchParams({ q: $("search").value, limit: "100" });
  for (const select of document.querySelectorAll("[data-dimension]")) {
    if (select.value) params.set(select.dataset.dimension, select.value);
  }
  try {
    const found = await api(`forecasts/${encodeURIComponent(current.name)}/search?${params}`);
    $("found").textContent = `${found.total} series match${found.total > found.items.length ? ` (first ${found.items.length})` : ""}`;
    $("results").replaceChildren(...found.items.map((item) => el("button", {
      "data-series": JSON.stringify(item), onclick: (event) => show(item, event.currentTarget),
      text: Object.values(item).join(" · "),
    })));
    if (found.items.length && !document.querySelector(".results .selected")) {
      await show(found.items[0], $("results").firstChild);
    }
  } catch (error) { showError($("message"), error); }
}

async function show(item, button) {
  document.querySelectorAll(".results .selected").forEach((b) => b.classList.remove("selected"));
  button?.classList.add("selected");
  const params = new URLSearchParams(item);
  const base = `forecasts/${encodeURIComponent(current.name)}`;
  try {
    const detail = await api(`${base}/series?${params}`);
    $("title").textContent = `${Object.values(item).join(" · ")}: ${detail.target}`;
    shown = detail;
    draw(detail);
    $("download").href = `api/${base}/series.csv?${params}`;
    $("download").hidden = false;
    $("details").replaceChildren(...details(detail));
    document.body.dataset.drawn = JSON.stringify(item);
  } catch (error) { showError($("message"), error); }
}

function draw(detail) {
  // The history before the chosen start is left out, so the forecast is readable on long series.
  const forecastStart = detail.forecast.length ? time(detail.forecast[0].date) : Date.now();
  const step = detail.forecast.length > 1 ? time(detail.forecast[1].date) - forecastStart : 864e5;
  const range = $("range").value;
  const from = range === "all" ? -Infinity
    : range === "365d" ? forecastStart - 365 * 864e5 : forecastStart - Number(range) * detail.forecast.length * step;
  const clipped = layers(detail).map((l) => ({ ...l, points: l.points.filter((p) => p.t >= from) }));
  drawChart($("chart"), clipped, { yLabel: detail.target });
}

function layers(detail) {
  const quantiles = detail.forecast.length ? Object.keys(detail.forecast[0]).filter((k) => /^p\d+$/.test(k)) : [];
  const lo = quantiles[0], hi = quantiles[quantiles.length - 1];
  const mid = quantiles.includes("p50") ? "p50" : quantiles[Math.floor(quantiles.length / 2)] || "mean";
  const points = (rows, key) => rows.map((r) => ({ t: time(r.date), y: r[key] }));
  const band = (rows) => rows.map((r) => ({ t: time(r.date), lo: r[lo], hi: r[hi] }));
  const out = [{ name: "history", kind: "line", color: COLORS.history, points: points(detail.history, "value") }];
  for (const window of detail.backtests) {
    out.push({ name: `backtest ${window.window} ${lo}–${hi}`, kind: "band", color: COLORS.backtest, points: band(window.points) });
    out.push({ name: `backtest ${window.window} ${mid}`, kind: "line", color: COLORS.backtest, dash: "4 3",
               points: points(window.points, mid) });
  }
  if (lo && hi && lo !== hi) out.push({ name: `forecast ${lo}–${hi}`, kind: "band", color: COLORS.band, points: band(detail.forecast) });
  out.push({ name: `forecast ${mid}`, kind: "line", color: COLORS.p50, width: 2, points: points(detail.forecast, mid) });
  Object.entries(detail.whatIf).forEach(([name, rows], i) => {
    out.push({ name: `what-if ${name} ${mid}`, kind: "line", color: SCENARIO_COLORS[i % SCENARIO_COLORS.length],
               dash: "6 3", points: points(rows, mid) });
  });
  return out;
}

function bars(rows) {
  const top = Math.max(1e-9, ...rows.map((r) => Math.abs(r.impactScore)));
  return table(rows, [["attribute", "attribute"], ["impactScore", "impact score"],
    [(r) => el("span", { class: `bar${r.impactScore < 0 ? " negative" : ""}`,
                         style: `width:${Math.round((Math.abs(r.impactScore) / top) * 160)}px` }), ""]]);
}

const METRIC_COLUMNS = [["backtest_window", "window"], ["TestWindowStart", "start"], ["TestWindowEnd", "end"],
  ["wQL[0.1]", "wQL 0.1"], ["wQL[0.5]", "wQL 0.5"], ["wQL[0.9]", "wQL 0.9"], ["AverageWeightedQuantileLoss", "avg wQL"],
  ["WAPE", "WAPE"], ["RMSE", "RMSE"], ["MAPE", "MAPE"], ["MASE", "MASE"]];

function details(detail) {
  const out = [];
  const m = detail.metrics;
  out.push(el("h3", { text: "Accuracy of this series per backtest window" }),
           table(m.item, METRIC_COLUMNS.filter(([k]) => !k.startsWith("Test"))));
  out.push(el("h3", { text: "Accuracy of the group per backtest window" }), table(m.windows, METRIC_COLUMNS));
  out.push(el("h3", { text: "Per velocity class" }),
           table(m.byVelocity, [["backtest_window", "window"], ["velocity", "velocity"], ["ItemCount", "items"],
                                ["MinMeanDemand", "min mean"], ["MaxMeanDemand", "max mean"],
                                ["AverageWeightedQuantileLoss", "avg wQL"], ["WAPE", "WAPE"], ["MASE", "MASE"]]));
  if (detail.impactScores.item.length || detail.impactScores.group.length) {
    out.push(el("h3", { text: "Impact scores of this series" }), bars(detail.impactScores.item));
    out.push(el("h3", { text: "Impact scores of the group" }), bars(detail.impactScores.group));
  }
  const board = detail.leaderboard;
  if (board) {
    out.push(el("h3", { text: `Leaderboard (${board.metric})` }),
             table(board.candidates, [["name", "candidate"], ["score", "score"], ["error", "error"]]));
  }
  const d = detail.decision;
  if (d) {
    out.push(el("h3", { text: "Model decision" }),
             el("p", {}, `${d.model} v${d.version}: ${d.decision} (challenger ${number(d.challenger_score)}, ` +
                         `champion ${number(d.champion_score)}; serves v${d.served_version})`));
  }
  return out;
}

start();
