// Formatting of numbers, sizes, times and message payloads. Pure functions, no DOM, so they are easy to
// reason about; the pages turn their results into text nodes.

const numberFormat = new Intl.NumberFormat("en-US");

/** `1234567` -> `1,234,567`; missing values -> `—`. */
export function formatNumber(value) {
  return value === null || value === undefined || Number.isNaN(value) ? "—" : numberFormat.format(value);
}

/** Bytes in binary units: `1536` -> `1.5 KiB`. */
export function formatBytes(value) {
  if (value === null || value === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = Number(value);
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

/** Epoch milliseconds -> local `YYYY-MM-DD HH:MM:SS.mmm`; negative/missing (Kafka's -1) -> `—`. */
export function formatTime(ms) {
  if (ms === null || ms === undefined || ms < 0) return "—";
  const date = new Date(ms);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `${day} ${clock}.${pad(date.getMilliseconds(), 3)}`;
}

/** A `datetime-local` input's value -> epoch milliseconds (local time), or null when empty/invalid. */
export function parseLocalTime(text) {
  if (!text) return null;
  const ms = new Date(text).getTime();
  return Number.isNaN(ms) ? null : ms;
}

/** Base64 -> hex dump `0a 1b ...` (16 bytes a line), for binary payloads. */
export function base64ToHex(base64) {
  let binary;
  try {
    binary = atob(base64);
  } catch {
    return "(invalid base64)";
  }
  const lines = [];
  for (let start = 0; start < binary.length; start += 16) {
    const bytes = [];
    for (let i = start; i < Math.min(start + 16, binary.length); i += 1) {
      bytes.push(binary.charCodeAt(i).toString(16).padStart(2, "0"));
    }
    lines.push(`${start.toString(16).padStart(8, "0")}  ${bytes.join(" ")}`);
  }
  return lines.join("\n");
}

/** A payload ({encoding: "null"|"json"|"text"|"base64", text}) as display text: JSON pretty-printed. */
export function payloadText(payload) {
  if (payload.encoding === "json") return prettyJson(payload.text) ?? payload.text;
  return payload.text ?? "";
}

/** Control characters other than tab and line breaks: text holding them is shown as binary. */
const CONTROL_CHARACTERS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;

/**
 * The base64 to show for a payload that is binary: the data layer's own base64, or that of text which
 * decoded as UTF-8 but holds control characters (they would render as nothing or garble the page).
 * Null for a payload that is fine as text.
 */
export function binaryBase64(payload) {
  if (payload.encoding === "base64") return payload.text;
  if (payload.encoding === "text" && CONTROL_CHARACTERS.test(payload.text)) return utf8Base64(payload.text);
  return null;
}

/** Base64 of the UTF-8 bytes of `text` (btoa alone rejects characters above U+00FF). */
export function utf8Base64(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Pretty-print JSON text, or null when it does not parse. */
export function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

/** One line of text for a cell: first `max` characters with an ellipsis. */
export function clip(text, max = 200) {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** `key=value` lines -> [[key, value], ...]; blank lines and `#` comments skipped; throws on a bad line. */
export function parseKeyValueLines(text) {
  const pairs = [];
  for (const [index, line] of text.split("\n").entries()) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith("#")) continue;
    const eq = trimmed.indexOf("=");
    if (eq <= 0) throw new Error(`Line ${index + 1}: expected key=value`);
    pairs.push([trimmed.slice(0, eq).trim(), trimmed.slice(eq + 1).trim()]);
  }
  return pairs;
}
