// What decideCrashBackoff (coordinator/workloads/crash-backoff.ts) decides for a deployment
// whose replicas fail, on a fake clock: each failure makes the next replacement wait twice as
// long, up to a cap; a replica stopped on purpose or lost with its node is no failure; a
// replacement that stays ready ends the loop; the reason is kept for `deployments show`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay, crashLoopMessage, decideCrashBackoff, type CrashBackoffPolicy, type CrashLoop } from '../../coordinator/workloads/crash-backoff.js';
import type { AllocationRecord } from '../../coordinator/workloads/records.js';
import type { AllocationState } from '../../shared/workloads.js';

const POLICY: CrashBackoffPolicy = { initialMs: 1_000, maxMs: 8_000, resetAfterMs: 10_000 };

let ids = 0;
function replica(status: AllocationState, at: number, more: Partial<AllocationRecord> = {}): AllocationRecord {
  return {
    id: `r${++ids}`, kind: 'deployment', workload: 'web', tenant: 'default', node: 'node-a', priority: 0,
    resources: { cpuMillis: 100, memoryBytes: 1, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 }, gpuIndexes: [], hostPort: 20_000,
    run: { image: 'i', command: ['x'], env: {}, port: 8080, readinessPath: '/', readinessTimeoutMs: 0, model: undefined, datasets: [], rank: 0, worldSize: 1 },
    generation: 1, attempt: 0, rank: 0, desired: 'run', status, reason: status === 'failed' ? 'exited with code 1' : '', endpoint: '', exitCode: status === 'failed' ? 1 : 0,
    createdAtMs: at, updatedAtMs: at, ...more,
  };
}

/** What the controller does after a pass: the failed replica is stopped (desired: stop). */
const stopped = (a: AllocationRecord): AllocationRecord => ({ ...a, desired: 'stop' });

test('each failure doubles the wait before the next replica, up to the cap', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, POLICY)), [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
  let now = 100_000;
  let loop: CrashLoop | undefined;
  const gaps: number[] = [];
  for (let n = 1; n <= 5; n++) {
    const failed = replica('failed', now - 50, { reason: 'server exited at start' });
    const decision = decideCrashBackoff(loop, [failed], now, POLICY);
    assert.equal(decision.hold, true, `held after failure ${n}`);
    assert.equal(decision.loop?.failures, n);
    assert.equal(decision.events.length, 1);
    assert.equal(decision.events[0]!.type, 'BackOff');
    assert.match(decision.events[0]!.message, /server exited at start/);
    loop = decision.loop;
    // The next passes, with the failed replica stopped: held until the wait is over, with no new event.
    const waiting = decideCrashBackoff(loop, [stopped(failed)], now + 1, POLICY);
    assert.deepEqual([waiting.hold, waiting.events], [true, []]);
    assert.match(crashLoopMessage(waiting.loop, now + 1), new RegExp(`^crash loop back-off: ${n} replica failures? in a row, the last: server exited at start; the next replica starts in`));
    const gap = loop!.notBeforeMs - now;
    gaps.push(gap);
    assert.equal(decideCrashBackoff(waiting.loop, [stopped(failed)], now + gap, POLICY).hold, false, 'the wait is over');
    loop = waiting.loop;
    now += gap + 200; // the replacement is placed and fails again
  }
  assert.deepEqual(gaps, [1_000, 2_000, 4_000, 8_000, 8_000]);
});

test('a failure is counted once, however many passes see it before it is stopped', () => {
  const failed = replica('failed', 1_000);
  const first = decideCrashBackoff(undefined, [failed], 1_000, POLICY);
  const again = decideCrashBackoff(first.loop, [failed], 1_100, POLICY);
  assert.equal(again.loop?.failures, 1);
  assert.deepEqual(again.events, []);
  const two = decideCrashBackoff(again.loop, [failed, replica('failed', 1_200)], 1_200, POLICY);
  assert.equal(two.loop?.failures, 2);
  assert.equal(two.loop!.notBeforeMs, 1_200 + 2_000);
});

test('replicas stopped on purpose, lost with their node, or still running are no failures', () => {
  const decision = decideCrashBackoff(
    undefined,
    [replica('stopped', 1_000), replica('failed', 1_000, { desired: 'stop', reason: 'node node-a is down' }), replica('ready', 1_000), replica('starting', 1_000)],
    2_000,
    POLICY,
  );
  assert.deepEqual(decision, { loop: undefined, hold: false, events: [] });
});

test('a replacement that stays ready ends the loop; one ready for less, or made before the failure, does not', () => {
  const failed = stopped(replica('failed', 1_000));
  const { loop } = decideCrashBackoff(undefined, [{ ...failed, desired: 'run' }], 1_000, POLICY);
  assert.ok(loop);
  const replacement = replica('ready', 3_000, { createdAtMs: 2_500 });
  const older = replica('ready', 0, { createdAtMs: 0 });
  assert.ok(decideCrashBackoff(loop, [failed, older, { ...replacement, updatedAtMs: 3_000 }], 12_999, POLICY).loop, 'ready for less than resetAfterMs');
  assert.ok(decideCrashBackoff(loop, [failed, older], 50_000, POLICY).loop, 'a replica from before the failure says nothing of the new ones');
  assert.equal(decideCrashBackoff(loop, [failed, older, replacement], 13_000, POLICY).loop, undefined, 'ready for resetAfterMs');
  // After the reset, the next failure starts from the first wait again.
  const next = decideCrashBackoff(undefined, [replica('failed', 20_000)], 20_000, POLICY);
  assert.equal(next.loop!.notBeforeMs - 20_000, 1_000);
});
