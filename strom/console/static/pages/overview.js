// Overview: cluster id, brokers, totals and the messages in/out rate chart (refreshed every 2 s).

import { get } from "../api.js";
import { lineChart } from "../chart.js";
import { dataTable, h, replace } from "../dom.js";
import { formatBytes, formatNumber } from "../format.js";

const RATE_REFRESH_MS = 2000;
const TOTALS = ["topics", "partitions", "messages", "size_bytes", "groups"];

export async function renderOverview(view, _params, page) {
  const [overview, rates] = await Promise.all([
    get("overview", {}, page.signal),
    get("metrics/rates", {}, page.signal),
  ]);
  const chartBox = h("div", { class: "chart-box" }, ratesChart(rates.samples));
  const controllerBadge = (broker) => (broker.controller ? h("span", { class: "badge" }, "controller") : "");

  replace(
    view,
    h("h1", { "data-testid": "page-title" }, "Overview"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Cluster id"),
      h("dd", { "data-testid": "overview-cluster-id" }, overview.cluster_id ?? "—"),
      h("dt", {}, "Controller"),
      h("dd", { "data-testid": "overview-controller" }, overview.controller_id ?? "—"),
    ),
    h("div", { class: "cards", "data-testid": "overview-totals" }, totalCards(overview)),
    h("h2", {}, "Brokers"),
    dataTable({
      testid: "brokers-table",
      rows: overview.brokers,
      rowAttrs: (b) => ({ "data-broker": b.id }),
      columns: [
        { title: "Id", cell: (b) => String(b.id), class: "num", sort: (b) => b.id },
        { title: "Host", cell: (b) => b.host, sort: (b) => b.host },
        { title: "Port", cell: (b) => String(b.port), class: "num" },
        { title: "Rack", cell: (b) => b.rack ?? "—" },
        { title: "Role", cell: controllerBadge },
      ],
    }),
    h("h2", {}, "Throughput (messages/s)"),
    chartBox,
  );

  page.every(RATE_REFRESH_MS, async () => {
    const fresh = await get("metrics/rates", {}, page.signal);
    replace(chartBox, ratesChart(fresh.samples));
  });
}

function ratesChart(samples) {
  return lineChart({
    testid: "rates-chart",
    series: [
      { name: "in", color: "#2563eb", points: samples.map((s) => [s.t, s.in_per_s]) },
      { name: "out (consumed)", color: "#16a34a", points: samples.map((s) => [s.t, s.out_per_s]) },
    ],
  });
}

/** One card per cluster total, each with data-total=<name>; sizes in binary units. */
function totalCards(overview) {
  return TOTALS.filter((name) => name in overview).map((name) =>
    h(
      "div",
      { class: "card", "data-total": name },
      h("div", { class: "card-value" }, (name === "size_bytes" ? formatBytes : formatNumber)(overview[name])),
      h("div", { class: "card-title" }, name === "size_bytes" ? "size" : name),
    ),
  );
}
