// ClusterService: who leads, who else is there, and the store's state. Any coordinator answers.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../shared/log.js';
import type { ClusterStatus } from '../../shared/proto.js';
import { unary } from './rpc.js';
import { getClusterStatusSchema } from './schemas.js';

export interface ClusterServiceDeps {
  status(): Promise<ClusterStatus>;
  log: Logger;
}

export function clusterService(deps: ClusterServiceDeps): grpc.UntypedServiceImplementation {
  return {
    GetStatus: unary('GetStatus', getClusterStatusSchema, () => deps.status(), deps.log),
  };
}
