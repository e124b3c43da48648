// The pure autoscaler (coordinator/autoscale/decide.ts) driven tick by tick on plain times:
// steady load keeps the count, a 10× step scales up within the panic window, a spike then quiet
// gives one scale-down, bounds and quota hold (and say why), idle goes to zero only after
// scale_to_zero_after, a request at zero wakes it at once, and a bursty load does not loop.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decide, initialScalerState, type DecideOptions, type Decision } from '../../coordinator/autoscale/decide.js';
import type { AutoscaledDeployment } from '../../coordinator/autoscale/target.js';

const T0 = 1_000_000;
const TICK = 500;
const MINUTE = 60_000;

function policy(p: Partial<AutoscaledDeployment> = {}): AutoscaledDeployment {
  return {
    tenant: 'acme', name: 'resnet', minReplicas: 1, maxReplicas: 10, targetConcurrency: 4, scaleToZeroAfterMs: 0,
    replicas: 1, readyReplicas: 1, quotaHeadroom: undefined, ...p,
  };
}

/** A deterministic noise source in [-1, 1). */
function noise(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return (x / 2 ** 32) * 2 - 1;
  };
}

interface Load {
  concurrency: number;
  inFlight?: number;
  waiting?: number;
  requests?: number;
  wake?: boolean;
}

interface Change {
  atMs: number;
  from: number;
  to: number;
  reason: string;
}

/**
 * Ticks every 500 ms for `durationMs`, applying each decision at once (as the controller does
 * with spec.replicas), and returns the changes and the last decision.
 */
function simulate(
  start: AutoscaledDeployment,
  load: (tMs: number) => Load,
  durationMs: number,
  options?: Partial<DecideOptions> & { headroom?: (replicas: number) => number | undefined },
): { changes: Change[]; last: Decision; replicas: number } {
  let state = initialScalerState(T0);
  let replicas = start.replicas;
  const changes: Change[] = [];
  let last: Decision | undefined;
  const decideOptions = { stableWindowMs: 60_000, panicWindowMs: 6_000, panicThreshold: 2, scaleDownDelayMs: 60_000, ...options };
  for (let t = 0; t <= durationMs; t += TICK) {
    const l = load(t);
    const p = { ...start, replicas, quotaHeadroom: options?.headroom ? options.headroom(replicas) : start.quotaHeadroom };
    last = decide(state, {
      nowMs: T0 + t, policy: p, concurrency: l.concurrency, inFlight: l.inFlight ?? Math.round(l.concurrency),
      waiting: l.waiting ?? 0, requests: l.requests ?? (l.concurrency > 0 ? 1 : 0), wake: l.wake ?? false,
    }, decideOptions);
    state = last.state;
    if (last.desired !== replicas) {
      assert.ok(last.reason, 'a change carries its reason');
      changes.push({ atMs: t, from: replicas, to: last.desired, reason: last.reason });
      replicas = last.desired;
    } else {
      assert.equal(last.reason, undefined);
    }
  }
  return { changes, last: last!, replicas };
}

test('steady load with noise keeps a stable count for 10 minutes', () => {
  const rand = noise(7);
  // 10 ± 4 in flight at a target of 4: three replicas.
  const { changes } = simulate(policy({ replicas: 3 }), () => ({ concurrency: 10 + 4 * rand() }), 10 * MINUTE);
  assert.deepEqual(changes, []);

  // From one replica it gets there at once (sized, in the panic that step is, for the last
  // second's figure: 3 for the mean, 4 for a noisy peak of 14), and then stays.
  const rand2 = noise(11);
  const fromOne = simulate(policy({ replicas: 1 }), () => ({ concurrency: 10 + 4 * rand2() }), 10 * MINUTE);
  assert.ok(fromOne.changes.length >= 1 && fromOne.changes.every((c) => c.to > c.from), JSON.stringify(fromOne.changes));
  assert.ok(fromOne.changes.at(-1)!.atMs <= 6_000, JSON.stringify(fromOne.changes));
  assert.ok(fromOne.replicas === 3 || fromOne.replicas === 4, `${fromOne.replicas} replicas`);
});

test('a 10x step scales up within the panic window, the first step within a second', () => {
  const step = 2 * MINUTE;
  const { changes, last } = simulate(policy({ replicas: 1 }), (t) => ({ concurrency: t < step ? 2 : 20 }), step + 20_000);
  assert.ok(changes.length > 0);
  assert.ok(changes[0]!.atMs >= step && changes[0]!.atMs - step <= 1_000, `first change at ${changes[0]!.atMs - step} ms after the step`);
  assert.match(changes[0]!.reason, /^scaled 1 → \d+: [\d.]+ in flight \/ target 4/);
  const reached = changes.find((c) => c.to >= 5);
  assert.ok(reached && reached.atMs - step <= 6_000, JSON.stringify(changes));
  assert.ok(changes.every((c) => c.to > c.from), 'no scale-down during the step');
  assert.equal(last.desired, 5);
});

