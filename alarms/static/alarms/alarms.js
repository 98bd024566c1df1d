// The /alarms/ page: the user's alarms (filtered, newest first, a page at a time), live from
// `alarm` frames, with acknowledge and clear; and the rules panel with its form.
//
// A frame updates its row at once; on the first page a new alarm that matches the filters
// appears at the top. Then the page reads REST again (coalesced) for what frames do not
// carry (who acknowledged, the peak) and for whatever a lost socket missed.

import { getJSON, query } from "../telemetry/api.js";
import { syncClock } from "../telemetry/format.js";
import { LiveSocket, showConnection } from "../telemetry/socket.js";
import { AlarmBadge } from "./badge.js";
import { RulesPanel } from "./rules.js";
import { AlarmTable } from "./table.js";

const ALARMS_URL = "/api/v1/alarms/";
// Frames that come together cost one REST read.
const RECONCILE_MS = 400;

const data = JSON.parse(document.getElementById("page-data").textContent);
syncClock(data.server_now);
const filters = data.filters; // REST's names; state "all" means no state filter
const element = (id) => document.getElementById(id);

const badge = new AlarmBadge({ everyDevice: !filters.device });
const table = new AlarmTable(element("alarms"), {
  showDevice: true,
  // New alarms push older rows off; the page keeps its own plus as many new ones.
  maxRows: data.page_size * 2,
  empty: element("alarms-empty"),
  onChange: () => badge.soon(),
  // New alarms pushed rows off the bottom: "Older" goes on from the last one shown.
  onDropped: (last) => {
    const older = element("alarms-older");
    const search = new URLSearchParams(location.search);
    search.set("before", String(last.id));
    older.href = `?${search}`;
    older.hidden = false;
  },
});
for (const alarm of data.alarms) table.merge(alarm);
table.render();

new RulesPanel(element("rules-panel"), {
  rules: data.rules,
  devices: data.devices,
  // The metrics the rules watch already: the likeliest ones for another.
  metrics: [...new Set(data.rules.items.map((rule) => rule.metric))].sort(),
  onDeleted: (ruleId) => {
    table.removeRule(ruleId);
    badge.soon();
  },
});

// The filter form reloads the page as soon as a choice changes.
const filterForm = element("alarm-filters");
for (const select of filterForm.querySelectorAll("select")) {
  select.addEventListener("change", () => filterForm.requestSubmit());
}

// --- live ------------------------------------------------------------------------------

function matches(frame) {
  if (filters.state && filters.state !== "all" && frame.state !== filters.state) return false;
  if (filters.severity && frame.severity !== filters.severity) return false;
  if (filters.acknowledged != null && frame.acknowledged !== filters.acknowledged) return false;
  if (filters.device && frame.device !== filters.device) return false;
  return true;
}

const changed = new Set(); // alarm ids whose rows want REST's details
let reconcileTimer = null;
let reconcileAll = false;

function onFrame(frame) {
  if (frame.type !== "alarm") return;
  badge.onFrame(frame);
  if (table.applyFrame(frame)) {
    changed.add(frame.id);
  } else if (data.first_page && matches(frame)) {
    table.insertFromFrame(frame);
    changed.add(frame.id);
  } else {
    return;
  }
  scheduleReconcile();
}

function scheduleReconcile() {
  if (reconcileTimer !== null) return;
  reconcileTimer = setTimeout(() => {
    reconcileTimer = null;
    reconcile().catch((error) => console.warn("alarms:", error.message));
  }, RECONCILE_MS);
}

async function reconcile() {
  const all = reconcileAll;
  reconcileAll = false;
  const ids = all ? table.ids() : [...changed];
  changed.clear();
  if (data.first_page) {
    // One read of the newest alarms that match: new ones and changed ones alike.
    const state = filters.state === "all" ? null : filters.state;
    const body = await getJSON(`${ALARMS_URL}?${query({ ...filters, state })}`);
    const oldest = table.oldestStart();
    const listed = new Set();
    for (const alarm of body.results) {
      listed.add(alarm.id);
      if (table.has(alarm.id) || oldest === null || Date.parse(alarm.started) >= oldest) {
        table.merge(alarm);
      }
    }
    // Rows that left the filter (cleared, acknowledged) are read one by one.
    await Promise.all(ids.filter((id) => !listed.has(id)).map(detail));
  } else {
    await Promise.all(ids.map(detail));
  }
  element("alarms").dataset.reconciled = String(Number(element("alarms").dataset.reconciled || 0) + 1);
}

async function detail(id) {
  try {
    table.merge(await getJSON(`${ALARMS_URL}${encodeURIComponent(id)}/`));
  } catch (error) {
    console.warn(`alarm ${id}:`, error.message);
  }
}

function onSubscribed(frame, { reconnected }) {
  if (!reconnected) return;
  // Frames sent while the socket was down are lost: read again what the page shows.
  badge.soon();
  reconcileAll = true;
  scheduleReconcile();
}

new LiveSocket({
  // Alarm frames go to the sockets that show their device (CONTRACT §6).
  devices: filters.device ? [filters.device] : "*",
  onFrame,
  onSubscribed,
  onState: (state, detail) => showConnection(element("connection"), state, detail),
}).start();
