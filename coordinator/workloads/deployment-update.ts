// What a changed deployment spec means: pure, tested without a controller
// (test/coordinator/deployment-update.test.ts). Some fields change what its replicas run, and
// roll it out replica by replica; others — how many replicas (or, autoscaled, within which bounds
// and aiming at what), who may infer, how large a request may be — change only the count or the
// gateways' routing, and roll nothing out; nor does a change of how the next rollout goes
// (surge, canary, rollback thresholds).
import { isDeepStrictEqual } from 'node:util';
import type { DeploymentSpec } from '../../shared/proto.js';
import type { DeploymentRecord } from './records.js';

/** Whether the new spec (and what it resolves to) changes what the replicas run: a rollout. */
export function rollsOut(previous: DeploymentRecord, spec: DeploymentSpec, run: DeploymentRecord['run']): boolean {
  return !isDeepStrictEqual(whatRuns(previous.spec), whatRuns(spec)) || !isDeepStrictEqual(previous.run, run);
}

function whatRuns(spec: DeploymentSpec): Partial<DeploymentSpec> {
  // How a change rolls out (surge, canary, rollback thresholds) is no change of what runs: a
  // re-apply that only adds --canary must not start a canary of the same version.
  const { replicas: _r, public: _p, maxRequestBytes: _m, minReplicas: _min, maxReplicas: _max, targetConcurrency: _t, scaleToZeroAfterMs: _z, rollout: _o, ...rest } = spec;
  return rest;
}

/** What an update that rolls nothing out changed, for its event. */
export function updatedMessage(before: DeploymentSpec, after: DeploymentSpec): string {
  const parts: string[] = [];
  if (before.replicas !== after.replicas) parts.push(`now ${after.replicas} replicas`);
  if (before.public !== after.public) parts.push(after.public ? 'now public: anyone may infer with no token' : 'no longer public: inference needs a token of the tenant');
  if (before.minReplicas !== after.minReplicas || before.maxReplicas !== after.maxReplicas) {
    parts.push(after.maxReplicas > 0 ? `now autoscaled between ${after.minReplicas}–${after.maxReplicas} replicas` : 'no longer autoscaled');
  }
  if (before.targetConcurrency !== after.targetConcurrency && after.maxReplicas > 0) parts.push(`now aiming at ${after.targetConcurrency || 'the default 4'} requests in flight per replica`);
  if (Number(before.scaleToZeroAfterMs) !== Number(after.scaleToZeroAfterMs) && after.maxReplicas > 0) {
    parts.push(Number(after.scaleToZeroAfterMs) > 0 ? `now scaled to zero after ${Number(after.scaleToZeroAfterMs) / 1000} s without requests` : 'no longer scaled to zero');
  }
  if (!isDeepStrictEqual(before.rollout, after.rollout)) parts.push('rollout policy changed (for the next rollout)');
  if (before.maxRequestBytes !== after.maxRequestBytes) parts.push(`requests now up to ${after.maxRequestBytes || 'the default 8 MiB'}${after.maxRequestBytes ? ' bytes' : ''}`);
  return parts.join('; ') || `now ${after.replicas} replicas`;
}
