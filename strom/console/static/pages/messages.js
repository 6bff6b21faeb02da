// Messages of one topic: browse from earliest/latest/an offset/a time, filter, live tail, export, produce.
// Keys, values and headers are untrusted: they only ever become text nodes, and binary payloads are shown
// as base64 (or a hex dump), never as raw bytes.

import { download, get, post, seg } from "../api.js";
import { button, h, input, replace, reportError, routeLink, select, toast } from "../dom.js";
import {
  base64ToHex,
  binaryBase64,
  clip,
  formatNumber,
  formatTime,
  parseKeyValueLines,
  parseLocalTime,
  payloadText,
} from "../format.js";

/** Rows kept on screen while tailing; older ones are dropped so a busy topic cannot exhaust the page. */
const MAX_TAIL_ROWS = 500;
const COLUMNS = ["Partition", "Offset", "Time", "Key", "Value", "Headers"];

export async function renderMessages(view, [name], page) {
  const topic = await get(`topics/${seg(name)}`, {}, page.signal);
  const partitionIds = topic.partitions.map((p) => p.partition).sort((a, b) => a - b);
  const partitionOptions = partitionIds.map((p) => [p, `partition ${p}`]);

  const start = select("msg-start", ["earliest", "latest", "offset", "timestamp"], { "aria-label": "Start" });
  const offset = input("msg-offset", { type: "number", min: 0, placeholder: "offset" });
  const timestamp = input("msg-timestamp", { type: "datetime-local", step: 1, "aria-label": "Time" });
  const partition = select("msg-partition", [["", "all partitions"], ...partitionOptions]);
  const limit = input("msg-limit", { type: "number", min: 1, max: 10000, value: "100" });
  const keyFilter = input("msg-key-filter", { type: "search", placeholder: "key contains" });
  const valueFilter = input("msg-value-filter", { type: "search", placeholder: "value contains" });
  const headerFilter = input("msg-header-filter", { type: "search", placeholder: "header contains" });
  const liveTail = input("msg-live-tail", { type: "checkbox" });
  const count = h("span", { class: "muted", "data-testid": "messages-count" });
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "data messages", "data-testid": "messages-table" },
    h("thead", {}, h("tr", {}, COLUMNS.map((title) => h("th", {}, title)))),
    tbody,
  );

  const syncStartInputs = () => {
    offset.hidden = start.value !== "offset";
    timestamp.hidden = start.value !== "timestamp";
  };
  start.addEventListener("change", syncStartInputs);
  syncStartInputs();

  /** The browse/export query from the form (the API ignores empty values). */
  function query() {
    return {
      partition: partition.value,
      start: start.value,
      offset: start.value === "offset" ? offset.value : "",
      timestamp: start.value === "timestamp" ? (parseLocalTime(timestamp.value) ?? "") : "",
      limit: limit.value,
      key: keyFilter.value,
      value: valueFilter.value,
      header: headerFilter.value,
    };
  }

  async function load() {
    stopTail();
    const result = await get(`topics/${seg(name)}/messages`, query(), page.signal);
    const fragment = document.createDocumentFragment();
    for (const message of result.messages) fragment.append(messageRow(message));
    if (result.messages.length === 0) {
      const empty = h("td", { colspan: COLUMNS.length }, "No messages match.");
      fragment.append(h("tr", { class: "empty" }, empty));
    }
    tbody.replaceChildren(fragment);
    count.textContent = `${formatNumber(result.messages.length)} messages`;
  }

  let tail = null;

  function stopTail() {
    tail?.abort();
    tail = null;
    liveTail.checked = false;
  }

  /** Long-poll the tail endpoint from the current end offsets; new messages go on top. */
  async function runTail(controller) {
    const fresh = await get(`topics/${seg(name)}`, {}, controller.signal);
    const chosen = partition.value;
    const wanted = fresh.partitions.filter((p) => chosen === "" || String(p.partition) === chosen);
    let after = Object.fromEntries(wanted.map((p) => [p.partition, p.end_offset ?? 0]));
    tbody.querySelector("tr.empty")?.remove();
    while (!controller.signal.aborted) {
      const tailQuery = { after: JSON.stringify(after) };
      const result = await get(`topics/${seg(name)}/messages/tail`, tailQuery, controller.signal);
      after = { ...after, ...result.next_offsets };
      const fragment = document.createDocumentFragment();
      for (const message of [...result.messages].reverse()) fragment.append(messageRow(message));
      tbody.prepend(fragment);
      while (tbody.rows.length > MAX_TAIL_ROWS) tbody.lastElementChild.remove();
      count.textContent = `${formatNumber(tbody.rows.length)} messages (live)`;
    }
  }

  page.signal.addEventListener("abort", () => tail?.abort());
  liveTail.addEventListener("change", () => {
    if (!liveTail.checked) {
      stopTail();
      return;
    }
    const controller = new AbortController();
    tail = controller;
    runTail(controller).catch((error) => {
      reportError(error);
      if (tail === controller) stopTail();
    });
  });

  const exportAs = (format) => {
    const fileName = `${name}-messages.${format}`;
    download(`topics/${seg(name)}/messages/export`, { ...query(), format }, fileName).catch(reportError);
  };

  replace(
    view,
    h("p", { class: "crumbs" }, routeLink("Topics", ["topics"]), " / ", routeLink(name, ["topics", name])),
    h("h1", { "data-testid": "page-title" }, `Messages in ${name}`),
    h(
      "form",
      {
        class: "toolbar wrap",
        onsubmit: (event) => {
          event.preventDefault();
          load().catch(reportError);
        },
      },
      start,
      offset,
      timestamp,
      partition,
      h("label", { class: "inline" }, "limit ", limit),
      keyFilter,
      valueFilter,
      headerFilter,
      h("button", { type: "submit", class: "primary", "data-testid": "msg-load" }, "Load"),
      h("label", { class: "inline" }, liveTail, " Live tail"),
      button("Export JSON", "msg-export-json", () => exportAs("json")),
      button("Export CSV", "msg-export-csv", () => exportAs("csv")),
    ),
    produceForm(name, partitionOptions),
    count,
    table,
  );
  await load();
}

