// Device page: status; the latest values in a searchable list (a page of them at a time,
// however many metrics the device has); live charts of the metrics chosen in that list
// (at most MAX_CHARTS); a history chart (min–max band, average line) of one of them over
// 1 h / 24 h / 7 d from /series/ with a CSV export; the commands panel (commands.js); the
// attributes panel, desired vs reported (attributes.js); the
// device's alarms, live, with acknowledge and clear; and the rules that watch it, with the
// form that creates one (alarms/static/alarms/).

import { AlarmBadge } from "../alarms/badge.js";
import { RulesPanel } from "../alarms/rules.js";
import { AlarmTable } from "../alarms/table.js";
import { deviceUrl, getJSON, query, readingsSince } from "./api.js";
import { AttributesPanel } from "./attributes.js";
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
  byRank,
  formatAgo,
  formatTime,
  formatUnit,
  formatValue,
  isNumeric,
  now,
  parseTs,
  plural,
  syncClock,
} from "./format.js";
import { LiveSocket, showConnection } from "./socket.js";

const LIVE_WINDOW_MS = 10 * 60 * 1000;
const LIVE_POINTS = 5000;
const HISTORY_REFRESH_MS = 60 * 1000;
// /series/ gives at most one bucket per pixel; a few buckets at least, whatever the width.
const HISTORY_MIN_POINTS = 10;
const HISTORY_MAX_POINTS = 2000;
// The list shows this many metrics matching the search; charts are drawn for the chosen ones.
const LIST_ROWS = 48;
const MAX_CHARTS = 8;
// Charted without asking, until the user picks: the first numeric metrics by rank
// (format.js metricRank: temperature and the like first, battery and the like last).
const DEFAULT_CHARTS = 4;
// A metric first heard of live has its unit read from REST after this long (several
// new metrics in a burst cost one read).
const UNITS_READ_MS = 1000;
// The device's alarms: active ones first, then the newest cleared; at most this many rows,
// and of cleared ones as many as the page came with (telemetry/pages.py).
const ALARM_ROWS = 30;
// Alarm frames that come together cost one REST read.
const ALARMS_RECONCILE_MS = 400;

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
const charts = new Map(); // metric -> {buffer, plot, figure, value, unit, note, loaded}
const units = new Map(); // metric -> its unit (SenML `u`), for the metrics that have one
const element = (id) => document.getElementById(id);
const total = () => Math.max(data.device.metrics ?? 0, device.latest.size);
// The charted metrics: from the address (?charts=a,b), else chosen by default until the
// user picks. Metric names hold no commas.
const url = new URL(window.location.href);
const chosen = new Set((url.searchParams.get("charts") || "").split(",").filter(Boolean));
let autoChoose = !url.searchParams.has("charts");
const commands = new CommandsPanel(element("commands-panel"), {
  uid,
  timeoutMax: data.command_timeout.max,
  initial: data.commands,
});
const attributes = new AttributesPanel(element("attributes-panel"), {
  uid,
  initial: data.attributes,
});

// --- readings, from frames and from REST alike ---------------------------------

function ingest(readings, { live }) {
  const horizon = now() - LIVE_WINDOW_MS;
  for (const { ts, metric, value } of readings) {
    const ms = parseTs(ts);
    if (ms === null) continue;
    if (device.lastTs === null || ms > device.lastTs) device.lastTs = ms;
    updateLatest(metric, ms, value);
    if (live && !units.has(metric)) unitsSoon(metric);
    if (!isNumeric(value)) continue;
    if (autoChoose && !chosen.has(metric) && chosen.size < DEFAULT_CHARTS) choose(metric);
    const chart = charts.get(metric);
    if (chart && ms >= horizon && chart.buffer.add(ms, value)) chart.dirty = true;
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
  device.latest.set(metric, { ts: ms, value, numeric: isNumeric(value) });
  if (!current) listChanged = true;
  latestChanged.add(metric);
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
  } else if (frame.type === "attributes") {
    attributes.onFrame(frame);
  } else if (frame.type === "alarm") {
    alarmBadge.onFrame(frame);
    alarmTable.insertFromFrame(frame);
    alarmsReconcile();
  }
}

