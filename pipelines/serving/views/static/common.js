// What the views share: JSON calls to their own API (Airflow's session cookie goes along), DOM helpers.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) };
  const response = await fetch(`api/${path}`, { credentials: "same-origin", ...init });
  const text = await response.text();
  let payload = null;
  try { payload = text ? JSON.parse(text) : null; } catch { payload = { message: text }; }
  if (!response.ok) {
    const fields = (payload?.errors || []).map((e) => `${e.field}: ${e.reason}`).join("; ");
    throw new ApiError(response.status, `${response.status}: ${payload?.message || response.statusText}` +
                                        (fields && !payload?.message?.includes(fields) ? ` (${fields})` : ""));
  }
  return payload;
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function number(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (typeof value !== "number") return String(value);
  return Math.abs(value) >= 1000 ? value.toFixed(0) : Number(value.toPrecision(digits + 1)).toString();
}

// A table from rows (objects); columns: [key, label] pairs, or every key of the first row.
export function table(rows, columns, attributes = {}) {
  if (!rows || rows.length === 0) return el("p", { class: "muted", text: "none" });
  const cols = columns || Object.keys(rows[0]).map((k) => [k, k]);
  return el("table", attributes,
    el("thead", {}, el("tr", {}, cols.map(([, label]) => el("th", { text: label })))),
    el("tbody", {}, rows.map((row) => el("tr", {}, cols.map(([key]) => {
      const value = typeof key === "function" ? key(row) : row[key];
      return value instanceof Node ? el("td", {}, value)
        : el("td", { class: typeof value === "number" ? "num" : null, text: number(value) });
    })))));
}

export function showError(target, error) {
  target.replaceChildren(el("p", { class: "error", role: "alert", text: error.message || String(error) }));
}

export function fill(select, values, selected) {
  select.replaceChildren(...values.map((v) => el("option", { value: v, selected: v === selected, text: v })));
}
