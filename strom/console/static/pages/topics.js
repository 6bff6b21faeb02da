// Topics: the list (filtered as you type, sortable), the create dialog and delete with typed confirmation.

import { del, get, post, seg } from "../api.js";
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
import { formatBytes, formatNumber, parseKeyValueLines } from "../format.js";

/** A right-aligned, sortable count column. */
const numberColumn = (title, value) => ({
  title,
  class: "num",
  cell: (row) => formatNumber(value(row)),
  sort: (row) => value(row) ?? -1,
});

/** Kafka's legal topic names: ASCII letters, digits, `.`, `_`, `-`; at most 249 characters. */
const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

export async function renderTopics(view, _params, page) {
  let all = await get("topics", { internal: 1 }, page.signal);
  const search = h("input", {
    type: "search",
    placeholder: "Filter topics",
    "data-testid": "topics-search",
    "aria-label": "Filter topics",
  });
  const internal = h("input", { type: "checkbox", "data-testid": "topics-internal" });
  const count = h("span", { class: "muted", "data-testid": "topics-count" });
  const table = dataTable({
    testid: "topics-table",
    rows: [],
    empty: "No topics.",
    rowAttrs: (t) => ({ "data-testid": "topic-row", "data-topic": t.name }),
    columns: [
      {
        title: "Name",
        cell: (t) => [
          routeLink(t.name, ["topics", t.name]),
          t.internal ? h("span", { class: "badge" }, "internal") : null,
        ],
        sort: (t) => t.name,
      },
      numberColumn("Partitions", (t) => t.partitions),
      numberColumn("Replication", (t) => t.replication_factor),
      numberColumn("Messages", (t) => t.messages),
      { title: "Size", class: "num", cell: (t) => formatBytes(t.size_bytes), sort: (t) => t.size_bytes ?? 0 },
      {
        title: "",
        class: "row-actions",
        cell: (t) => [
          routeLink("Messages", ["topics", t.name, "messages"], { class: "button small" }),
          h(
            "button",
            {
              type: "button",
              class: "small danger",
              "data-testid": "delete-topic-button",
              "data-mutates": true,
              onclick: () => deleteTopic(t.name, reload),
            },
            "Delete",
          ),
        ],
      },
    ],
  });

  function show() {
    const needle = search.value.trim().toLowerCase();
    const rows = all.filter(
      (t) => (internal.checked || !t.internal) && (!needle || t.name.toLowerCase().includes(needle)),
    );
    count.textContent = `${formatNumber(rows.length)} of ${formatNumber(all.length)} topics`;
    table.setRows(rows);
  }

  async function reload() {
    all = await get("topics", { internal: 1 }, page.signal);
    show();
  }

  search.addEventListener("input", show);
  internal.addEventListener("change", show);
  show();
  replace(
    view,
    h(
      "div",
      { class: "page-head" },
      h("h1", { "data-testid": "page-title" }, "Topics"),
      h(
        "button",
        {
          type: "button",
          class: "primary",
          "data-testid": "create-topic-button",
          "data-mutates": true,
          onclick: () => createTopic(reload),
        },
        "Create topic",
      ),
    ),
    h(
      "div",
      { class: "toolbar" },
      search,
      h("label", { class: "inline" }, internal, " Show internal"),
      h(
        "button",
        { type: "button", "data-testid": "topics-refresh", onclick: () => reload().catch(reportError) },
        "Refresh",
      ),
      count,
    ),
    table,
  );
}

async function createTopic(onCreated) {
  await modal({
    testid: "create-topic-dialog",
    title: "Create topic",
    content: (close) => {
      const name = input("create-topic-name", { type: "text", required: true, maxlength: 249 });
      const partitions = h("input", {
        type: "number",
        min: 1,
        value: "1",
        required: true,
        "data-testid": "create-topic-partitions",
      });
      const replication = h("input", {
        type: "number",
        min: 1,
        placeholder: "broker default",
        "data-testid": "create-topic-replication",
      });
      const configs = h("textarea", {
        rows: 4,
        placeholder: "retention.ms=604800000\ncleanup.policy=delete",
        "data-testid": "create-topic-configs",
      });
      const submit = button("Create", "create-topic-submit", null, { type: "submit", class: "primary" });
      return h(
        "form",
        {
          class: "form",
          onsubmit: async (event) => {
            event.preventDefault();
            if (!TOPIC_NAME.test(name.value)) {
              toast("Topic names use letters, digits, '.', '_' and '-' (at most 249).", "error");
              return;
            }
            submit.disabled = true;
            try {
              await post("topics", {
                name: name.value,
                partitions: Number(partitions.value),
                replication_factor: replication.value === "" ? -1 : Number(replication.value),
                configs: Object.fromEntries(parseKeyValueLines(configs.value)),
              });
              toast(`Topic ${name.value} created`, "ok");
              close(true);
              await onCreated();
            } catch (error) {
              reportError(error);
            } finally {
              submit.disabled = false;
            }
          },
        },
        field("Name", name),
        h("div", { class: "row" }, field("Partitions", partitions), field("Replication factor", replication)),
        field("Configs", configs, "One key=value a line; empty for the broker's defaults."),
        dialogActions(close, submit),
      );
    },
  });
}

/** Delete `name` after the user types it again; calls `onDeleted` when done. Shared with the topic page. */
export async function deleteTopic(name, onDeleted) {
  await modal({
    testid: "delete-topic-dialog",
    title: "Delete topic",
    content: (close) => {
      const confirmInput = h("input", {
        type: "text",
        autocomplete: "off",
        "data-testid": "delete-confirm-input",
        "aria-label": "Topic name",
      });
      const submit = h(
        "button",
        { type: "submit", class: "danger", disabled: true, "data-testid": "delete-confirm-submit" },
        "Delete",
      );
      confirmInput.addEventListener("input", () => {
        submit.disabled = confirmInput.value !== name;
      });
      return h(
        "form",
        {
          class: "form",
          onsubmit: async (event) => {
            event.preventDefault();
            if (confirmInput.value !== name) return;
            submit.disabled = true;
            try {
              await del(`topics/${seg(name)}`);
              toast(`Topic ${name} deleted`, "ok");
              close(true);
              await onDeleted();
            } catch (error) {
              reportError(error);
              submit.disabled = false;
            }
          },
        },
        h("p", {}, "This deletes the topic and all its messages. Type ", h("code", {}, name), " to confirm."),
        confirmInput,
        dialogActions(close, submit),
      );
    },
  });
}
