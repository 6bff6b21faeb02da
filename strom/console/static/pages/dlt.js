// Dead letters: the dead-letter topics, and one DLT's records with Spring Kafka's failure headers decoded
// (original topic/partition/offset, exception, stack trace), replayed one, selected or all at a time.

import { get, post, seg } from "../api.js";
import {
  button,
  dataTable,
  dialogActions,
  field,
  h,
  input,
  modal,
  replace,
  reportError,
  routeLink,
  toast,
} from "../dom.js";
import { formatNumber, formatTime } from "../format.js";
import { headersView, payloadView } from "./messages.js";

const DEFAULT_LIMIT = 100;

export async function renderDeadLetterTopics(view, _params, page) {
  const topics = await get("dlt", {}, page.signal);
  replace(
    view,
    h("h1", { "data-testid": "page-title" }, "Dead letters"),
    h("p", { class: "muted" }, "Topics ending in .DLT (Spring Kafka) or -dlt."),
    dataTable({
      testid: "dlt-table",
      rows: topics,
      empty: "No dead-letter topics.",
      rowAttrs: (t) => ({ "data-testid": "dlt-row", "data-topic": t.name }),
      columns: [
        { title: "Topic", cell: (t) => routeLink(t.name, ["dlt", t.name]), sort: (t) => t.name },
        { title: "Partitions", cell: (t) => formatNumber(t.partitions), class: "num" },
        { title: "Messages", cell: (t) => formatNumber(t.messages), class: "num", sort: (t) => t.messages },
      ],
    }),
  );
}

export async function renderDeadLetters(view, [topic], page) {
  const limit = input("dlt-limit", { type: "number", min: 1, value: String(DEFAULT_LIMIT) });
  const toTopic = input("dlt-to-topic", { type: "text", placeholder: "original topic" });
  const recordsBox = h("div");
  /** Selected positions as "partition:offset" strings (a Set needs primitive keys). */
  const selected = new Set();

  async function load() {
    const records = await get(`dlt/${seg(topic)}/records`, { limit: limit.value }, page.signal);
    selected.clear();
    replace(recordsBox, recordsTable(records));
  }

  function selectBox(record) {
    const key = `${record.partition}:${record.offset}`;
    return input("dlt-select", {
      type: "checkbox",
      "aria-label": `Select ${record.partition}/${record.offset}`,
      onchange: (event) => (event.target.checked ? selected.add(key) : selected.delete(key)),
    });
  }

  function recordsTable(records) {
    return dataTable({
      testid: "dlt-records-table",
      rows: records,
      empty: "No dead letters.",
      rowAttrs: (r) => ({
        "data-testid": "dlt-record-row",
        "data-partition": r.partition,
        "data-offset": r.offset,
      }),
      columns: [
        {
          title: "",
          class: "nowrap",
          cell: (r) => [
            selectBox(r),
            button("Replay", "dlt-replay-one", () => replayOne(r), { class: "small", "data-mutates": true }),
          ],
        },
        { title: "Dead letter", cell: positionCell },
        { title: "Original", cell: originalCell },
        { title: "Exception", cell: exceptionCell },
        { title: "Key", cell: (r) => payloadView(r.key) },
        { title: "Value", cell: (r) => payloadView(r.value) },
        { title: "Headers", cell: (r) => headersView(r.headers) },
      ],
    });
  }

  /** Replay `records` (a list of positions) or everything (`null`) after a confirmation. */
  async function replay(records) {
    const what = records === null ? "all dead letters" : `${records.length} dead letter(s)`;
    const destination = toTopic.value.trim() || "their original topic";
    const confirmed = await modal({
      testid: "dlt-replay-dialog",
      title: "Replay dead letters",
      content: (close) =>
        h(
          "div",
          {},
          h("p", {}, `Republish ${what} of ${topic} to ${destination}?`),
          dialogActions(
            close,
            button("Replay", "dlt-replay-confirm", () => close(true), { class: "primary" }),
          ),
        ),
    });
    if (!confirmed) return;
    const body = records === null ? { all: true } : { records };
    const destinationTopic = toTopic.value.trim() || null;
    const outcome = await post(`dlt/${seg(topic)}/replay`, { ...body, to_topic: destinationTopic });
    const failed = outcome.failed;
    const summary = `Replayed ${outcome.replayed.length}${failed.length ? `, ${failed.length} failed` : ""}`;
    toast(summary, failed.length ? "error" : "ok");
    for (const failure of failed) toast(`${failure.partition}/${failure.offset}: ${failure.reason}`, "error");
  }

  function replayOne(record) {
    replay([{ partition: record.partition, offset: record.offset }]).catch(reportError);
  }

  function replaySelected() {
    if (selected.size === 0) {
      toast("Select dead letters first", "info");
      return;
    }
    const positions = [...selected].map((key) => key.split(":").map(Number));
    replay(positions.map(([partition, offset]) => ({ partition, offset }))).catch(reportError);
  }

  await load();
  replace(
    view,
    h("p", { class: "crumbs" }, routeLink("Dead letters", ["dlt"]), " / "),
    h("h1", { "data-testid": "page-title" }, topic),
    h(
      "form",
      {
        class: "toolbar wrap",
        onsubmit: (event) => {
          event.preventDefault();
          load().catch(reportError);
        },
      },
      field("Show", limit),
      h("button", { type: "submit" }, "Reload"),
      field("Replay to", toTopic),
      button("Replay selected", "dlt-replay-selected", replaySelected, { "data-mutates": true }),
      button("Replay all", "dlt-replay-all", () => replay(null).catch(reportError), {
        class: "danger",
        "data-mutates": true,
      }),
    ),
    recordsBox,
  );
}

/** Where the dead letter is (partition / offset) and when it was written. */
function positionCell(record) {
  return h(
    "div",
    {},
    `${record.partition} / ${record.offset}`,
    h("div", { class: "muted nowrap" }, formatTime(record.timestamp)),
  );
}

function originalCell(record) {
  if (record.original_topic === null) return h("span", { class: "muted" }, "—");
  const when = record.original_timestamp;
  return h(
    "div",
    {},
    routeLink(record.original_topic, ["topics", record.original_topic]),
    ` ${record.original_partition ?? "?"} / ${record.original_offset ?? "?"}`,
    record.original_group ? h("div", { class: "muted" }, `group ${record.original_group}`) : null,
    when ? h("div", { class: "muted nowrap" }, formatTime(when)) : null,
  );
}

/** The failure: the cause's class when there is one (Spring wraps listener exceptions), message, stack. */
function exceptionCell(record) {
  const type = record.exception_cause_type ?? record.exception_type;
  if (!type && !record.exception_message) return h("span", { class: "muted" }, "—");
  const stack = record.stack_trace;
  return h(
    "div",
    { class: "exception" },
    type ? h("code", { title: type }, type.split(".").pop()) : null,
    record.exception_message ? h("div", {}, record.exception_message) : null,
    stack ? h("details", {}, h("summary", {}, "Stack trace"), h("pre", {}, stack)) : null,
  );
}
