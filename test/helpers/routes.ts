// Routing tables as the leader sends them to gateways, for tests and benchmarks that feed a
// Gateway directly: every field of ModelRoute and RouteEndpoint filled, defaults for the rest.
import type { ModelRoute__Output as ModelRoute } from '../../shared/gen/mlfleet/v1/ModelRoute.js';

export type { ModelRoute };

export interface EndpointInput {
  id: string;
  address: string;
  node?: string;
  version?: number;
  /** Default: the route's deployment. */
  deployment?: string;
  public?: boolean;
  maxRequestBytes?: number;
  canary?: boolean;
}

/** One model's route; `fields` (deployment defaults to the model's name) override the defaults. */
export function modelRoute(tenant: string, model: string, endpoints: EndpointInput[], fields: Partial<ModelRoute> = {}): ModelRoute {
  const deployment = fields.deployment ?? model;
  return {
    tenant,
    model,
    endpoints: endpoints.map((e) => ({
      allocation: e.id,
      node: e.node ?? 'here',
      address: e.address,
      version: e.version ?? 1,
      deployment: e.deployment ?? deployment,
      gateway: '',
      public: e.public ?? false,
      maxRequestBytes: e.maxRequestBytes ?? 0,
      canary: e.canary ?? false,
    })),
    type: '',
    inputFormat: '',
    outputFormat: '',
    accuracy: 0,
    latencyP50Ms: 0,
    deployment,
    holds: false,
    public: false,
    maxRequestBytes: 0,
    canaryPercent: 0,
    ...fields,
  };
}
