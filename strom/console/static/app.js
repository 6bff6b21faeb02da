// Strom console: hash router, navigation and sign-in. Each page lives in pages/<page>.js and exports
// `render(view, params, page)`; `page.signal` aborts when the user navigates away and `page.every(ms, fn)`
// runs a refresh loop that stops then too.
//
// Routes: #/ (overview), #/topics, #/topics/NAME, #/topics/NAME/messages, #/groups, #/groups/ID, #/dlt,
// #/dlt/NAME (NAME and ID percent-encoded).
//
// Stable hooks for browser tests: data-testid values; rows also carry the data-* keys noted. Tables are
// re-rendered on refresh (the overview chart every 2 s; a group's details and the groups list every 3 s;
// configs after a save), so look elements up again rather than holding them.
//   Layout:    nav-overview, nav-topics, nav-groups, nav-dlt, view (the <main>), page-title (each page's h1),
//              toast (data-kind="error"|"ok"|"info"), logout, page-ready (an empty marker each page adds
//              when its first data has rendered)
//   Sign-in:   login-dialog, login-reason, login-token (bearer), login-user + login-password (basic),
//              login-submit; read-only-badge (shown with --read-only, which also hides every element
//              marked data-mutates: create/delete/save/produce/apply/replay controls)
//   Overview:  overview-cluster-id, overview-controller, overview-totals (cards with data-total=topics|
//              partitions|messages|size_bytes|groups), brokers-table, rates-chart
//   Topics:    topics-search, topics-internal (checkbox), topics-refresh, topics-table, topic-row
//              (data-topic=NAME), topics-count; create-topic-button, create-topic-dialog, create-topic-name,
//              create-topic-partitions, create-topic-replication, create-topic-configs (textarea, key=value
//              lines), create-topic-submit; delete-topic-button (in each row; also on the topic page),
//              delete-topic-dialog, delete-confirm-input (type the topic name), delete-confirm-submit
//   Topic:     topic-messages-link, partitions-table (rows partition-row, data-partition=N),
//              configs-table (rows config-row, data-config=KEY), config-input (in each editable row),
//              config-save, config-reset (back to default), configs-search
//   Messages:  msg-start (select earliest|latest|offset|timestamp), msg-offset, msg-timestamp
//              (datetime-local), msg-partition (select; "" = all), msg-limit, msg-key-filter,
//              msg-value-filter, msg-header-filter, msg-load, msg-live-tail (checkbox), msg-export-json,
//              msg-export-csv, messages-table (rows message-row, data-partition, data-offset; cells
//              message-key, message-value, message-headers; binary shown as base64 with a hex toggle
//              message-hex-toggle), messages-count; produce-key, produce-value, produce-headers (textarea,
//              key=value lines), produce-partition, produce-submit, produce-result
//   Groups:    groups-search, groups-table, group-row (data-group=ID)
//   Group:     group-state, group-total-lag, members-table (member-row), group-offsets-table (rows
//              offset-row, data-topic, data-partition; cell offset-lag), lag-chart; reset-topic (select),
//              reset-partitions (comma list, empty = all), reset-to (select earliest|latest|offset|timestamp|
//              shift), reset-value (offset, shift or epoch ms), reset-time (datetime-local, for timestamp;
//              wins over reset-value), reset-preview (button), reset-preview-table (rows
//              reset-preview-row), reset-apply (enabled after a preview; any form change disables it again)
//   DLT:       dlt-table, dlt-row (data-topic); dlt-records-table (rows dlt-record-row, data-partition,
//              data-offset; checkbox dlt-select; button dlt-replay-one), dlt-limit, dlt-to-topic,
//              dlt-replay-selected, dlt-replay-all; each asks first in dlt-replay-dialog, where
//              dlt-replay-confirm goes ahead

import {
  consoleSettings,
  describeError,
  loadSettings,
  setAuthorization,
  setUnauthorizedHandler,
} from "./api.js";
import { field, h, modal, replace, reportError } from "./dom.js";
import { utf8Base64 } from "./format.js";
import * as dlt from "./pages/dlt.js";
import * as groups from "./pages/groups.js";
import * as messages from "./pages/messages.js";
import * as overview from "./pages/overview.js";
import * as topic from "./pages/topic.js";
import * as topics from "./pages/topics.js";

