// Device page: status, latest values, one live chart per numeric metric, a history chart
// (min–max band, average line) of 1 h / 24 h / 7 d from /series/ with a CSV export, and
// the commands panel (commands.js).

import { deviceUrl, getJSON, query, readingsSince } from "./api.js";
import {
  SeriesBuffer,
  historyChart,
  intervalMs,
  liveChart,
  redraw,
  seriesColumns,
} from "./charts.js";
import { CommandsPanel } from "./commands.js";
import {
  formatAgo,
  formatTime,
  formatValue,
  isNumeric,
  now,
  parseTs,
  syncClock,
} from "./format.js";
import { LiveSocket, showConnection } from "./socket.js";

const LIVE_WINDOW_MS = 10 * 60 * 1000;
const LIVE_POINTS = 5000;
const HISTORY_REFRESH_MS = 60 * 1000;
// /series/ gives at most one bucket per pixel; a few buckets at least, whatever the width.
const HISTORY_MIN_POINTS = 10;
const HISTORY_MAX_POINTS = 2000;

const data = JSON.parse(document.getElementById("page-data").textContent);
syncClock(data.server_now);
const uid = data.device.uid;
const base = deviceUrl(uid);

const device = {
  online: Boolean(data.device.online),
  lastSeen: parseTs(data.device.last_seen),
  latest: new Map(), // metric -> {ts, value, item}
  lastTs: null, // newest reading timestamp seen: where a gap fill starts
};
const charts = new Map(); // metric -> {buffer, plot, figure, value}
const element = (id) => document.getElementById(id);
const commands = new CommandsPanel(element("commands-panel"), {
  uid,
  timeoutMax: data.command_timeout.max,
  initial: data.commands,
});

// --- readings, from frames and from REST alike ---------------------------------

function ingest(readings, { live }) {
  const horizon = now() - LIVE_WINDOW_MS;
  for (const { ts, metric, value } of readings) {
    const ms = parseTs(ts);
    if (ms === null) continue;
    if (device.lastTs === null || ms > device.lastTs) device.lastTs = ms;
    updateLatest(metric, ms, value);
    if (!isNumeric(value)) continue;
    const chart = chartFor(metric);
    if (ms >= horizon && chart.buffer.add(ms, value)) chart.dirty = true;
  }
  if (live) {
    device.online = true;
    device.lastSeen = now();
    statusChanged = true;
  }
  schedule();
}

function updateLatest(metric, ms, value) {
  const current = device.latest.get(metric);
  if (current && current.ts > ms) return; // a late reading does not replace a newer one
  device.latest.set(metric, { ts: ms, value, item: current?.item ?? null });
  latestChanged.add(metric);
  if (isNumeric(value)) addHistoryMetric(metric);
}

function onFrame(frame) {
  if (frame.device !== uid) return;
  if (frame.type === "readings") {
    ingest(frame.readings, { live: true });
  } else if (frame.type === "status") {
    device.online = frame.online;
    const at = parseTs(frame.at);
    if (frame.online && at && at > (device.lastSeen || 0)) device.lastSeen = at;
    statusChanged = true;
    schedule();
  } else if (frame.type === "command") {
    commands.onFrame(frame);
  }
}

function backfill(start) {
  return readingsSince(uid, Math.round(start), (results) => ingest(results, { live: false }));
}

let fills = 0; // gap fills done, shown as data-fills on the live charts

function onSubscribed(frame, { reconnected }) {
  // Commands may have moved on between the page's rendering (or the lost socket) and now.
  commands.refresh().catch((error) => console.warn("commands:", error.message));
  if (!reconnected) return;
  // Frames sent while the socket was down are lost; REST has them (inclusive start, deduplicated).
  const start = Math.max(device.lastTs ?? 0, now() - LIVE_WINDOW_MS);
  backfill(start)
    .then(() => {
      fills += 1;
      element("live-charts").dataset.fills = String(fills);
    })
    .catch((error) => console.warn("gap fill:", error.message));
  getJSON(base)
    .then((info) => {
      device.online = Boolean(info.online);
      statusChanged = true;
      schedule();
    })
    .catch((error) => console.warn("device state:", error.message));
}

// --- DOM, batched per animation frame --------------------------------------------

const latestChanged = new Set();
let statusChanged = true;
let frameRequested = false;

function schedule() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(flush);
}

function flush() {
  frameRequested = false;
  if (statusChanged) {
    statusChanged = false;
    const badge = element("status");
    badge.textContent = device.online ? "online" : "offline";
    badge.className = `badge state ${device.online ? "on" : "off"}`;
    commands.setOnline(device.online);
    renderSeen();
  }
  for (const metric of latestChanged) renderLatest(metric);
  latestChanged.clear();
  element("latest-empty").hidden = device.latest.size > 0;
  for (const chart of charts.values()) {
    if (!chart.dirty) continue;
    chart.dirty = false;
    redraw(chart.plot, chart.buffer);
  }
  element("live-empty").hidden = charts.size > 0;
}

function renderSeen() {
  const seen = element("last-seen");
  seen.textContent = formatAgo(device.lastSeen);
  seen.title = formatTime(device.lastSeen);
}

