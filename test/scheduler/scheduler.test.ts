// The scheduler as a specification: given these nodes and allocations, these asks give this
// plan. Every plan goes through assertNoOvercommit (scheduleChecked), whatever the test asserts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyPlan, schedule } from '../../coordinator/scheduler/scheduler.js';
import { WEIGHTS } from '../../coordinator/scheduler/scoring.js';
import type { Ask, Plan, Snapshot } from '../../coordinator/scheduler/types.js';
import {
  A100,
  allocation,
  ask,
  asks,
  assertNoOvercommit,
  GiB,
  gpus,
  H100,
  heterogeneousCluster,
  L4,
  node,
  nodes,
  overcommits,
  placedOn,
  scheduleChecked,
  snapshot,
  syntheticAsks,
} from '../helpers/cluster-harness.js';

function failure(plan: Plan, askId: string) {
  return plan.failures.find((f) => f.askId === askId);
}

describe('feasibility', () => {
  test('an ask lands only on a ready, uncordoned node that carries its constraint labels', () => {
    const s = snapshot({
      nodes: [
        node('down', { ready: false, labels: { zone: 'a' } }),
        node('cordoned', { cordoned: true, labels: { zone: 'a' } }),
        node('zone-b', { labels: { zone: 'b' } }),
        node('zone-a', { labels: { zone: 'a' } }),
      ],
    });
    for (let seed = 0; seed < 5; seed++) {
      const plan = scheduleChecked(s, [ask('x', { constraints: { zone: 'a' } })], { seed });
      assert.equal(placedOn(plan).get('x'), 'zone-a');
    }
  });

  test('free CPU, memory and NIC bandwidth are checked; a NIC of unknown speed is not', () => {
    const s = snapshot({
      nodes: [node('small-cpu', { cpu: 2 }), node('small-memory', { memory: 4 * GiB }), node('slow-nic', { nicMbps: 1000 }), node('unknown-nic', { nicMbps: 0 })],
      allocations: [allocation('busy', 'small-cpu', { cpu: 1 })],
    });
    const plan = scheduleChecked(s, [ask('x', { cpu: 2, memory: 8 * GiB, nicMbps: 5000 })]);
    assert.equal(placedOn(plan).get('x'), 'unknown-nic');
  });

  test('whole GPUs are free devices of the model with enough memory, never a device anyone holds', () => {
    const s = snapshot({
      nodes: [
        node('a100', { gpus: gpus(4, A100) }),
        node('h100-shared', { gpus: gpus(2, H100) }),
        node('h100-held', { gpus: gpus(2, H100) }),
        node('h100-free', { gpus: gpus(2, H100) }),
      ],
      allocations: [
        allocation('share', 'h100-shared', { gpuMemory: 10 * GiB, gpuIndexes: [1] }),
        allocation('whole', 'h100-held', { gpus: 1, gpuIndexes: [0] }),
      ],
    });
    const plan = scheduleChecked(s, [ask('x', { gpus: 2, gpuModel: 'h100', gpuMemory: 60 * GiB })]);
    assert.deepEqual(plan.placements, [{ askId: 'x', node: 'h100-free', gpuIndexes: [0, 1], hostPort: 0 }]);
  });

  test('the GPU model matches case-insensitively anywhere in the device name', () => {
    const s = snapshot({ nodes: [node('l4', { gpus: gpus(1, L4) }), node('a100', { gpus: gpus(1, A100) })] });
    const plan = scheduleChecked(s, [ask('x', { gpus: 1, gpuModel: 'a100-sxm4' })]);
    assert.equal(placedOn(plan).get('x'), 'a100');
  });

  test('maxPerNode counts the workload’s existing allocations and this plan’s placements', () => {
    const s = snapshot({
      nodes: nodes(3, { cpu: 64 }),
      allocations: [allocation('old', 'node-0', { workload: 'deployment/t/web' })],
    });
    const plan = scheduleChecked(s, asks(3, { workload: 'deployment/t/web', maxPerNode: 1 }, 'web'));
    assert.deepEqual([...placedOn(plan).values()].sort(), ['node-1', 'node-2']);
    assert.equal(plan.failures.length, 1);
    assert.equal(plan.failures[0]!.reason, '0/3 nodes: 3 max 1 per node');
  });
});