/** [pattern, render function, navigation section]; the pattern's groups are the page's parameters. */
const ROUTES = [
  [/^\/?$/, overview.renderOverview, "overview"],
  [/^\/topics$/, topics.renderTopics, "topics"],
  [/^\/topics\/([^/]+)$/, topic.renderTopic, "topics"],
  [/^\/topics\/([^/]+)\/messages$/, messages.renderMessages, "topics"],
  [/^\/groups$/, groups.renderGroups, "groups"],
  [/^\/groups\/([^/]+)$/, groups.renderGroup, "groups"],
  [/^\/dlt$/, dlt.renderDeadLetterTopics, "dlt"],
  [/^\/dlt\/([^/]+)$/, dlt.renderDeadLetters, "dlt"],
];

/** The route for a hash path: {render, section, params} with percent-decoded params, or null. */
function resolve(path) {
  for (const [pattern, render, section] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    try {
      return { render, section, params: match.slice(1).map((part) => decodeURIComponent(part)) };
    } catch {
      return null; // A malformed %-escape: no such page.
    }
  }
  return null;
}

let current = null;

/** The per-page context: aborted on navigation so fetches, timers and long polls of the old page stop. */
function pageContext() {
  const controller = new AbortController();
  return {
    signal: controller.signal,
    /** Run `fn` every `ms` after the previous run ended (a slow cluster never stacks up calls). */
    every(ms, fn) {
      const tick = async () => {
        if (controller.signal.aborted) return;
        await fn().catch(reportError);
        setTimeout(tick, ms);
      };
      setTimeout(tick, ms);
    },
    leave() {
      controller.abort();
    },
  };
}

async function route() {
  current?.leave();
  // Dialogs live outside the view: dismiss them, as if cancelled, when the page changes under them.
  for (const dialog of document.querySelectorAll("dialog.modal[open]")) {
    dialog.dispatchEvent(new Event("cancel"));
  }
  const view = document.getElementById("view");
  const found = resolve(location.hash.replace(/^#/, "") || "/");
  document.querySelectorAll(".sidebar a[data-section]").forEach((link) => {
    link.classList.toggle("active", found?.section === link.dataset.section);
  });
  if (!found) {
    replace(
      view,
      h("h1", { "data-testid": "page-title" }, "Not found"),
      h("p", {}, "No page at this address."),
    );
    return;
  }
  const page = pageContext();
  current = page;
  replace(view, h("p", { class: "loading" }, "Loading…"));
  try {
    await found.render(view, found.params, page);
    if (current === page) view.append(h("span", { "data-testid": "page-ready", hidden: true }));
  } catch (error) {
    if (current !== page || error?.name === "AbortError") return;
    replace(
      view,
      h("h1", { "data-testid": "page-title" }, "Something went wrong"),
      h("p", { class: "error-panel" }, describeError(error)),
    );
    reportError(error);
  }
}

let pendingLogin = null;

/**
 * Ask for a bearer token or a user and password (whichever the console uses); resolves true when
 * credentials were stored. `reason` is the server's message (first visit, or wrong credentials).
 */
function login(reason) {
  pendingLogin ??= modal({
    testid: "login-dialog",
    title: "Sign in",
    content: (close) => {
      const token = h("input", { type: "password", autocomplete: "off", "data-testid": "login-token" });
      const user = h("input", { type: "text", autocomplete: "username", "data-testid": "login-user" });
      const password = h("input", {
        type: "password",
        autocomplete: "current-password",
        "data-testid": "login-password",
      });
      const scheme = consoleSettings.auth;
      return h(
        "form",
        {
          class: "form",
          onsubmit: (event) => {
            event.preventDefault();
            if (token.value) setAuthorization(`Bearer ${token.value}`);
            else if (user.value) setAuthorization(`Basic ${utf8Base64(`${user.value}:${password.value}`)}`);
            else return;
            close(true);
          },
        },
        h("p", { class: "muted", "data-testid": "login-reason" }, reason ?? "Sign in to use this console."),
        scheme !== "basic" ? field("Token", token) : null,
        scheme === null ? h("p", { class: "muted" }, "or") : null,
        scheme !== "bearer" ? [field("User", user), field("Password", password)] : null,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "submit", class: "primary", "data-testid": "login-submit" }, "Sign in"),
        ),
      );
    },
  }).then((ok) => {
    pendingLogin = null;
    return Boolean(ok);
  });
  return pendingLogin;
}

async function start() {
  setUnauthorizedHandler(login);
  await loadSettings();
  document.body.classList.toggle("read-only", consoleSettings.readOnly);
  document.getElementById("read-only-badge").hidden = !consoleSettings.readOnly;
  const logout = document.getElementById("logout");
  logout.hidden = consoleSettings.auth === null;
  logout.addEventListener("click", () => {
    setAuthorization(null);
    location.reload();
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
