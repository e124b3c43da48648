// The scans' one-function fit test must agree with the named checks that explain failures.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../../shared/clock.js';
import { ClusterState } from '../../coordinator/scheduler/cluster-state.js';
import { checks, firstFailure, fits } from '../../coordinator/scheduler/feasibility.js';
import { prepareAsk } from '../../coordinator/scheduler/prepared-ask.js';
import { gpuMemoryRoom } from '../../coordinator/scheduler/quota.js';
import { applyPlan, schedule } from '../../coordinator/scheduler/scheduler.js';
import type { Ask } from '../../coordinator/scheduler/types.js';
import { GiB, heterogeneousCluster, snapshot, syntheticAsks } from '../helpers/cluster-harness.js';

test('fits() answers exactly as the named checks do, on every node, for every kind of ask', () => {
  let s = snapshot({
    nodes: heterogeneousCluster(400, 21),
    quotas: { 'tenant-2': { gpuMemoryBytes: 2000 * GiB }, 'tenant-3': { gpuMemoryBytes: 100 * GiB } },
    portRange: [30000, 30007],
  });
  const work = syntheticAsks(3000, 22);
  for (let b = 0; b < 3; b++) {
    const batch = work.slice(b * 1000, (b + 1) * 1000);
    s = applyPlan(s, schedule(s, batch, { seed: b }), batch);
  }
  const random = seededRandom(23);
  const variants = (a: Ask): Ask[] => [
    a,
    { ...a, constraints: { zone: 'a', class: random() < 0.5 ? 'h100' : 'l4' } },
    // A workload that already runs: its replicas' nodes fail max-per-node.
    { ...a, workload: work[Math.floor(random() * 3000)]!.workload, maxPerNode: 1 },
    { ...a, needsPort: true },
    { ...a, resources: { ...a.resources, nicMbps: 30_000 } },
    { ...a, resources: { ...a.resources, gpus: 2, gpuMemoryBytes: 40 * GiB, gpuModel: 'a100' } },
    { ...a, tenant: 'tenant-3', resources: { ...a.resources, gpus: 1, gpuMemoryBytes: 0 } },
  ];
  const state = new ClusterState(s);
  const seen = new Set<number>();
  let fitting = 0;
  for (const [i, a] of syntheticAsks(150, 24, { prefix: 'probe' }).flatMap(variants).entries()) {
    const p = prepareAsk(a, i);
    p.gpuMemoryRoom = gpuMemoryRoom(state, a.tenant);
    p.replicas = state.replicasOf(a.workload);
    for (const ns of state.nodes) {
      const first = firstFailure(ns, p, state);
      assert.equal(fits(ns, p, state), first < 0, `ask ${a.id} on ${ns.node.name}: first failure ${checks[first]?.name}`);
      seen.add(first);
      if (first < 0) fitting++;
    }
  }
  // The probe reached every check, and fitting nodes too.
  assert.deepEqual([...seen].sort((x, y) => x - y), [-1, ...checks.map((_, i) => i)]);
  assert.ok(fitting > 0);
});
