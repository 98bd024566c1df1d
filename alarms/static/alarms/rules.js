// The rules panel: the rules that watch a device (its own and the all-device ones) or all of
// the user's rules, each with enable/disable and delete; and the form that creates one
// (CONTRACT §6). The hub answers a bad rule with a 400 naming each field; each message is
// shown next to its field. The list shows at most SHOWN rows matching the search; the page
// embeds the first rules and the search reads the rest from REST.

import { getJSON, sendJSON } from "../telemetry/api.js";
import { plural } from "../telemetry/format.js";
import { describeRule } from "./text.js";

const RULES_URL = "/api/v1/alarm-rules/";
const SHOWN = 50;
// A delete asks "sure?" on the button itself this long before it forgets the first click.
const CONFIRM_MS = 5000;
// The parameters each condition takes; the hub refuses the others.
const PARAMETERS = {
  above: ["threshold", "clear", "for"],
  below: ["threshold", "clear", "for"],
  outside: ["low", "high", "for"],
  equals: ["value", "for"],
  no_data: ["silence"],
};
const WHOLE_SECONDS = new Set(["silence", "for"]);
// Fields with a place for their error; the hub's other messages go under the form.
const FIELDS = [
  "name",
  "device",
  "metric",
  "condition",
  "threshold",
  "clear",
  "low",
  "high",
  "value",
  "silence",
  "for",
  "severity",
];

/**
 * Read the form's values into a rule to POST; return `{rule, errors}` (errors by field).
 * `device`: the device page's uid (the form then has a scope choice), or null.
 */
export function readRuleForm(form, device) {
  const field = (name) => form.elements.namedItem(name);
  const condition = field("condition").value;
  const rule = {
    name: field("name").value.trim(),
    metric: field("metric").value.trim(),
    condition,
    severity: field("severity").value,
    enabled: field("enabled").checked,
  };
  if (device) rule.device = field("scope").value === "device" ? device : null;
  else rule.device = field("device").value.trim() || null;
  const errors = {};
  for (const name of PARAMETERS[condition] ?? []) {
    if (name === "value") {
      const type = field("value_type").value;
      const text = field("value").value;
      if (type === "true" || type === "false") rule.value = type === "true";
      else if (type === "text") rule.value = text;
      else if (text.trim() && Number.isFinite(Number(text))) rule.value = Number(text);
      else errors.value = "Enter a number, like 1 or 2.5.";
      continue;
    }
    const text = field(name).value.trim();
    if (!text) continue; // optional, or required and then named by the hub's answer
    const number = Number(text);
    if (!Number.isFinite(number)) errors[name] = "Enter a number, like 30 or -2.5.";
    else if (WHOLE_SECONDS.has(name) && !Number.isInteger(number)) {
      errors[name] = "Enter whole seconds.";
    } else rule[name] = number;
  }
  return { rule, errors };
}

export class RulesPanel {
  /**
   * `root`: the panel (#rules table, #rules-search, #rule-form …); `device`: the uid whose
   * rules it shows, or null for all; `rules`: {items, total} as the page embeds them;
   * `devices`, `metrics`: suggestions for the form; `onDeleted(id)`: a rule went, with its alarms.
   */
  constructor(root, { device = null, rules, devices = [], metrics = [], onDeleted = () => {} }) {
    this.device = device;
    this.onDeleted = onDeleted;
    this.rules = new Map(rules.items.map((rule) => [rule.id, rule]));
    this.total = rules.total;
    this.complete = rules.items.length >= rules.total;
    this.table = root.querySelector("#rules");
    this.tbody = this.table.querySelector("tbody");
    this.search = root.querySelector("#rules-search");
    this.more = root.querySelector("#rules-more");
    this.empty = root.querySelector("#rules-empty");
    this.count = root.querySelector("#rules-count");
    this.form = root.querySelector("#rule-form");
    this.button = this.form.querySelector("button[type=submit]");
    this.formError = this.form.querySelector("#rule-form-error");
    this.done = this.form.querySelector("#rule-form-done");
    this.suggest(root.querySelector("#rule-metrics"), metrics);
    this.suggest(root.querySelector("#rule-devices"), devices);
    this.rows = new Map(); // rule id -> tr
    this.armed = new Map(); // rule id -> timer of a delete waiting for its confirmation

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    const field = (name) => this.form.elements.namedItem(name);
    field("condition").addEventListener("change", () => this.conditionShown());
    field("value_type").addEventListener("change", () => this.conditionShown());
    this.form.addEventListener("input", (event) => {
      // Once a field was refused, its message goes as soon as it is edited.
      const box = event.target.closest("[data-field]");
      if (box?.classList.contains("invalid")) this.fieldError(box.dataset.field, "");
    });
    this.search.addEventListener("input", () => this.render());
    this.search.addEventListener("focus", () => this.loadAll());
    this.tbody.addEventListener("click", (event) => this.clicked(event));
    this.conditionShown();
    this.render();
  }

