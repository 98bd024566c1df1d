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
