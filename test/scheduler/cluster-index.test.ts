// The index applyPlan derives for its snapshot must be the index built from scratch.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { schedule, applyPlan } from '../../coordinator/scheduler/scheduler.js';
import type { Ask, Snapshot } from '../../coordinator/scheduler/types.js';
import { allocation, ask, gpus, H100, heterogeneousCluster, node, snapshot, syntheticAsks } from '../helpers/cluster-harness.js';

/** The same snapshot as a new object with new arrays: nothing remembered about it. */
function rebuilt(s: Snapshot): Snapshot {
  return { ...s, allocations: s.allocations.map((a) => ({ ...a })) };
}

test('a line of derived snapshots, with preemptions, plans like snapshots built from scratch', () => {
  let s = snapshot({ nodes: heterogeneousCluster(150, 31), quotas: { 'tenant-0': { gpus: 40 }, 'tenant-1': { cpuMillis: 60_000 } } });
  const work = syntheticAsks(6000, 32);
  // More layers than the replica counts keep before flattening (16), and preemption in every other batch.
  for (let b = 0; b < 40; b++) {
    const batch = work.slice(b * 150, (b + 1) * 150).map((a): Ask => (b % 2 === 1 ? { ...a, priority: a.priority + 200, preempt: true } : a));
    const plan = schedule(s, batch, { seed: b });
    assert.deepEqual(plan, schedule(rebuilt(s), batch, { seed: b }), `batch ${b}`);
    s = applyPlan(s, plan, batch);
  }
  assert.ok(s.allocations.length > 3000);
});

test('a snapshot changed in place after it was scheduled is indexed afresh', () => {
  const s = snapshot({ nodes: [node('n', { gpus: gpus(2, H100) })] });
  assert.equal(schedule(s, [ask('a', { gpus: 2 })]).placements.length, 1);
  s.allocations.push(allocation('late', 'n', { gpus: 2, gpuIndexes: [0, 1] }));
  assert.equal(schedule(s, [ask('b', { gpus: 2 })]).placements.length, 0);
});
