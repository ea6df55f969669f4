// A time-series chart in SVG: lines and shaded bands over dates, a legend that hides and shows each
// layer, and a tooltip with every visible value at the date under the pointer. No dependencies.

const NS = "http://www.w3.org/2000/svg";
const W = 960, H = 340, M = { top: 12, right: 16, bottom: 28, left: 56 };

function svg(tag, attributes = {}) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  return node;
}

function ticks(lo, hi, count) {
  const span = hi - lo || 1, step0 = span / count;
  const power = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => span / s <= count) || power * 10;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
  return out;
}

// layers: [{name, color, kind: "line" | "band", dash, points: [{t: ms, y} | {t, lo, hi}]}]
export function drawChart(container, layers, { yLabel = "" } = {}) {
  container.replaceChildren();
  const hidden = new Set(layers.filter((l) => l.hidden).map((l) => l.name));
  const legend = document.createElement("div");
  legend.className = "legend";
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "forecast chart" });
  const tooltip = document.createElement("div");
  tooltip.className = "tooltip";
  tooltip.hidden = true;
  container.style.position = "relative";
  container.append(legend, plot, tooltip);

  for (const layer of layers) {
    const item = document.createElement("span");
    item.dataset.layer = layer.name;
    item.innerHTML = `<svg width="18" height="10"><rect width="18" height="10" fill="${layer.color}" ` +
                     `opacity="${layer.kind === "band" ? 0.35 : 1}"/></svg> `;
    item.append(layer.name);
    item.classList.toggle("off", hidden.has(layer.name));
    item.addEventListener("click", () => {
      hidden.has(layer.name) ? hidden.delete(layer.name) : hidden.add(layer.name);
      item.classList.toggle("off", hidden.has(layer.name));
      render();
    });
    legend.append(item);
  }

  function render() {
    plot.replaceChildren();
    const visible = layers.filter((l) => !hidden.has(l.name) && l.points.length);
    const all = visible.flatMap((l) => l.points);
    if (!all.length) {
      plot.append(Object.assign(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }), { textContent: "no data" }));
      return;
    }
    const ts = all.map((p) => p.t);
    const ys = all.flatMap((p) => [p.y, p.lo, p.hi]).filter((v) => v !== null && v !== undefined && !Number.isNaN(v));
    const t0 = Math.min(...ts), t1 = Math.max(...ts);
    let y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
    if (y1 === y0) y1 = y0 + 1;
    y1 += (y1 - y0) * 0.05;
    const x = (t) => M.left + ((t - t0) / (t1 - t0 || 1)) * (W - M.left - M.right);
    const y = (v) => H - M.bottom - ((v - y0) / (y1 - y0)) * (H - M.top - M.bottom);

    for (const v of ticks(y0, y1, 5)) {
      plot.append(svg("line", { class: "axis", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
      const label = svg("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" });
      label.textContent = Math.abs(v) >= 1000 ? v.toExponential(1) : String(+v.toFixed(2));
      plot.append(label);
    }
    const days = ticks(t0 / 864e5, t1 / 864e5, 7);
    for (const d of days) {
      const label = svg("text", { x: x(d * 864e5), y: H - 8, "text-anchor": "middle" });
      label.textContent = new Date(d * 864e5).toISOString().slice(0, 10);
      plot.append(label);
    }
    if (yLabel) {
      const label = svg("text", { x: 12, y: M.top + 8 });
      label.textContent = yLabel;
      plot.append(label);
    }
    for (const layer of visible) {
      const pts = layer.points.filter((p) => (layer.kind === "band" ? p.lo != null && p.hi != null : p.y != null));
      if (!pts.length) continue;
      if (layer.kind === "band") {
        const upper = pts.map((p) => `${x(p.t)},${y(p.hi)}`);
        const lower = pts.slice().reverse().map((p) => `${x(p.t)},${y(p.lo)}`);
        plot.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: layer.color, opacity: 0.3,
                                     "data-layer": layer.name }));
      } else {
        const path = pts.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.y).toFixed(1)}`).join("");
        plot.append(svg("path", { d: path, fill: "none", stroke: layer.color, "stroke-width": layer.width || 1.6,
                                  "stroke-dasharray": layer.dash || "", "data-layer": layer.name }));
      }
    }
    const cursor = svg("line", { class: "axis", y1: M.top, y2: H - M.bottom, visibility: "hidden" });
    plot.append(cursor);
    plot.onmousemove = (event) => {
      const box = plot.getBoundingClientRect();
      const px = ((event.clientX - box.left) / box.width) * W;
      const t = t0 + ((px - M.left) / (W - M.left - M.right)) * (t1 - t0);
      const rows = [];
      let at = null;
      for (const layer of visible) {
        const near = layer.points.reduce((best, p) => (Math.abs(p.t - t) < Math.abs(best.t - t) ? p : best));
        if (Math.abs(near.t - t) > (t1 - t0) / 50) continue;
        at = at ?? near.t;
        const value = layer.kind === "band" ? `${fmt(near.lo)} – ${fmt(near.hi)}` : fmt(near.y);
        rows.push(`<div><b style="color:${layer.color}">■</b> ${escape(layer.name)}: ${value}</div>`);
      }
      if (!rows.length) { tooltip.hidden = true; cursor.setAttribute("visibility", "hidden"); return; }
      cursor.setAttribute("x1", x(at)); cursor.setAttribute("x2", x(at)); cursor.setAttribute("visibility", "visible");
      tooltip.innerHTML = `<div>${new Date(at).toISOString().slice(0, 16).replace("T00:00", "")}</div>${rows.join("")}`;
      tooltip.hidden = false;
      tooltip.style.left = `${Math.min(event.clientX - box.left + 12, box.width - 220)}px`;
      tooltip.style.top = `${event.clientY - box.top + 12}px`;
    };
    plot.onmouseleave = () => { tooltip.hidden = true; cursor.setAttribute("visibility", "hidden"); };
  }
  render();
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fmt(v) {
  return v === null || v === undefined ? "–" : Math.abs(v) >= 1000 ? v.toFixed(0) : (+v.toFixed(2)).toString();
}

export const time = (s) => Date.parse(s.length <= 10 ? `${s}T00:00:00Z` : s.endsWith("Z") ? s : `${s}Z`);
