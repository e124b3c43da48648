// Who a push is for. People push into their own tenant (tenantOf). An agent pushes only one
// thing: the /output of a job's rank 0 that runs on its node, named by the header's
// job_allocation; the workload controller says which model of which tenant that is, and the
// lineage (source job, attempt, datasets) is the coordinator's to write, never the agent's.
import { InvalidArgumentError, PermissionDeniedError } from '../../shared/errors.js';
import type { ArtifactMetadata } from '../../shared/proto.js';
import type { Principal } from '../auth/token-registry.js';
import type { ArtifactKind } from '../registry/artifact-record.js';
import type { JobOutputTarget } from '../workloads/controller.js';
import { tenantOf } from './tenant-service.js';

/** The leader's answer for (node, allocation id); throws PermissionDeniedError when the node may not push it. */
export type JobOutputLookup = (node: string, allocationId: string) => JobOutputTarget;

const NO_METADATA: ArtifactMetadata = { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] };

/** The label recording which attempt of the source job pushed a version. */
export const SOURCE_ATTEMPT_LABEL = 'source-attempt';

export interface PushTarget {
  tenant: string;
  metadata: ArtifactMetadata;
}

export function pushTarget(
  kind: ArtifactKind,
  principal: Principal,
  header: { name: string; metadata: ArtifactMetadata | null; jobAllocation: string },
  lookup: JobOutputLookup | undefined,
): PushTarget {
  const given = header.metadata ?? NO_METADATA;
  if (principal.role !== 'node') {
    if (header.jobAllocation) throw new InvalidArgumentError('job_allocation is for agents pushing a job\'s output; leave it empty');
    return { tenant: tenantOf(principal, ''), metadata: given };
  }
  if (kind !== 'model' || !header.jobAllocation || !lookup) throw new PermissionDeniedError('a node pushes only the output model of a job allocation placed on it');
  const target = lookup(principal.node, header.jobAllocation);
  if (header.name !== target.model) throw new PermissionDeniedError(`the job's output model is "${target.model}", not "${header.name}"`);
  return {
    tenant: target.tenant,
    metadata: {
      ...given,
      labels: { ...given.labels, [SOURCE_ATTEMPT_LABEL]: String(target.attempt) },
      sourceJob: target.sourceJob,
      sourceDatasets: target.sourceDatasets,
    },
  };
}