function messageRow(message) {
  return h(
    "tr",
    { "data-testid": "message-row", "data-partition": message.partition, "data-offset": message.offset },
    h("td", { class: "num" }, String(message.partition)),
    h("td", { class: "num" }, String(message.offset)),
    h("td", { class: "nowrap" }, formatTime(message.timestamp)),
    h("td", { "data-testid": "message-key" }, payloadView(message.key)),
    h("td", { "data-testid": "message-value", class: "value-cell" }, payloadView(message.value)),
    h("td", { "data-testid": "message-headers" }, headersView(message.headers)),
  );
}

/** A payload as text: JSON pretty-printed, binary as base64 with a button to switch to a hex dump. */
export function payloadView(payload) {
  if (payload.encoding === "null") return h("span", { class: "muted" }, "null");
  const base64 = binaryBase64(payload);
  if (base64 === null) {
    return h("pre", { class: payload.encoding === "json" ? "json" : null }, payloadText(payload));
  }
  const pre = h("pre", { class: "binary" }, base64);
  let hex = false;
  const toggle = button("hex", "message-hex-toggle", () => {
    hex = !hex;
    pre.textContent = hex ? base64ToHex(base64) : base64;
    toggle.textContent = hex ? "base64" : "hex";
  });
  toggle.classList.add("small");
  return h("div", {}, h("span", { class: "badge" }, "binary · base64"), toggle, pre);
}

/** Headers ([{name, value: payload}]) as a definition list; binary values marked as base64. */
export function headersView(headers) {
  if (headers.length === 0) return h("span", { class: "muted" }, "—");
  const shown = (value) => {
    if (value.encoding === "null") return "null";
    const base64 = binaryBase64(value);
    return base64 === null ? clip(payloadText(value)) : `base64: ${clip(base64)}`;
  };
  return h(
    "dl",
    { class: "headers" },
    headers.map(({ name, value }) => [h("dt", {}, name), h("dd", {}, shown(value))]),
  );
}

function produceForm(topicName, partitionOptions) {
  const key = input("produce-key", { type: "text", placeholder: "key (empty for none)" });
  const value = h("textarea", { rows: 4, placeholder: "value", "data-testid": "produce-value" });
  const headers = h("textarea", { rows: 2, placeholder: "name=value", "data-testid": "produce-headers" });
  const partition = select("produce-partition", [["", "any partition"], ...partitionOptions], {
    "aria-label": "Partition",
  });
  const result = h("span", { class: "muted", "data-testid": "produce-result" });
  const submit = button("Produce", "produce-submit", null, { type: "submit", class: "primary" });

  async function produce() {
    const written = await post(`topics/${seg(topicName)}/messages`, {
      key: key.value === "" ? null : key.value,
      value: value.value,
      headers: parseKeyValueLines(headers.value),
      partition: partition.value === "" ? null : Number(partition.value),
    });
    // {partition, offset}; a [partition, offset] pair is accepted too (a serialised NamedTuple).
    const [at, offset] = Array.isArray(written) ? written : [written.partition, written.offset];
    result.textContent = `Written to partition ${at} at offset ${offset}`;
    toast(result.textContent, "ok");
  }

  return h(
    "details",
    { class: "panel", open: true, "data-mutates": true },
    h("summary", {}, "Produce a message"),
    h(
      "form",
      {
        class: "form",
        onsubmit: (event) => {
          event.preventDefault();
          submit.disabled = true;
          produce()
            .catch(reportError)
            .finally(() => (submit.disabled = false));
        },
      },
      h("div", { class: "row" }, value, h("div", { class: "form" }, key, headers)),
      h("div", { class: "actions" }, result, partition, submit),
    ),
  );
}
