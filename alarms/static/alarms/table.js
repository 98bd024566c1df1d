// A table of alarms (REST's shape), kept live from `alarm` frames (CONTRACT §6), with
// acknowledge and clear buttons that call REST with the page's CSRF token.
//
// An alarm only moves forward — active → cleared, not acknowledged → acknowledged — so
// frames and REST documents merge in any order: a stale one never moves a row back.
// DOM changes are batched once per animation frame; at most `maxRows` rows are kept.

import { sendJSON } from "../telemetry/api.js";
import { formatAgo, formatTime, formatValue, parseTs } from "../telemetry/format.js";

const FRAME_FIELDS = ["name", "metric", "severity", "rule", "device"];
// "… ago" texts are redrawn this often.
const TIMES_EVERY_MS = 5000;

export class AlarmTable {
  /**
   * `table`: a <table> with a <tbody>; `showDevice`: a device column; `activeFirst`: active
   * alarms above cleared ones (else newest first only); `maxRows`, `maxCleared`: rows kept,
   * cleared ones among them; `empty`: shown without rows;
   * `onChange()`: after the user acknowledged or cleared one; `onDropped(last)`: rows went
   * past `maxRows`, and `last` is the alarm now at the bottom.
   */
  constructor(
    table,
    {
      showDevice = true,
      activeFirst = false,
      maxRows = 100,
      maxCleared = Infinity,
      empty = null,
      onChange = () => {},
      onDropped = () => {},
    },
  ) {
    this.table = table;
    this.tbody = table.querySelector("tbody");
    this.showDevice = showDevice;
    this.activeFirst = activeFirst;
    this.maxRows = maxRows;
    this.maxCleared = maxCleared;
    this.empty = empty;
    this.onChange = onChange;
    this.onDropped = onDropped;
    this.entries = new Map(); // id -> {alarm, row, dirty}
    this.frameRequested = false;
    this.orderChanged = true;
    this.tbody.addEventListener("click", (event) => this.clicked(event));
    setInterval(() => {
      for (const entry of this.entries.values()) if (entry.row) this.renderTimes(entry);
    }, TIMES_EVERY_MS);
  }

  has(id) {
    return this.entries.has(id);
  }

  ids() {
    return [...this.entries.keys()];
  }

  /** The oldest start among the rows (epoch ms), or null: where the table's window begins. */
  oldestStart() {
    let oldest = null;
    for (const { alarm } of this.entries.values()) {
      const started = sortKey(alarm);
      if (oldest === null || started < oldest) oldest = started;
    }
    return oldest;
  }

  /** Take an alarm as REST gives it (list or detail). */
  merge(document) {
    const entry = this.entries.get(document.id);
    if (!entry) {
      this.entries.set(document.id, { alarm: { ...document }, row: null, dirty: true });
      this.orderChanged = true;
      this.schedule();
      return;
    }
    const old = entry.alarm;
    const alarm = { ...document };
    if (old.state === "cleared" && alarm.state === "active") {
      alarm.state = "cleared";
      alarm.cleared = old.cleared;
    }
    if (old.acknowledged && !alarm.acknowledged) {
      alarm.acknowledged = true;
      alarm.acknowledged_at = old.acknowledged_at;
      alarm.acknowledged_by = old.acknowledged_by;
    }
    if (alarm.state !== old.state || alarm.started !== old.started) this.orderChanged = true;
    entry.alarm = alarm;
    entry.dirty = true;
    this.schedule();
  }

  /** Apply an `alarm` frame to a row the table has; return whether it had it. */
  applyFrame(frame) {
    const entry = this.entries.get(frame.id);
    if (!entry) return false;
    const alarm = entry.alarm;
    for (const name of FRAME_FIELDS) alarm[name] = frame[name];
    if (alarm.state === "active" && frame.state === "cleared") {
      alarm.state = "cleared";
      alarm.cleared = frame.at;
      this.orderChanged = true;
    } else if (alarm.state === "active") {
      alarm.value = frame.value;
    }
    if (!alarm.acknowledged && frame.acknowledged) {
      alarm.acknowledged = true;
      alarm.acknowledged_at = frame.at;
    }
    entry.dirty = true;
    this.schedule();
    return true;
  }

