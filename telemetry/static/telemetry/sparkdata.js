// The fleet's sparkline data: 10-second averages of one metric, seeded with the last minutes
// from /series/ (a few requests at a time, so hundreds of rows never fire hundreds at once),
// then kept up from live readings averaged the same way, so both parts look alike.

import { deviceUrl, getJSON, query } from "./api.js";
import { now, parseTs } from "./format.js";

// The hub aligns /series/ buckets to the epoch in UTC; live readings are bucketed the same way.
const BUCKET_MS = 10_000;
const CONCURRENCY = 4;

const queue = [];
let running = 0;

/** Average a live reading into its bucket of `device.spark`; return whether the line changed. */
export function sparkAdd(device, ms, value) {
  const start = Math.floor(ms / BUCKET_MS) * BUCKET_MS;
  let bucket = device.sparkBucket;
  // A late reading (older than the newest bucket) stays out: REST history has it.
  if (bucket && start < bucket.start) return false;
  if (!bucket || start > bucket.start) {
    bucket = { start, sum: 0, count: 0 };
    device.sparkBucket = bucket;
  }
  bucket.sum += value;
  bucket.count += 1;
  device.spark.put(start, bucket.sum / bucket.count);
  return true;
}

/**
 * Fill `device.spark` (a SeriesBuffer of `device.sparkMetric`) with the bucket averages
 * of the last `windowMs` before its first live bucket, once per device.
 */
export function seedSparkline(device, windowMs) {
  if (device.seeded || !device.sparkMetric) return;
  device.seeded = true;
  queue.push({ device, windowMs });
  pump();
}

function pump() {
  while (running < CONCURRENCY && queue.length) {
    const { device, windowMs } = queue.shift();
    running += 1;
    const start = Math.round(now() - windowMs);
    const params = query({ metric: device.sparkMetric, start, interval: `${BUCKET_MS / 1000}s` });
    getJSON(`${deviceUrl(device.uid)}series/?${params}`)
      .then((body) => {
        const firstLive = device.spark.firstMs ?? Infinity;
        for (const point of body.points) {
          const ms = parseTs(point.ts);
          if (ms < firstLive && point.avg != null) device.spark.add(ms, point.avg);
        }
        device.sparkDirty = true;
      })
      .catch((error) => {
        device.seeded = false; // tried again when the row next scrolls into view
        console.warn(`sparkline of ${device.uid}:`, error.message);
      })
      .finally(() => {
        running -= 1;
        pump();
      });
  }
}
