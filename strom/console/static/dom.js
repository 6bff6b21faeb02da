// Safe DOM building. Every value reaches the page through textContent or setAttribute, never innerHTML,
// because topic names, keys, values and headers are untrusted input from the cluster.

import { describeError } from "./api.js";

/**
 * Create an element. `attrs` keys: `class`, `on<event>` (a listener function; never an inline handler),
 * any other attribute (skipped when null/undefined/false; `true` sets an empty attribute). Children may be
 * nodes, strings, numbers, null or nested arrays; strings become text nodes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) {
      if (typeof value === "function") el.addEventListener(name.slice(2), value);
    } else if (name === "value" || name === "checked" || name === "disabled") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** An <input> carrying its test id; `attrs` as for `h`. */
export function input(testid, attrs = {}) {
  return h("input", { "data-testid": testid, ...attrs });
}

/** A `type="button"` button carrying its test id; `attrs` as for `h` (may override the type). */
export function button(text, testid, onclick, attrs = {}) {
  return h("button", { type: "button", "data-testid": testid, onclick, ...attrs }, text);
}

/** A <select> of `options`: values, or [value, label] pairs. */
export function select(testid, options, attrs = {}) {
  const items = options.map((option) => {
    const [value, label] = Array.isArray(option) ? option : [option, option];
    return h("option", { value: String(value) }, label);
  });
  return h("select", { "data-testid": testid, ...attrs }, items);
}

/** Append children (see `h`) to `parent`. */
function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all children of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/**
 * A table whose body is built in one DocumentFragment: one reflow for thousands of rows.
 * `columns`: [{title, cell(row) -> node|string, class?, sort?(row) -> comparable}]. `rowAttrs(row)` gives
 * attributes for each <tr>. Returns the <table>; call `table.setRows(rows)` to re-render the body.
 */
export function dataTable({ testid, columns, rows, rowAttrs = () => ({}), empty = "Nothing here." }) {
  const tbody = h("tbody");
  let current = rows;
  let sortIndex = -1;
  let sortDir = 1;
  const headers = columns.map((col, index) =>
    h(
      "th",
      {
        class: [col.class, col.sort ? "sortable" : ""].join(" ").trim() || null,
        onclick: col.sort ? () => sortBy(index) : null,
        title: col.sort ? "Sort" : null,
      },
      col.title,
    ),
  );
  const thead = h("thead", {}, h("tr", {}, headers));
  const table = h("table", { class: "data", "data-testid": testid }, thead, tbody);

  function render() {
    const fragment = document.createDocumentFragment();
    if (current.length === 0) {
      fragment.append(h("tr", { class: "empty" }, h("td", { colspan: columns.length }, empty)));
    }
    for (const row of current) {
      const tr = h("tr", rowAttrs(row));
      for (const col of columns) tr.append(h("td", { class: col.class ?? null }, col.cell(row)));
      fragment.append(tr);
    }
    tbody.replaceChildren(fragment);
  }

  function sortBy(index) {
    sortDir = sortIndex === index ? -sortDir : 1;
    sortIndex = index;
    const direction = sortDir > 0 ? "ascending" : "descending";
    headers.forEach((th, i) => th.setAttribute("aria-sort", i === index ? direction : "none"));
    applySort();
    render();
  }

  function applySort() {
    if (sortIndex < 0) return;
    const key = columns[sortIndex].sort;
    current = [...current].sort((a, b) => {
      const x = key(a);
      const y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
  }

  table.setRows = (newRows) => {
    current = newRows;
    applySort();
    render();
  };
  table.setRows(rows);
  return table;
}

/** A labelled form field: `<label>Title <input ...></label>`. */
export function field(title, control, hint = null) {
  const titleSpan = h("span", { class: "field-title" }, title);
  return h("label", { class: "field" }, titleSpan, control, hint && h("small", {}, hint));
}

/** Show a toast; errors stay longer. `kind`: "error" | "ok" | "info". */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h(
    "div",
    {
      class: `toast toast-${kind}`,
      role: kind === "error" ? "alert" : "status",
      "data-testid": "toast",
      "data-kind": kind,
    },
    message,
  );
  box.append(item);
  // The box is a popover so that, re-shown, it sits in the top layer above any open modal dialog.
  if (box.matches(":popover-open")) box.hidePopover();
  box.showPopover();
  setTimeout(() => {
    item.remove();
    if (box.childElementCount === 0 && box.matches(":popover-open")) box.hidePopover();
  }, kind === "error" ? 8000 : 4000);
}

/** Toast an error, unless it is the abort of a page the user left. */
export function reportError(error) {
  if (error?.name !== "AbortError") toast(describeError(error), "error");
}

/**
 * Open a modal <dialog> with `content` and resolve with the value passed to `close(value)`, or null when
 * dismissed (Escape or the Cancel button). `content` is a function receiving `close`.
 */
export function modal({ testid, title, content }) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "modal", "data-testid": testid });
    const close = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(null);
    });
    append(dialog, [h("h2", {}, title), content(close)]);
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A dialog's button row: Cancel (closes with false) and the given submit button. */
export function dialogActions(close, submit) {
  const cancel = h("button", { type: "button", onclick: () => close(false) }, "Cancel");
  return h("div", { class: "actions" }, cancel, submit);
}

/** A link to a hash route; `parts` are path segments and get percent-encoded. */
export function routeLink(text, parts, attrs = {}) {
  return h("a", { href: routeHref(parts), ...attrs }, text);
}

/** `#/a/b` with each part percent-encoded (group ids may hold any character). */
function routeHref(parts) {
  return "#/" + parts.map((part) => encodeURIComponent(part)).join("/");
}
