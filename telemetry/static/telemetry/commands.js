// Commands panel of the device page (CONTRACT §3–§5): a form that sends a command over REST,
// and the device's recent commands, whose status follows the socket's `command` frames.
// The list starts from the page's data, is read again from REST after every (re)subscription
// (frames sent while the socket was down are lost), and never moves a command backwards:
// pending → sent → succeeded / failed / expired.

import { deviceUrl, getJSON, postJSON } from "./api.js";
import { formatTime, now, parseTs } from "./format.js";

const SHOWN = 20;
const RANK = { pending: 0, sent: 1, succeeded: 2, failed: 2, expired: 2 };
const FINISHED = new Set(["succeeded", "failed", "expired"]);
const FIELDS = ["method", "params", "timeout"];

/**
 * Check the form's raw values; return `{command}` to send, or `{errors}` by field name.
 * `params` must be a JSON object (empty means `{}`); `timeout` is optional, whole seconds.
 */
export function readCommandForm({ method, params, timeout }, { timeoutMax }) {
  const errors = {};
  const command = { method: method.trim() };
  if (!command.method) errors.method = "Enter the method to call, e.g. set_interval.";
  else if (command.method.length > 64) errors.method = "A method name has at most 64 characters.";
  const text = params.trim();
  if (text) {
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        errors.params = 'Params must be a JSON object, like {"seconds": 5}.';
      }
      command.params = value;
    } catch (error) {
      errors.params = `Params are not valid JSON: ${error.message}`;
    }
  } else {
    command.params = {};
  }
  const seconds = timeout.trim();
  if (seconds) {
    const value = Number(seconds);
    if (!Number.isInteger(value) || value < 1 || value > timeoutMax) {
      errors.timeout = `The timeout is a whole number of seconds from 1 to ${timeoutMax}.`;
    } else {
      command.timeout = value;
    }
  }
  return Object.keys(errors).length ? { errors } : { command };
}

/** Show a JSON value compactly on one line. */
function compact(value) {
  return JSON.stringify(value) ?? "";
}

export class CommandsPanel {
  constructor(root, { uid, timeoutMax, initial = [] }) {
    this.uid = uid;
    this.url = `${deviceUrl(uid)}commands/`;
    this.timeoutMax = timeoutMax;
    // id -> {id, method, params, timeout, status, result, error, created, …, row}
    this.commands = new Map();
    this.posting = 0; // POSTs on their way: a frame for a command they create needs no detail fetch
    this.unknown = new Set(); // ids seen only in frames, whose details REST has not given yet
    this.form = root.querySelector("#command-form");
    this.fields = Object.fromEntries(FIELDS.map((name) => [name, this.form.elements[name]]));
    this.csrfToken = this.form.elements.csrfmiddlewaretoken.value;
    this.errorBox = root.querySelector("#command-error");
    this.offlineNote = root.querySelector("#command-offline");
    this.button = this.form.querySelector("button[type=submit]");
    this.tbody = root.querySelector("#commands tbody");
    this.table = root.querySelector("#commands");
    this.empty = root.querySelector("#commands-empty");
    this.methods = root.querySelector("#command-methods");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.fields.params.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    for (const field of Object.values(this.fields)) {
      // Once a field was refused, say as soon as it is right again.
      field.addEventListener("input", () => {
        if (field.getAttribute("aria-invalid") === "true") this.check();
      });
    }
    for (const command of initial) this.merge(command, { known: true });
    this.render();
  }

  // --- state --------------------------------------------------------------------------

  /** Take a command's state from REST (`known`: with all its fields) or from a frame. */
  merge(update, { known = false } = {}) {
    let command = this.commands.get(update.id);
    if (!command) {
      command = { id: update.id, status: null, created: now(), known: false, row: null };
      this.commands.set(update.id, command);
    }
    if (known) {
      command.known = true;
      this.unknown.delete(command.id);
      command.params = update.params;
      command.timeout = update.timeout;
      command.created = parseTs(update.created) ?? command.created;
      command.sentAt = parseTs(update.sent_at);
      command.finishedAt = parseTs(update.finished_at);
      command.expiresAt = parseTs(update.expires_at);
    }
    command.method = update.method ?? command.method;
    const later = command.status === null || RANK[update.status] > RANK[command.status];
    if (later || (known && update.status === command.status)) {
      command.status = update.status;
      command.result = update.result ?? null;
      command.error = update.error ?? "";
      command.seen = [...(command.seen ?? []), update.status].filter(
        (status, index, all) => all.indexOf(status) === index,
      );
    }
    command.dirty = true;
    return command;
  }