  /** Add a row for an alarm known only from its frame (REST fills in the rest later). */
  insertFromFrame(frame) {
    if (this.applyFrame(frame)) return;
    const alarm = {
      id: frame.id,
      value: frame.value,
      peak: null,
      state: frame.state,
      acknowledged: frame.acknowledged,
      started: frame.state === "active" ? frame.at : null,
      cleared: frame.state === "cleared" ? frame.at : null,
      acknowledged_at: frame.acknowledged ? frame.at : null,
      acknowledged_by: null,
      changedAt: frame.at,
    };
    for (const name of FRAME_FIELDS) alarm[name] = frame[name];
    this.entries.set(frame.id, { alarm, row: null, dirty: true });
    this.orderChanged = true;
    this.schedule();
  }

  /** Drop the rows of a deleted rule (its alarms went with it). */
  removeRule(ruleId) {
    for (const [id, entry] of this.entries) {
      if (entry.alarm.rule === ruleId) {
        entry.row?.tr.remove();
        this.entries.delete(id);
      }
    }
    this.schedule();
  }

  // --- acknowledge and clear ----------------------------------------------------------

  async clicked(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = Number(button.closest("tr").dataset.alarm);
    const entry = this.entries.get(id);
    if (!entry) return;
    const action = button.dataset.action;
    button.disabled = true;
    entry.row.note.hidden = true;
    try {
      const { ok, status, body } = await sendJSON(
        "POST",
        `/api/v1/alarms/${encodeURIComponent(id)}/${action}/`,
        {},
      );
      if (ok) {
        this.merge(body);
        this.onChange();
        return;
      }
      const advice = {
        403: " Reload the page (you may need to log in again).",
        404: " It no longer exists (its rule was deleted).",
        429: " Too many requests; wait a moment.",
      };
      const detail = body?.detail ? `: ${body.detail}` : "";
      this.note(entry, `The hub refused (HTTP ${status})${detail}.${advice[status] ?? ""}`);
    } catch (error) {
      this.note(entry, `Could not reach the hub (${error.message}); try again.`);
    } finally {
      button.disabled = false;
    }
  }

  note(entry, text) {
    entry.row.note.textContent = text;
    entry.row.note.hidden = false;
  }

  // --- DOM ------------------------------------------------------------------------------

