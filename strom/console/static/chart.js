// A small inline-SVG line chart: enough for rates and lag over the last minutes, no library needed.

import { formatNumber } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 56, right: 12, top: 12, bottom: 24 };

function svg(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== null) el.textContent = text;
  return el;
}

/**
 * Draw `series` ([{name, color, points: [[t_ms, y], ...]}]) as an SVG line chart with a y axis from 0 to
 * the largest value and a legend. Returns the <svg> element.
 */
export function lineChart({ testid, series, unit = "" }) {
  const root = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT + 20}`,
    class: "chart",
    role: "img",
    "data-testid": testid,
  });
  const label = (x, y, text, anchor = "start") =>
    svg("text", { x, y, "text-anchor": anchor, class: "chart-label" }, text);
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    root.append(label(WIDTH / 2, HEIGHT / 2, "No samples yet", "middle"));
    return root;
  }
  const tMin = Math.min(...all.map((p) => p[0]));
  const tMax = Math.max(...all.map((p) => p[0]));
  const yMax = niceCeiling(Math.max(...all.map((p) => p[1]), 1));
  const x = (t) => PAD.left + ((t - tMin) / Math.max(tMax - tMin, 1)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / yMax) * (HEIGHT - PAD.top - PAD.bottom);

  for (let i = 0; i <= 4; i += 1) {
    const value = (yMax * i) / 4;
    const lineY = y(value);
    const grid = { x1: PAD.left, x2: WIDTH - PAD.right, y1: lineY, y2: lineY, class: "chart-grid" };
    root.append(svg("line", grid));
    root.append(label(PAD.left - 6, lineY + 4, formatNumber(value) + unit, "end"));
  }
  const clock = (t) =>
    new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  root.append(label(PAD.left, HEIGHT - 4, clock(tMin)));
  root.append(label(WIDTH - PAD.right, HEIGHT - 4, clock(tMax), "end"));

  series.forEach((s, index) => {
    if (s.points.length > 0) {
      const d = s.points
        .map(([t, v], i) => `${i === 0 ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`)
        .join(" ");
      const line = { d, fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name };
      root.append(svg("path", line));
    }
    const legendX = PAD.left + index * 160;
    root.append(svg("rect", { x: legendX, y: HEIGHT + 6, width: 12, height: 12, fill: s.color }));
    root.append(label(legendX + 18, HEIGHT + 16, s.name));
  });
  return root;
}

/** Round up to 1, 2 or 5 times a power of ten so the axis labels are readable. */
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}
