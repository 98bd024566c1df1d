// Fleet page: every own device with its state, its active alarms (count and worst severity),
// last seen, its first few latest values (by metric name, then "+N more") and a sparkline,
// live over one socket subscribed to "*". DOM changes are batched once per animation frame.

import { AlarmBadge } from "../alarms/badge.js";
import { SEVERITIES, severityRank } from "../alarms/text.js";
import { deviceUrl, getJSON, query } from "./api.js";
import { SeriesBuffer, redraw, sparkline } from "./charts.js";
import {
  byRank,
  formatAgo,
  formatTime,
  formatUnit,
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
// After a reconnect, the active alarms are read again: at most this many pages of 100.
const ALARM_PAGES = 10;
// Metrics first heard of live have their units read from REST after this long, together.
const UNITS_READ_MS = 2000;

const data = JSON.parse(document.getElementById("page-data").textContent);
syncClock(data.server_now);
// Values shown per device, whatever it holds: the server sends as many.
const SHOWN = data.fleet_values || 6;

const table = document.getElementById("fleet");
const tbody = table.querySelector("tbody");
const filterBox = document.getElementById("filter");
const badge = document.getElementById("connection");
const alarmBadge = new AlarmBadge({ everyDevice: true });
const devices = new Map();

// --- state -------------------------------------------------------------------

function addDevice(info) {
  const device = {
    uid: info.uid,
    name: info.name || "",
    online: Boolean(info.online),
    lastSeen: parseTs(info.last_seen),
    latest: new Map(),
    units: new Map(), // metric -> its unit (SenML `u`), for those that have one
    names: new Set(), // every metric name the page knows of
    total: info.metrics ?? 0, // how many metrics the device has (at least names.size)
    shown: new Set(), // the first SHOWN names: the only ones with a value cell
    namesChanged: true,
    changed: new Set(), // metrics whose value cell is stale
    stateChanged: true,
    sparkMetric: null,
    spark: new SeriesBuffer(SPARK_POINTS),
    sparkBucket: null,
    sparkPlot: null,
    sparkDirty: false,
    seeded: false,
    visible: false,
    // Active alarms: the page knows some by id (the worst few, then those frames tell of);
    // `unlisted` more exist that it knows only as a count.
    alarms: new Map(),
    unlisted: 0,
    alarmsChanged: true,
  };
  device.row = buildRow(device);
  devices.set(device.uid, device);
  countsChanged = true;
  setAlarms(device, info.alarms?.open ?? [], info.alarms?.active ?? 0);
  mergeLatest(device, info.latest || {});
  insertRow(device);
  return device;
}

function mergeLatest(device, latest) {
  for (const [metric, { ts, value, unit }] of Object.entries(latest)) {
    updateLatest(device, metric, parseTs(ts), value);
    if (typeof unit === "string" && unit && device.units.get(metric) !== unit) {
      device.units.set(metric, unit);
      device.changed.add(metric);
    }
  }
  chooseSparkMetric(device);
}

// A metric first heard of live: its unit comes from REST, once, for a burst of them.
const unitsAsked = new Set();
let unitsTimer = null;

function unitsSoon(device, metric) {
  const key = `${device.uid}\n${metric}`;
  if (device.units.has(metric) || unitsAsked.has(key)) return;
  unitsAsked.add(key);
  if (unitsTimer !== null) return;
  unitsTimer = setTimeout(async () => {
    unitsTimer = null;
    try {
      const latest = await getJSON("/api/v1/latest/");
      for (const [uid, values] of Object.entries(latest)) {
        const known = devices.get(uid);
        if (known) {
          mergeLatest(known, values);
          touch(known);
        }
      }
    } catch (error) {
      console.warn("units:", error.message);
    }
  }, UNITS_READ_MS);
}

function updateLatest(device, metric, ms, value) {
  const current = device.latest.get(metric);
  // A late reading (older device timestamp) does not replace a newer value.
  if (current && current.ts > ms) return;
  device.latest.set(metric, { ts: ms, value });
  device.changed.add(metric);
  if (!device.names.has(metric)) {
    device.names.add(metric);
    device.total = Math.max(device.total, device.names.size);
    device.namesChanged = true;
  }
}

function chooseSparkMetric(device) {
  if (device.sparkMetric) return;
  const numeric = [...device.latest].filter(([, latest]) => isNumeric(latest.value));
  if (!numeric.length) return;
  device.sparkMetric = numeric.map(([metric]) => metric).sort(byRank)[0];
  device.row.sparkLabel.textContent = device.sparkMetric;
  if (device.visible) seedSparkline(device, SPARK_WINDOW_MS);
}

function setAlarms(device, open, active) {
  device.alarms = new Map(open.map((alarm) => [alarm.id, alarm]));
  device.unlisted = Math.max(0, active - open.length);
  device.alarmsChanged = true;
  countsChanged = true;
}

function onAlarm(frame) {
  alarmBadge.onFrame(frame);
  const device = devices.get(frame.device);
  if (!device) return;
  const known = device.alarms.has(frame.id);
  if (frame.state === "active") {
    device.alarms.set(frame.id, { severity: frame.severity, acknowledged: frame.acknowledged });
  } else {
    device.alarms.delete(frame.id);
  }
  if (!known && device.unlisted > 0) {
    // Maybe one the page counts but does not know: new, or one of the unlisted? REST says.
    refreshDeviceAlarms(device).catch((error) => console.warn("alarms:", error.message));
  }
  device.alarmsChanged = true;
  countsChanged = true;
  touch(device);
}

async function refreshDeviceAlarms(device) {
  // One read at a time per device; frames meanwhile ask for one more after it.
  if (device.alarmsLoading) {
    device.alarmsAgain = true;
    return;
  }
  device.alarmsLoading = true;
  try {
    const body = await getJSON(`/api/v1/alarms/?${query({ state: "active", device: device.uid })}`);
    // Past one page (100) the count is shown as "100+".
    setAlarms(device, body.results, body.results.length + (body.next ? 1 : 0));
    touch(device);
  } finally {
    device.alarmsLoading = false;
    if (device.alarmsAgain) {
      device.alarmsAgain = false;
      refreshDeviceAlarms(device).catch((error) => console.warn("alarms:", error.message));
    }
  }
}

async function refreshAlarms() {
  const open = new Map();
  let url = "/api/v1/alarms/?state=active";
  for (let page = 0; url && page < ALARM_PAGES; page += 1) {
    const body = await getJSON(url);
    for (const alarm of body.results) {
      if (!open.has(alarm.device)) open.set(alarm.device, []);
      open.get(alarm.device).push(alarm);
    }
    url = body.next;
  }
  for (const device of devices.values()) {
    const found = open.get(device.uid);
    // Beyond the pages read, a device the pages did not name keeps what it had.
    if (found || !url) setAlarms(device, found ?? [], (found ?? []).length);
    touch(device);
  }
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
      if (!device.units.has(reading.metric)) unitsSoon(device, reading.metric);
      updateLatest(device, reading.metric, ms, reading.value);
      if (!device.sparkMetric && isNumeric(reading.value)) chooseSparkMetric(device);
      if (reading.metric === device.sparkMetric && isNumeric(reading.value)) {
        device.sparkDirty = sparkAdd(device, ms, reading.value) || device.sparkDirty;
      }
    }
    touch(device);
  } else if (frame.type === "alarm") {
    onAlarm(frame);
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
  if (reconnected) {
    alarmBadge.soon();
    refreshAlarms().catch((error) => console.warn("alarms after reconnect:", error.message));
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
  const alarms = document.createElement("a");
  alarms.className = "alarm-pill";
  alarms.href = `/alarms/?${query({ device: device.uid })}`;
  alarms.hidden = true;
  cell(tr, "alarm-cell").append(alarms);
  const seen = cell(tr, "seen");
  const values = cell(tr, "values");
  const more = document.createElement("a");
  more.className = "more";
  more.href = `/devices/${encodeURIComponent(device.uid)}/`;
  more.hidden = true;
  values.append(more);
  const spark = cell(tr, "spark");
  const sparkPlot = document.createElement("div");
  sparkPlot.className = "spark-plot";
  const sparkLabel = document.createElement("span");
  sparkLabel.className = "spark-label";
  spark.append(sparkPlot, sparkLabel);
  byRow.set(tr, device);
  rowObserver.observe(tr);
  return {
    tr,
    name,
    stateText,
    alarms,
    seen,
    values,
    more,
    spark,
    sparkPlot,
    sparkLabel,
    spans: new Map(),
  };
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
  const unit = document.createElement("span");
  unit.className = "unit";
  span.append(key, document.createElement("b"), unit);
  spans.set(metric, span);
  const after = [...spans.keys()].sort().find((other) => other > metric);
  values.insertBefore(span, after ? spans.get(after) : device.row.more);
  return span;
}

function renderNames(device) {
  // Only the first SHOWN metrics by name get a cell; a new name may push one out.
  device.namesChanged = false;
  const shown = [...device.names].sort().slice(0, SHOWN);
  const keep = new Set(shown);
  for (const [metric, span] of device.row.spans) {
    if (!keep.has(metric)) {
      span.remove();
      device.row.spans.delete(metric);
    }
  }
  for (const metric of shown) if (!device.row.spans.has(metric)) device.changed.add(metric);
  device.shown = keep;
  const more = device.total - shown.length;
  device.row.more.hidden = more <= 0;
  device.row.more.textContent = `+${more} more`;
  device.row.more.title = `${device.total} metrics: see them all on the device's page`;
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
  if (device.namesChanged) renderNames(device);
  if (device.alarmsChanged) renderAlarms(device);
  for (const metric of device.changed) {
    if (!device.shown.has(metric)) continue;
    const { ts, value } = device.latest.get(metric);
    const span = valueSpan(device, metric);
    span.querySelector("b").textContent = formatValue(value);
    span.lastChild.textContent = formatUnit(device.units.get(metric));
    span.title = `${metric} at ${formatTime(ts)}`;
  }
  device.changed.clear();
  renderSeen(device);
}

function alarmSummary(device) {
  let worst = null;
  let unacknowledged = 0;
  for (const alarm of device.alarms.values()) {
    if (worst === null || severityRank(alarm.severity) < severityRank(worst)) worst = alarm.severity;
    if (!alarm.acknowledged) unacknowledged += 1;
  }
  return { active: device.alarms.size + device.unlisted, worst, unacknowledged };
}

function renderAlarms(device) {
  device.alarmsChanged = false;
  const { active, worst, unacknowledged } = alarmSummary(device);
  const pill = device.row.alarms;
  pill.hidden = active === 0;
  device.row.tr.dataset.alarms = String(active);
  if (!active) return;
  pill.className = `alarm-pill sev-${SEVERITIES.includes(worst) ? worst : "unknown"}`;
  pill.textContent = `${active > 100 ? "100+" : active} · ${worst ?? "active"}`;
  pill.dataset.worst = worst ?? "";
  const acknowledged = device.unlisted ? "" : `, ${unacknowledged} not acknowledged`;
  pill.title = `${active} active alarm${active === 1 ? "" : "s"}${acknowledged}; worst: ${worst}`;
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
  let alarmed = 0;
  for (const device of devices.values()) if (device.alarms.size + device.unlisted > 0) alarmed += 1;
  document.getElementById("count-alarmed").textContent = String(alarmed);
  document.getElementById("count-alarmed").parentElement.classList.toggle("some", alarmed > 0);
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
