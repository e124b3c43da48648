// Which changes of a deployment's spec roll it out, and what an update that does not says: pure.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rollsOut, updatedMessage } from '../../coordinator/workloads/deployment-update.js';
import type { DeploymentRecord } from '../../coordinator/workloads/records.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';

const spec = compileDeploymentSpec({ name: 'web', model: 'm@production', stack: 'onnx', replicas: 2 });
const run = { image: 'mlfleet/onnx:0.1.0', command: [], env: {}, port: 8080, readinessPath: '/v2/health/ready', readinessTimeoutMs: 60_000, model: undefined, datasets: [], rank: 0, worldSize: 1 } as unknown as DeploymentRecord['run'];
const record = { tenant: 'acme', spec, generation: 1, resolvedVersion: 1, modelDigest: 'sha256:aa', run, createdAtMs: 0, updatedAtMs: 0 } satisfies DeploymentRecord;

test('the replica count, --public and --max-request-size roll nothing out; what the replicas run does', () => {
  assert.equal(rollsOut(record, { ...spec, replicas: 5 }, run), false);
  assert.equal(rollsOut(record, { ...spec, public: true }, run), false);
  assert.equal(rollsOut(record, { ...spec, maxRequestBytes: 64 * 2 ** 20 }, run), false);
  assert.equal(rollsOut(record, { ...spec, rollout: { ...spec.rollout!, canaryPercent: 10, maxSurge: 3 } }, run), false, 'how the next change rolls out is no change');
  assert.equal(updatedMessage(spec, { ...spec, rollout: { ...spec.rollout!, canaryPercent: 10 } }), 'rollout policy changed (for the next rollout)');
  assert.equal(rollsOut(record, { ...spec, env: { MODE: 'fast' } }, run), true);
  assert.equal(rollsOut(record, spec, { ...run, image: 'mlfleet/onnx:0.2.0' }), true, 'a newly resolved model or image rolls out');
});

test('an update that rolls nothing out says what changed', () => {
  assert.equal(updatedMessage(spec, { ...spec, replicas: 3 }), 'now 3 replicas');
  assert.equal(updatedMessage(spec, { ...spec, public: true }), 'now public: anyone may infer with no token');
  assert.equal(updatedMessage({ ...spec, public: true }, spec), 'no longer public: inference needs a token of the tenant');
  assert.equal(updatedMessage(spec, { ...spec, replicas: 4, maxRequestBytes: 1024 }), 'now 4 replicas; requests now up to 1024 bytes');
  assert.equal(updatedMessage({ ...spec, maxRequestBytes: 1024 }, spec), 'requests now up to the default 8 MiB');
});
