// The JSON shapes the REST API answers with: those of `mlfleetctl … -o json`, from the one
// copy in shared/views/ (type-only imports: nothing of them is bundled).
export type { AllocationJson } from '../../../shared/views/allocations.js';
export type { ArtifactJson, ArtifactSummaryJson } from '../../../shared/views/artifacts.js';
export type { WorkloadEventJson } from '../../../shared/views/events.js';
export type { JobJson } from '../../../shared/views/jobs.js';
export type { TenantJson } from '../../../shared/views/tenants.js';
import type { NodeDetailJson } from '../../../shared/views/nodes.js';

/** GET /api/v1/whoami */
export interface Whoami {
  role: string;
  tenant: string;
}

/** GET /api/v1/nodes items carry the cache in short (cacheEntries, cacheBytes); GET /api/v1/nodes/{name} lists it. */
export type NodeJson = Omit<NodeDetailJson, 'cache' | 'delivery'> & Partial<Pick<NodeDetailJson, 'cache'>>;

export type { DeploymentJson } from '../../../shared/views/deployments.js';
