// Who a push is for. People push into their own tenant (tenantOf). An agent pushes only one
// thing: the /output of a job allocation that runs on its node, named by the header's
// job_allocation; the workload controller says which model or dataset of which tenant that is,
// and the lineage (source job, attempt, datasets) is the coordinator's to write, never the
// agent's. A model output becomes the model's next version; a partition's output becomes a part
// of the job's output dataset, which the leader assembles once every partition has one.
import { InvalidArgumentError, PermissionDeniedError } from '../../shared/errors.js';
import type { ArtifactMetadata } from '../../shared/proto.js';
import type { Principal } from '../auth/token-registry.js';
import { SOURCE_ALLOCATION_LABEL, SOURCE_ATTEMPT_LABEL, type ArtifactKind, type VersionRecord } from '../registry/artifact-record.js';
import type { JobOutputTarget } from '../workloads/controller.js';
import type { OutputPart } from '../workloads/records.js';
import { tenantOf } from './tenant-service.js';

/** The leader's side of job output pushes (its workload controller). */
export interface JobOutputs {
  /** Where (node, allocation id)'s push goes; PermissionDeniedError when the node may not push it. */
  target(node: string, allocationId: string): JobOutputTarget;
  /** Records a partition's stored part on its allocation; a part recorded before is the answer instead. */
  recordPart(node: string, allocationId: string, part: OutputPart): Promise<OutputPart>;
}

const NO_METADATA: ArtifactMetadata = { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] };


export type PushTarget =
  /** A new version of the named artifact, in `tenant` (or the one `once` finds, made before). */
  | { kind: 'version'; tenant: string; metadata: ArtifactMetadata; once?: (version: VersionRecord) => boolean }
  /** A part of a partitioned job's output dataset, recorded on its allocation. */
  | { kind: 'part'; tenant: string; node: string; allocation: string };

export function pushTarget(
  kind: ArtifactKind,
  principal: Principal,
  header: { name: string; directory: boolean; metadata: ArtifactMetadata | null; jobAllocation: string },
  outputs: JobOutputs | undefined,
): PushTarget {
  const given = header.metadata ?? NO_METADATA;
  if (principal.role !== 'node') {
    if (header.jobAllocation) throw new InvalidArgumentError('job_allocation is for agents pushing a job\'s output; leave it empty');
    return { kind: 'version', tenant: tenantOf(principal, ''), metadata: given };
  }
  if (!header.jobAllocation || !outputs) throw new PermissionDeniedError('a node pushes only the output of a job allocation placed on it');
  const target = outputs.target(principal.node, header.jobAllocation);
  if (target.kind !== kind) {
    throw new PermissionDeniedError(`the job's output is ${target.kind} "${target.name}"; push it through ${target.kind === 'model' ? 'ModelService' : 'DatasetService'}`);
  }
  if (header.name !== target.name) throw new PermissionDeniedError(`the job's output ${target.kind} is "${target.name}", not "${header.name}"`);
  if (target.kind === 'dataset') {
    // The union keeps file names: a part is always a directory's tar, even of a single file.
    if (!header.directory) throw new InvalidArgumentError("a partition's output is sent as the tar of its /output directory (directory: true)");
    return { kind: 'part', tenant: target.tenant, node: principal.node, allocation: header.jobAllocation };
  }
  const allocation = header.jobAllocation;
  return {
    kind: 'version',
    tenant: target.tenant,
    metadata: {
      ...given,
      labels: { ...given.labels, [SOURCE_ATTEMPT_LABEL]: String(target.attempt), [SOURCE_ALLOCATION_LABEL]: allocation },
      sourceJob: target.sourceJob,
      sourceDatasets: target.sourceDatasets,
    },
    once: (version) => version.metadata?.labels?.[SOURCE_ALLOCATION_LABEL] === allocation,
  };
}
