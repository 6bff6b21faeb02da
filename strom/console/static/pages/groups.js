// Consumer groups: the list, and one group's members, offsets and lag (refreshed every few seconds), its
// lag history chart, and the offset reset form that always shows a preview before anything is applied.

import { get, post, seg } from "../api.js";
import { lineChart } from "../chart.js";
import {
  button,
  dataTable,
  field,
  h,
  input,
  replace,
  reportError,
  routeLink,
  select,
  toast,
} from "../dom.js";
import { formatNumber, parseLocalTime } from "../format.js";

const GROUP_REFRESH_MS = 3000;
const RESET_TARGETS = ["earliest", "latest", "offset", "timestamp", "shift"];

export async function renderGroups(view, _params, page) {
  let groups = await get("groups", {}, page.signal);
  const search = input("groups-search", { type: "search", placeholder: "Filter groups" });
  const table = dataTable({
    testid: "groups-table",
    rows: [],
    empty: "No consumer groups.",
    rowAttrs: (g) => ({ "data-testid": "group-row", "data-group": g.group_id }),
    columns: [
      { title: "Group", cell: (g) => routeLink(g.group_id, ["groups", g.group_id]), sort: (g) => g.group_id },
      { title: "State", cell: (g) => stateBadge(g.state), sort: (g) => g.state },
      { title: "Members", cell: (g) => formatNumber(g.members), class: "num", sort: (g) => g.members },
      { title: "Topics", cell: (g) => g.topics.join(", ") },
      { title: "Total lag", cell: (g) => formatNumber(g.total_lag), class: "num", sort: (g) => g.total_lag },
    ],
  });
  const show = () => {
    const needle = search.value.trim().toLowerCase();
    table.setRows(groups.filter((g) => g.group_id.toLowerCase().includes(needle)));
  };
  search.addEventListener("input", show);
  show();
  const title = h("h1", { "data-testid": "page-title" }, "Consumer groups");
  replace(view, title, h("div", { class: "toolbar" }, search), table);
  page.every(GROUP_REFRESH_MS, async () => {
    groups = await get("groups", {}, page.signal);
    show();
  });
}

function stateBadge(state) {
  return h("span", { class: `badge state-${state.toLowerCase().replace(/[^a-z]/g, "")}` }, state);
}

export async function renderGroup(view, [id], page) {
  const group = await get(`groups/${seg(id)}`, {}, page.signal);
  const detailsBox = h("div");
  const chartBox = h("div", { class: "chart-box" });

  async function refresh(described = null) {
    const [fresh, history] = await Promise.all([
      described ?? get(`groups/${seg(id)}`, {}, page.signal),
      get(`groups/${seg(id)}/lag-history`, {}, page.signal),
    ]);
    replace(detailsBox, groupDetails(fresh));
    replace(chartBox, lagChart(history.samples));
  }

  await refresh(group);
  replace(
    view,
    h("p", { class: "crumbs" }, routeLink("Consumer groups", ["groups"]), " / "),
    h("h1", { "data-testid": "page-title" }, id),
    detailsBox,
    h("h2", {}, "Lag history"),
    chartBox,
    resetForm(id, group, () => refresh()),
  );
  page.every(GROUP_REFRESH_MS, () => refresh());
}

function groupDetails(group) {
  const coordinator = group.coordinator;
  return h(
    "div",
    {},
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "State"),
      h("dd", { "data-testid": "group-state" }, stateBadge(group.state)),
      h("dt", {}, "Total lag"),
      h("dd", { "data-testid": "group-total-lag" }, formatNumber(group.total_lag)),
      group.assignor ? [h("dt", {}, "Assignor"), h("dd", {}, group.assignor)] : null,
      coordinator ? [h("dt", {}, "Coordinator"), h("dd", {}, brokerText(coordinator))] : null,
    ),
    h("h2", {}, `Members (${group.members.length})`),
    dataTable({
      testid: "members-table",
      rows: group.members,
      empty: "No active members.",
      rowAttrs: () => ({ "data-testid": "member-row" }),
      columns: [
        { title: "Member", cell: (m) => h("code", {}, m.member_id) },
        { title: "Instance", cell: (m) => m.instance_id ?? "—" },
        { title: "Client", cell: (m) => m.client_id },
        { title: "Host", cell: (m) => m.host },
        { title: "Assignment", cell: (m) => assignmentText(m.assignment) },
      ],
    }),
    h("h2", {}, "Offsets and lag"),
    dataTable({
      testid: "group-offsets-table",
      rows: group.partitions,
      empty: "No committed offsets.",
      rowAttrs: (o) => ({
        "data-testid": "offset-row",
        "data-topic": o.topic,
        "data-partition": o.partition,
      }),
      columns: [
        { title: "Topic", cell: (o) => routeLink(o.topic, ["topics", o.topic]), sort: (o) => o.topic },
        { title: "Partition", cell: (o) => String(o.partition), class: "num", sort: (o) => o.partition },
        { title: "Committed", cell: (o) => formatNumber(o.committed), class: "num" },
        { title: "End", cell: (o) => formatNumber(o.end_offset), class: "num" },
        { title: "Member", cell: (o) => (o.member_id ? h("code", {}, o.member_id) : "—") },
        {
          title: "Lag",
          class: "num",
          cell: (o) => h("span", { "data-testid": "offset-lag" }, formatNumber(o.lag)),
          sort: (o) => o.lag ?? -1,
        },
      ],
    }),
  );
}