  /** A `command` frame from the socket: a new command, or a status change of one. */
  onFrame(frame) {
    const isNew = !this.commands.has(frame.id);
    const command = this.merge(frame);
    if (isNew && !command.known) {
      // Sent from elsewhere (another tab, REST, a script): its params and times come from REST.
      this.unknown.add(frame.id);
      if (!this.posting) this.fetchUnknown();
    }
    this.render();
  }

  fetchUnknown() {
    for (const id of [...this.unknown]) {
      this.unknown.delete(id);
      getJSON(`/api/v1/commands/${encodeURIComponent(id)}/`)
        .then((detail) => {
          this.merge(detail, { known: true });
          this.render();
        })
        .catch((error) => console.warn("command details:", error.message));
    }
  }

  /** Read the recent commands from REST: after each (re)subscription, frames may have been lost. */
  async refresh() {
    const body = await getJSON(this.url);
    for (const command of body.results) this.merge(command, { known: true });
    this.render();
    this.table.dataset.loads = String(Number(this.table.dataset.loads || 0) + 1);
  }

  /** The device's presence: a command for an offline device waits for it, as pending. */
  setOnline(online) {
    this.offlineNote.hidden = online;
  }

  // --- the form -----------------------------------------------------------------------

  check() {
    const values = Object.fromEntries(FIELDS.map((name) => [name, this.fields[name].value]));
    const outcome = readCommandForm(values, { timeoutMax: this.timeoutMax });
    this.showErrors(outcome.errors ?? {});
    return outcome.command;
  }

  showErrors(errors, general = "") {
    const messages = [];
    for (const name of FIELDS) {
      const field = this.fields[name];
      if (errors[name]) {
        field.setAttribute("aria-invalid", "true");
        messages.push(errors[name]);
      } else {
        field.removeAttribute("aria-invalid");
      }
    }
    if (general) messages.push(general);
    this.errorBox.textContent = messages.join(" ");
    this.errorBox.hidden = messages.length === 0;
    const first = FIELDS.find((name) => errors[name]);
    return first ? this.fields[first] : null;
  }

