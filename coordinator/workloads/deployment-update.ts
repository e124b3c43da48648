// What a changed deployment spec means: pure, tested without a controller
// (test/coordinator/deployment-update.test.ts). Some fields change what its replicas run, and
// roll it out replica by replica; others — how many replicas, who may infer, how large a request
// may be — change only the count or the gateways' routing, and roll nothing out.
import { isDeepStrictEqual } from 'node:util';
import type { DeploymentSpec } from '../../shared/proto.js';
import type { DeploymentRecord } from './records.js';

/** Whether the new spec (and what it resolves to) changes what the replicas run: a rollout. */
export function rollsOut(previous: DeploymentRecord, spec: DeploymentSpec, run: DeploymentRecord['run']): boolean {
  const { replicas: _a, public: _c, maxRequestBytes: _e, ...before } = previous.spec;
  const { replicas: _b, public: _d, maxRequestBytes: _f, ...after } = spec;
  return !isDeepStrictEqual(before, after) || !isDeepStrictEqual(previous.run, run);
}

/** What an update that rolls nothing out changed, for its event. */
export function updatedMessage(before: DeploymentSpec, after: DeploymentSpec): string {
  const parts: string[] = [];
  if (before.replicas !== after.replicas) parts.push(`now ${after.replicas} replicas`);
  if (before.public !== after.public) parts.push(after.public ? 'now public: anyone may infer with no token' : 'no longer public: inference needs a token of the tenant');
  if (before.maxRequestBytes !== after.maxRequestBytes) parts.push(`requests now up to ${after.maxRequestBytes || 'the default 8 MiB'}${after.maxRequestBytes ? ' bytes' : ''}`);
  return parts.join('; ') || `now ${after.replicas} replicas`;
}