test('a step the panic mean would take seconds to show (1 to 4.5 in flight at a target of 2) is decided at the next tick', () => {
  const step = 2 * MINUTE;
  const { changes } = simulate(policy({ replicas: 1, targetConcurrency: 2 }), (t) => ({ concurrency: t < step ? 1 : 4.5 }), step + 10_000);
  assert.ok(changes.length > 0 && changes[0]!.atMs - step <= 500, JSON.stringify(changes));
  assert.match(changes[0]!.reason, /^scaled 1 → 3: 4\.5 in flight \/ target 2 \(panic\)$/);
});

test('a spike followed by quiet gives at most one scale-down in the next 5 minutes, a delay after the last scale-up', () => {
  const spikeAt = 90_000;
  const spikeEnd = spikeAt + 10_000;
  const { changes, replicas } = simulate(
    policy({ replicas: 1 }),
    (t) => ({ concurrency: t >= spikeAt && t < spikeEnd ? 24 : 1 }),
    spikeEnd + 5 * MINUTE,
  );
  const ups = changes.filter((c) => c.to > c.from);
  const downs = changes.filter((c) => c.to < c.from);
  assert.ok(ups.length >= 1 && ups.every((c) => c.atMs < spikeEnd), JSON.stringify(changes));
  assert.equal(downs.length, 1, JSON.stringify(changes));
  assert.ok(downs[0]!.atMs - ups.at(-1)!.atMs >= MINUTE, JSON.stringify(changes));
  assert.equal(downs[0]!.to, 1);
  assert.equal(replicas, 1);
});

test('a bursty load does not loop: no scale-down while bursts come within the delay', () => {
  // 20 in flight for 20 s of every 50 s, nothing in between.
  const { changes } = simulate(policy({ replicas: 1 }), (t) => ({ concurrency: t % 50_000 < 20_000 ? 20 : 0 }), 10 * MINUTE);
  assert.ok(changes.length > 0);
  assert.deepEqual(changes.filter((c) => c.to < c.from), [], JSON.stringify(changes));
  assert.ok(changes.length <= 6, JSON.stringify(changes));
});

test('max and min bound it, and blocked says why it cannot grow', () => {
  const capped = simulate(policy({ replicas: 2, maxReplicas: 4 }), () => ({ concurrency: 40 }), 30_000);
  assert.equal(capped.replicas, 4);
  assert.equal(capped.last.view.blocked, 'at max replicas (4): 10 wanted');

  const floored = simulate(policy({ replicas: 3, minReplicas: 2 }), () => ({ concurrency: 0 }), 5 * MINUTE);
  assert.equal(floored.replicas, 2);
  assert.deepEqual(floored.changes.map((c) => c.to), [2]);
  assert.equal(floored.last.view.blocked, '');

  // Above a lowered max: down to it at once.
  const lowered = simulate(policy({ replicas: 6, maxReplicas: 4 }), () => ({ concurrency: 24 }), 0);
  assert.deepEqual(lowered.changes.map((c) => c.reason), ['scaled 6 → 4: max replicas is 4']);

  // Min 0 without scale to zero keeps one.
  const keepsOne = simulate(policy({ replicas: 1, minReplicas: 0 }), () => ({ concurrency: 0 }), 10 * MINUTE);
  assert.deepEqual(keepsOne.changes, []);
});

test('the quota headroom caps a scale-up and blocked names the tenant', () => {
  // Quota allows 3 replicas in all.
  const r = simulate(policy({ replicas: 2 }), () => ({ concurrency: 40 }), 20_000, { headroom: (replicas) => Math.max(0, 3 - replicas) });
  assert.equal(r.replicas, 3);
  assert.deepEqual(r.changes.map((c) => [c.from, c.to]), [[2, 3]]);
  assert.equal(r.last.view.blocked, 'tenant acme is at its quota: no more replicas allowed');

  const one = decide(initialScalerState(T0), { nowMs: T0, policy: policy({ replicas: 2, quotaHeadroom: 1 }), concurrency: 40, inFlight: 40, waiting: 0, requests: 5, wake: false });
  assert.equal(one.desired, 3);
  assert.equal(one.view.blocked, 'tenant acme is at its quota: 1 more replica allowed');
  const two = decide(initialScalerState(T0), { nowMs: T0, policy: policy({ replicas: 2, quotaHeadroom: 2 }), concurrency: 40, inFlight: 40, waiting: 0, requests: 5, wake: false });
  assert.equal(two.view.blocked, 'tenant acme is at its quota: 2 more replicas allowed');
});

