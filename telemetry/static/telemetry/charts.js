// uPlot charts of the dashboard: sparklines, live charts and the history band chart.
// uPlot is the global of node_modules/uplot/dist/uPlot.iife.min.js, loaded before this module.

import { formatValue, now } from "./format.js";

const { uPlot } = window;
const ACCENT = "#2e5bff";
const ACCENT_FILL = "rgba(46, 91, 255, 0.10)";
const BAND_FILL = "rgba(46, 91, 255, 0.16)";
const BAND_EDGE = "rgba(46, 91, 255, 0.35)";
const AXIS = "#667085";
const GRID = { stroke: "#eaecf0", width: 1 };

/** Points of one series in time order, at most `limit`; x in epoch seconds, as uPlot wants. */
export class SeriesBuffer {
  constructor(limit) {
    this.limit = limit;
    this.xs = [];
    this.ys = [];
  }

  /** Add a point; a point at an instant already present is ignored. Return whether it was added. */
  add(ms, value) {
    const x = ms / 1000;
    const { xs, ys } = this;
    if (xs.length === 0 || x > xs[xs.length - 1]) {
      xs.push(x);
      ys.push(value);
    } else {
      const at = this.indexOf(x);
      if (xs[at] === x) return false;
      xs.splice(at, 0, x);
      ys.splice(at, 0, value);
    }
    if (xs.length > this.limit) this.dropFirst(xs.length - this.limit);
    return true;
  }

  /** Add a point, or replace the value of the point at that instant. */
  put(ms, value) {
    if (!this.add(ms, value)) this.ys[this.indexOf(ms / 1000)] = value;
  }

  /** Drop the points before `ms`. */
  trim(ms) {
    this.dropFirst(this.indexOf(ms / 1000));
  }

  /** Return the index of the first point at or after `x` seconds (binary search). */
  indexOf(x) {
    let low = 0;
    let high = this.xs.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.xs[middle] < x) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  dropFirst(count) {
    if (count <= 0) return;
    this.xs.splice(0, count);
    this.ys.splice(0, count);
  }

  /** Return the epoch milliseconds of the first and last points, or null when empty. */
  get firstMs() {
    return this.xs.length ? this.xs[0] * 1000 : null;
  }

  get lastMs() {
    return this.xs.length ? this.xs[this.xs.length - 1] * 1000 : null;
  }

  get length() {
    return this.xs.length;
  }
}

/**
 * An x range `windowMs` long ending now, moving with each redraw; or ending at the
 * newest point when that is later (a device clock a little ahead, or ours behind).
 */
function slidingRange(windowMs, buffer) {
  // The buffer's newest point, not uPlot's dataMax: for a lone point uPlot passes a
  // dataMax a day after it, which would slide the window a day ahead of the point.
  return () => {
    const end = Math.max(now() / 1000, buffer.lastMs == null ? -Infinity : buffer.lastMs / 1000);
    return [end - windowMs / 1000, end];
  };
}

// The y range of a chart spans at least this share of its values' magnitude: a battery
// at 3.5 V with ±0.003 V of noise shows a flat line with a ripple, not noise full height.
const MIN_RELATIVE_SPAN = 0.05;

/** Return a y range around [min, max]: at least MIN_RELATIVE_SPAN of the values, rounded. */
export function valueRange(min, max) {
  if (min == null || max == null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  const middle = (min + max) / 2;
  const half = Math.max((max - min) / 2, (Math.abs(middle) * MIN_RELATIVE_SPAN) / 2) || 1;
  return uPlot.rangeNum(middle - half, middle + half, 0.1, true);
}

const yRange = (u, min, max) => valueRange(min, max);

// With no cursor on the chart, the legend names the series without made-up values.
const valueLabel = (u, value) => (value == null ? "" : formatValue(value));
const timeLabel = (u, value) => (value == null ? "" : new Date(value * 1000).toLocaleString());

/**
 * Where uPlot draws a line but no dots (dense data), still dot the points that have
 * no neighbour to draw a line to: a lone reading would be invisible otherwise.
 */
function loneIndexes(u, seriesIndex, shown) {
  if (shown) return null; // uPlot dots every point already
  const ys = u.data[seriesIndex];
  const lone = [];
  for (let i = 0; i < ys.length; i += 1) {
    if (ys[i] != null && ys[i - 1] == null && ys[i + 1] == null) lone.push(i);
  }
  return lone;
}
const POINTS = { filter: loneIndexes };

// Charts follow their container's width.
const sized = new Map();
const resizes = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const plot = sized.get(entry.target);
    const width = Math.floor(entry.contentRect.width);
    if (plot && width > 0 && width !== plot.width) plot.setSize({ width, height: plot.height });
  }
});

function followWidth(element, plot) {
  sized.set(element, plot);
  resizes.observe(element);
}

