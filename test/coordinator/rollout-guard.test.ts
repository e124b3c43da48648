// What decideRolloutGuard (coordinator/workloads/rollout-guard.ts) decides for a rollout's new
// replicas, on plain numbers: each signal past its threshold rolls back (naming its values),
// nothing counts below min_requests, a healthy rollout is judged good only after its watch, and
// a policy with automatic rollback off never rolls back. Also the canary's replica count.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canaryReplicas, countsSince, decideRolloutGuard, DEFAULT_ROLLOUT_GUARD, guardPolicy, type GuardInput } from '../../coordinator/workloads/rollout-guard.js';

const POLICY = DEFAULT_ROLLOUT_GUARD;
const base: GuardInput = {
  now: 100_000,
  startedAtMs: 90_000,
  rolledOutAtMs: undefined,
  goodVersion: 3,
  replicaFailures: 0,
  failureReason: '',
  fresh: { count: 0, errors: 0, p99Ms: 0 },
  previous: { count: 0, errors: 0, p99Ms: 0 },
};

test('a healthy rollout is watched, then judged good once rolled out for watch_ms', () => {
  const healthy = { ...base, fresh: { count: 200, errors: 1, p99Ms: 20 }, previous: { count: 200, errors: 1, p99Ms: 18 } };
  assert.deepEqual(decideRolloutGuard(healthy, POLICY), { action: 'watch' });
  assert.deepEqual(decideRolloutGuard({ ...healthy, rolledOutAtMs: 100_000 - 59_999 }, POLICY), { action: 'watch' });
  assert.deepEqual(decideRolloutGuard({ ...healthy, rolledOutAtMs: 100_000 - 60_000 }, POLICY), { action: 'good' });
});

test('an error rate past the previous version\'s by more than max_error_rate rolls back, naming its values', () => {
  const verdict = decideRolloutGuard({ ...base, fresh: { count: 51, errors: 12, p99Ms: 10 }, previous: { count: 100, errors: 0, p99Ms: 10 } }, POLICY);
  assert.equal(verdict.action, 'rollback');
  assert.equal(verdict.action === 'rollback' && verdict.signal, 'error-rate');
  assert.equal(verdict.action === 'rollback' && verdict.message, 'rolled back to version 3: error rate 23.5% (12/51) against 0.0% for version 3, over the threshold 5.0%');
  // Measured against the previous version's rate: 14% against 10% is within 5 points.
  assert.equal(decideRolloutGuard({ ...base, fresh: { count: 100, errors: 14, p99Ms: 10 }, previous: { count: 100, errors: 10, p99Ms: 10 } }, POLICY).action, 'watch');
  assert.equal(decideRolloutGuard({ ...base, fresh: { count: 100, errors: 16, p99Ms: 10 }, previous: { count: 100, errors: 10, p99Ms: 10 } }, POLICY).action, 'rollback');
});

test('a p99 more than max_p99_ratio times the previous version\'s rolls back', () => {
  const slow = { ...base, fresh: { count: 100, errors: 0, p99Ms: 45 }, previous: { count: 100, errors: 0, p99Ms: 20 } };
  const verdict = decideRolloutGuard(slow, POLICY);
  assert.equal(verdict.action === 'rollback' && verdict.signal, 'latency');
  assert.match(verdict.action === 'rollback' ? verdict.message : '', /p99 45\.0 ms against 20\.0 ms for version 3, over 2× its p99/);
  assert.equal(decideRolloutGuard({ ...slow, fresh: { ...slow.fresh, p99Ms: 40 } }, POLICY).action, 'watch');
  // No previous measure to compare with: latency alone does not roll back.
  assert.equal(decideRolloutGuard({ ...slow, previous: { count: 0, errors: 0, p99Ms: 0 } }, POLICY).action, 'watch');
});

