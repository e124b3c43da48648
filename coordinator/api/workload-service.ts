// DeploymentService, JobService and AllocationService: thin edges over the leader's workload
// controller. Every call acts in the caller's tenant (admins may name another); another
// tenant's deployment, job or allocation answers NOT_FOUND.
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { FailedPreconditionError, PermissionDeniedError } from '../../shared/errors.js';
import type { JobSpec } from '../../shared/proto.js';
import type { NodeRegistry } from '../node-registry.js';
import type { WorkloadController } from '../workloads/controller.js';
import type { LogRelay } from '../workloads/log-relay.js';
import { toAllocationInfo } from '../workloads/records.js';
import { drainedOrCancelled, type RpcEdge } from './rpc.js';
import { listScope, tenantOf } from './tenant-service.js';
import {
  applyDeploymentSchema,
  getLogsSchema,
  listAllocationsSchema,
  listWorkloadsSchema,
  runJobSchema,
  scaleDeploymentSchema,
  workloadRefSchema,
} from './workload-schemas.js';

export interface WorkloadServiceDeps {
  edge: RpcEdge;
  /** The controller while this coordinator leads; throws NotLeaderError otherwise. */
  workloads(): WorkloadController;
  registry(): NodeRegistry;
  logs: LogRelay;
}

/** How long a logs call waits for the agent's first answer. */
const LOGS_ANSWER_TIMEOUT_MS = 15_000;

export function deploymentService(deps: WorkloadServiceDeps): grpc.UntypedServiceImplementation {
  const { edge } = deps;
  return {
    ApplyDeployment: edge.unary(
      'DeploymentService.ApplyDeployment',
      applyDeploymentSchema,
      async ({ spec, tenant }, { principal }) => (await deps.workloads().applyDeployment(tenantOf(principal, tenant), spec!)).deployment,
      ({ spec }) => `deployment/${spec?.name ?? ''}`,
    ),
    ListDeployments: edge.unary('DeploymentService.ListDeployments', listWorkloadsSchema, async ({ tenant }, { principal }) => ({
      deployments: deps.workloads().listDeployments(listScope(principal, tenant)),
    })),
    GetDeployment: edge.unary('DeploymentService.GetDeployment', workloadRefSchema, async ({ name, tenant }, { principal }) =>
      deps.workloads().getDeployment(tenantOf(principal, tenant), name),
    ),
    PromoteDeployment: edge.unary(
      'DeploymentService.PromoteDeployment',
      workloadRefSchema,
      async ({ name, tenant }, { principal }) => deps.workloads().promoteDeployment(tenantOf(principal, tenant), name),
      ({ name }) => `deployment/${name}`,
    ),
    RollbackDeployment: edge.unary(
      'DeploymentService.RollbackDeployment',
      workloadRefSchema,
      async ({ name, tenant }, { principal }) => deps.workloads().rollbackDeployment(tenantOf(principal, tenant), name),
      ({ name }) => `deployment/${name}`,
    ),
    ScaleDeployment: edge.unary(
      'DeploymentService.ScaleDeployment',
      scaleDeploymentSchema,
      async ({ name, replicas, tenant }, { principal }) => deps.workloads().scaleDeployment(tenantOf(principal, tenant), name, replicas),
      ({ name }) => `deployment/${name}`,
    ),
    DeleteDeployment: edge.unary(
      'DeploymentService.DeleteDeployment',
      workloadRefSchema,
      async ({ name, tenant }, { principal }) => {
        await deps.workloads().deleteDeployment(tenantOf(principal, tenant), name);
        return {};
      },
      ({ name }) => `deployment/${name}`,
    ),
  };
}