/** A tiny chart without axes of the last `windowMs` of one series. */
export function sparkline(element, buffer, { windowMs, width = 120, height = 28 }) {
  const options = {
    width,
    height,
    pxAlign: false,
    padding: [3, 1, 3, 1],
    cursor: { show: false },
    select: { show: false },
    legend: { show: false },
    scales: { x: { time: false, range: slidingRange(windowMs, buffer) }, y: { range: yRange } },
    axes: [{ show: false }, { show: false }],
    series: [
      {},
      { stroke: ACCENT, width: 1.25, fill: ACCENT_FILL, points: { ...POINTS, size: 3 } },
    ],
  };
  return new uPlot(options, [buffer.xs, buffer.ys], element);
}

/** A live chart of one metric over the last `windowMs`, as wide as its container. */
export function liveChart(element, buffer, { label, windowMs, height = 170 }) {
  const options = {
    width: element.clientWidth || 300,
    height,
    scales: { x: { time: true, range: slidingRange(windowMs, buffer) }, y: { range: yRange } },
    axes: [
      { stroke: AXIS, grid: GRID, ticks: GRID, space: 80 },
      { stroke: AXIS, grid: GRID, ticks: GRID, size: 56 },
    ],
    legend: { show: false }, // the caption shows the latest value
    series: [{}, { label, stroke: ACCENT, width: 1.5, fill: ACCENT_FILL, points: POINTS }],
    hooks: SHOW_RANGES,
  };
  const plot = new uPlot(options, [buffer.xs, buffer.ys], element);
  followWidth(element, plot);
  return plot;
}

/** Redraw a chart from its buffer; keep `data-points` for tests and curious users. */
export function redraw(plot, buffer) {
  plot.setData([buffer.xs, buffer.ys]);
  plot.root.parentElement.dataset.points = String(buffer.length);
}

/** After each draw, keep the x range (epoch s) and y range on the chart's box: data-x, data-y. */
const SHOW_RANGES = {
  draw: [
    (u) => {
      const { x, y } = u.scales;
      const box = u.root.parentElement;
      box.dataset.x = `${Math.round(x.min)},${Math.round(x.max)}`;
      box.dataset.y = `${y.min},${y.max}`;
    },
  ],
};

const UNIT_MS = { s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, mo: 2592000000 };

/** Return the milliseconds of an interval like "15m" (a month counts 30 days: gaps only). */
export function intervalMs(text) {
  const match = /^(\d+)(s|m|h|d|w|mo)$/.exec(text || "");
  return match ? Number(match[1]) * UNIT_MS[match[2]] : null;
}

/**
 * Turn `/series/` buckets into uPlot columns [x, avg, max, min], with a null point
 * where readings stop for a while, so the line and band break instead of bridging
 * it. "A while" is three buckets, or three of the device's usual spacing when it
 * reports less often than once a bucket.
 */
export function seriesColumns(points, bucketMs) {
  const times = points.map((point) => Date.parse(point.ts));
  const spacings = times
    .slice(1)
    .map((ms, i) => ms - times[i])
    .sort((a, b) => a - b);
  const usual = spacings.length ? spacings[spacings.length >> 1] : 0;
  const gap = 3 * Math.max(bucketMs || 0, usual);
  const columns = [[], [], [], []];
  points.forEach((point, i) => {
    if (i > 0 && gap && times[i] - times[i - 1] > gap) {
      columns[0].push((times[i - 1] + (bucketMs || 1)) / 1000);
      columns[1].push(null);
      columns[2].push(null);
      columns[3].push(null);
    }
    columns[0].push(times[i] / 1000);
    columns[1].push(point.avg);
    columns[2].push(point.max);
    columns[3].push(point.min);
  });
  return columns;
}

/** The history chart: average line over a min–max band, on a fixed range `view`. */
export function historyChart(element, view, { height = 260 } = {}) {
  const edge = { stroke: BAND_EDGE, width: 1, value: valueLabel, points: { show: false } };
  const options = {
    width: element.clientWidth || 300,
    height,
    scales: {
      x: { time: true, range: () => [view.start / 1000, view.end / 1000] },
      y: { range: yRange },
    },
    axes: [
      { stroke: AXIS, grid: GRID, ticks: GRID },
      { stroke: AXIS, grid: GRID, ticks: GRID, size: 56 },
    ],
    series: [
      { value: timeLabel },
      { label: "avg", stroke: ACCENT, width: 2, value: valueLabel, points: POINTS },
      { label: "max", ...edge },
      { label: "min", ...edge },
    ],
    bands: [{ series: [2, 3], fill: BAND_FILL }],
    hooks: SHOW_RANGES,
  };
  const plot = new uPlot(options, [[], [], [], []], element);
  followWidth(element, plot);
  return plot;
}