function backfill(start, metrics = [...chosen]) {
  // Only the charted metrics: the rest of the list has its latest values already.
  return Promise.all(
    metrics.map((metric) =>
      readingsSince(uid, Math.round(start), (results) => ingest(results, { live: false }), {
        metric,
      }).then(() => {
        const chart = charts.get(metric);
        if (chart) {
          chart.loaded = true;
          chart.dirty = true;
          schedule();
        }
      }),
    ),
  );
}

// Units: the page came with those of its metrics; one first heard of live (or whose
// unit is not known yet) is asked for once, from REST's latest values.
const unitsAsked = new Set();
let unitsTimer = null;

function unitsSoon(metric) {
  if (unitsAsked.has(metric)) return;
  unitsAsked.add(metric);
  if (unitsTimer !== null) return;
  unitsTimer = setTimeout(() => {
    unitsTimer = null;
    refreshLatest().catch((error) => console.warn("units:", error.message));
  }, UNITS_READ_MS);
}

function setUnit(metric, unit) {
  if (typeof unit !== "string" || !unit || units.get(metric) === unit) return;
  units.set(metric, unit);
  latestChanged.add(metric);
  const chart = charts.get(metric);
  if (chart) chart.unit.textContent = formatUnit(unit);
}

let fills = 0; // gap fills done, shown as data-fills on the live charts

function onSubscribed(frame, { reconnected }) {
  // Commands may have moved on between the page's rendering (or the lost socket) and now.
  commands.refresh().catch((error) => console.warn("commands:", error.message));
  attributes.refresh().catch((error) => console.warn("attributes:", error.message));
  if (!reconnected) return;
  alarmBadge.soon();
  alarmsReconcile();
  // Frames sent while the socket was down are lost; REST has them (inclusive start, deduplicated).
  const start = Math.max(device.lastTs ?? 0, now() - LIVE_WINDOW_MS);
  Promise.all([backfill(start), refreshLatest()])
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

async function refreshLatest() {
  const latest = await getJSON(`${base}latest/`);
  for (const [metric, { ts, value, unit }] of Object.entries(latest)) {
    updateLatest(metric, parseTs(ts), value);
    setUnit(metric, unit);
  }
  schedule();
}

// --- charted metrics -----------------------------------------------------------

function choose(metric) {
  if (chosen.has(metric) || chosen.size >= MAX_CHARTS) return false;
  chosen.add(metric);
  chartFor(metric);
  latestChanged.add(metric);
  historyOptions();
  return true;
}

function unchoose(metric) {
  chosen.delete(metric);
  const chart = charts.get(metric);
  if (chart) {
    chart.plot.destroy();
    chart.figure.remove();
    charts.delete(metric);
  }
  latestChanged.add(metric);
  historyOptions();
}

function toggle(metric) {
  autoChoose = false;
  const notice = element("chart-limit");
  if (chosen.has(metric)) {
    unchoose(metric);
    notice.hidden = true;
  } else if (choose(metric)) {
    notice.hidden = true;
    backfill(now() - LIVE_WINDOW_MS, [metric]).catch((error) =>
      console.warn("live chart:", error.message),
    );
  } else {
    notice.hidden = false;
  }
  // Set by hand: URLSearchParams would write each comma as %2C.
  const others = new URLSearchParams(url.search);
  others.delete("charts");
  const rest = others.toString();
  url.search = `${rest ? `${rest}&` : ""}charts=${[...chosen].sort().join(",")}`;
  window.history.replaceState(null, "", url);
  schedule();
}

// --- DOM, batched per animation frame --------------------------------------------

const latestChanged = new Set();
let listChanged = true;
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
  if (listChanged) renderList();
  for (const metric of latestChanged) renderLatest(metric);
  latestChanged.clear();
  element("latest-empty").hidden = device.latest.size > 0;
  for (const chart of charts.values()) {
    if (!chart.dirty) continue;
    chart.dirty = false;
    redraw(chart.plot, chart.buffer);
    chart.note.hidden = !chart.loaded || chart.buffer.length > 0;
  }
  const liveEmpty = element("live-empty");
  liveEmpty.hidden = charts.size > 0;
  liveEmpty.textContent =
    device.latest.size > 0
      ? "No chart yet: choose “chart” on a numeric metric above."
      : "No readings yet: the charts start with the device's first one.";
}

// The list: the metrics matching the search, by name, LIST_ROWS at most; their elements
// live while they are listed.
const search = element("metric-search");
const listed = new Map(); // metric -> item element