function insertSorted(parent, node, key, keys) {
  const after = [...keys].sort().find((other) => other > key);
  parent.insertBefore(
    node,
    after ? parent.querySelector(`[data-metric="${CSS.escape(after)}"]`) : null,
  );
}

function renderLatest(metric) {
  const latest = device.latest.get(metric);
  if (!latest.item) {
    const item = document.createElement("div");
    item.className = "item";
    item.dataset.metric = metric;
    const name = document.createElement("dt");
    name.textContent = metric;
    const value = document.createElement("dd");
    value.append(document.createElement("b"), document.createElement("small"));
    item.append(name, value);
    const others = [...device.latest.keys()].filter((key) => device.latest.get(key).item);
    insertSorted(element("latest"), item, metric, others);
    latest.item = item;
  }
  const [value, when] = latest.item.querySelector("dd").children;
  value.textContent = formatValue(latest.value);
  when.textContent = formatAgo(latest.ts);
  when.title = formatTime(latest.ts);
  const chart = charts.get(metric);
  if (chart) chart.value.textContent = formatValue(latest.value);
}

function chartFor(metric) {
  let chart = charts.get(metric);
  if (chart) return chart;
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.metric = metric;
  const caption = document.createElement("figcaption");
  const value = document.createElement("b");
  caption.append(metric, " ", value);
  const plotBox = document.createElement("div");
  plotBox.className = "plot";
  plotBox.dataset.points = "0";
  figure.append(caption, plotBox);
  insertSorted(element("live-charts"), figure, metric, charts.keys());
  const buffer = new SeriesBuffer(LIVE_POINTS);
  const plot = liveChart(plotBox, buffer, { label: metric, windowMs: LIVE_WINDOW_MS });
  chart = { buffer, plot, figure, value, dirty: true };
  charts.set(metric, chart);
  return chart;
}

// --- history ----------------------------------------------------------------------

const historyBox = element("history-chart");
const metricSelect = element("history-metric");
const csvLink = element("history-csv");
const view = { range: 3600000, start: now() - 3600000, end: now() };
const history = historyChart(historyBox, view);
let historyRequest = null;

function addHistoryMetric(metric) {
  if ([...metricSelect.options].some((option) => option.value === metric)) return;
  const option = new Option(metric, metric);
  const after = [...metricSelect.options].find((other) => other.value > metric);
  metricSelect.add(option, after ?? null);
  if (metricSelect.options.length === 1) {
    metricSelect.value = metric;
    loadHistory();
  }
}

async function loadHistory() {
  const metric = metricSelect.value;
  const info = element("history-info");
  view.end = now();
  view.start = view.end - view.range;
  csvLink.hidden = !metric;
  if (!metric) {
    info.textContent = "No numeric metrics yet.";
    return;
  }
  const start = Math.round(view.start);
  const end = Math.round(view.end);
  csvLink.href = `${base}readings/?${query({ format: "csv", metric, start, end })}`;
  csvLink.download = `${uid}-${metric}.csv`;
  const width = Math.floor(historyBox.clientWidth);
  const points = Math.min(HISTORY_MAX_POINTS, Math.max(HISTORY_MIN_POINTS, width));
  historyRequest?.abort();
  const request = new AbortController();
  historyRequest = request;
  historyBox.setAttribute("aria-busy", "true");
  try {
    const body = await getJSON(`${base}series/?${query({ metric, start, end, points })}`, {
      signal: request.signal,
    });
    const bucket = intervalMs(body.interval);
    history.setData(seriesColumns(body.points, bucket));
    historyBox.dataset.points = String(body.points.length);
    historyBox.dataset.range = String(view.range);
    const count = body.points.reduce((sum, point) => sum + point.count, 0);
    info.textContent =
      `${body.points.length} buckets of ${body.interval} · ${count} readings · ` +
      `${formatTime(start)} – ${formatTime(end)}`;
  } catch (error) {
    if (error.name === "AbortError") return;
    info.textContent = "Could not load the history; it is tried again in a minute.";
    console.warn("history:", error.message);
  } finally {
    if (historyRequest === request) historyBox.removeAttribute("aria-busy");
  }
}

for (const button of document.querySelectorAll("#history [data-range]")) {
  button.addEventListener("click", () => {
    view.range = Number(button.dataset.range);
    for (const other of document.querySelectorAll("#history [data-range]")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    loadHistory();
  });
}
metricSelect.addEventListener("change", loadHistory);

// --- start ---------------------------------------------------------------------------

for (const [metric, { ts, value }] of Object.entries(data.device.latest)) {
  updateLatest(metric, parseTs(ts), value);
}
if (!metricSelect.options.length) loadHistory();
flush();
backfill(now() - LIVE_WINDOW_MS).catch((error) => console.warn("live charts:", error.message));

setInterval(() => {
  // Times read "… ago" and the live charts slide, even without new readings.
  renderSeen();
  const horizon = now() - LIVE_WINDOW_MS;
  for (const chart of charts.values()) {
    chart.buffer.trim(horizon);
    chart.dirty = true;
  }
  for (const metric of device.latest.keys()) latestChanged.add(metric);
  schedule();
}, 1000);
setInterval(loadHistory, HISTORY_REFRESH_MS);

new LiveSocket({
  devices: [uid],
  onFrame,
  onSubscribed,
  onState: (state, detail) => showConnection(element("connection"), state, detail),
}).start();
