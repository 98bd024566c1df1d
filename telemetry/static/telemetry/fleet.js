// Fleet page: every own device with its state, last seen, latest values and a sparkline,
// live over one socket subscribed to "*". DOM changes are batched once per animation frame.

import { deviceUrl, getJSON } from "./api.js";
import { SeriesBuffer, redraw, sparkline } from "./charts.js";
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
import { seedSparkline, sparkAdd } from "./sparkdata.js";

const SPARK_WINDOW_MS = 10 * 60 * 1000;
const SPARK_POINTS = 120; // 10-s averages (sparkdata.js): two windows' worth
// Visible sparklines slide with time even without new readings.
const SLIDE_EVERY_S = 5;

const data = JSON.parse(document.getElementById("page-data").textContent);
syncClock(data.server_now);

const table = document.getElementById("fleet");
const tbody = table.querySelector("tbody");
const filterBox = document.getElementById("filter");
const badge = document.getElementById("connection");
const devices = new Map();

// --- state -------------------------------------------------------------------

function addDevice(info) {
  const device = {
    uid: info.uid,
    name: info.name || "",
    online: Boolean(info.online),
    lastSeen: parseTs(info.last_seen),
    latest: new Map(),
    changed: new Set(), // metrics whose value cell is stale
    stateChanged: true,
    sparkMetric: null,
    spark: new SeriesBuffer(SPARK_POINTS),
    sparkBucket: null,
    sparkPlot: null,
    sparkDirty: false,
    seeded: false,
    visible: false,
  };
  device.row = buildRow(device);
  devices.set(device.uid, device);
  countsChanged = true;
  mergeLatest(device, info.latest || {});
  insertRow(device);
  return device;
}

function mergeLatest(device, latest) {
  for (const [metric, { ts, value }] of Object.entries(latest)) {
    updateLatest(device, metric, parseTs(ts), value);
  }
  chooseSparkMetric(device);
}

function updateLatest(device, metric, ms, value) {
  const current = device.latest.get(metric);
  // A late reading (older device timestamp) does not replace a newer value.
  if (current && current.ts > ms) return;
  device.latest.set(metric, { ts: ms, value });
  device.changed.add(metric);
}

function chooseSparkMetric(device) {
  if (device.sparkMetric) return;
  const numeric = [...device.latest].filter(([, latest]) => isNumeric(latest.value));
  if (!numeric.length) return;
  device.sparkMetric = numeric.map(([metric]) => metric).sort()[0];
  device.row.sparkLabel.textContent = device.sparkMetric;
  if (device.visible) seedSparkline(device, SPARK_WINDOW_MS);
}

function setOnline(device, online) {
  if (device.online !== online) {
    device.online = online;
    device.stateChanged = true;
    countsChanged = true;
  }
}

function ensureDevice(uid) {
  const known = devices.get(uid);
  if (known) return known;
  // Registered after the page loaded: show it now, fill in its name from REST.
  const device = addDevice({ uid, online: true });
  getJSON(deviceUrl(uid))
    .then((info) => {
      device.name = info.name || "";
      device.stateChanged = true;
      touch(device);
    })
    .catch((error) => console.warn("device details:", error.message));
  return device;
}

// --- frames ------------------------------------------------------------------

function onFrame(frame) {
  if (frame.type === "readings") {
    const device = ensureDevice(frame.device);
    setOnline(device, true);
    device.lastSeen = now();
    for (const reading of frame.readings) {
      const ms = parseTs(reading.ts);
      updateLatest(device, reading.metric, ms, reading.value);
      if (!device.sparkMetric && isNumeric(reading.value)) chooseSparkMetric(device);
      if (reading.metric === device.sparkMetric && isNumeric(reading.value)) {
        device.sparkDirty = sparkAdd(device, ms, reading.value) || device.sparkDirty;
      }
    }
    touch(device);
  } else if (frame.type === "status") {
    const device = ensureDevice(frame.device);
    setOnline(device, frame.online);
    const at = parseTs(frame.at);
    if (frame.online && at && at > (device.lastSeen || 0)) device.lastSeen = at;
    touch(device);
  }
}

async function refresh() {
  // After a reconnect: what happened while the socket was down comes from REST.
  const [list, latest] = await Promise.all([
    getJSON("/api/v1/devices/"),
    getJSON("/api/v1/latest/"),
  ]);
  const infos = Array.isArray(list) ? list : list.results;
  const present = new Set();
  for (const info of infos) {
    present.add(info.uid);
    const device = devices.get(info.uid) || addDevice(info);
    device.name = info.name || "";
    setOnline(device, Boolean(info.online));
    const seen = parseTs(info.last_seen);
    if (seen && seen > (device.lastSeen || 0)) device.lastSeen = seen;
    mergeLatest(device, latest[info.uid] || {});
    device.stateChanged = true;
    touch(device);
  }
  for (const device of [...devices.values()]) {
    if (!present.has(device.uid)) removeDevice(device);
  }
}

function onSubscribed(frame, { reconnected }) {
  const unknown = frame.devices.some((uid) => !devices.has(uid));
  if (reconnected || unknown) {
    refresh().catch((error) => console.warn("refresh after reconnect:", error.message));
  }
}

// --- DOM ---------------------------------------------------------------------

function cell(tr, className) {
  const td = document.createElement("td");
  td.className = className;
  tr.appendChild(td);
  return td;
}