test('below min_requests neither error rate nor latency counts', () => {
  const few = { ...base, fresh: { count: 19, errors: 19, p99Ms: 1000 }, previous: { count: 100, errors: 0, p99Ms: 10 } };
  assert.equal(decideRolloutGuard(few, POLICY).action, 'watch');
  assert.equal(decideRolloutGuard({ ...few, fresh: { count: 20, errors: 19, p99Ms: 1000 } }, POLICY).action, 'rollback');
  assert.equal(decideRolloutGuard(few, { ...POLICY, minRequests: 10 }).action, 'rollback');
});

test('replicas of the new version failing in a row roll back, at the limit and not before', () => {
  const two = { ...base, replicaFailures: 2, failureReason: 'exited with code 1' };
  assert.equal(decideRolloutGuard(two, POLICY).action, 'watch');
  const verdict = decideRolloutGuard({ ...two, replicaFailures: 3 }, POLICY);
  assert.equal(verdict.action === 'rollback' && verdict.signal, 'replica-failures');
  assert.match(verdict.action === 'rollback' ? verdict.message : '', /^rolled back to version 3: 3 replicas of the new version failed since it started rolling out \(the last: exited with code 1\)/);
});

test('with automatic rollback off nothing rolls back, and the watch still ends', () => {
  const off = guardPolicy({ maxSurge: 1, maxUnavailable: 0, canaryPercent: 0, maxErrorRate: 0, maxP99Ratio: 0, watchMs: 0, minRequests: 0, autoRollbackOff: true });
  const bad = { ...base, replicaFailures: 9, fresh: { count: 100, errors: 100, p99Ms: 999 }, previous: { count: 100, errors: 0, p99Ms: 1 } };
  assert.equal(decideRolloutGuard(bad, off).action, 'watch');
  assert.equal(decideRolloutGuard({ ...bad, rolledOutAtMs: 0 }, off).action, 'good');
});

test('the wire\'s zeros are the documented defaults; given values win', () => {
  assert.deepEqual(guardPolicy(null), DEFAULT_ROLLOUT_GUARD);
  const given = guardPolicy({ maxSurge: 1, maxUnavailable: 0, canaryPercent: 10, maxErrorRate: 0.2, maxP99Ratio: 3, watchMs: 5_000, minRequests: 5, autoRollbackOff: false });
  assert.deepEqual(given, { enabled: true, maxErrorRate: 0.2, maxP99Ratio: 3, watchMs: 5_000, minRequests: 5, maxReplicaFailures: 3 });
});

test('a canary runs ceil(replicas × percent / 100) replicas, at least one', () => {
  assert.deepEqual([canaryReplicas(10, 10), canaryReplicas(4, 10), canaryReplicas(4, 25), canaryReplicas(4, 30), canaryReplicas(1, 99)], [1, 1, 1, 2, 1]);
});

test("countsSince: the previous version's requests and errors since the baseline, per replica; one measured later or restarted counts whole", () => {
  const baseline = new Map([
    ['a', { count: 100, errors: 50 }],
    ['b', { count: 10, errors: 0 }],
    ['gone', { count: 5, errors: 5 }],
  ]);
  const now = new Map([
    ['a', { count: 160, errors: 50 }], // 60 more, none failed
    ['b', { count: 4, errors: 1 }], // below its baseline: its totals restarted (a new leader)
    ['c', { count: 7, errors: 2 }], // measured since
  ]);
  assert.deepEqual(countsSince(now, baseline), { count: 60 + 4 + 7, errors: 0 + 1 + 2 });
  assert.deepEqual(countsSince(now, now), { count: 0, errors: 0 });
  assert.deepEqual(countsSince(new Map(), baseline), { count: 0, errors: 0 });
  // Over the window a stable version failing as often as the canary holds it: no rollback.
  const previous = { ...countsSince(new Map([['a', { count: 300, errors: 70 }]]), new Map([['a', { count: 200, errors: 50 }]])), p99Ms: 10 };
  assert.deepEqual(decideRolloutGuard({ ...base, fresh: { count: 100, errors: 20, p99Ms: 10 }, previous }, POLICY), { action: 'watch' });
});
