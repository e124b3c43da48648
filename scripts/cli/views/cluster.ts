// The cluster as `mlfleetctl cluster status` shows it: the stable -o json shape and a table.
import type { ClusterStatus } from '../../../shared/proto.js';
import { keyValues, table, type Printable } from '../output.js';

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

export function clusterStatusView(status: ClusterStatus): Printable {
  const s = clusterStatusJson(status);
  return {
    data: s,
    table: () =>
      [
        keyValues([
          ['Leader', s.leader ?? '<none: an election is in progress>'],
          ['Store', s.store],
          ['Revision', String(s.revision)],
        ]),
        '',
        table(
          ['COORDINATOR', 'ROLE'],
          s.coordinators.map((c) => [c.address, c.role]),
        ),
      ].join('\n'),
  };
}