export function jobService(deps: WorkloadServiceDeps): grpc.UntypedServiceImplementation {
  const { edge } = deps;
  return {
    RunJob: edge.unary(
      'JobService.RunJob',
      runJobSchema,
      async ({ spec, tenant }, { principal }) => {
        const jobTenant = tenantOf(principal, tenant);
        return deps.workloads().runJob(jobTenant, inOwnTenant(jobTenant, spec!));
      },
      ({ spec }) => `job/${spec?.name ?? ''}`,
    ),
    ListJobs: edge.unary('JobService.ListJobs', listWorkloadsSchema, async ({ tenant }, { principal }) => ({
      jobs: deps.workloads().listJobs(listScope(principal, tenant)),
    })),
    GetJob: edge.unary('JobService.GetJob', workloadRefSchema, async ({ name, tenant }, { principal }) => deps.workloads().getJob(tenantOf(principal, tenant), name)),
    CancelJob: edge.unary(
      'JobService.CancelJob',
      workloadRefSchema,
      async ({ name, tenant }, { principal }) => deps.workloads().cancelJob(tenantOf(principal, tenant), name),
      ({ name }) => `job/${name}`,
    ),
  };
}

/**
 * A job writes only into its own tenant: an output dataset named TENANT/NAME is refused for any
 * other tenant (whoever asks, admins included: they run the job in that tenant instead), and is
 * plain NAME for the job's own.
 */
function inOwnTenant(tenant: string, spec: JobSpec): JobSpec {
  const slash = spec.outputDataset.indexOf('/');
  if (slash < 0) return spec;
  const named = spec.outputDataset.slice(0, slash);
  if (named !== tenant) {
    throw new PermissionDeniedError(`job "${spec.name}" runs in tenant "${tenant}" and writes only that tenant's datasets, not "${spec.outputDataset}" of tenant "${named}"; name a dataset without a tenant, or run the job in tenant "${named}"`);
  }
  return { ...spec, outputDataset: spec.outputDataset.slice(slash + 1) };
}

export function allocationService(deps: WorkloadServiceDeps): grpc.UntypedServiceImplementation {
  const { edge } = deps;
  return {
    ListAllocations: edge.unary('AllocationService.ListAllocations', listAllocationsSchema, async ({ tenant, node, workload, all }, { principal }) => ({
      allocations: deps.workloads().listAllocations({ tenant: listScope(principal, tenant), node, workload, all }).map(toAllocationInfo),
    })),
    GetLogs: edge.serverStream('AllocationService.GetLogs', getLogsSchema, async ({ allocation, tailBytes, follow }, { principal }, call) => {
      const record = deps.workloads().findAllocation(allocation, principal.role === 'admin' ? undefined : principal.tenant);
      const registry = deps.registry();
      const commandId = randomUUID();
      await new Promise<void>((resolve, reject) => {
        let answered = false;
        let writing = Promise.resolve();
        const timer = setTimeout(() => {
          if (answered) return;
          finish(new FailedPreconditionError(`node ${record.node} did not answer with the logs of ${record.id} within ${LOGS_ANSWER_TIMEOUT_MS / 1000}s; is its agent up?`));
        }, LOGS_ANSWER_TIMEOUT_MS);
        const unregister = deps.logs.expect(record.node, commandId, {
          data: (chunk) => {
            answered = true;
            writing = writing.then(async () => {
              if (!call.write({ data: chunk })) await drainedOrCancelled(call);
            });
          },
          end: (error) => {
            answered = true;
            void writing.then(() => finish(error));
          },
        });
        const onCancel = () => {
          finish();
          try {
            registry.command(record.node, { id: randomUUID(), cancelLogs: { commandId } });
          } catch {
            // The node is gone: nothing to cancel there.
          }
        };
        call.on('cancelled', onCancel);
        function finish(error?: Error) {
          clearTimeout(timer);
          unregister();
          call.off('cancelled', onCancel);
          if (error) reject(error);
          else resolve();
        }
        try {
          registry.command(record.node, { id: commandId, logs: { allocation: record.id, tailBytes, follow } });
        } catch (err) {
          finish(err as Error);
        }
      });
    }),
  };
}
