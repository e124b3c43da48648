// What decideDeployment (coordinator/workloads/reconcile.ts) decides for a canary in progress
// (record.canaryOf), on plain records: it asks for ceil(replicas × percent) new replicas and no
// more, keeps every stable replica (even past the surge a rolling update allows), stops replicas
// of any third generation and surplus canaries; once promoted (canaryOf cleared) the rolling
// update replaces the stable ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideDeployment } from '../../coordinator/workloads/reconcile.js';
import type { AllocationRecord, DeploymentRecord } from '../../coordinator/workloads/records.js';
import type { AllocationState } from '../../shared/workloads.js';

const RUN = { image: 'i', command: [], env: {}, port: 8080, readinessPath: '/', readinessTimeoutMs: 0, model: undefined, datasets: [], rank: 0, worldSize: 1 };
let ids = 0;
function replica(generation: number, status: AllocationState = 'ready', at = ++ids): AllocationRecord {
  return {
    id: `r${++ids}`, kind: 'deployment', workload: 'web', tenant: 'default', node: 'n', priority: 0,
    resources: { cpuMillis: 100, memoryBytes: 1, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 }, gpuIndexes: [], hostPort: 1,
    run: RUN, generation, attempt: 0, rank: 0, desired: 'run', status, reason: '', endpoint: 'n:1', exitCode: 0, createdAtMs: at, updatedAtMs: at,
  };
}
function record(replicas: number, percent: number, canaryOf: number | undefined): DeploymentRecord {
  return {
    tenant: 'default', generation: 3, resolvedVersion: 2, modelDigest: 'd', run: RUN, createdAtMs: 0, updatedAtMs: 0, canaryOf,
    spec: { replicas, rollout: { maxSurge: 1, maxUnavailable: 0, canaryPercent: percent, maxErrorRate: 0, maxP99Ratio: 0, watchMs: 0, minRequests: 0, autoRollbackOff: false } } as DeploymentRecord['spec'],
  };
}
const ready = () => 'ready' as const;

test('a canary of 25% of 10 replicas asks for 3 new ones beside all 10 stable ones, and stops none', () => {
  const stable = Array.from({ length: 10 }, () => replica(2));
  const first = decideDeployment(record(10, 25, 2), stable, ready);
  assert.deepEqual([first.asks, first.stops.length, first.status], [3, 0, 'progressing']);
  const withCanary = [...stable, replica(3), replica(3), replica(3)];
  const steady = decideDeployment(record(10, 25, 2), withCanary, ready);
  assert.deepEqual([steady.asks, steady.stops.length, steady.status], [0, 0, 'progressing']);
});

test('surplus canaries go (the not-ready first), and so does a third generation', () => {
  const stable = [replica(2), replica(2)];
  const extra = replica(3, 'starting');
  const older = replica(1);
  const d = decideDeployment(record(2, 10, 2), [...stable, replica(3), extra, older], ready);
  assert.equal(d.asks, 0);
  assert.deepEqual(d.stops.map((s) => s.id).sort(), [extra.id, older.id].sort());
});

test('promoted (canaryOf cleared), the rolling update replaces the stable replicas within its surge', () => {
  const all = [replica(2), replica(2), replica(2), replica(2), replica(3)];
  const d = decideDeployment(record(4, 25, undefined), all, ready);
  // 5 live of 4 asked with surge 1: no ask until one stable goes; one ready stable replica stops.
  assert.equal(d.asks, 0);
  assert.equal(d.stops.length, 1);
  assert.ok(all.slice(0, 4).some((a) => a.id === d.stops[0]!.id));
});
