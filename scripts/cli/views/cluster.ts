// The cluster as `mlfleetctl cluster status` shows it: the stable -o json shape and a table.
import type { ClusterStatus } from '../../../shared/proto.js';
import { keyValues, table, type Printable } from '../output.js';
import { clusterStatusJson, type ClusterStatusJson } from '../../../shared/views/cluster.js';

export { clusterStatusJson, type ClusterStatusJson };

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
