// ClusterService: who leads, who else is there, and the store's state. Any coordinator answers.
import type * as grpc from '@grpc/grpc-js';
import type { ClusterStatus } from '../../shared/proto.js';
import type { RpcEdge } from './rpc.js';
import { getClusterStatusSchema } from './schemas.js';

export function clusterService(deps: { edge: RpcEdge; status(): Promise<ClusterStatus> }): grpc.UntypedServiceImplementation {
  return {
    GetStatus: deps.edge.unary('ClusterService.GetStatus', getClusterStatusSchema, () => deps.status()),
  };
}