const brokerText = (broker) => `${broker.id} (${broker.host}:${broker.port})`;

/** An assignment {topic: [partitions]} as `topic: 0, 1, 2; other: 0`. */
function assignmentText(assignment) {
  const entries = Object.entries(assignment);
  return entries.map(([topic, partitions]) => `${topic}: ${partitions.join(", ")}`).join("; ") || "—";
}

function lagChart(samples) {
  const points = samples.map((s) => [s.t, s.lag]);
  return lineChart({ testid: "lag-chart", series: [{ name: "total lag", color: "#dc2626", points }] });
}

/** The reset form: Preview asks for a dry run; Apply sends exactly the previewed request without dry run. */
function resetForm(id, group, onApplied) {
  const topicNames = [...new Set(group.partitions.map((o) => o.topic))].sort();
  const topic = select("reset-topic", topicNames);
  const partitions = input("reset-partitions", { type: "text", placeholder: "all" });
  const to = select("reset-to", RESET_TARGETS);
  const value = input("reset-value", { type: "text", placeholder: "offset, epoch ms or ±shift" });
  const time = input("reset-time", { type: "datetime-local", step: 1 });
  const valueField = field("Value", value);
  const timeField = field("Time", time);
  const previewBox = h("div");
  const apply = button("Apply", "reset-apply", null, {
    class: "danger",
    disabled: true,
    "data-mutates": true,
  });
  let previewed = null;

  const syncValueInputs = () => {
    valueField.hidden = !["offset", "shift", "timestamp"].includes(to.value);
    timeField.hidden = to.value !== "timestamp";
  };
  const invalidate = () => {
    previewed = null;
    apply.disabled = true;
    previewBox.replaceChildren();
  };
  to.addEventListener("change", syncValueInputs);
  for (const control of [topic, partitions, to, value, time]) {
    control.addEventListener("input", invalidate);
    control.addEventListener("change", invalidate);
  }
  syncValueInputs();

  /** The request body from the form; throws an Error the user can act on. */
  function requestBody() {
    const body = { topic: topic.value, to: to.value, partitions: null, value: null };
    if (partitions.value.trim()) {
      body.partitions = partitions.value.split(",").map((p) => Number(p.trim()));
      if (body.partitions.some((p) => !Number.isInteger(p) || p < 0)) {
        throw new Error("Partitions: a comma-separated list of partition numbers");
      }
    }
    if (to.value === "timestamp") {
      body.value = time.value ? parseLocalTime(time.value) : Number(value.value);
    } else if (to.value === "offset" || to.value === "shift") {
      body.value = Number(value.value);
    }
    if (body.value !== null && !Number.isInteger(body.value)) {
      throw new Error(`Resetting to ${to.value} needs a whole number`);
    }
    return body;
  }

  async function preview() {
    const body = requestBody();
    const result = await post(`groups/${seg(id)}/reset-offsets`, { ...body, dry_run: true });
    replace(previewBox, previewTable(result.offsets));
    previewed = body;
    apply.disabled = false;
  }

  apply.addEventListener("click", async () => {
    if (!previewed) return;
    apply.disabled = true;
    try {
      const result = await post(`groups/${seg(id)}/reset-offsets`, { ...previewed, dry_run: false });
      replace(previewBox, previewTable(result.offsets));
      toast(`Offsets of ${id} reset`, "ok");
      previewed = null;
      await onApplied();
    } catch (error) {
      reportError(error);
      apply.disabled = false;
    }
  });

  return h(
    "section",
    { class: "panel" },
    h("h2", {}, "Reset offsets"),
    h("p", { class: "muted" }, "Only while the group has no members. Apply writes the previewed offsets."),
    h(
      "form",
      {
        class: "toolbar wrap",
        onsubmit: (event) => {
          event.preventDefault();
          preview().catch(reportError);
        },
      },
      field("Topic", topic),
      field("Partitions", partitions),
      field("To", to),
      valueField,
      timeField,
      h("button", { type: "submit", "data-testid": "reset-preview" }, "Preview"),
      apply,
    ),
    previewBox,
  );
}

function previewTable(rows) {
  return dataTable({
    testid: "reset-preview-table",
    rows,
    empty: "Nothing to reset.",
    rowAttrs: (r) => ({ "data-testid": "reset-preview-row", "data-partition": r.partition }),
    columns: [
      { title: "Topic", cell: (r) => r.topic },
      { title: "Partition", cell: (r) => String(r.partition), class: "num" },
      { title: "Current", cell: (r) => formatNumber(r.current), class: "num" },
      { title: "New", cell: (r) => formatNumber(r.new), class: "num" },
    ],
  });
}