describe('fractional GPUs', () => {
  test('a share goes to the fullest device that still fits it', () => {
    const s = snapshot({
      nodes: [node('n', { gpus: gpus(3, H100) })],
      allocations: [
        allocation('half', 'n', { gpuMemory: 40 * GiB, gpuIndexes: [0] }),
        allocation('most', 'n', { gpuMemory: 70 * GiB, gpuIndexes: [1] }),
      ],
    });
    const plan = scheduleChecked(s, [ask('small', { gpuMemory: 8 * GiB }), ask('big', { gpuMemory: 30 * GiB })]);
    // small: device 1 (70+8 of 80). big: device 0 (40+30); device 2 stays whole.
    assert.deepEqual(plan.placements.map((p) => [p.askId, p.gpuIndexes]), [['small', [1]], ['big', [0]]]);
  });

  test('shares never add up to more than a device’s memory', () => {
    const s = snapshot({ nodes: [node('n', { gpus: gpus(2, L4) })] });
    const plan = scheduleChecked(s, asks(5, { gpuMemory: 10 * GiB }, 's'));
    assert.equal(plan.placements.length, 4);
    assert.deepEqual(plan.placements.map((p) => p.gpuIndexes[0]).sort(), [0, 0, 1, 1]);
    assert.equal(failure(plan, 's-4')?.reason, '0/1 nodes: 1 insufficient GPU memory');
  });

  test('a device held whole takes no share, and a shared device is never given whole', () => {
    const s = snapshot({
      nodes: [node('n', { gpus: gpus(2, H100) })],
      allocations: [allocation('whole', 'n', { gpus: 1, gpuIndexes: [0] }), allocation('share', 'n', { gpuMemory: 8 * GiB, gpuIndexes: [1] })],
    });
    const plan = scheduleChecked(s, [ask('s', { gpuMemory: 8 * GiB }), ask('w', { gpus: 1 })]);
    assert.deepEqual(plan.placements.map((p) => [p.askId, p.gpuIndexes]), [['s', [1]]]);
    assert.equal(failure(plan, 'w')?.reason, '0/1 nodes: 1 insufficient GPUs');
  });

  test('a share of a model goes only to devices of that model', () => {
    const s = snapshot({ nodes: [node('mixed', { gpus: [H100, L4] })] });
    const plan = scheduleChecked(s, [ask('x', { gpuMemory: 4 * GiB, gpuModel: 'L4' })]);
    assert.deepEqual(plan.placements[0]!.gpuIndexes, [1]);
  });
});