  async submit() {
    const command = this.check();
    if (!command) {
      this.form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    this.button.disabled = true;
    this.posting += 1;
    try {
      const { ok, status, body } = await postJSON(this.url, command, { csrfToken: this.csrfToken });
      if (ok) {
        this.merge(body, { known: true });
        this.render();
        return;
      }
      this.refused(status, body);
    } catch (error) {
      this.showErrors({}, `Could not reach the hub (${error.message}); try again.`);
    } finally {
      this.posting -= 1;
      this.button.disabled = false;
      if (!this.posting) this.fetchUnknown();
    }
  }

  /** Say why the hub refused a command: field messages (400) or what the hub said. */
  refused(status, body) {
    if (status === 400 && body && typeof body === "object") {
      const errors = {};
      const other = [];
      for (const [name, problems] of Object.entries(body)) {
        const text = [problems].flat().join(" ");
        if (FIELDS.includes(name)) errors[name] = `${name}: ${text}`;
        else other.push(text);
      }
      this.showErrors(errors, other.join(" "))?.focus();
      return;
    }
    const detail = body?.detail ? `: ${body.detail}` : "";
    const advice = {
      403: " Reload the page (you may need to log in again).",
      404: " The device no longer exists.",
      429: " Too many requests; wait a moment.",
    };
    const text = `The hub refused the command (HTTP ${status})${detail}.`;
    this.showErrors({}, text + (advice[status] ?? ""));
  }

  // --- the list -----------------------------------------------------------------------

  render() {
    const ordered = [...this.commands.values()].sort(
      (a, b) => b.created - a.created || (a.id < b.id ? 1 : -1),
    );
    for (const dropped of ordered.splice(SHOWN)) {
      dropped.row?.remove();
      this.commands.delete(dropped.id);
    }
    let previous = null;
    for (const command of ordered) {
      if (!command.row) command.row = this.buildRow(command);
      if (command.dirty) this.renderRow(command);
      const expected = previous ? previous.nextSibling : this.tbody.firstChild;
      if (expected !== command.row.tr) this.tbody.insertBefore(command.row.tr, expected);
      previous = command.row.tr;
    }
    this.empty.hidden = ordered.length > 0;
    this.table.hidden = ordered.length === 0;
    this.suggestMethods(ordered);
  }

  buildRow(command) {
    const tr = document.createElement("tr");
    tr.dataset.command = command.id;
    const cells = ["when", "method", "params", "status", "outcome"].map((name) => {
      const td = document.createElement("td");
      td.className = name;
      tr.append(td);
      return td;
    });
    const [when, method, params, status, outcome] = cells;
    const time = document.createElement("time");
    when.append(time);
    const methodCode = document.createElement("code");
    method.append(methodCode);
    const paramsCode = document.createElement("code");
    params.append(paramsCode);
    const badge = document.createElement("span");
    status.append(badge);
    return { tr, time, methodCode, paramsCode, badge, outcome };
  }

  renderRow(command) {
    command.dirty = false;
    const { tr, time, methodCode, paramsCode, badge, outcome } = command.row;
    tr.dataset.status = command.status;
    tr.dataset.seen = command.seen.join(" ");
    time.textContent = new Date(command.created).toLocaleTimeString();
    time.dateTime = new Date(command.created).toISOString();
    time.title = formatTime(command.created);
    methodCode.textContent = command.method ?? "";
    const params = command.params === undefined ? "" : compact(command.params);
    paramsCode.textContent = params;
    paramsCode.title = params;
    paramsCode.hidden = !params;
    badge.className = `badge cmd ${command.status}`;
    badge.textContent = command.status;
    badge.title = this.timeline(command);
    outcome.replaceChildren(...this.outcome(command));
    outcome.classList.toggle("failed", command.status === "failed");
  }

  timeline(command) {
    const parts = [`created ${formatTime(command.created)}`];
    if (command.sentAt) parts.push(`sent ${formatTime(command.sentAt)}`);
    if (command.finishedAt) parts.push(`${command.status} ${formatTime(command.finishedAt)}`);
    else if (command.expiresAt && !FINISHED.has(command.status)) {
      parts.push(`expires ${formatTime(command.expiresAt)}`);
    }
    return parts.join(" · ");
  }

  outcome(command) {
    const note = (text) => {
      const span = document.createElement("span");
      span.className = "muted";
      span.textContent = text;
      return span;
    };
    switch (command.status) {
      case "succeeded": {
        if (command.result == null) return [note("done, no result")];
        const code = document.createElement("code");
        code.className = "result";
        code.textContent = compact(command.result);
        code.title = code.textContent;
        return [code];
      }
      case "failed": {
        const span = document.createElement("span");
        span.className = "error-text";
        span.textContent = command.error || "failed without a reason";
        span.title = span.textContent;
        return [span];
      }
      case "expired": {
        const within = command.timeout ? ` within ${command.timeout} s` : "";
        return [note(`no reply${within}`)];
      }
      case "sent":
        return [note("waiting for the device's reply…")];
      default: {
        const expires = command.expiresAt && new Date(command.expiresAt).toLocaleTimeString();
        const until = expires ? ` (until ${expires})` : "";
        return [note(`waiting for the device to be online${until}…`)];
      }
    }
  }

  /** Offer the methods used before as suggestions in the method field. */
  suggestMethods(ordered) {
    const methods = [...new Set(ordered.map((command) => command.method).filter(Boolean))].sort();
    const current = [...this.methods.options].map((option) => option.value);
    if (methods.join("\n") === current.join("\n")) return;
    this.methods.replaceChildren(...methods.map((method) => new Option("", method)));
  }
}
