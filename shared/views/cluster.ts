// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/cluster.ts, which keeps the table and detail renderings.
import type { ClusterStatus } from '../proto.js';

export interface ClusterStatusJson {
  /** The leader's advertised address; null while an election is on. */
  leader: string | null;
  coordinators: { address: string; role: string }[];
  store: string;
  revision: number;
}

export function clusterStatusJson(status: ClusterStatus): ClusterStatusJson {
  return {
    leader: status.leader || null,
    coordinators: status.coordinators.map((c) => ({ address: c.address, role: c.role })),
    store: status.store,
    revision: status.revision,
  };
}