describe('scoring', () => {
  test('whole-GPU asks bin-pack: the node with the fewest free GPUs that still fit wins', () => {
    const s = snapshot({
      nodes: [node('empty-8', { gpus: gpus(8, H100) }), node('half-8', { gpus: gpus(8, H100) }), node('empty-4', { gpus: gpus(4, H100) })],
      allocations: [allocation('a', 'half-8', { gpus: 4, gpuIndexes: [0, 1, 2, 3] })],
    });
    for (let seed = 0; seed < 5; seed++) {
      const plan = scheduleChecked(s, [ask('x', { gpus: 2 }), ask('y', { gpus: 2 })], { seed });
      assert.deepEqual([...placedOn(plan).values()], ['half-8', 'half-8'], `seed ${seed}`);
    }
  });

  test('replicas of one workload spread across nodes, and still do on a sampled large cluster', () => {
    const small = snapshot({ nodes: nodes(4, { cpu: 64, gpus: gpus(8, H100) }) });
    const plan = scheduleChecked(small, asks(4, { workload: 'deployment/t/llm', gpus: 1 }, 'r'));
    assert.equal(new Set(placedOn(plan).values()).size, 4);

    // 1,000 nodes: K is 10, and bin-packing alone would stack all 40 replicas on a few nodes.
    const large = snapshot({ nodes: nodes(1000, { cpu: 64, gpus: gpus(8, H100) }) });
    const many = scheduleChecked(large, asks(40, { workload: 'deployment/t/llm', gpus: 1 }, 'r'));
    assert.equal(new Set(placedOn(many).values()).size, 40);
  });

  test('when every sampled candidate runs a replica, the scan looks further for a node that does not', () => {
    const all = nodes(100, { cpu: 64 });
    const s = snapshot({ nodes: all, allocations: all.slice(0, 95).map((n, i) => allocation(`old-${i}`, n.name, { workload: 'deployment/t/web' })) });
    for (let seed = 0; seed < 10; seed++) {
      const plan = scheduleChecked(s, [ask('new', { workload: 'deployment/t/web' })], { seed });
      assert.ok(Number(placedOn(plan).get('new')!.slice('node-'.length)) >= 95, `seed ${seed}: ${placedOn(plan).get('new')}`);
    }
  });

  test('spread still counts replicas that are already running', () => {
    const s = snapshot({
      nodes: nodes(3, { gpus: gpus(8, H100) }),
      allocations: [allocation('old-0', 'node-0', { workload: 'deployment/t/llm', gpus: 1, gpuIndexes: [0] })],
    });
    const plan = scheduleChecked(s, asks(2, { workload: 'deployment/t/llm', gpus: 1 }, 'r'));
    assert.deepEqual([...placedOn(plan).values()].sort(), ['node-1', 'node-2']);
  });

  test('a node whose cache holds the ask’s model is preferred', () => {
    const digest = 'sha256:' + 'a'.repeat(64);
    const s = snapshot({ nodes: [...nodes(5, { gpus: gpus(4, L4) }), node('warm', { gpus: gpus(4, L4), cached: [digest] }), ...nodes(5, { gpus: gpus(4, L4) }, 'cold')] });
    for (let seed = 0; seed < 5; seed++) {
      const plan = scheduleChecked(s, [ask('x', { gpus: 1, modelDigest: digest })], { seed });
      assert.equal(placedOn(plan).get('x'), 'warm');
    }
  });

  test('CPU-only work goes to CPU-only hosts while they have room', () => {
    const s = snapshot({ nodes: [node('gpu', { cpu: 192, gpus: gpus(8, H100) }), node('cpu', { cpu: 8 })] });
    const plan = scheduleChecked(s, asks(3, { cpu: 4 }, 'c'));
    assert.deepEqual([...placedOn(plan).values()], ['cpu', 'cpu', 'gpu']);
  });

  test('the weights are the documented ones: spread outweighs everything else together', () => {
    assert.deepEqual(WEIGHTS, { binPack: 1, cached: 0.75, replica: 3, gpuHostForCpuWork: 1 });
    assert.ok(WEIGHTS.replica > WEIGHTS.binPack + WEIGHTS.cached + WEIGHTS.gpuHostForCpuWork);
  });
});

describe('host ports', () => {
  test('a server gets a port of the range nobody on its node holds, spread over the range by its ask', () => {
    const s = snapshot({
      nodes: [node('n', { cpu: 64 })],
      allocations: [allocation('old', 'n', { hostPort: 30000 }), allocation('other', 'n', { hostPort: 30002 })],
      portRange: [30000, 30010],
    });
    const all = [...asks(3, { needsPort: true }, 'srv'), ask('batch')];
    const plan = scheduleChecked(s, all);
    const ports = plan.placements.filter((p) => p.askId !== 'batch').map((p) => p.hostPort);
    assert.equal(plan.placements.find((p) => p.askId === 'batch')!.hostPort, 0, 'no port for what serves nothing');
    assert.equal(new Set(ports).size, 3);
    for (const port of ports) assert.ok(port >= 30000 && port <= 30010 && port !== 30000 && port !== 30002, `port ${port}`);
    assert.deepEqual(scheduleChecked(s, all).placements, plan.placements, 'the same asks get the same ports');
    // A replacement (a new ask) starts its search elsewhere: it does not retry a port that failed.
    const wide = snapshot({ nodes: [node('n', { cpu: 64 })], portRange: [20000, 29999] });
    const tried = new Set(['r-1', 'r-2', 'r-3', 'r-4'].map((id) => scheduleChecked(wide, [ask(id, { needsPort: true })]).placements[0]!.hostPort));
    assert.equal(tried.size, 4);
  });

  test('a node whose port range is used up takes no more servers', () => {
    const s = snapshot({ nodes: [node('a', { cpu: 64 }), node('b', { cpu: 64, cordoned: true })], portRange: [30000, 30001] });
    const plan = scheduleChecked(s, asks(3, { needsPort: true }, 'srv'));
    assert.equal(plan.placements.length, 2);
    assert.equal(failure(plan, 'srv-2')?.reason, '0/2 nodes: 1 cordoned, 1 no free port');
  });
});

