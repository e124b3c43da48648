// SelectionService: picks the best deployed, ready model of the caller's tenant (admins may
// name another) for criteria, with shared/selection.ts. The candidates are the tenant's
// deployments as the leader's workload controller holds them, each with its model version's
// metadata from the registry and the latest latency agents measured.
import type * as grpc from '@grpc/grpc-js';
import { parseRef } from '../../shared/artifact-ref.js';
import { MlfleetError } from '../../shared/errors.js';
import type { Deployment, SelectResponse } from '../../shared/proto.js';
import { select, type Candidate, type Criteria } from '../../shared/selection.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import type { WorkloadController } from '../workloads/controller.js';
import type { RpcEdge } from './rpc.js';
import { selectSchema } from './selection-schemas.js';
import { tenantOf } from './tenant-service.js';

export interface SelectionServiceDeps {
  edge: RpcEdge;
  /** The controller while this coordinator leads; throws NotLeaderError otherwise. */
  workloads(): WorkloadController;
  artifacts: ArtifactRegistry;
  /** A deployment's latest measured p50 latency in ms; undefined while not measured. */
  latencyOf(tenant: string, deployment: string): number | undefined;
}

export function selectionService(deps: SelectionServiceDeps): grpc.UntypedServiceImplementation {
  return {
    Select: deps.edge.unary('SelectionService.Select', selectSchema, async (request, { principal }): Promise<SelectResponse> => {
      const tenant = tenantOf(principal, request.tenant);
      const deployments = deps.workloads().listDeployments(tenant);
      const candidates = await Promise.all(deployments.map((d) => candidateOf(deps, tenant, d)));
      const criteria: Criteria = { ...request, prefer: request.prefer as Criteria['prefer'] };
      const { winner, reason, ranked } = select(candidates, criteria);
      return {
        deployment: winner.deployment,
        tenant,
        model: winner.model,
        version: winner.version,
        endpoints: winner.endpoints,
        reason,
        type: winner.type,
        inputFormat: winner.inputFormat,
        outputFormat: winner.outputFormat,
        candidates: ranked.map(({ candidate: c, score }) => ({
          deployment: c.deployment,
          model: c.model,
          version: c.version,
          accuracy: c.accuracy,
          latencyMs: c.latencyMs ?? 0,
          latencyMeasured: c.latencyMs !== undefined,
          score,
          readyReplicas: c.endpoints.length,
        })),
      };
    }),
  };
}

async function candidateOf(deps: SelectionServiceDeps, tenant: string, deployment: Deployment): Promise<Candidate> {
  const spec = deployment.spec!;
  const model = parseRef(spec.model).name;
  const version = deployment.resolvedVersion;
  const endpoints = deployment.allocations.filter((a) => a.status === 'ready' && a.endpoint !== '').map((a) => a.endpoint);
  let metadata;
  try {
    metadata = (await deps.artifacts.resolve('model', tenant, { name: model, version })).version.metadata;
  } catch (err) {
    // A version deleted under a deployment that no longer runs it: no metadata to match on.
    if (!(MlfleetError.is(err) && err.code === 'NOT_FOUND')) throw err;
  }
  return {
    deployment: spec.name,
    tenant,
    model,
    version,
    type: metadata?.type ?? '',
    inputFormat: metadata?.inputFormat ?? '',
    outputFormat: metadata?.outputFormat ?? '',
    accuracy: metadata?.accuracy ?? 0,
    latencyMs: deps.latencyOf(tenant, spec.name),
    endpoints,
    ready: deployment.readyReplicas > 0 && endpoints.length > 0,
  };
}