function renderList() {
  listChanged = false;
  const words = search.value.trim().toLowerCase();
  const matching = [...device.latest.keys()]
    .filter((metric) => !words || metric.toLowerCase().includes(words))
    .sort();
  const rows = matching.slice(0, LIST_ROWS);
  const keep = new Set(rows);
  for (const metric of listed.keys()) if (!keep.has(metric)) listed.delete(metric);
  element("latest").replaceChildren(
    ...rows.map((metric) => {
      if (!listed.has(metric)) {
        listed.set(metric, buildItem(metric));
        latestChanged.add(metric);
      }
      return listed.get(metric);
    }),
  );
  const more = element("latest-more");
  const unlisted = (words ? matching.length : total()) - rows.length;
  more.hidden = unlisted <= 0;
  more.textContent = words
    ? `${unlisted} more matching: narrow the search.`
    : `${plural(unlisted, "more metric", "more metrics")}: narrow the search.`;
  element("metric-count").textContent = String(total());
  element("metric-nomatch").hidden = !(words && matching.length === 0);
}

function buildItem(metric) {
  const item = document.createElement("div");
  item.className = "item";
  item.dataset.metric = metric;
  const name = document.createElement("dt");
  name.textContent = metric;
  name.title = metric;
  const value = document.createElement("dd");
  const unit = document.createElement("span");
  unit.className = "unit";
  value.append(document.createElement("b"), unit, document.createElement("small"));
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "pick";
  pick.textContent = "chart";
  pick.setAttribute("aria-label", `Chart ${metric}`);
  pick.addEventListener("click", () => toggle(metric));
  item.append(name, value, pick);
  return item;
}

function renderSeen() {
  const seen = element("last-seen");
  seen.textContent = formatAgo(device.lastSeen);
  seen.title = formatTime(device.lastSeen);
}

function insertSorted(parent, node, key, keys) {
  const after = [...keys].sort(byRank).find((other) => byRank(other, key) > 0);
  parent.insertBefore(
    node,
    after ? parent.querySelector(`[data-metric="${CSS.escape(after)}"]`) : null,
  );
}

function renderLatest(metric) {
  const latest = device.latest.get(metric);
  const chart = charts.get(metric);
  if (chart && latest) chart.value.textContent = formatValue(latest.value);
  const item = listed.get(metric);
  if (!item || !latest) return;
  const [value, unit, when] = item.querySelector("dd").children;
  value.textContent = formatValue(latest.value);
  unit.textContent = formatUnit(units.get(metric));
  when.textContent = formatAgo(latest.ts);
  when.title = formatTime(latest.ts);
  const pick = item.querySelector(".pick");
  pick.hidden = !latest.numeric && !chosen.has(metric);
  pick.setAttribute("aria-pressed", String(chosen.has(metric)));
}