describe('failure explanations', () => {
  test('every node is counted once, under the first check it fails, most common first', () => {
    const s = snapshot({
      nodes: [...nodes(9, { gpus: gpus(8, { model: 'NVIDIA H100 PCIe', memoryBytes: 40 * GiB }) }, 'small'), ...nodes(3, { cordoned: true, gpus: gpus(8, H100) }, 'off')],
    });
    const plan = scheduleChecked(s, [ask('x', { gpus: 1, gpuModel: 'H100', gpuMemory: 80 * GiB })]);
    assert.deepEqual(plan.failures, [{ askId: 'x', reason: '0/12 nodes: 9 insufficient GPU memory, 3 cordoned', quota: false }]);
  });

  test('each check has a plain name', () => {
    const s = snapshot({
      nodes: [
        node('down', { ready: false }),
        node('cordoned', { cordoned: true }),
        node('elsewhere', { labels: { zone: 'b' } }),
        node('taken', { labels: { zone: 'a' }, gpus: gpus(2, H100), cpu: 64 }),
        node('a100', { labels: { zone: 'a' }, gpus: gpus(2, A100) }),
        node('tiny-cpu', { labels: { zone: 'a' }, cpu: 1, gpus: gpus(2, H100) }),
        node('tiny-memory', { labels: { zone: 'a' }, memory: GiB, gpus: gpus(2, H100) }),
        node('slow-nic', { labels: { zone: 'a' }, nicMbps: 100, gpus: gpus(2, H100) }),
        node('one-gpu', { labels: { zone: 'a' }, gpus: gpus(1, H100) }),
        node('small-gpus', { labels: { zone: 'a' }, gpus: gpus(2, { model: 'H100 PCIe', memoryBytes: 40 * GiB }) }),
        node('no-ports', { labels: { zone: 'a' }, gpus: gpus(2, H100), cpu: 64 }),
      ],
      allocations: [
        allocation('replica', 'taken', { workload: 'job/t/x' }),
        allocation('port-0', 'no-ports', { hostPort: 30000 }),
        allocation('port-1', 'no-ports', { hostPort: 30001 }),
      ],
      portRange: [30000, 30001],
    });
    const x = ask('x', { workload: 'job/t/x', maxPerNode: 1, gpus: 2, gpuModel: 'H100', gpuMemory: 80 * GiB, cpu: 2, memory: 2 * GiB, nicMbps: 1000, constraints: { zone: 'a' }, needsPort: true });
    const plan = scheduleChecked(s, [x]);
    assert.equal(
      failure(plan, 'x')?.reason,
      '0/11 nodes: 1 not ready, 1 cordoned, 1 constraint zone=a, 1 max 1 per node, 1 no GPU model "H100", 1 insufficient CPU, ' +
        '1 insufficient memory, 1 insufficient NIC bandwidth, 1 insufficient GPU memory, 1 insufficient GPUs, 1 no free port',
    );
  });

  test('an empty cluster says so', () => {
    const plan = scheduleChecked(snapshot({ nodes: [] }), [ask('x')]);
    assert.equal(failure(plan, 'x')?.reason, '0/0 nodes: none in the cluster');
  });
});

