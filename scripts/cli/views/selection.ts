// A model selection as mlfleetctl shows it: -o json is the SelectResponse in camelCase (the
// winner, why, and every eligible candidate with its score, best first); the table says who won
// and why, then how each candidate scored.
import type { SelectResponse } from '../../../shared/proto.js';
import { formatMs } from '../../../shared/selection.js';
import { keyValues, table, type Printable } from '../output.js';
import { selectionJson, type SelectionJson } from '../../../shared/views/selection.js';

export { selectionJson, type SelectionJson };

export function selectionView(response: SelectResponse): Printable {
  const s = selectionJson(response);
  return {
    data: s,
    table: () =>
      [
        keyValues([
          ['Deployment', s.deployment],
          ['Model', `${s.model}:${s.version} (${[s.type, s.inputFormat && `${s.inputFormat} in`, s.outputFormat && `${s.outputFormat} out`].filter(Boolean).join(', ')})`],
          ['Tenant', s.tenant],
          ['Endpoints', s.endpoints.join(', ')],
          ['Why', s.reason],
        ]),
        '',
        table(
          ['DEPLOYMENT', 'MODEL', 'SCORE', 'P50', 'ACCURACY', 'READY'],
          s.candidates.map((c) => [
            c.deployment,
            `${c.model}:${c.version}`,
            c.score.toFixed(2),
            c.latencyMs === null ? 'not measured' : formatMs(c.latencyMs),
            c.accuracy > 0 ? String(c.accuracy) : 'unknown',
            String(c.readyReplicas),
          ]),
        ),
      ].join('\n'),
  };
}