  suggest(datalist, values) {
    if (!datalist) return;
    datalist.replaceChildren(...values.map((value) => new Option("", value)));
  }

  /** Show the fields the chosen condition takes, and only those. */
  conditionShown() {
    const field = (name) => this.form.elements.namedItem(name);
    const condition = field("condition").value;
    for (const box of this.form.querySelectorAll("[data-when]")) {
      box.hidden = !box.dataset.when.split(" ").includes(condition);
    }
    const type = field("value_type").value;
    field("value").hidden = type === "true" || type === "false";
    field("value").placeholder = type === "number" ? "e.g. 1" : "e.g. open";
  }

  // --- the list ----------------------------------------------------------------------

  applies(rule) {
    return this.device === null || rule.device === null || rule.device === this.device;
  }

  /** Read every rule from REST (bounded by HUB_ALARM_RULES_PER_USER) for the search. */
  async loadAll() {
    if (this.complete) return;
    this.complete = true;
    try {
      const rules = await getJSON(RULES_URL);
      this.rules = new Map(rules.filter((rule) => this.applies(rule)).map((rule) => [rule.id, rule]));
      this.total = this.rules.size;
      this.render();
    } catch (error) {
      this.complete = false;
      console.warn("rules:", error.message);
    }
  }

  render() {
    const words = this.search.value.trim().toLowerCase();
    const matching = [...this.rules.values()]
      .filter(
        (rule) =>
          !words ||
          [rule.name, rule.metric, rule.device ?? "all devices"].some((text) =>
            text.toLowerCase().includes(words),
          ),
      )
      .sort((a, b) => a.id - b.id);
    const shown = matching.slice(0, SHOWN);
    const keep = new Set(shown.map((rule) => rule.id));
    for (const [id, tr] of this.rows) {
      if (!keep.has(id)) {
        tr.remove();
        this.rows.delete(id);
      }
    }
    this.tbody.replaceChildren(...shown.map((rule) => this.row(rule)));
    const unlisted = (words ? matching.length : this.total) - shown.length;
    this.more.hidden = unlisted <= 0;
    this.more.textContent = words
      ? `${unlisted} more matching: narrow the search.`
      : `${plural(unlisted, "more rule", "more rules")}: search to find them.`;
    this.count.textContent = String(this.total);
    this.table.hidden = shown.length === 0;
    this.empty.hidden = this.total > 0;
    this.empty.textContent = this.device
      ? "No rule watches this device yet: create one below."
      : "No rules yet: create one below.";
  }

  row(rule) {
    let tr = this.rows.get(rule.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.rule = String(rule.id);
      for (const name of ["rule", "watches", "condition", "severity", "actions"]) {
        const td = document.createElement("td");
        td.className = name;
        tr.append(td);
      }
      this.rows.set(rule.id, tr);
    }
    tr.dataset.enabled = String(rule.enabled);
    tr.classList.toggle("disabled", !rule.enabled);
    const [name, watches, condition, severity, actions] = tr.children;
    const title = document.createElement("b");
    title.textContent = rule.name;
    name.replaceChildren(title);
    if (!rule.enabled) {
      const off = document.createElement("small");
      off.textContent = "disabled";
      name.append(" ", off);
    }
    if (rule.device === null) {
      watches.textContent = "all devices";
    } else if (rule.device === this.device) {
      watches.textContent = "this device";
    } else {
      const link = document.createElement("a");
      link.href = `/devices/${encodeURIComponent(rule.device)}/`;
      link.textContent = rule.device;
      watches.replaceChildren(link);
    }
    condition.textContent = describeRule(rule);
    condition.title = condition.textContent;
    const pill = document.createElement("span");
    pill.className = `sev sev-${rule.severity}`;
    pill.textContent = rule.severity;
    severity.replaceChildren(pill);
    if (!actions.firstChild) {
      const toggle = document.createElement("button");
      toggle.type = "button";
      toggle.className = "small secondary";
      toggle.dataset.action = "toggle";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "small danger";
      remove.dataset.action = "delete";
      remove.textContent = "Delete";
      const note = document.createElement("small");
      note.className = "error";
      note.setAttribute("role", "alert");
      note.hidden = true;
      actions.append(toggle, remove, note);
    }
    const toggle = actions.querySelector("[data-action=toggle]");
    toggle.textContent = rule.enabled ? "Disable" : "Enable";
    toggle.setAttribute("aria-label", `${rule.enabled ? "Disable" : "Enable"} rule ${rule.name}`);
    actions.querySelector("[data-action=delete]").setAttribute("aria-label", `Delete rule ${rule.name}`);
    return tr;
  }

