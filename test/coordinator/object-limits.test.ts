// Every object is bounded at the API (issue 14, item 2): the request schemas refuse an
// environment, a command, labels, a whole spec or metadata over its limit, naming the field and
// the limit, and accept what is just within it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { artifactMetadata, helloSchema } from '../../coordinator/api/schemas.js';
import { registerStackSchema } from '../../coordinator/api/stack-schemas.js';
import { applyDeploymentSchema, runJobSchema } from '../../coordinator/api/workload-schemas.js';
import { LIMITS } from '../../shared/limits.js';
import { validate } from '../../shared/validation.js';

const deployment = (extra: Record<string, unknown>) => ({
  spec: { name: 'web', model: 'm', stack: '', image: 'mlfleet/runtime:0.1.0', command: [], env: {}, port: 8080, readinessPath: '', replicas: 1, resources: null, constraints: {}, maxPerNode: 0, priority: 0, rollout: null, public: false, maxRequestBytes: 0, minReplicas: 0, maxReplicas: 0, targetConcurrency: 0, scaleToZeroAfterMs: 0, ...extra },
  tenant: '',
});

function refusal(schema: Parameters<typeof validate>[0], request: unknown): string {
  try {
    validate(schema, request, 'test request');
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('the request was accepted');
}

const env = (count: number, size: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`V${i}`, 'x'.repeat(size)]));

test('an environment is bounded in variables, in each value and in total', () => {
  assert.match(refusal(applyDeploymentSchema, deployment({ env: env(120, 32 * 1024 - 8) })), /spec\.env: is \d+ bytes in all, over the limit of 128 KiB/);
  assert.match(refusal(applyDeploymentSchema, deployment({ env: env(LIMITS.envVars + 1, 1) })), /spec\.env: has 257 variables, over the limit of 256/);
  assert.match(refusal(applyDeploymentSchema, deployment({ env: { V: 'x'.repeat(LIMITS.envValueBytes + 1) } })), /spec\.env\.V: each value is at most 32 KiB/);
  // Just within: 4 values of 30 KiB.
  validate(applyDeploymentSchema, deployment({ env: env(4, 30 * 1024) }), 'test request');
});

test('a command and constraints are bounded, in jobs and stacks as in deployments', () => {
  assert.match(refusal(applyDeploymentSchema, deployment({ command: Array.from({ length: 9 }, () => 'a'.repeat(8000)) })), /spec\.command: is 72000 bytes in all, over the limit of 64 KiB/);
  assert.match(refusal(applyDeploymentSchema, deployment({ command: Array.from({ length: 257 }, () => 'a') })), /spec\.command: at most 256 arguments/);
  assert.match(refusal(applyDeploymentSchema, deployment({ constraints: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) })), /spec\.constraints: has 65 entries, over the limit of 64/);
  const job = { spec: { name: 'j', stack: '', image: 'mlfleet/runtime:0.1.0', command: [], env: env(3, 30 * 1024), datasets: [], resources: null, workers: 1, maxRetries: 0, retryBackoffMs: 0, deadlineMs: 0, constraints: {}, priority: 0, output: null, partitions: 0, outputDataset: '' }, tenant: '' };
  validate(runJobSchema, job, 'test request');
  assert.match(refusal(runJobSchema, { ...job, spec: { ...job.spec, env: env(5, 30 * 1024) } }), /spec\.env: is \d+ bytes in all, over the limit of 128 KiB/);
  const stack = { name: 's', description: '', image: 'x/y:1', formats: ['onnx'], modelMount: '/m', port: 80, protocol: 'oip-v2', readinessPath: '/', readinessTimeoutMs: 0, command: [], env: env(300, 1), gpus: false, trainCommand: [], builtin: false };
  assert.match(refusal(registerStackSchema, { stack }), /stack\.env: has 300 variables, over the limit of 256/);
});

test('model metadata and node labels are bounded', () => {
  const metadata = { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] };
  validate(artifactMetadata, metadata, 'metadata');
  assert.match(refusal(artifactMetadata, { ...metadata, labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }), /labels: has 65 entries, over the limit of 64/);
  assert.match(refusal(artifactMetadata, { ...metadata, sourceDatasets: Array.from({ length: 65 }, () => 'd') }), /sourceDatasets: at most 64 datasets/);
  const hello = { nodeName: 'n', agentVersion: '', address: '', labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])), capacity: { cpuMillis: 1, memoryBytes: 1, gpus: [], nics: [], disks: [] }, appliedRevision: 0, allocations: [], cache: [], sessionId: '' };
  assert.match(refusal(helloSchema, hello), /labels: has 65 entries, over the limit of 64/);
});
