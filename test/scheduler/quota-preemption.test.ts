// Tenant quotas and preemption (the rule text is at the top of coordinator/scheduler/preemption.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Plan, Snapshot } from '../../coordinator/scheduler/types.js';
import { allocation, ask, asks, GiB, gpus, H100, L4, node, nodes, placedOn, scheduleChecked, snapshot } from '../helpers/cluster-harness.js';

const ALL8 = [0, 1, 2, 3, 4, 5, 6, 7];

function failure(plan: Plan, askId: string) {
  return plan.failures.find((f) => f.askId === askId);
}

describe('quotas', () => {
  test('an ask that would take its tenant past a limit fails, saying which and by how much', () => {
    const s = snapshot({
      nodes: nodes(2, { gpus: gpus(8, H100) }),
      allocations: [allocation('running', 'node-0', { tenant: 'a', gpus: 4, gpuIndexes: [0, 1, 2, 3] })],
      quotas: { a: { gpus: 4 } },
    });
    const plan = scheduleChecked(s, [ask('x', { tenant: 'a', gpus: 1 }), ask('other-tenant', { tenant: 'b', gpus: 8 })]);
    assert.deepEqual(plan.failures, [{ askId: 'x', reason: 'tenant "a" GPU quota is 4: 4 in use, 1 more asked', quota: true }]);
    assert.ok(placedOn(plan).has('other-tenant'));
  });

  test('placements earlier in the same plan count against the quota', () => {
    const s = snapshot({ nodes: nodes(4, { gpus: gpus(8, H100) }), quotas: { a: { gpus: 4 } } });
    const plan = scheduleChecked(s, asks(3, { tenant: 'a', gpus: 2 }, 'w'));
    assert.equal(plan.placements.length, 2);
    assert.deepEqual(failure(plan, 'w-2'), { askId: 'w-2', reason: 'tenant "a" GPU quota is 4: 4 in use, 2 more asked', quota: true });
  });

  test('CPU and memory limits read in the CLI’s units', () => {
    const s = snapshot({
      nodes: nodes(2, { cpu: 64 }),
      allocations: [allocation('r', 'node-0', { tenant: 'a', cpu: 3.5, memory: 6 * GiB })],
      quotas: { a: { cpuMillis: 4000 }, b: { memoryBytes: 8 * GiB } },
    });
    const plan = scheduleChecked(s, [ask('cpu', { tenant: 'a', cpu: 1 }), ask('mem-1', { tenant: 'b', memory: 6 * GiB }), ask('mem-2', { tenant: 'b', memory: 4 * GiB })]);
    assert.equal(failure(plan, 'cpu')?.reason, 'tenant "a" CPU quota is 4: 3.5 in use, 1 more asked');
    assert.equal(failure(plan, 'mem-2')?.reason, 'tenant "b" memory quota is 8Gi: 6Gi in use, 4Gi more asked');
    assert.ok(placedOn(plan).has('mem-1'));
  });

  test('GPU memory counts whole devices at their full memory and shares at their size', () => {
    const s = snapshot({ nodes: nodes(2, { gpus: gpus(4, H100) }), quotas: { a: { gpuMemoryBytes: 100 * GiB } } });
    const plan = scheduleChecked(s, [ask('whole', { tenant: 'a', gpus: 1 }), ask('share-16', { tenant: 'a', gpuMemory: 16 * GiB }), ask('share-8', { tenant: 'a', gpuMemory: 8 * GiB })]);
    assert.deepEqual([...placedOn(plan).keys()], ['whole', 'share-16']);
    assert.deepEqual(failure(plan, 'share-8'), { askId: 'share-8', reason: 'tenant "a" GPU memory quota is 100Gi: 96Gi in use, 8Gi more asked', quota: true });
  });

  test('a whole-GPU ask under a GPU-memory quota is charged the smallest devices that serve it, or waits', () => {
    const s = snapshot({
      nodes: [node('mixed', { gpus: [H100, L4] }), node('other', { gpus: [H100] })],
      allocations: [allocation('share', 'other', { tenant: 'a', gpuMemory: 40 * GiB, gpuIndexes: [0] })],
      quotas: { a: { gpuMemoryBytes: 100 * GiB } },
    });
    // 60Gi left: the L4 (24Gi) fits it, the H100 (80Gi) would not.
    const plan = scheduleChecked(s, [ask('fits-an-l4', { tenant: 'a', gpus: 1 })]);
    assert.deepEqual(plan.placements, [{ askId: 'fits-an-l4', node: 'mixed', gpuIndexes: [1], hostPort: 0 }]);

    const onlyH100: Snapshot = { ...s, nodes: [node('mixed', { gpus: gpus(2, H100) }), node('other', { gpus: [H100] })] };
    const waits = scheduleChecked(onlyH100, [ask('x', { tenant: 'a', gpus: 1 })]);
    assert.deepEqual(waits.failures, [{ askId: 'x', reason: 'tenant "a" GPU memory quota is 100Gi: 40Gi in use, 80Gi more asked', quota: true }]);
  });

  test('what this plan preempts no longer counts against its tenant', () => {
    const s = snapshot({
      nodes: nodes(2, { gpus: gpus(8, H100) }),
      allocations: [allocation('old', 'node-0', { tenant: 'a', priority: 1, gpus: 8, gpuIndexes: ALL8 })],
      quotas: { a: { gpus: 12 } },
    });
    const filler = ask('filler', { tenant: 'b', gpus: 8, priority: 20 });
    const plan = scheduleChecked(s, [filler, ask('urgent', { tenant: 'a', priority: 10, gpus: 4, preempt: true }), ask('later', { tenant: 'a', priority: 5, gpus: 8 })]);
    // urgent (8 + 4 <= 12) preempts old; later (4 + 8 <= 12) is within quota only because old no longer counts.
    assert.deepEqual(plan.preemptions.map((p) => p.allocationId), ['old']);
    assert.equal(failure(plan, 'later')?.quota, false);
    assert.equal(failure(plan, 'later')?.reason, '0/2 nodes: 2 insufficient GPUs');
  });
});

