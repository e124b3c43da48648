// What the gateways measured of one deployment's replicas, summed fleet-wide for its view
// (Deployment.traffic): a pure function of the leader's RouteBook reports (routes.ts), time as
// an argument. Each report is one gateway's latest heartbeat sample for one replica.
import type { DeploymentTraffic } from '../../shared/proto.js';

/** Reports older than this no longer count (the RouteBook's latency window). */
export const TRAFFIC_WINDOW_MS = 60_000;

export interface TrafficReport {
  p50Ms: number;
  p99Ms: number;
  /** Requests (and failed ones) since the gateway's previous heartbeat. */
  count: number;
  errors: number;
  /** When the leader received it. */
  atMs: number;
  /** Time since that gateway's previous heartbeat; 0: its first (no rate from it). */
  intervalMs: number;
  /** When that gateway's latest heartbeat arrived: a report older than it was superseded (no requests since). */
  beatAtMs: number;
}

/**
 * p50 weighted by request counts, the largest p99 and the share of failed requests over the
 * window; the request rate from the reports of each gateway's latest heartbeat only (a
 * gateway that reported nothing since, or went silent for two intervals, adds nothing).
 * null: no report within the window.
 */
export function summarizeTraffic(reports: Iterable<TrafficReport>, nowMs: number, windowMs = TRAFFIC_WINDOW_MS): DeploymentTraffic | null {
  let count = 0;
  let errors = 0;
  let weighted = 0;
  let p99Ms = 0;
  let rate = 0;
  let measuredAtMs = 0;
  for (const r of reports) {
    if (nowMs - r.atMs > windowMs || r.count <= 0) continue;
    count += r.count;
    errors += r.errors;
    weighted += r.p50Ms * r.count;
    p99Ms = Math.max(p99Ms, r.p99Ms);
    measuredAtMs = Math.max(measuredAtMs, r.atMs);
    const current = r.atMs >= r.beatAtMs && nowMs - r.atMs <= 2 * r.intervalMs + 1_000;
    if (current && r.intervalMs > 0) rate += (r.count * 1_000) / r.intervalMs;
  }
  if (count === 0) return null;
  return { requestRate: rate, p50Ms: weighted / count, p99Ms, errorRate: Math.min(1, errors / count), measuredAtMs };
}