function buildRow(device) {
  const tr = document.createElement("tr");
  tr.dataset.device = device.uid;
  const who = cell(tr, "device");
  const link = document.createElement("a");
  link.href = `/devices/${encodeURIComponent(device.uid)}/`;
  link.className = "uid";
  link.textContent = device.uid;
  const name = document.createElement("span");
  name.className = "name";
  who.append(link, name);
  const state = cell(tr, "state");
  const stateText = document.createElement("span");
  state.append(stateText);
  const seen = cell(tr, "seen");
  const values = cell(tr, "values");
  const spark = cell(tr, "spark");
  const sparkPlot = document.createElement("div");
  sparkPlot.className = "spark-plot";
  const sparkLabel = document.createElement("span");
  sparkLabel.className = "spark-label";
  spark.append(sparkPlot, sparkLabel);
  byRow.set(tr, device);
  rowObserver.observe(tr);
  return { tr, name, stateText, seen, values, spark, sparkPlot, sparkLabel, spans: new Map() };
}

function insertRow(device) {
  // Rows are in uid order; the page's own devices come sorted, so they append.
  let before = null;
  if (tbody.lastElementChild && tbody.lastElementChild.dataset.device > device.uid) {
    before = [...tbody.children].find((tr) => tr.dataset.device > device.uid);
  }
  tbody.insertBefore(device.row.tr, before);
  applyFilterTo(device);
  device.stateChanged = true;
  touch(device);
}

function removeDevice(device) {
  rowObserver.unobserve(device.row.tr);
  device.sparkPlot?.destroy();
  device.row.tr.remove();
  devices.delete(device.uid);
  dirty.delete(device);
  offscreen.delete(device);
  countsChanged = true;
  schedule();
}

function valueSpan(device, metric) {
  const { spans, values } = device.row;
  let span = spans.get(metric);
  if (span) return span;
  span = document.createElement("span");
  span.className = "metric";
  span.dataset.metric = metric;
  const key = document.createElement("span");
  key.className = "key";
  key.textContent = metric;
  span.append(key, document.createElement("b"));
  spans.set(metric, span);
  const after = [...spans.keys()].sort().find((other) => other > metric);
  values.insertBefore(span, after ? spans.get(after) : null);
  return span;
}

function render(device) {
  const { row } = device;
  if (device.stateChanged) {
    device.stateChanged = false;
    row.name.textContent = device.name;
    row.stateText.textContent = device.online ? "online" : "offline";
    row.tr.classList.toggle("offline", !device.online);
    applyFilterTo(device);
  }
  for (const metric of device.changed) {
    const { ts, value } = device.latest.get(metric);
    const span = valueSpan(device, metric);
    span.lastChild.textContent = formatValue(value);
    span.title = `${metric} at ${formatTime(ts)}`;
  }
  device.changed.clear();
  renderSeen(device);
}

function renderSeen(device) {
  const text = formatAgo(device.lastSeen);
  if (device.row.seen.textContent !== text) {
    device.row.seen.textContent = text;
    device.row.seen.title = formatTime(device.lastSeen);
  }
}

function renderCounts() {
  let online = 0;
  for (const device of devices.values()) if (device.online) online += 1;
  document.getElementById("count-online").textContent = String(online);
  document.getElementById("count-offline").textContent = String(devices.size - online);
  document.getElementById("fleet-empty").hidden = devices.size > 0;
  table.hidden = devices.size === 0;
}

// --- batching: at most one DOM pass per animation frame, for rows in view --------

const dirty = new Set();
// Changed rows out of view: drawn when they scroll into view (rowObserver).
const offscreen = new Set();
let frameRequested = false;
let countsChanged = true;

function touch(device) {
  dirty.add(device);
  schedule();
}

function schedule() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(flush);
}

function flush() {
  frameRequested = false;
  for (const device of dirty) {
    if (device.visible) {
      render(device);
    } else {
      offscreen.add(device);
      if (device.stateChanged) applyFilterTo(device); // a new name may match the filter now
    }
  }
  dirty.clear();
  if (countsChanged) {
    countsChanged = false;
    renderCounts();
    showNoMatch();
  }
}

// --- filter ------------------------------------------------------------------

function applyFilterTo(device) {
  const words = filterBox.value.trim().toLowerCase();
  const match =
    !words || device.uid.toLowerCase().includes(words) || device.name.toLowerCase().includes(words);
  if (device.row.tr.hidden === match) device.row.tr.hidden = !match;
}

function showNoMatch() {
  const shown = [...devices.values()].some((device) => !device.row.tr.hidden);
  document.getElementById("fleet-nomatch").hidden = shown || devices.size === 0;
}

filterBox.addEventListener("input", () => {
  for (const device of devices.values()) applyFilterTo(device);
  showNoMatch();
});

// --- rows in view: their changes are drawn, their sparklines made and seeded (sparkdata.js)

const byRow = new WeakMap();
const rowObserver = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      const device = byRow.get(entry.target);
      if (!device) continue;
      device.visible = entry.isIntersecting;
      if (!device.visible) continue;
      if (offscreen.delete(device)) touch(device);
      if (!device.sparkPlot) {
        device.sparkPlot = sparkline(device.row.sparkPlot, device.spark, {
          windowMs: SPARK_WINDOW_MS,
        });
        seedSparkline(device, SPARK_WINDOW_MS);
      }
    }
  },
  { rootMargin: "200px" },
);

let ticks = 0;
function tick() {
  ticks += 1;
  const slide = ticks % SLIDE_EVERY_S === 0;
  const horizon = now() - SPARK_WINDOW_MS;
  for (const device of devices.values()) {
    if (!device.visible) continue;
    renderSeen(device);
    if (device.sparkPlot && (device.sparkDirty || slide)) {
      device.spark.trim(horizon);
      redraw(device.sparkPlot, device.spark);
      device.sparkDirty = false;
    }
  }
}

// --- start -------------------------------------------------------------------

for (const info of data.devices) addDevice(info);
flush();
setInterval(tick, 1000);
new LiveSocket({
  devices: "*",
  onFrame,
  onSubscribed,
  onState: (state, detail) => showConnection(badge, state, detail),
}).start();
