// Deployment.traffic (coordinator/workloads/traffic.ts, RouteBook.deploymentTraffic): what the
// gateways measured of one deployment's replicas, summed fleet-wide. The rate comes from each
// gateway's latest heartbeat only; latency and errors from the reports of the last minute.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ArtifactRegistry } from '../../coordinator/registry/artifact-registry.js';
import { RouteBook } from '../../coordinator/workloads/routes.js';
import { summarizeTraffic, TRAFFIC_WINDOW_MS, type TrafficReport } from '../../coordinator/workloads/traffic.js';
import { FakeClock } from '../helpers/fake-clock.js';

const report = (r: Partial<TrafficReport>): TrafficReport => ({ p50Ms: 10, p99Ms: 20, count: 10, errors: 0, atMs: 1_000, intervalMs: 1_000, beatAtMs: 1_000, ...r });

test('p50 is weighted by requests, p99 the largest, errors a share; rates of the latest beats add up', () => {
  const t = summarizeTraffic([report({ count: 30, p50Ms: 10, p99Ms: 40, errors: 3 }), report({ count: 10, p50Ms: 30, p99Ms: 90, errors: 1, intervalMs: 500 })], 1_500);
  assert.deepEqual(t, { requestRate: 30 + 20, p50Ms: 15, p99Ms: 90, errorRate: 0.1, measuredAtMs: 1_000 });
});

test('nothing within the window (or no request) is null; reports past the window do not count', () => {
  assert.equal(summarizeTraffic([], 0), null);
  assert.equal(summarizeTraffic([report({ count: 0 })], 1_000), null);
  assert.equal(summarizeTraffic([report({})], 1_000 + TRAFFIC_WINDOW_MS + 1), null);
  const t = summarizeTraffic([report({ atMs: 0, beatAtMs: 0, p50Ms: 999 }), report({ atMs: TRAFFIC_WINDOW_MS, beatAtMs: TRAFFIC_WINDOW_MS, p50Ms: 5 })], TRAFFIC_WINDOW_MS + 500);
  assert.equal(t?.p50Ms, 5);
});

test('a report superseded by a later beat, from a silent gateway, or from a first beat adds latency but no rate', () => {
  // The gateway beat again since with nothing for these replicas: no requests lately.
  assert.equal(summarizeTraffic([report({ beatAtMs: 2_000 })], 2_100)?.requestRate, 0);
  // Its latest beat, but two intervals and a second old: the gateway went silent.
  assert.equal(summarizeTraffic([report({})], 1_000 + 2 * 1_000 + 1_001)?.requestRate, 0);
  const first = summarizeTraffic([report({ intervalMs: 0 })], 1_000);
  assert.equal(first?.requestRate, 0);
  assert.equal(first?.p50Ms, 10);
});

test("RouteBook: a deployment's replicas over every gateway, the beat interval from each gateway's heartbeats", () => {
  const clock = new FakeClock();
  const book = new RouteBook({} as ArtifactRegistry, clock);
  const sample = (allocation: string, count: number, p50Ms: number) => ({ tenant: 'default', model: 'm', allocation, count, errors: 0, p50Ms, p99Ms: p50Ms * 2 });
  book.record('gw-a', []);
  book.record('gw-b', []);
  clock.advance(2_000);
  book.record('gw-a', [sample('r1', 20, 10), sample('other', 500, 100)]);
  book.record('gw-b', [sample('r2', 60, 20)]);
  assert.deepEqual(book.deploymentTraffic(['r1', 'r2']), { requestRate: 10 + 30, p50Ms: 17.5, p99Ms: 40, errorRate: 0, measuredAtMs: clock.now() });
  assert.equal(book.deploymentTraffic(['missing']), null);
  // gw-b beats again with nothing for r2: its requests stop counting toward the rate, its latency stays.
  clock.advance(1_000);
  book.record('gw-b', []);
  assert.equal(book.deploymentTraffic(['r2'])?.requestRate, 0);
  assert.equal(book.deploymentTraffic(['r2'])?.p50Ms, 20);
  clock.advance(TRAFFIC_WINDOW_MS);
  assert.equal(book.deploymentTraffic(['r1', 'r2']), null);
});