  async clicked(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const tr = button.closest("tr");
    const id = Number(tr.dataset.rule);
    const rule = this.rules.get(id);
    if (!rule) return;
    const note = tr.querySelector("td.actions small.error");
    note.hidden = true;
    if (button.dataset.action === "delete" && !this.armed.has(id)) {
      // The first click arms the button; a second within CONFIRM_MS deletes.
      button.textContent = "Confirm delete";
      button.classList.add("armed");
      this.armed.set(
        id,
        setTimeout(() => {
          this.armed.delete(id);
          button.textContent = "Delete";
          button.classList.remove("armed");
        }, CONFIRM_MS),
      );
      return;
    }
    button.disabled = true;
    try {
      const url = `${RULES_URL}${encodeURIComponent(id)}/`;
      if (button.dataset.action === "toggle") {
        const { ok, status, body } = await sendJSON("PATCH", url, { enabled: !rule.enabled });
        if (!ok) throw new Refused(status, body);
        this.rules.set(id, body);
      } else {
        clearTimeout(this.armed.get(id));
        this.armed.delete(id);
        const { ok, status, body } = await sendJSON("DELETE", url);
        if (!ok && status !== 404) throw new Refused(status, body);
        this.rules.delete(id);
        this.total = Math.max(0, this.total - 1);
        this.onDeleted(id);
      }
      this.render();
    } catch (error) {
      note.textContent =
        error instanceof Refused
          ? error.message
          : `Could not reach the hub (${error.message}); try again.`;
      note.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  // --- the form ----------------------------------------------------------------------

  fieldError(name, text) {
    const box = this.form.querySelector(`[data-field="${name}"]`);
    if (!box) return false;
    const message = box.querySelector(".field-error");
    message.textContent = text;
    message.hidden = !text;
    box.classList.toggle("invalid", Boolean(text));
    for (const input of box.querySelectorAll("input, select")) {
      if (text) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    return true;
  }

  showErrors(errors, general = "") {
    for (const name of FIELDS) this.fieldError(name, errors[name] ?? "");
    this.formError.textContent = general;
    this.formError.hidden = !general;
    const first = FIELDS.find((name) => errors[name]);
    if (first) {
      this.form.querySelector(`[data-field="${first}"] input:not([hidden]), [data-field="${first}"] select`)?.focus();
    }
  }

  async submit() {
    const { rule, errors } = readRuleForm(this.form, this.device);
    this.done.hidden = true;
    this.showErrors(errors);
    if (Object.keys(errors).length) return;
    this.button.disabled = true;
    try {
      const { ok, status, body } = await sendJSON("POST", RULES_URL, rule);
      if (ok) {
        this.rules.set(body.id, body);
        this.total += 1;
        this.render();
        this.done.textContent = `Rule “${body.name}” created: ${describeRule(body)}.`;
        this.done.hidden = false;
        this.form.elements.namedItem("name").value = "";
        return;
      }
      if (status === 400 && body && typeof body === "object") {
        const fields = {};
        const other = [];
        for (const [name, problems] of Object.entries(body)) {
          const text = [problems].flat().join(" ");
          if (FIELDS.includes(name)) fields[name] = text;
          else other.push(text);
        }
        this.showErrors(fields, other.join(" "));
        return;
      }
      this.showErrors({}, new Refused(status, body).message);
    } catch (error) {
      this.showErrors({}, `Could not reach the hub (${error.message}); try again.`);
    } finally {
      this.button.disabled = false;
    }
  }
}

/** The hub answered, but not with success: say what it said and what to do. */
class Refused extends Error {
  constructor(status, body) {
    const advice = {
      403: " Reload the page (you may need to log in again).",
      404: " It no longer exists.",
      429: " Too many requests; wait a moment.",
    };
    const detail = body?.detail ? `: ${body.detail}` : "";
    super(`The hub refused (HTTP ${status})${detail}.${advice[status] ?? ""}`);
  }
}
