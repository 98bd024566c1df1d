// How alarms and rules read on the pages: severities in order, conditions in words.

import { formatValue } from "../telemetry/format.js";

/** Severities, worst first (CONTRACT §6). */
export const SEVERITIES = ["critical", "major", "minor", "warning"];

/** Return a severity's rank: 0 for the worst; unknown ones last. */
export function severityRank(severity) {
  const rank = SEVERITIES.indexOf(severity);
  return rank < 0 ? SEVERITIES.length : rank;
}

/** Return the worse of two severities (either may be null). */
export function worse(a, b) {
  if (a == null) return b ?? null;
  if (b == null) return a;
  return severityRank(a) <= severityRank(b) ? a : b;
}

/** Say a number of seconds briefly: "45 s", "5 min", "2 h", "3 d". */
export function formatSeconds(seconds) {
  if (seconds < 120 || seconds % 60) return `${seconds} s`;
  if (seconds < 7200 || seconds % 3600) return `${seconds / 60} min`;
  if (seconds < 172800 || seconds % 86400) return `${seconds / 3600} h`;
  return `${seconds / 86400} d`;
}

/** Say what a rule (REST shape) watches for: "temperature > 30 for 5 s, clears at ≤ 28". */
export function describeRule(rule) {
  const parts = [];
  const metric = rule.metric;
  switch (rule.condition) {
    case "above":
      parts.push(`${metric} > ${formatValue(rule.threshold)}`);
      break;
    case "below":
      parts.push(`${metric} < ${formatValue(rule.threshold)}`);
      break;
    case "outside":
      parts.push(`${metric} outside ${formatValue(rule.low)} … ${formatValue(rule.high)}`);
      break;
    case "equals":
      parts.push(`${metric} = ${JSON.stringify(rule.value)}`);
      break;
    case "no_data":
      parts.push(`no ${metric} for ${formatSeconds(rule.silence)}`);
      break;
    default:
      parts.push(`${metric} ${rule.condition}`);
  }
  if (rule.for) parts[0] += ` for ${formatSeconds(rule.for)}`;
  if (rule.clear != null && rule.condition === "above") {
    parts.push(`clears at ≤ ${formatValue(rule.clear)}`);
  } else if (rule.clear != null && rule.condition === "below") {
    parts.push(`clears at ≥ ${formatValue(rule.clear)}`);
  }
  return parts.join(", ");
}
