// Read the hub's REST API with the page's session.

import { now } from "./format.js";

/** GET a JSON document; throw an Error naming the status when it is not a 2xx. */
export async function getJSON(url, { signal } = {}) {
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    signal,
  });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response.json();
}

/** Return the REST base URL of one device. */
export function deviceUrl(uid) {
  return `/api/v1/devices/${encodeURIComponent(uid)}/`;
}

/** Build a query string from the parameters that are set. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value != null && value !== "") search.set(key, String(value));
  }
  return search.toString();
}

/**
 * Fetch raw readings of a device from `start` (epoch ms, inclusive), following the
 * cursor for at most `maxPages` pages; call `onPage(results)` for each page.
 */
export async function readingsSince(uid, start, onPage, { metric, maxPages = 10 } = {}) {
  // `end` a little ahead: device clocks may run up to 5 minutes fast (CONTRACT §2).
  const end = now() + 6 * 60 * 1000;
  let url = `${deviceUrl(uid)}readings/?${query({ start, end, metric, limit: 5000 })}`;
  for (let page = 0; url && page < maxPages; page += 1) {
    const body = await getJSON(url);
    onPage(body.results);
    url = body.next;
  }
}

/**
 * Send a JSON document (POST, PATCH; DELETE without one) with the page's session; Django's
 * CSRF check (which DRF's SessionAuthentication applies) wants the page's token in the
 * X-CSRFToken header. Return `{ok, status, body}` (body: the decoded JSON, or null) and leave
 * errors to the caller; throw only when the hub cannot be reached.
 */
export async function sendJSON(method, url, payload, { csrfToken, signal } = {}) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken ?? pageCsrfToken() };
  if (payload !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers,
    body: payload === undefined ? undefined : JSON.stringify(payload),
    signal,
  });
  const type = response.headers.get("Content-Type") || "";
  const body = type.startsWith("application/json") ? await response.json() : null;
  return { ok: response.ok, status: response.status, body };
}

/** POST a JSON document with the page's session (see sendJSON). */
export function postJSON(url, payload, options = {}) {
  return sendJSON("POST", url, payload, options);
}

/** Return the CSRF token of the page's forms (every page has one: the log-out form). */
export function pageCsrfToken() {
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}