function chartFor(metric) {
  let chart = charts.get(metric);
  if (chart) return chart;
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.metric = metric;
  const caption = document.createElement("figcaption");
  const value = document.createElement("b");
  const unit = document.createElement("span");
  unit.className = "unit";
  unit.textContent = formatUnit(units.get(metric));
  caption.append(metric, " ", value, unit);
  const plotBox = document.createElement("div");
  plotBox.className = "plot";
  plotBox.dataset.points = "0";
  const note = document.createElement("p");
  note.className = "chart-note";
  note.textContent = "No readings in the last 10 minutes.";
  note.hidden = true;
  figure.append(caption, plotBox, note);
  insertSorted(element("live-charts"), figure, metric, charts.keys());
  const buffer = new SeriesBuffer(LIVE_POINTS);
  const plot = liveChart(plotBox, buffer, { label: metric, windowMs: LIVE_WINDOW_MS });
  chart = { buffer, plot, figure, value, unit, note, loaded: false, dirty: true };
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

function historyOptions() {
  // The history follows one of the charted metrics.
  const current = metricSelect.value;
  const metrics = [...chosen].sort(byRank);
  metricSelect.replaceChildren(...metrics.map((metric) => new Option(metric, metric)));
  if (metrics.includes(current)) {
    metricSelect.value = current;
  } else {
    metricSelect.value = metrics[0] ?? "";
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
    info.textContent =
      device.latest.size > 0
        ? "Chart a numeric metric to see its history."
        : "No readings yet: the history starts with the device's first one.";
    history.setData([[], [], [], []]);
    historyBox.dataset.points = "0";
    historyBox.classList.add("blank"); // no axes of made-up values around nothing
    return;
  }
  const start = Math.round(view.start);
  const end = Math.round(view.end);
  csvLink.href = `${base}readings/?${query({ format: "csv", metric, start, end })}`;
  csvLink.download = `${uid}-${metric}.csv`;
  historyBox.classList.remove("blank"); // shown, to be measured
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
    historyBox.classList.toggle("blank", body.points.length === 0);
    const count = body.points.reduce((sum, point) => sum + point.count, 0);
    setUnit(metric, body.unit);
    const unit = formatUnit(body.unit);
    const span = `${formatTime(start)} – ${formatTime(end)}`;
    info.textContent = count
      ? `${plural(body.points.length, "bucket")} of ${body.interval} · ` +
        `${plural(count, "reading")}${unit ? ` in ${unit}` : ""} · ${span}`
      : `No readings of ${metric} in this range · ${span}`;
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
search.addEventListener("input", () => {
  listChanged = true;
  schedule();
});
// The page came with the first DEVICE_METRICS metrics by name: a search covers them all.
let listComplete = false;
search.addEventListener("focus", () => {
  if (listComplete || device.latest.size >= total()) return;
  listComplete = true;
  refreshLatest().catch((error) => {
    listComplete = false;
    console.warn("metrics:", error.message);
  });
});

// --- alarms and rules ----------------------------------------------------------------

const alarmBadge = new AlarmBadge({ everyDevice: false });
const alarmTable = new AlarmTable(element("device-alarms"), {
  showDevice: false,
  activeFirst: true,
  maxRows: ALARM_ROWS,
  maxCleared: data.cleared_alarms,
  empty: element("device-alarms-empty"),
  onChange: () => alarmBadge.soon(),
});
for (const alarm of data.alarms) alarmTable.merge(alarm);
let alarmsTimer = null;

/** Read the device's alarms from REST soon: what frames do not carry, or what was missed. */
function alarmsReconcile() {
  if (alarmsTimer !== null) return;
  alarmsTimer = setTimeout(async () => {
    alarmsTimer = null;
    try {
      const lists = await Promise.all(
        ["active", "cleared"].map((state) =>
          getJSON(`/api/v1/alarms/?${query({ device: uid, state })}`),
        ),
      );
      for (const body of lists) for (const alarm of body.results) alarmTable.merge(alarm);
      const table = element("device-alarms");
      table.dataset.reconciled = String(Number(table.dataset.reconciled || 0) + 1);
    } catch (error) {
      console.warn("alarms:", error.message);
    }
  }, ALARMS_RECONCILE_MS);
}

new RulesPanel(element("rules-panel"), {
  device: uid,
  rules: data.rules,
  metrics: Object.keys(data.device.latest).sort(),
  onDeleted: (ruleId) => {
    alarmTable.removeRule(ruleId);
    alarmBadge.soon();
  },
});

// --- start ---------------------------------------------------------------------------

for (const [metric, { ts, value, unit }] of Object.entries(data.device.latest)) {
  updateLatest(metric, parseTs(ts), value);
  setUnit(metric, unit);
}
// Charts named in the address that the device has, then (by default) the first numeric ones.
for (const metric of [...chosen]) {
  chosen.delete(metric);
  if (device.latest.get(metric)?.numeric) choose(metric);
}
if (autoChoose) {
  for (const [metric, latest] of [...device.latest].sort(([a], [b]) => byRank(a, b))) {
    if (chosen.size >= DEFAULT_CHARTS) break;
    if (latest.numeric) choose(metric);
  }
}
historyOptions();
flush();
backfill(now() - LIVE_WINDOW_MS).catch((error) => console.warn("live charts:", error.message));

setInterval(() => {
  // Times read "… ago" and the live charts slide, even without new readings.
  renderSeen();
  attributes.tick();
  const horizon = now() - LIVE_WINDOW_MS;
  for (const chart of charts.values()) {
    chart.buffer.trim(horizon);
    chart.dirty = true;
  }
  for (const metric of listed.keys()) latestChanged.add(metric);
  schedule();
}, 1000);
setInterval(loadHistory, HISTORY_REFRESH_MS);

new LiveSocket({
  devices: [uid],
  onFrame,
  onSubscribed,
  onState: (state, detail) => showConnection(element("connection"), state, detail),
}).start();
