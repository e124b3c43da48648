// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/selection.ts, which keeps the table and detail renderings.
import type { SelectResponse } from '../proto.js';

export interface SelectionJson {
  deployment: string;
  tenant: string;
  model: string;
  version: number;
  type: string;
  inputFormat: string;
  outputFormat: string;
  endpoints: string[];
  reason: string;
  candidates: Array<{
    deployment: string;
    model: string;
    version: number;
    accuracy: number;
    /** null: not measured yet. */
    latencyMs: number | null;
    score: number;
    readyReplicas: number;
  }>;
}

export function selectionJson(r: SelectResponse): SelectionJson {
  return {
    deployment: r.deployment,
    tenant: r.tenant,
    model: r.model,
    version: r.version,
    type: r.type,
    inputFormat: r.inputFormat,
    outputFormat: r.outputFormat,
    endpoints: [...r.endpoints],
    reason: r.reason,
    candidates: r.candidates.map((c) => ({
      deployment: c.deployment,
      model: c.model,
      version: c.version,
      accuracy: c.accuracy,
      latencyMs: c.latencyMeasured ? c.latencyMs : null,
      score: c.score,
      readyReplicas: c.readyReplicas,
    })),
  };
}
