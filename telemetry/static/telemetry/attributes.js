// Attributes panel of the device page (CONTRACT §7): desired vs reported per key, the keys
// the device has not applied yet (a desired value its reported value differs from, as
// devices/attributes.py pending_keys says), the desired version and when the device last
// reported; and a form that merges a JSON object into desired over REST (PATCH). It starts
// from the page's data, follows the socket's `attributes` frames (each carries both sides
// whole), and is read again from REST after every (re)subscription, since frames sent
// while the socket was down are lost.

import { deviceUrl, getJSON, sendJSON } from "./api.js";
import { formatAgo, formatTime, parseTs } from "./format.js";

/** Tell whether two JSON values are equal (object keys in any order). */
export function sameValue(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.hasOwn(b, key) && sameValue(a[key], b[key]));
}

/** Return the desired keys whose reported value differs: changes not applied yet, by name. */
export function pendingKeys(desired, reported) {
  return Object.keys(desired)
    .filter((key) => !Object.hasOwn(reported, key) || !sameValue(desired[key], reported[key]))
    .sort();
}

/** Check the form's text: return `{patch}` (a JSON object) or `{error}`. */
export function readDesiredForm(text) {
  const trimmed = text.trim();
  if (!trimmed) return { error: 'Enter a JSON object, like {"interval": 5}.' };
  let value;
  try {
    value = JSON.parse(trimmed);
  } catch (error) {
    return { error: `Not valid JSON: ${error.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: 'Desired must be a JSON object, like {"interval": 5}; null removes a key.' };
  }
  return { patch: value };
}

/** Show a JSON value compactly on one line. */
function compact(value) {
  return JSON.stringify(value) ?? "";
}

export class AttributesPanel {
  constructor(root, { uid, initial }) {
    this.url = `${deviceUrl(uid)}attributes/`;
    this.state = { desired: {}, version: 0, reported: {}, reportedAt: null };
    this.rows = new Map(); // key -> {tr, desired, reported, badge}
    this.form = root.querySelector("#attributes-form");
    this.field = this.form.elements.desired;
    this.csrfToken = this.form.elements.csrfmiddlewaretoken.value;
    this.button = this.form.querySelector("button[type=submit]");
    this.errorBox = root.querySelector("#attributes-error");
    this.table = root.querySelector("#attributes");
    this.tbody = root.querySelector("#attributes tbody");
    this.empty = root.querySelector("#attributes-empty");
    this.version = root.querySelector("#attributes-version");
    this.reportedAt = root.querySelector("#attributes-reported-at");
    this.pending = root.querySelector("#attributes-pending");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.field.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.field.addEventListener("input", () => {
      if (this.field.getAttribute("aria-invalid") === "true") this.check();
    });
    if (initial) this.merge(initial);
    this.render();
  }

  // --- state --------------------------------------------------------------------------

  /**
   * Take both sides from a frame, a REST body or a PATCH answer, unless they are older
   * than what the panel shows: desired by its version, reported by its time.
   */
  merge(body) {
    const state = this.state;
    if (typeof body.version === "number" && body.version >= state.version) {
      state.desired = body.desired ?? {};
      state.version = body.version;
    }
    const at = parseTs(body.reported_at);
    if (at !== null && (state.reportedAt === null || at >= state.reportedAt)) {
      state.reported = body.reported ?? {};
      state.reportedAt = at;
    }
  }

  /** An `attributes` frame from the socket: one side or both changed. */
  onFrame(frame) {
    this.merge(frame);
    this.render();
  }

  /** Read both sides from REST: after each (re)subscription, frames may have been lost. */
  async refresh() {
    this.merge(await getJSON(this.url));
    this.render();
    this.table.dataset.loads = String(Number(this.table.dataset.loads || 0) + 1);
  }

  /** Say again how long ago the device reported. */
  tick() {
    this.renderReportedAt();
  }

  // --- the form -----------------------------------------------------------------------

  check() {
    const outcome = readDesiredForm(this.field.value);
    this.showError(outcome.error ?? "", { atField: Boolean(outcome.error) });
    return outcome.patch;
  }

  showError(text, { atField }) {
    if (atField) this.field.setAttribute("aria-invalid", "true");
    else this.field.removeAttribute("aria-invalid");
    this.errorBox.textContent = text;
    this.errorBox.hidden = !text;
  }

  async submit() {
    const patch = this.check();
    if (!patch) {
      this.field.focus();
      return;
    }
    this.button.disabled = true;
    try {
      const { ok, status, body } = await sendJSON(
        "PATCH",
        this.url,
        { desired: patch },
        { csrfToken: this.csrfToken },
      );
      if (ok) {
        this.merge(body);
        this.render();
        this.field.value = "";
        return;
      }
      this.refused(status, body);
    } catch (error) {
      this.showError(`Could not reach the hub (${error.message}); try again.`, { atField: false });
    } finally {
      this.button.disabled = false;
    }
  }

  /** Say why the hub refused the change: the field's message (400) or what the hub said. */
  refused(status, body) {
    if (status === 400 && body && typeof body === "object") {
      const messages = Object.entries(body).map(
        ([name, problems]) => `${name}: ${[problems].flat().join(" ")}`,
      );
      this.showError(messages.join(" "), { atField: true });
      this.field.focus();
      return;
    }
    const detail = body?.detail ? `: ${body.detail}` : "";
    const advice = {
      403: " Reload the page (you may need to log in again).",
      404: " The device no longer exists.",
      429: " Too many requests; wait a moment.",
    };
    const text = `The hub refused the change (HTTP ${status})${detail}.`;
    this.showError(text + (advice[status] ?? ""), { atField: false });
  }

  // --- the table ----------------------------------------------------------------------

  render() {
    const { desired, reported, version } = this.state;
    const keys = [...new Set([...Object.keys(desired), ...Object.keys(reported)])].sort();
    const pending = new Set(pendingKeys(desired, reported));
    for (const [key, row] of this.rows) {
      if (!keys.includes(key)) {
        row.tr.remove();
        this.rows.delete(key);
      }
    }
    let previous = null;
    for (const key of keys) {
      let row = this.rows.get(key);
      if (!row) {
        row = this.buildRow(key);
        this.rows.set(key, row);
      }
      const wanted = Object.hasOwn(desired, key);
      const state = pending.has(key) ? "pending" : wanted ? "applied" : "reported";
      this.renderValue(row.desired, wanted, desired[key]);
      this.renderValue(row.reported, Object.hasOwn(reported, key), reported[key]);
      row.tr.dataset.state = state;
      row.badge.className = `badge attr attr-${state}`;
      row.badge.textContent = { pending: "not applied yet", applied: "applied", reported: "reported" }[
        state
      ];
      const expected = previous ? previous.nextSibling : this.tbody.firstChild;
      if (expected !== row.tr) this.tbody.insertBefore(row.tr, expected);
      previous = row.tr;
    }
    this.table.hidden = keys.length === 0;
    this.empty.hidden = keys.length > 0;
    this.version.textContent = String(version);
    this.pending.hidden = pending.size === 0;
    this.pending.textContent = `${pending.size} not applied yet`;
    this.pending.title = [...pending].join(", ");
    this.renderReportedAt();
  }

  renderReportedAt() {
    const at = this.state.reportedAt;
    this.reportedAt.textContent = at === null ? "never" : formatAgo(at);
    if (at === null) {
      this.reportedAt.removeAttribute("datetime");
      this.reportedAt.title = "";
    } else {
      this.reportedAt.dateTime = new Date(at).toISOString();
      this.reportedAt.title = formatTime(at);
    }
  }

  buildRow(key) {
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    const [name, desired, reported, state] = ["key", "desired", "reported", "state"].map(
      (column) => {
        const td = document.createElement("td");
        td.className = column;
        tr.append(td);
        return td;
      },
    );
    const code = document.createElement("code");
    code.textContent = key;
    name.append(code);
    const badge = document.createElement("span");
    state.append(badge);
    return { tr, desired, reported, badge };
  }

  renderValue(cell, present, value) {
    if (!present) {
      cell.replaceChildren();
      const none = document.createElement("span");
      none.className = "muted";
      none.textContent = "—";
      cell.append(none);
      cell.title = "";
      return;
    }
    const code = document.createElement("code");
    code.textContent = compact(value);
    cell.replaceChildren(code);
    cell.title = code.textContent;
  }
}
