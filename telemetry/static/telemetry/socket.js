// The live WebSocket (CONTRACT §4): subscribe, reconnect with capped exponential backoff.

// Backoff between reconnect attempts: doubles from the first delay up to the cap, with jitter.
export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_MAX_MS = 10000;
const CLOSE_UNAUTHENTICATED = 4401;

/**
 * One socket subscribed to `devices` ("*" or a list of uids). Calls
 * `onFrame(frame)` for readings, status and other frames, `onSubscribed(frame,
 * {reconnected})` after each (re)subscription, and `onState(state, detail)` with
 * "connecting", "live" or "reconnecting".
 */
export class LiveSocket {
  constructor({ devices, onFrame, onSubscribed = () => {}, onState = () => {} }) {
    this.devices = devices;
    this.onFrame = onFrame;
    this.onSubscribed = onSubscribed;
    this.onState = onState;
    this.attempt = 0;
    this.everLive = false;
    this.timer = null;
    this.socket = null;
    window.addEventListener("online", () => this.retryNow());
  }

  start() {
    this.onState("connecting");
    this.connect();
  }

  connect() {
    this.timer = null;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/telemetry/`);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "subscribe", devices: this.devices }));
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => this.closed(event);
  }

  receive(frame) {
    if (frame.type === "subscribed") {
      const reconnected = this.everLive;
      this.everLive = true;
      this.attempt = 0;
      this.onState("live");
      this.onSubscribed(frame, { reconnected });
    } else if (frame.type === "error") {
      // The hub refused a message of ours; nothing a user can act on.
      console.warn("hub:", frame.error);
    } else {
      this.onFrame(frame);
    }
  }

  closed(event) {
    this.socket = null;
    if (event.code === CLOSE_UNAUTHENTICATED) {
      // The session ended (logged out elsewhere, or expired): log in again.
      location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
      return;
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.onState("reconnecting", { delay });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Try at once instead of waiting out the backoff (the browser says the network is back). */
  retryNow() {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.connect();
  }
}

/**
 * Show the socket's state in a badge ("connecting…", "live", "reconnecting…") and,
 * while it is down, in a banner that counts down to the next attempt.
 */
export function showConnection(badge, state, detail = {}) {
  badge.className = "badge";
  badge.textContent = { live: "live", reconnecting: "reconnecting…" }[state] ?? "connecting…";
  if (state === "live") badge.classList.add("live");
  if (state === "reconnecting") badge.classList.add("down");
  document.body.dataset.connection = state;
  const banner = document.getElementById("connection-banner");
  clearInterval(countdown);
  banner.hidden = state !== "reconnecting";
  if (state !== "reconnecting") return;
  const retryAt = Date.now() + (detail.delay || 0);
  const say = () => {
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    banner.textContent =
      "Lost the live connection to the hub; values shown may be stale. " +
      (seconds ? `Reconnecting in ${seconds} s…` : "Reconnecting…");
  };
  say();
  countdown = setInterval(say, 1000);
}
let countdown = null;