describe('preemption', () => {
  test('a high-priority ask that fits nowhere preempts the lowest-priority allocation that makes room', () => {
    const s = snapshot({
      nodes: [node('n', { gpus: gpus(8, H100) })],
      allocations: [
        allocation('p5', 'n', { priority: 5, gpus: 4, gpuIndexes: [4, 5, 6, 7] }),
        allocation('p1', 'n', { priority: 1, gpus: 4, gpuIndexes: [0, 1, 2, 3] }),
      ],
    });
    const plan = scheduleChecked(s, [ask('train', { workload: 'job/t/train', priority: 100, gpus: 4, preempt: true })]);
    assert.deepEqual(plan.preemptions, [{ allocationId: 'p1', askId: 'train', reason: 'preempted by job/t/train (priority 100 > 1)' }]);
    assert.deepEqual(plan.placements, [{ askId: 'train', node: 'n', gpuIndexes: [0, 1, 2, 3], hostPort: 0 }]);
  });

  test('nothing is evicted beyond what the ask needs', () => {
    const s = snapshot({
      nodes: [node('n', { cpu: 64, gpus: gpus(8, H100) })],
      allocations: [allocation('tiny', 'n', { priority: 1, cpu: 1 }), allocation('big', 'n', { priority: 2, gpus: 8, gpuIndexes: ALL8 })],
    });
    const plan = scheduleChecked(s, [ask('x', { priority: 10, gpus: 8, preempt: true })]);
    assert.deepEqual(plan.preemptions.map((p) => p.allocationId), ['big']);
  });

  test('only strictly lower priorities are preempted', () => {
    const s = snapshot({ nodes: [node('n', { gpus: gpus(1, H100) })], allocations: [allocation('peer', 'n', { priority: 10, gpus: 1, gpuIndexes: [0] })] });
    const plan = scheduleChecked(s, [ask('x', { priority: 10, gpus: 1, preempt: true })]);
    assert.deepEqual(plan.preemptions, []);
    assert.equal(failure(plan, 'x')?.reason, '0/1 nodes: 1 insufficient GPUs; preempting lower-priority allocations would not make room');
  });

  test('without preempt: true nothing is preempted', () => {
    const s = snapshot({ nodes: [node('n', { gpus: gpus(1, H100) })], allocations: [allocation('low', 'n', { priority: 0, gpus: 1, gpuIndexes: [0] })] });
    const plan = scheduleChecked(s, [ask('x', { priority: 10, gpus: 1 })]);
    assert.deepEqual(plan.preemptions, []);
    assert.equal(failure(plan, 'x')?.reason, '0/1 nodes: 1 insufficient GPUs');
  });

  test('another tenant within its quota is protected; one above its quota, or without one, is not', () => {
    const holders = { guarded: 'n-guarded', greedy: 'n-greedy', 'no-quota': 'n-free', 'no-limits': 'n-unset' };
    const s = snapshot({
      nodes: Object.values(holders).map((name) => node(name, { gpus: gpus(8, H100) })),
      allocations: Object.entries(holders).map(([tenant, name]) => allocation(`${tenant}-job`, name, { tenant, priority: 1, gpus: 8, gpuIndexes: ALL8 })),
      // greedy's quota was lowered below what it runs; no-limits has a quota that sets no limit.
      quotas: { guarded: { gpus: 8 }, greedy: { gpus: 4 }, 'no-limits': {} },
    });
    const chosen = new Set<string>();
    for (let seed = 0; seed < 12; seed++) {
      const plan = scheduleChecked(s, [ask('x', { tenant: 'x', priority: 10, gpus: 8, preempt: true })], { seed });
      assert.equal(plan.preemptions.length, 1);
      chosen.add(plan.preemptions[0]!.allocationId);
    }
    assert.ok(!chosen.has('guarded-job'), [...chosen].join());

    const guardedAndGreedy: Snapshot = { ...s, nodes: s.nodes.slice(0, 2), allocations: s.allocations.slice(0, 2) };
    assert.deepEqual(scheduleChecked(guardedAndGreedy, [ask('x', { tenant: 'x', priority: 10, gpus: 8, preempt: true })]).preemptions.map((p) => p.allocationId), ['greedy-job']);

    const onlyGuarded: Snapshot = { ...s, nodes: [node('n-guarded', { gpus: gpus(8, H100) })], allocations: s.allocations.filter((a) => a.tenant === 'guarded') };
    const plan = scheduleChecked(onlyGuarded, [ask('x', { tenant: 'x', priority: 10, gpus: 8, preempt: true })]);
    assert.deepEqual(plan.preemptions, []);
  });

  test('a tenant may always preempt its own lower-priority work', () => {
    const s = snapshot({
      nodes: [node('n', { gpus: gpus(8, H100) })],
      allocations: [allocation('mine', 'n', { tenant: 'a', priority: 1, gpus: 8, gpuIndexes: ALL8 })],
      quotas: { a: { gpus: 16 } },
    });
    const plan = scheduleChecked(s, [ask('x', { tenant: 'a', priority: 10, gpus: 8, preempt: true })]);
    assert.deepEqual(plan.preemptions.map((p) => p.allocationId), ['mine']);
  });

  test('the node needing the fewest victims wins, then the lowest total victim priority', () => {
    const s = snapshot({
      nodes: [node('two-victims', { gpus: gpus(8, H100) }), node('prio-5', { gpus: gpus(8, H100) }), node('prio-3', { gpus: gpus(8, H100) })],
      allocations: [
        allocation('a', 'two-victims', { priority: 1, gpus: 4, gpuIndexes: [0, 1, 2, 3] }),
        allocation('b', 'two-victims', { priority: 1, gpus: 4, gpuIndexes: [4, 5, 6, 7] }),
        allocation('c', 'prio-5', { priority: 5, gpus: 8, gpuIndexes: ALL8 }),
        allocation('d', 'prio-3', { priority: 3, gpus: 8, gpuIndexes: ALL8 }),
      ],
    });
    for (let seed = 0; seed < 5; seed++) {
      const plan = scheduleChecked(s, [ask('x', { priority: 10, gpus: 8, preempt: true })], { seed });
      assert.deepEqual(plan.preemptions.map((p) => p.allocationId), ['d']);
      assert.equal(placedOn(plan).get('x'), 'prio-3');
    }
  });

  test('between equal priorities, the victim freeing most of what the ask lacks goes first', () => {
    const s = snapshot({
      nodes: [node('n', { gpus: gpus(8, H100) })],
      allocations: [
        allocation('keep', 'n', { priority: 50, gpus: 2, gpuIndexes: [0, 1] }),
        allocation('x-two', 'n', { priority: 1, gpus: 2, gpuIndexes: [2, 3] }),
        allocation('y-four', 'n', { priority: 1, gpus: 4, gpuIndexes: [4, 5, 6, 7] }),
      ],
    });
    const plan = scheduleChecked(s, [ask('x', { priority: 10, gpus: 2, preempt: true })]);
    assert.deepEqual(plan.preemptions.map((p) => p.allocationId), ['y-four']);
  });

  test('what victims free serves the preempting ask only, not later asks of the same plan', () => {
    const s = snapshot({ nodes: [node('n', { gpus: gpus(8, H100) })], allocations: [allocation('low', 'n', { priority: 1, gpus: 8, gpuIndexes: ALL8 })] });
    const plan = scheduleChecked(s, [ask('hi', { priority: 10, gpus: 4, preempt: true }), ask('next', { priority: 5, gpus: 4 })]);
    assert.deepEqual(plan.preemptions.map((p) => p.allocationId), ['low']);
    assert.deepEqual([...placedOn(plan).keys()], ['hi']);
    assert.equal(failure(plan, 'next')?.reason, '0/1 nodes: 1 insufficient GPUs');
  });

  test('a preempted replica no longer counts toward its workload’s max-per-node', () => {
    const s = snapshot({
      nodes: [node('n', { cpu: 64, gpus: gpus(2, H100) })],
      allocations: [allocation('web-old', 'n', { workload: 'deployment/t/web', priority: 1, gpus: 1, gpuIndexes: [0] })],
    });
    const web = { workload: 'deployment/t/web', maxPerNode: 1 };
    const plan = scheduleChecked(s, [ask('web-a', { ...web, priority: 20 }), ask('train', { priority: 10, gpus: 2, preempt: true }), ask('web-b', { ...web, priority: 5 })]);
    assert.equal(failure(plan, 'web-a')?.reason, '0/1 nodes: 1 max 1 per node');
    assert.deepEqual(plan.preemptions.map((p) => p.allocationId), ['web-old']);
    assert.deepEqual([...placedOn(plan).keys()], ['train', 'web-b']);
  });

  test('an ask over its own quota does not preempt', () => {
    const s = snapshot({ nodes: [node('n', { gpus: gpus(8, H100) })], allocations: [allocation('low', 'n', { tenant: 'a', priority: 1, gpus: 8, gpuIndexes: ALL8 })], quotas: { a: { gpus: 8 } } });
    const plan = scheduleChecked(s, [ask('x', { tenant: 'a', priority: 10, gpus: 1, preempt: true })]);
    assert.deepEqual(plan.preemptions, []);
    assert.equal(failure(plan, 'x')?.quota, true);
  });

  test('a gang that fails withdraws the preemptions its members made', () => {
    const s = snapshot({
      nodes: [node('big', { gpus: gpus(8, H100) }), node('small', { gpus: gpus(1, H100) })],
      allocations: [allocation('low', 'big', { priority: 1, gpus: 8, gpuIndexes: ALL8 })],
    });
    const plan = scheduleChecked(s, asks(2, { priority: 10, gpus: 8, preempt: true, group: 'job/t/g' }, 'w'));
    assert.deepEqual(plan.preemptions, []);
    assert.deepEqual(plan.placements, []);
    assert.match(failure(plan, 'w-0')!.reason, /^gang job\/t\/g: only 1 of 2 workers fit, so none is placed; rank 1: 0\/2 nodes: 2 insufficient GPUs; preempting/);
  });
});
