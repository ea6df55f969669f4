// The data and models view: validation, snapshot and model history of every dataset group.
import { api, el, showError, table } from "./common.js";

const $ = (id) => document.getElementById(id);

async function start() {
  let groups;
  try {
    groups = await api("status");
  } catch (error) { return showError($("message"), error); }
  $("groups").replaceChildren(...groups.map(group));
}

function group(g) {
  return el("section", { class: "panel", "data-group": g.name },
    el("h2", { text: `${g.name} (${g.kind})` }), validation(g.validation), snapshot(g.snapshot), models(g.models));
}

function validation(v) {
  if (!v) return el("p", { class: "muted", text: "not validated yet" });
  const rows = Object.entries(v.datasets).map(([name, d]) => ({ dataset: name, file: d.file, read: d.rowsRead,
    rejected: d.rowsRejected, checks: d.expectations, failed: d.failed.map((f) => `${f.rule} (${f.column}): ${f.unexpected_count}`).join("; ") || "none" }));
  const out = [el("h3", {}, "Validation as of ", v.asOf, " ",
                  el("span", { class: v.success ? "ok" : "error", text: v.success ? "passed" : "failed" })),
               table(rows, [["dataset", "dataset"], ["file", "file"], ["read", "rows read"], ["rejected", "rows rejected"],
                            ["checks", "expectations"], ["failed", "failed"]], { "data-testid": "validation" })];
  if (v.dataDocs) out.push(el("p", {}, el("a", { href: v.dataDocs, target: "_blank", rel: "noopener", "data-testid": "data-docs",
                                                 text: "Great Expectations Data Docs" })));
  for (const [name, d] of Object.entries(v.datasets)) {
    if (d.quarantine.rows) out.push(el("h3", { text: `${name}: ${d.quarantine.rows} rows quarantined` }), table(d.quarantine.sample));
  }
  return el("div", {}, out);
}

function snapshot(s) {
  if (!s) return el("p", { class: "muted", text: "no snapshot yet" });
  const fills = (f) => (f ? Object.entries(f).map(([how, cols]) => `${how}: ${Object.entries(cols).map(([c, n]) => `${c} ${n}`).join(", ")}`).join("; ") : "");
  const rows = Object.entries(s.datasets).map(([name, d]) => ({ dataset: name, rows: d.rows, rejected: d.rows_rejected,
    series: d.series ?? d.users ?? "", items: d.items ?? (d.cold_start_items ? `${d.cold_start_items.length} cold start` : ""),
    start: fmtTime(d.start), end: fmtTime(d.end), filled: fills(d.filled) }));
  return el("div", {}, el("h3", { text: `Snapshot as of ${s.asOf}` }),
    table(rows, [["dataset", "dataset"], ["rows", "rows"], ["rejected", "rejected"], ["series", "series / users"],
                 ["items", "items"], ["start", "start"], ["end", "end"], ["filled", "filled"]], { "data-testid": "snapshot" }));
}

function fmtTime(v) {
  if (v === undefined || v === null || v === "") return "";
  return typeof v === "number" ? new Date(v * 1000).toISOString().slice(0, 19) : String(v);
}

function models(m) {
  if (m.error) return el("p", { class: "error", text: `model registry: ${m.error}` });
  const rows = m.versions.map((v) => ({ ...v, created: v.created ? new Date(v.created).toISOString().slice(0, 19) : "" }));
  return el("div", {}, el("h3", { text: `Model history: ${m.name}` }),
    table(rows, [["version", "version"], [(v) => el("span", {}, v.aliases.map((a) => el("span", { class: `badge ${a}`, text: a }))), "aliases"],
                 ["created", "registered"], ["metric", "metric"], ["score", "score"], ["championScore", "champion's score"],
                 ["championVersion", "against"], ["decision", "decision"], ["reason", "reason"]], { "data-testid": "models" }));
}

start();
