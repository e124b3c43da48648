// What RouteBook.trafficOf (coordinator/workloads/routes.ts) gives the rollout guard from the
// gateways' heartbeat reports: requests and errors summed over every report (a canary's small
// share adds up across heartbeats and gateways), the largest recent p99, only for the replicas
// asked about, and nothing for replicas that left the routing table.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ArtifactRegistry } from '../../coordinator/registry/artifact-registry.js';
import { RouteBook } from '../../coordinator/workloads/routes.js';
import { FakeClock } from '../helpers/fake-clock.js';

const sample = (allocation: string, count: number, errors: number, p99Ms: number) => ({ tenant: 'default', model: 'm', allocation, count, errors, p50Ms: 1, p99Ms });

test('requests and errors add up over heartbeats and gateways; p99 is the largest recent one; replicas that left count no more', async () => {
  const clock = new FakeClock();
  // trafficOf and a rebuild with no deployment never look a model up.
  const book = new RouteBook({} as ArtifactRegistry, clock);
  book.record('node-a', [sample('canary', 10, 6, 30), sample('stable', 40, 0, 9)]);
  clock.advance(5_000);
  book.record('node-a', [sample('canary', 10, 6, 20)]);
  book.record('node-b', [sample('canary', 5, 0, 12), sample('other', 99, 99, 999)]);
  assert.deepEqual(book.trafficOf(new Set(['canary'])), { count: 25, errors: 12, p99Ms: 20 });
  assert.deepEqual(book.trafficOf(new Set(['stable'])), { count: 40, errors: 0, p99Ms: 9 });
  assert.deepEqual(book.trafficOf(new Set(['missing'])), { count: 0, errors: 0, p99Ms: 0 });
  assert.deepEqual(book.countsOf('canary'), { count: 25, errors: 12 }, 'one replica, for the previous version\'s window');
  assert.equal(book.countsOf('missing'), undefined);
  await book.rebuild([], () => '');
  assert.deepEqual(book.trafficOf(new Set(['canary', 'stable'])), { count: 0, errors: 0, p99Ms: 0 });
  assert.equal(book.countsOf('canary'), undefined);
});
