// Shared helpers of the dashboard pages: the server's clock and how values and times read.

let clockOffset = 0;

/** Align "now" with the server's clock, from the time it rendered the page. */
export function syncClock(serverNowMs) {
  if (Number.isFinite(serverNowMs)) clockOffset = serverNowMs - Date.now();
}

/** Return the current time in epoch milliseconds, on the server's clock. */
export function now() {
  return Date.now() + clockOffset;
}

/** Return epoch milliseconds from an RFC 3339 string (as the hub sends them), or null. */
export function parseTs(text) {
  if (text == null) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

const numberFormat = new Intl.NumberFormat("en-US", {
  maximumFractionDigits: 3,
  useGrouping: false,
});

/** Show a reading's value as the device sent it: numbers trimmed, booleans and strings as text. */
export function formatValue(value) {
  if (typeof value === "number") return numberFormat.format(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  return String(value);
}

/** True for values that can be charted: finite numbers, not booleans or strings. */
export function isNumeric(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** Say how long ago an instant was: "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function formatAgo(ms, at = now()) {
  if (ms == null) return "never";
  const seconds = Math.max(0, Math.round((at - ms) / 1000));
  if (seconds < 2) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** Show an instant in the browser's locale, for tooltips. */
export function formatTime(ms) {
  return ms == null ? "" : new Date(ms).toLocaleString();
}

/** Say a count with its noun: "1 bucket", "2 buckets", "0 readings" (`many` for irregular plurals). */
export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// SenML's unit names (RFC 8428 §12.1) as people write them; the rest show as sent.
const UNIT_SYMBOLS = { Cel: "°C", degC: "°C", degF: "°F", "%RH": "% RH", "/": "" };

/** Show a unit as people write it ("Cel" reads "°C"), or "" for none. */
export function formatUnit(unit) {
  if (typeof unit !== "string" || !unit) return "";
  return UNIT_SYMBOLS[unit] ?? unit;
}

// Which metric a page shows first, when nothing else says: what people watch (by these
// names, then any other by name), and a device's own housekeeping last.
const FIRST_METRICS = ["temperature", "humidity", "pressure", "co2", "power", "energy"];
const LAST_METRICS = ["battery", "voltage", "rssi", "signal", "uptime"];

/** Return a sort key of a metric name: the ones worth showing first sort first. */
export function metricRank(metric) {
  const name = metric.toLowerCase();
  const first = FIRST_METRICS.findIndex((word) => name === word || name.startsWith(`${word}_`));
  if (first >= 0) return [0, first, metric];
  const last = LAST_METRICS.some((word) => name === word || name.startsWith(`${word}_`));
  return [last ? 2 : 1, 0, metric];
}

/** Compare two metric names by metricRank(). */
export function byRank(a, b) {
  const [x, y] = [metricRank(a), metricRank(b)];
  for (let i = 0; i < x.length; i += 1) {
    if (x[i] < y[i]) return -1;
    if (x[i] > y[i]) return 1;
  }
  return 0;
}