test('idle goes to zero only after scale_to_zero_after, counted from the last request, in flight or held', () => {
  const after = 5 * MINUTE;
  const lastRequest = 30_000;
  const r = simulate(
    policy({ replicas: 1, minReplicas: 0, scaleToZeroAfterMs: after }),
    (t) => (t <= lastRequest ? { concurrency: 1 } : { concurrency: 0, inFlight: 0, requests: 0 }),
    lastRequest + after + MINUTE,
  );
  assert.deepEqual(r.changes, [{ atMs: lastRequest + after, from: 1, to: 0, reason: 'scaled 1 → 0: idle for 5m0s' }]);
  assert.equal(r.last.view.idleSinceMs, T0 + lastRequest);

  // A long request in flight (no new arrivals) keeps it up; so does one held.
  const busy = simulate(policy({ replicas: 1, minReplicas: 0, scaleToZeroAfterMs: 30_000 }), () => ({ concurrency: 0.2, inFlight: 1, requests: 0 }), 10 * MINUTE);
  assert.deepEqual(busy.changes, []);
  const held = simulate(policy({ replicas: 1, minReplicas: 0, scaleToZeroAfterMs: 30_000 }), () => ({ concurrency: 0, inFlight: 0, waiting: 1, requests: 0 }), 2 * MINUTE);
  assert.deepEqual(held.changes, []);
});

test('a request at zero wakes it at once, and nothing wakes it otherwise', () => {
  const p = policy({ replicas: 0, minReplicas: 0, scaleToZeroAfterMs: 30_000 });
  // A new leader (fresh state) with no traffic leaves it asleep.
  const asleep = simulate(p, () => ({ concurrency: 0, requests: 0 }), 10 * MINUTE);
  assert.deepEqual(asleep.changes, []);

  const woke = decide(initialScalerState(T0), { nowMs: T0, policy: p, concurrency: 0, inFlight: 1, waiting: 1, requests: 1, wake: true });
  assert.equal(woke.desired, 1);
  assert.equal(woke.reason, 'woke 0 → 1: a request is waiting');
  assert.equal(woke.view.lastDecision, woke.reason);
  assert.equal(woke.view.lastDecisionAtMs, T0);

  // Many held: the panic recommendation, at once.
  const many = decide(initialScalerState(T0), { nowMs: T0, policy: p, concurrency: 30, inFlight: 30, waiting: 30, requests: 30, wake: true });
  assert.equal(many.desired, 8);
  assert.equal(many.reason, 'woke 0 → 8: 30 requests are waiting');

  // At its quota it stays at zero and says so.
  const stuck = decide(initialScalerState(T0), { nowMs: T0, policy: { ...p, quotaHeadroom: 0 }, concurrency: 0, inFlight: 1, waiting: 1, requests: 1, wake: true });
  assert.equal(stuck.desired, 0);
  assert.equal(stuck.reason, undefined);
  assert.equal(stuck.view.blocked, 'tenant acme is at its quota: no more replicas allowed');

  // Woken, it does not go back to zero within the idle time of the wake.
  const cycle = simulate(p, (t) => (t === 0 ? { concurrency: 0, inFlight: 1, waiting: 1, requests: 1, wake: true } : { concurrency: 0, inFlight: 0, requests: 0 }), MINUTE);
  assert.deepEqual(cycle.changes.map((c) => [c.atMs, c.to]), [[0, 1], [30_000, 0]]);
});

test('the view carries the means, the rate and the panic state', () => {
  const r = simulate(policy({ replicas: 1 }), () => ({ concurrency: 12, inFlight: 12, requests: 6 }), 10_000);
  assert.equal(r.last.view.panicking, true);
  assert.equal(r.last.view.desiredReplicas, 3);
  assert.equal(r.last.view.stableConcurrency, 12);
  assert.equal(r.last.view.panicConcurrency, 12);
  assert.equal(r.last.view.inFlight, 12);
  assert.equal(r.last.view.requestRate, 12); // 6 per 500 ms tick
  assert.equal(r.last.view.idleSinceMs, 0);
  assert.match(r.last.view.lastDecision, /^scaled 1 → 3: 12 in flight \/ target 4/);
});