describe('gangs', () => {
  const fiveNodes = () => snapshot({ nodes: [...nodes(2, { gpus: gpus(2, H100) }, 'two'), ...nodes(3, { gpus: gpus(1, H100) }, 'one')] });

  test('a gang is placed whole', () => {
    const plan = scheduleChecked(fiveNodes(), asks(2, { gpus: 2, group: 'job/t/x', workload: 'job/t/x' }, 'w'));
    assert.equal(plan.placements.length, 2);
    assert.equal(plan.failures.length, 0);
  });

  test('a gang that cannot be placed whole places nothing, and every member says why', () => {
    const gang = asks(3, { gpus: 2, group: 'job/t/x', workload: 'job/t/x' }, 'w');
    const plan = scheduleChecked(fiveNodes(), [...gang, ask('after', { gpus: 2 })]);
    const reason = 'gang job/t/x: only 2 of 3 workers fit, so none is placed; rank 2: 0/5 nodes: 5 insufficient GPUs';
    assert.deepEqual(plan.failures, gang.map((w) => ({ askId: w.id, reason, quota: false })));
    // What the first two workers held for a moment is free again for the next ask.
    assert.equal(plan.placements.length, 1);
    assert.equal(plan.placements[0]!.askId, 'after');
    assert.match(plan.placements[0]!.node, /^two-/);
  });

  test('members are placed together even when other asks come between them in the list', () => {
    const s = snapshot({ nodes: nodes(2, { cpu: 4 }) });
    const plan = scheduleChecked(s, [ask('g1', { cpu: 4, group: 'g' }), ask('solo', { cpu: 4 }), ask('g2', { cpu: 4, group: 'g' })]);
    assert.deepEqual(plan.placements.map((p) => p.askId), ['g1', 'g2']);
    assert.equal(failure(plan, 'solo')?.reason, '0/2 nodes: 2 insufficient CPU');
  });
});

describe('order', () => {
  test('higher priority first, then the order given', () => {
    const s = snapshot({ nodes: [node('one-slot', { cpu: 1 })] });
    assert.equal(scheduleChecked(s, [ask('low', { priority: 1 }), ask('high', { priority: 9 })]).placements[0]!.askId, 'high');
    assert.equal(scheduleChecked(s, [ask('first', { priority: 5 }), ask('second', { priority: 5 })]).placements[0]!.askId, 'first');
  });
});

describe('determinism', () => {
  test('the same snapshot, asks and seed give the same plan', () => {
    const s = snapshot({ nodes: heterogeneousCluster(300, 7), quotas: { 'tenant-1': { gpus: 20 } } });
    const work = syntheticAsks(2000, 8);
    const a = scheduleChecked(s, work, { seed: 42 });
    const b = scheduleChecked(s, work, { seed: 42 });
    assert.deepEqual(a, b);
    const c = scheduleChecked(s, work, { seed: 43 });
    assert.notDeepEqual(a.placements, c.placements, 'another seed visits nodes in another order');
  });

  test('the snapshot is not changed', () => {
    const s = snapshot({ nodes: nodes(2, { gpus: gpus(2, H100) }), allocations: [allocation('a', 'node-0', { gpus: 1, gpuIndexes: [0] })] });
    const before = JSON.stringify({ ...s, quotas: [...s.quotas] }, (_, v) => (v instanceof Set ? [...v] : v));
    scheduleChecked(s, asks(3, { gpus: 1, preempt: true, priority: 5 }));
    assert.equal(JSON.stringify({ ...s, quotas: [...s.quotas] }, (_, v) => (v instanceof Set ? [...v] : v)), before);
  });
});

