// The store's key layout, in one place. Everything mlfleet writes lives under /mlfleet/.
export const ROOT = '/mlfleet/';

export const keys = {
  electionPrefix: `${ROOT}election/coordinator`,
  coordinatorsPrefix: `${ROOT}coordinators/`,
  coordinator: (id: string) => `${ROOT}coordinators/${id}`,
  tokensPrefix: `${ROOT}tokens/`,
  token: (id: string) => `${ROOT}tokens/${id}`,
  tenantsPrefix: `${ROOT}tenants/`,
  tenant: (name: string) => `${ROOT}tenants/${name}`,
  auditPrefix: `${ROOT}audit/`,
  /**
   * One ring of the audit trail (coordinator/audit-log.ts): admins' entries and users'
   * (developers', consumers') entries per tenant, and one for nodes; each trimmed apart.
   */
  auditRing: (kind: 'admin' | 'tenant' | 'node', tenant: string) => `${ROOT}audit/${kind}/${tenant || '_'}/`,
  bootstrap: `${ROOT}bootstrap`,
  /** The secret coordinators show each other to copy blobs (coordinator/blobs/blob-peers.ts); never logged. */
  peerSecret: `${ROOT}peer-secret`,
  /** The Ed25519 key every leader signs peer grants with (coordinator/delivery/grant-keys.ts); never logged. */
  grantKey: `${ROOT}grant-key`,
  /** The cluster's id, made once: agents label their containers with it (coordinator/bootstrap.ts). */
  cluster: `${ROOT}cluster`,
  artifactsPrefix: (kind: string) => `${ROOT}artifacts/${kind}/`,
  tenantArtifactsPrefix: (kind: string, tenant: string) => `${ROOT}artifacts/${kind}/${tenant}/`,
  artifact: (kind: string, tenant: string, name: string) => `${ROOT}artifacts/${kind}/${tenant}/${name}`,
  /** Model sources (coordinator/sources/): one record per source, with what it imported. */
  sourcesPrefix: `${ROOT}sources/`,
  tenantSourcesPrefix: (tenant: string) => `${ROOT}sources/${tenant}/`,
  source: (tenant: string, name: string) => `${ROOT}sources/${tenant}/${name}`,
  nodesPrefix: `${ROOT}nodes/`,
  node: (name: string) => `${ROOT}nodes/${name}`,
  deploymentsPrefix: `${ROOT}deployments/`,
  deployment: (tenant: string, name: string) => `${ROOT}deployments/${tenant}/${name}`,
  /** User stacks; the built-in ones live in code (coordinator/workloads/stacks.ts). */
  stacksPrefix: `${ROOT}stacks/`,
  stack: (name: string) => `${ROOT}stacks/${name}`,
  jobsPrefix: `${ROOT}jobs/`,
  job: (tenant: string, name: string) => `${ROOT}jobs/${tenant}/${name}`,
  allocationsPrefix: `${ROOT}allocations/`,
  allocation: (id: string) => `${ROOT}allocations/${id}`,
  /** Bumped with every plan that changes a node's allocations: what a plan compares. */
  nodePlansPrefix: `${ROOT}node-plans/`,
  nodePlan: (node: string) => `${ROOT}node-plans/${node}`,
  eventsPrefix: `${ROOT}events/`,
  event: (id: number) => `${ROOT}events/${String(id).padStart(15, '0')}`,
};
