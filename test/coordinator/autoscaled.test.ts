// The autoscaled concern's decisions, pure (coordinator/workloads/autoscaled.ts): an autoscaled
// deployment's size when applied, resized and scaled by hand; the quota's headroom in replicas.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appliedReplicas, quotaHeadroom, resized, scaleRefusal, sizeBounds } from '../../coordinator/workloads/autoscaled.js';
import { rollsOut, updatedMessage } from '../../coordinator/workloads/deployment-update.js';
import type { DeploymentRecord } from '../../coordinator/workloads/records.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';

const fixed = compileDeploymentSpec({ name: 'web', model: 'm@production', stack: 'onnx', replicas: 2 });
const auto = { ...fixed, replicas: 1, minReplicas: 1, maxReplicas: 4 };
const run = { image: 'mlfleet/onnx:0.1.0', command: [], env: {}, port: 8080, readinessPath: '/v2/health/ready', readinessTimeoutMs: 60_000, model: undefined, datasets: [], rank: 0, worldSize: 1 } as unknown as DeploymentRecord['run'];
const record = (spec = auto): DeploymentRecord => ({ tenant: 'acme', spec, generation: 3, resolvedVersion: 1, modelDigest: 'sha256:aa', run, createdAtMs: 0, updatedAtMs: 0 });

test('an autoscaled deployment starts at max(min, 1); applied again it keeps its size, clamped to the new bounds', () => {
  assert.equal(appliedReplicas(undefined, { ...auto, minReplicas: 0, replicas: 0 }), 1);
  assert.equal(appliedReplicas(undefined, { ...auto, minReplicas: 3, replicas: 0 }), 3);
  assert.equal(appliedReplicas(undefined, { ...auto, minReplicas: 0, scaleToZeroAfterMs: 60_000, replicas: 0 }), 1, 'it starts with one even when it may go to zero');
  assert.equal(appliedReplicas({ ...auto, replicas: 3 }, { ...auto, replicas: 0 }), 3, 'the size the autoscaler chose stays');
  assert.equal(appliedReplicas({ ...auto, replicas: 3 }, { ...auto, maxReplicas: 2, replicas: 0 }), 2, 'clamped down to a lower max');
  assert.equal(appliedReplicas({ ...auto, replicas: 1 }, { ...auto, minReplicas: 2, replicas: 0 }), 2, 'clamped up to a higher min');
  assert.equal(appliedReplicas({ ...auto, minReplicas: 0, scaleToZeroAfterMs: 1000, replicas: 0 }, { ...auto, minReplicas: 0, scaleToZeroAfterMs: 1000, replicas: 0 }), 0, 'scaled to zero stays at zero');
  assert.equal(appliedReplicas({ ...auto, minReplicas: 0, scaleToZeroAfterMs: 1000, replicas: 0 }, { ...auto, minReplicas: 0, replicas: 0 }), 1, 'scale to zero turned off: at least one');
  assert.equal(appliedReplicas({ ...fixed, replicas: 7 }, { ...auto, replicas: 0 }), 4, 'a fixed deployment made autoscaled keeps its size within the bounds');
  assert.equal(appliedReplicas({ ...auto, replicas: 3 }, { ...fixed, replicas: 5 }), 5, 'made fixed again: --replicas rules');
  assert.deepEqual(sizeBounds({ minReplicas: 0, maxReplicas: 4, scaleToZeroAfterMs: 0 }), { floor: 1, max: 4 });
});

test('bounds, target and scale to zero roll nothing out, and an update says what changed', () => {
  const r = record();
  assert.equal(rollsOut(r, { ...auto, maxReplicas: 8, minReplicas: 2, targetConcurrency: 10, scaleToZeroAfterMs: 5000 }, run), false);
  assert.equal(rollsOut(r, { ...auto, env: { MODE: 'fast' } }, run), true);
  assert.equal(updatedMessage(auto, { ...auto, maxReplicas: 8 }), 'now autoscaled between 1–8 replicas');
  assert.equal(updatedMessage(auto, { ...auto, targetConcurrency: 10 }), 'now aiming at 10 requests in flight per replica');
});

test('resizing sets replicas within the bounds without a new generation; unchanged or fixed-size: nothing', () => {
  const next = resized(record({ ...auto, replicas: 2 }), 4, 1234)!;
  assert.equal(next.spec.replicas, 4);
  assert.equal(next.generation, 3, 'no rollout');
  assert.equal(next.updatedAtMs, 1234);
  assert.equal(resized(record({ ...auto, replicas: 2 }), 9, 0)!.spec.replicas, 4, 'never above max');
  assert.equal(resized(record({ ...auto, replicas: 2 }), 0, 0)!.spec.replicas, 1, 'never below min (or 1 without scale to zero)');
  assert.equal(resized(record({ ...auto, minReplicas: 0, scaleToZeroAfterMs: 1000, replicas: 1 }), 0, 0)!.spec.replicas, 0, 'to zero when it may');
  assert.equal(resized(record({ ...auto, replicas: 2 }), 2, 0), undefined);
  assert.equal(resized(record(fixed), 5, 0), undefined, 'a fixed-size deployment is never resized');
  assert.equal(resized(record({ ...auto, replicas: 2 }), 2.5, 0), undefined, 'not a count');
});

test('scale is refused on an autoscaled deployment, naming its bounds', () => {
  assert.equal(scaleRefusal(auto), 'deployment web is autoscaled (1–4 replicas); change --min-replicas/--max-replicas instead');
  assert.equal(scaleRefusal(fixed), undefined);
});

test("the quota's headroom is the replicas the tightest limit still allows; none without a quota or a limit that applies", () => {
  const per = { cpuMillis: 500, memoryBytes: 2 ** 28, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 };
  const used = { cpuMillis: 1000, memoryBytes: 2 ** 28, gpus: 0, gpuMemoryBytes: 0 };
  assert.equal(quotaHeadroom(undefined, used, per), undefined);
  assert.equal(quotaHeadroom({ cpuMillis: 2000, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0 }, used, per), 2);
  assert.equal(quotaHeadroom({ cpuMillis: 2000, memoryBytes: 2 ** 29, gpus: 0, gpuMemoryBytes: 0 }, used, per), 1, 'memory is tighter');
  assert.equal(quotaHeadroom({ cpuMillis: 900, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0 }, used, per), 0, 'over the quota: none, not negative');
  assert.equal(quotaHeadroom({ cpuMillis: 0, memoryBytes: 0, gpus: 2, gpuMemoryBytes: 0 }, used, per), undefined, 'a GPU limit does not bound replicas that ask none');
  const gpu = { ...per, gpus: 1, gpuMemoryBytes: 2 ** 30 };
  assert.equal(quotaHeadroom({ cpuMillis: 0, memoryBytes: 0, gpus: 3, gpuMemoryBytes: 0 }, { ...used, gpus: 1 }, gpu), 2);
});
