// The JSON API client. Every call goes through `request` so authentication and error reporting live in
// one place: the Authorization header comes from sessionStorage (set by the login form) and a 401 opens
// the login form instead of failing silently.

const AUTH_KEY = "strom.console.authorization";

/** An API error: `status` is the HTTP status, `code` the API's error code (a Kafka error name or similar). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** What the console allows, from the public GET /api/config: `readOnly`, `auth` "bearer" | "basic" | null. */
export const consoleSettings = { readOnly: false, auth: null };

/** Load `consoleSettings`; a console too old to have /api/config keeps the defaults. */
export async function loadSettings() {
  try {
    const config = await request("GET", "config");
    consoleSettings.readOnly = Boolean(config.read_only);
    consoleSettings.auth = config.auth ?? null;
  } catch {
    // Keep the defaults: everything enabled, the login form offers both schemes if ever needed.
  }
}

let onUnauthorized = async () => false;

/**
 * Register the login flow: an async function given the server's reason that resolves true once new
 * credentials are stored (the request is then retried).
 */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

export function setAuthorization(value) {
  if (value) sessionStorage.setItem(AUTH_KEY, value);
  else sessionStorage.removeItem(AUTH_KEY);
}

function authHeaders() {
  const value = sessionStorage.getItem(AUTH_KEY);
  return value ? { Authorization: value } : {};
}

/** Build `/api/<path>?<query>` skipping empty query values. */
function apiUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return `/api/${path}${text ? `?${text}` : ""}`;
}

async function raw(method, path, { query, body, signal } = {}) {
  for (;;) {
    const response = await fetch(apiUrl(path, query), {
      method,
      headers: { ...authHeaders(), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      // Cluster state changes under us: never answer from the HTTP cache.
      cache: "no-store",
      signal,
    });
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401 && (await onUnauthorized(error.message))) continue;
      throw error;
    }
    return response;
  }
}

async function errorOf(response) {
  let code = `HTTP_${response.status}`;
  let message = response.statusText || "Request failed";
  try {
    const body = await response.json();
    code = body?.error?.code ?? code;
    message = body?.error?.message ?? message;
  } catch {
    // Not JSON (a proxy's page, say): keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/** Call the API and return its JSON (or null for an empty body). */
export async function request(method, path, options = {}) {
  const response = await raw(method, path, options);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, query, signal) => request("GET", path, { query, signal });
export const post = (path, body) => request("POST", path, { body });
export const patch = (path, body) => request("PATCH", path, { body });
export const del = (path) => request("DELETE", path);

/** Download an API response as a file (a plain link would not carry the Authorization header). */
export async function download(path, query, fallbackName) {
  const response = await raw("GET", path, { query });
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = match ? match[1] : fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Path segment for a topic or group id. */
export const seg = (text) => encodeURIComponent(text);

/** One line for a toast: `CODE: message` for API errors, the message otherwise. */
export function describeError(error) {
  return error?.code ? `${error.code}: ${error.message}` : String(error?.message ?? error);
}
