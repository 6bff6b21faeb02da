// One topic: its partitions (leader, replicas, ISR, offsets) and its configs, editable one at a time.

import { consoleSettings, get, patch, seg } from "../api.js";
import { button, dataTable, h, input, replace, reportError, routeLink, toast } from "../dom.js";
import { formatNumber } from "../format.js";
import { deleteTopic } from "./topics.js";

export async function renderTopic(view, [name], page) {
  const topic = await get(`topics/${seg(name)}`, {}, page.signal);
  const configsBox = h("div");

  async function reloadConfigs() {
    const fresh = await get(`topics/${seg(name)}`, {}, page.signal);
    replace(configsBox, configsTable(name, fresh.configs, reloadConfigs));
  }

  replace(configsBox, configsTable(name, topic.configs, reloadConfigs));
  const messagesLink = routeLink("Messages", ["topics", name, "messages"], {
    class: "button primary",
    "data-testid": "topic-messages-link",
  });
  const toTopics = () => (location.hash = "#/topics");
  const deleteButton = button("Delete", "delete-topic-button", () => deleteTopic(name, toTopics), {
    class: "danger",
    "data-mutates": true,
  });
  replace(
    view,
    h("p", { class: "crumbs" }, routeLink("Topics", ["topics"]), " / "),
    h(
      "div",
      { class: "page-head" },
      h("h1", { "data-testid": "page-title" }, name),
      h("div", { class: "actions" }, messagesLink, deleteButton),
    ),
    h("h2", {}, `Partitions (${topic.partitions.length})`),
    partitionsTable(topic.partitions),
    h("h2", {}, "Configs"),
    configsBox,
  );
}

function partitionsTable(partitions) {
  const known = (p) => p.start_offset !== null && p.end_offset !== null;
  return dataTable({
    testid: "partitions-table",
    rows: partitions,
    rowAttrs: (p) => ({ "data-testid": "partition-row", "data-partition": p.partition }),
    columns: [
      { title: "Partition", cell: (p) => String(p.partition), class: "num", sort: (p) => p.partition },
      { title: "Leader", cell: (p) => (p.leader < 0 ? "none" : String(p.leader)), class: "num" },
      { title: "Replicas", cell: (p) => p.replicas.join(", ") },
      { title: "In sync", cell: (p) => p.isr.join(", ") },
      { title: "Start offset", cell: (p) => formatNumber(p.start_offset), class: "num" },
      { title: "End offset", cell: (p) => formatNumber(p.end_offset), class: "num" },
      {
        title: "Messages",
        class: "num",
        cell: (p) => (known(p) ? formatNumber(p.end_offset - p.start_offset) : "—"),
      },
    ],
  });
}

function configsTable(topicName, configs, reload) {
  const filter = input("configs-search", { type: "search", placeholder: "Filter configs" });
  const table = dataTable({
    testid: "configs-table",
    rows: configs,
    rowAttrs: (c) => ({
      "data-testid": "config-row",
      "data-config": c.name,
      class: c.default ? "muted-row" : null,
    }),
    columns: [
      { title: "Name", cell: (c) => h("code", {}, c.name), sort: (c) => c.name },
      { title: "Value", cell: (c) => configEditor(topicName, c, reload) },
      { title: "Source", cell: (c) => c.source.replace(/_CONFIG$/, "").toLowerCase(), sort: (c) => c.source },
    ],
  });
  filter.addEventListener("input", () => {
    const needle = filter.value.trim().toLowerCase();
    table.setRows(configs.filter((c) => c.name.toLowerCase().includes(needle)));
  });
  return h("div", {}, h("div", { class: "toolbar" }, filter), table);
}

/** A value cell: text for read-only and sensitive configs, otherwise an input with Save and Reset. */
function configEditor(topicName, config, reload) {
  if (config.sensitive) return h("span", { class: "muted" }, "(sensitive)");
  if (config.read_only || consoleSettings.readOnly) return h("span", {}, config.value ?? "");
  const field = input("config-input", { type: "text", value: config.value ?? "", "aria-label": config.name });
  /** Set the config (`null` deletes the override, back to the default) and re-read them all. */
  const save = async (value) => {
    await patch(`topics/${seg(topicName)}/configs`, { configs: { [config.name]: value } });
    toast(value === null ? `${config.name} reset to default` : `${config.name} = ${value}`, "ok");
    await reload();
  };
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter") save(field.value).catch(reportError);
  });
  return h(
    "span",
    { class: "config-editor", "data-mutates": true },
    field,
    button("Save", "config-save", () => save(field.value).catch(reportError), { class: "small" }),
    button("Reset", "config-reset", () => save(null).catch(reportError), {
      class: "small",
      title: "Back to the default",
    }),
  );
}
