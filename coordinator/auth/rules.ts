// Who may call what: one rule per RPC, keyed "Service.Method". A method without a rule is
// refused for everyone (and the authorization matrix test fails), so a new RPC cannot ship
// open by accident. Tenant scoping (another tenant's object answers NOT_FOUND) is done by the
// handlers, which see the caller's principal.
import type { Role } from '../../shared/auth.js';

export interface Rule {
  roles: readonly Role[];
  /** State-changing: audited, with its result. */
  mutating: boolean;
  /** Answered by followers too; every other RPC is redirected to the leader. */
  anyCoordinator?: boolean;
}

const ADMIN = ['admin'] as const;
const OPERATORS = ['admin', 'developer'] as const;
const USERS = ['admin', 'developer', 'consumer'] as const;
const AGENTS = ['join', 'node'] as const;

export const RULES: Readonly<Record<string, Rule>> = {
  'AgentService.Session': { roles: AGENTS, mutating: false },
  'ClusterService.GetStatus': { roles: USERS, mutating: false, anyCoordinator: true },
  // Developers read nodes to size their workloads; only admins change them.
  'NodeService.ListNodes': { roles: OPERATORS, mutating: false },
  'NodeService.GetNode': { roles: OPERATORS, mutating: false },
  'NodeService.CordonNode': { roles: ADMIN, mutating: true },
  'NodeService.UncordonNode': { roles: ADMIN, mutating: true },
  'NodeService.DrainNode': { roles: ADMIN, mutating: true },
  'NodeService.PrefetchModel': { roles: ADMIN, mutating: true },
  'NodeService.RemoveNode': { roles: ADMIN, mutating: true },
  'TenantService.CreateTenant': { roles: ADMIN, mutating: true },
  'TenantService.ListTenants': { roles: USERS, mutating: false },
  'TenantService.GetTenant': { roles: USERS, mutating: false },
  'TenantService.SetTenantQuota': { roles: ADMIN, mutating: true },
  'TokenService.CreateToken': { roles: ADMIN, mutating: true },
  'TokenService.ListTokens': { roles: ADMIN, mutating: false },
  'TokenService.RevokeToken': { roles: ADMIN, mutating: true },
  'EventService.ListAuditEvents': { roles: USERS, mutating: false },
  // Consumers see what is deployed and how it runs (to call it); developers run workloads.
  'EventService.WatchEvents': { roles: USERS, mutating: false },
  'DeploymentService.ApplyDeployment': { roles: OPERATORS, mutating: true },
  'DeploymentService.PromoteDeployment': { roles: OPERATORS, mutating: true },
  'DeploymentService.RollbackDeployment': { roles: OPERATORS, mutating: true },
  'DeploymentService.ListDeployments': { roles: USERS, mutating: false },
  'DeploymentService.GetDeployment': { roles: USERS, mutating: false },
  'DeploymentService.ScaleDeployment': { roles: OPERATORS, mutating: true },
  'DeploymentService.DeleteDeployment': { roles: OPERATORS, mutating: true },
  'JobService.RunJob': { roles: OPERATORS, mutating: true },
  'JobService.ListJobs': { roles: OPERATORS, mutating: false },
  'JobService.GetJob': { roles: OPERATORS, mutating: false },
  'JobService.CancelJob': { roles: OPERATORS, mutating: true },
  'AllocationService.ListAllocations': { roles: OPERATORS, mutating: false },
  'AllocationService.GetLogs': { roles: OPERATORS, mutating: false },
  // Stacks belong to the cluster: everyone reads them (to deploy on one), only admins change them.
  'StackService.ListStacks': { roles: USERS, mutating: false },
  'StackService.GetStack': { roles: USERS, mutating: false },
  'StackService.RegisterStack': { roles: ADMIN, mutating: true },
  'StackService.DeleteStack': { roles: ADMIN, mutating: true },
  // Consumers pick a model of their tenant by criteria, as they would call it.
  'SelectionService.Select': { roles: USERS, mutating: false },
  // Resumable pushes (docs/delivery.md): who may push may begin and commit an upload.
  'DeliveryService.BeginPush': { roles: [...OPERATORS, 'node'], mutating: false },
  'DeliveryService.CommitPush': { roles: [...OPERATORS, 'node'], mutating: true },
  // Model sources: who may push a model may make it follow a bucket; consumers see them.
  'SourceService.CreateSource': { roles: OPERATORS, mutating: true },
  'SourceService.ListSources': { roles: USERS, mutating: false },
  'SourceService.GetSource': { roles: USERS, mutating: false },
  'SourceService.DeleteSource': { roles: OPERATORS, mutating: true },
  'SourceService.SyncSource': { roles: OPERATORS, mutating: true },
  ...artifactRules('ModelService'),
  'ModelService.SetRetention': { roles: OPERATORS, mutating: true },
  ...artifactRules('DatasetService'),
  // Users locate their tenant's versions; agents the blobs their node may fetch (the handler checks which).
  'DeliveryService.Locate': { roles: [...USERS, 'node'], mutating: false },
};

/**
 * Models and datasets: developers change their tenant's, consumers read them, agents fetch
 * blobs and push jobs' outputs — an output model, a partition's part of an output dataset
 * (coordinator/api/job-output-push.ts checks which).
 */
function artifactRules(service: string): Record<string, Rule> {
  return {
    [`${service}.Push`]: { roles: [...OPERATORS, 'node'], mutating: true },
    [`${service}.ListArtifacts`]: { roles: USERS, mutating: false },
    [`${service}.GetArtifact`]: { roles: USERS, mutating: false },
    [`${service}.Resolve`]: { roles: USERS, mutating: false },
    [`${service}.Download`]: { roles: [...USERS, 'node'], mutating: false },
    [`${service}.SetAlias`]: { roles: OPERATORS, mutating: true },
    [`${service}.DeleteVersion`]: { roles: OPERATORS, mutating: true },
  };
}
