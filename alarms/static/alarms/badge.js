// The header badge: how many active alarms nobody acknowledged, rendered by the server
// (alarms/templatetags/alarm_badge.py) and kept current here. Each `alarm` frame the page's
// socket sees, and each (re)subscription, reads the count again from REST (coalesced), so the
// badge never drifts from the truth. A page whose socket watches only some devices (the
// device page) also reads it every POLL_MS while it is visible: alarms of the other devices
// reach it that way.

import { getJSON } from "../telemetry/api.js";
import { severityRank } from "./text.js";

const COUNT_URL = "/api/v1/alarms/?state=active&acknowledged=false";
// Frames that come together cost one request.
const COALESCE_MS = 150;
export const POLL_MS = 30000;

export class AlarmBadge {
  /** `everyDevice`: the page's socket is subscribed to "*", so frames tell every change. */
  constructor({ everyDevice }) {
    this.element = document.getElementById("alarm-badge");
    this.cap = Number(this.element?.dataset.cap) || 99;
    this.timer = null;
    this.loading = false;
    this.again = false;
    this.refreshes = 0;
    if (!this.element) return;
    if (!everyDevice) {
      setInterval(() => {
        if (!document.hidden) this.soon();
      }, POLL_MS);
      document.addEventListener("visibilitychange", () => {
        if (!document.hidden) this.soon();
      });
    }
  }

  /** An `alarm` frame: the count may have changed. */
  onFrame() {
    this.soon();
  }

  /** Read the count again shortly; requests asked for meanwhile are merged into one. */
  soon() {
    if (!this.element || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh();
    }, COALESCE_MS);
  }

  async refresh() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      // One page (100, newest first) is enough to tell 0 … 99 or "99+".
      const body = await getJSON(COUNT_URL);
      const count = body.results.length + (body.next ? 1 : 0);
      let worst = null;
      for (const alarm of body.results) {
        if (worst === null || severityRank(alarm.severity) < severityRank(worst)) {
          worst = alarm.severity;
        }
      }
      this.show(count, worst);
    } catch (error) {
      console.warn("alarm badge:", error.message);
    } finally {
      this.loading = false;
      if (this.again) {
        this.again = false;
        this.soon();
      }
    }
  }

  show(count, worst) {
    const badge = this.element;
    const words = `${count > this.cap ? `more than ${this.cap}` : count} active alarm${
      count === 1 ? "" : "s"
    } not acknowledged`;
    badge.textContent = count > this.cap ? `${this.cap}+` : String(count);
    badge.dataset.count = String(count);
    badge.dataset.severity = worst ?? "";
    badge.title = words;
    badge.setAttribute("aria-label", words);
    badge.hidden = count === 0;
    this.refreshes += 1;
    badge.dataset.refreshes = String(this.refreshes);
  }
}