describe('concurrent plans and applyPlan', () => {
  test('two plans from one snapshot may conflict; applying one and re-planning the other never over-commits', () => {
    const s = snapshot({ nodes: nodes(4, { cpu: 8, gpus: gpus(2, H100) }) });
    const batchA = asks(6, { gpus: 1, cpu: 2, needsPort: true }, 'a');
    const batchB = asks(6, { gpus: 1, cpu: 2, needsPort: true }, 'b');
    const planA = scheduleChecked(s, batchA, { seed: 1 });
    const planB = scheduleChecked(s, batchB, { seed: 2 });
    // Each plan is sound alone; committed blindly together they would share GPUs and ports.
    const both = applyPlan(applyPlan(s, planA, batchA), planB, batchB);
    assert.notDeepEqual(overcommits(both), []);
    // The leader commits A, sees B conflict, and re-plans B's asks on the new snapshot.
    const afterA = applyPlan(s, planA, batchA);
    const replanned = scheduleChecked(afterA, batchB, { seed: 2 });
    assert.deepEqual(overcommits(applyPlan(afterA, replanned, batchB)), []);
    assert.equal(replanned.placements.length, 2);
    assert.equal(replanned.failures.length, 4);
  });

  test('applyPlan adds placements as allocations and removes what was preempted', () => {
    const s = snapshot({ nodes: [node('n', { gpus: gpus(1, H100) })], allocations: [allocation('low', 'n', { gpus: 1, gpuIndexes: [0], priority: 1 })] });
    const hi = ask('hi', { gpus: 1, priority: 10, preempt: true, needsPort: true });
    const plan = scheduleChecked(s, [hi]);
    const after = applyPlan(s, plan, [hi]);
    assert.deepEqual(after.allocations, [
      { id: 'hi', node: 'n', tenant: 't', workload: 'job/t/hi', priority: 10, resources: hi.resources, gpuIndexes: [0], hostPort: plan.placements[0]!.hostPort },
    ]);
    assert.ok(plan.placements[0]!.hostPort > 0);
    assert.throws(() => applyPlan(s, plan, []), /not among the asks given/);
  });

  test('a snapshot from applyPlan plans exactly like the same snapshot built from scratch', () => {
    let s = snapshot({ nodes: heterogeneousCluster(200, 3) });
    const work = syntheticAsks(3000, 4);
    for (let b = 0; b < 3; b++) {
      const batch = work.slice(b * 1000, (b + 1) * 1000);
      s = applyPlan(s, schedule(s, batch, { seed: b }), batch);
    }
    const next = work.slice(0, 500).map((a): Ask => ({ ...a, id: `again-${a.id}`, preempt: true, priority: 1000 }));
    const fresh: Snapshot = { ...s, allocations: s.allocations.map((a) => ({ ...a })) };
    assert.deepEqual(schedule(s, next, { seed: 9 }), schedule(fresh, next, { seed: 9 }));
  });

  test('10,000 asks in batches on 1,000 heterogeneous nodes keep every invariant', () => {
    let s = snapshot({ nodes: heterogeneousCluster(1000, 11), quotas: { 'tenant-0': { gpus: 300 }, 'tenant-1': { cpuMillis: 100_000, memoryBytes: 400 * GiB } } });
    const work = syntheticAsks(10_000, 12);
    let placed = 0;
    let explained = 0;
    for (let b = 0; b < 10; b++) {
      const batch = work.slice(b * 1000, (b + 1) * 1000);
      const plan = schedule(s, batch, { seed: b });
      assertNoOvercommit(s, plan, batch);
      placed += plan.placements.length;
      for (const f of plan.failures.filter((f) => !f.quota)) {
        // Every node is counted exactly once.
        const [, total, counts] = /^0\/(\d+) nodes: ([^;]*)/.exec(f.reason)!;
        assert.equal(counts!.split(', ').reduce((sum, part) => sum + parseInt(part, 10), 0), Number(total), f.reason);
        explained++;
      }
      s = applyPlan(s, plan, batch);
    }
    assert.ok(placed > 9000, `most asks fit (${placed} placed)`);
    assert.ok(explained > 0);
  });
});

describe('the harness checker', () => {
  test('catches over-committed CPU, a doubly held GPU, over-full shares and a reused port', () => {
    const s = snapshot({
      nodes: [node('n', { cpu: 2, gpus: gpus(2, L4) })],
      allocations: [
        allocation('a', 'n', { cpu: 2, gpus: 1, gpuIndexes: [0], hostPort: 30000 }),
        allocation('b', 'n', { cpu: 1, gpus: 1, gpuIndexes: [0], hostPort: 30000 }),
        allocation('c', 'n', { cpu: 0, gpuMemory: 20 * GiB, gpuIndexes: [1] }),
        allocation('d', 'n', { cpu: 0, gpuMemory: 20 * GiB, gpuIndexes: [1] }),
      ],
    });
    assert.deepEqual(overcommits(s), [
      'b: port 30000 on n already held by a',
      'n: CPU 3000m held of 2000m',
      'n: GPU 0 held whole by a, b',
      `n: GPU 1 shares ${40 * GiB} bytes of ${24 * GiB}`,
    ]);
  });
});