  schedule() {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => this.render());
  }

  render() {
    this.frameRequested = false;
    const sorted = [...this.entries.values()].sort((a, b) => this.compare(a.alarm, b.alarm));
    const ordered = [];
    const dropped = [];
    let cleared = 0;
    for (const entry of sorted) {
      const isCleared = entry.alarm.state === "cleared";
      if (ordered.length >= this.maxRows || (isCleared && cleared >= this.maxCleared)) {
        dropped.push(entry);
        continue;
      }
      if (isCleared) cleared += 1;
      ordered.push(entry);
    }
    for (const entry of dropped) {
      entry.row?.tr.remove();
      this.entries.delete(entry.alarm.id);
    }
    if (dropped.length) this.onDropped(ordered.at(-1).alarm);
    let previous = null;
    for (const entry of ordered) {
      if (!entry.row) entry.row = this.buildRow();
      if (entry.dirty) this.renderRow(entry);
      if (this.orderChanged) {
        const expected = previous ? previous.nextSibling : this.tbody.firstChild;
        if (expected !== entry.row.tr) this.tbody.insertBefore(entry.row.tr, expected);
      }
      previous = entry.row.tr;
    }
    this.orderChanged = false;
    this.table.hidden = ordered.length === 0;
    if (this.empty) this.empty.hidden = ordered.length > 0;
  }

  compare(a, b) {
    if (this.activeFirst && a.state !== b.state) return a.state === "active" ? -1 : 1;
    return sortKey(b) - sortKey(a) || b.id - a.id;
  }

  buildRow() {
    const tr = document.createElement("tr");
    const cell = (name) => {
      const td = document.createElement("td");
      td.className = name;
      tr.append(td);
      return td;
    };
    const severity = document.createElement("span");
    cell("severity").append(severity);
    const what = cell("what");
    const name = document.createElement("b");
    const metric = document.createElement("small");
    what.append(name, metric);
    let device = null;
    if (this.showDevice) {
      device = document.createElement("a");
      cell("device").append(device);
    }
    const stateCell = cell("state");
    const state = document.createElement("span");
    const acknowledged = document.createElement("small");
    stateCell.append(state, acknowledged);
    const valueCell = cell("value");
    const value = document.createElement("b");
    const peak = document.createElement("small");
    valueCell.append(value, peak);
    const whenCell = cell("when");
    const started = document.createElement("time");
    const cleared = document.createElement("small");
    whenCell.append(started, cleared);
    const actions = cell("actions");
    const ack = actionButton("ack", "Acknowledge");
    const clear = actionButton("clear", "Clear");
    const note = document.createElement("small");
    note.className = "error";
    note.setAttribute("role", "alert");
    note.hidden = true;
    actions.append(ack, clear, note);
    return { tr, severity, name, metric, device, state, acknowledged, value, peak, note };
  }

  renderRow(entry) {
    entry.dirty = false;
    const { alarm, row } = entry;
    row.tr.dataset.alarm = String(alarm.id);
    row.tr.dataset.state = alarm.state;
    row.tr.dataset.acknowledged = String(Boolean(alarm.acknowledged));
    row.tr.dataset.severity = alarm.severity;
    row.tr.classList.toggle("cleared", alarm.state === "cleared");
    row.severity.className = `sev sev-${alarm.severity}`;
    row.severity.textContent = alarm.severity;
    row.name.textContent = alarm.name;
    row.name.title = `rule ${alarm.rule}`;
    row.metric.textContent = alarm.metric;
    if (row.device) {
      row.device.textContent = alarm.device;
      row.device.href = `/devices/${encodeURIComponent(alarm.device)}/`;
    }
    row.state.className = `badge alarm-state ${alarm.state}`;
    row.state.textContent = alarm.state;
    if (alarm.acknowledged) {
      const by = alarm.acknowledged_by ? ` by ${alarm.acknowledged_by}` : "";
      row.acknowledged.textContent = `acknowledged${by}`;
      row.acknowledged.title = formatTime(parseTs(alarm.acknowledged_at));
    } else {
      row.acknowledged.textContent = "not acknowledged";
      row.acknowledged.title = "";
    }
    row.acknowledged.className = alarm.acknowledged ? "acked" : "unacked";
    if (alarm.value == null) {
      row.value.textContent = "no data";
      row.value.className = "muted";
    } else {
      row.value.textContent = formatValue(alarm.value);
      row.value.className = "";
    }
    const peak = alarm.peak != null && alarm.peak !== alarm.value;
    row.peak.textContent = peak ? `peak ${formatValue(alarm.peak)}` : "";
    row.peak.hidden = !peak;
    const [ack, clear] = row.tr.querySelectorAll("button[data-action]");
    ack.hidden = Boolean(alarm.acknowledged);
    clear.hidden = alarm.state !== "active";
    ack.setAttribute("aria-label", `Acknowledge ${alarm.name} on ${alarm.device}`);
    clear.setAttribute("aria-label", `Clear ${alarm.name} on ${alarm.device}`);
    this.renderTimes(entry);
  }

  renderTimes({ alarm, row }) {
    const [started, cleared] = row.tr.querySelector("td.when").children;
    const startMs = parseTs(alarm.started);
    started.textContent = startMs === null ? "" : formatAgo(startMs);
    started.title = startMs === null ? "" : `started ${formatTime(startMs)}`;
    if (startMs !== null) started.dateTime = new Date(startMs).toISOString();
    const clearMs = parseTs(alarm.cleared);
    cleared.textContent = clearMs === null ? "" : `cleared ${formatAgo(clearMs)}`;
    cleared.title = clearMs === null ? "" : formatTime(clearMs);
    cleared.hidden = clearMs === null;
  }
}

function actionButton(action, text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `small ${action === "clear" ? "secondary" : ""}`;
  button.dataset.action = action;
  button.textContent = text;
  return button;
}

/** When an alarm began, for ordering: its start, else its first change seen. */
function sortKey(alarm) {
  return parseTs(alarm.started) ?? parseTs(alarm.changedAt) ?? 0;
}
