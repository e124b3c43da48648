// An ask with what the hot loops need worked out once: numbers pulled out of `resources`, the
// GPU model in lower case, constraints as pairs. The checks, scoring and device choice read this.
import type { Ask } from './types.js';

export interface PreparedAsk {
  readonly ask: Ask;
  /** Position in the asks given to schedule(): the tie-break after priority. */
  readonly order: number;
  readonly cpuMillis: number;
  readonly memoryBytes: number;
  readonly nicMbps: number;
  /** Whole devices. */
  readonly gpus: number;
  /** Least memory per whole device, or the size of the share. */
  readonly gpuMemoryBytes: number;
  /** A share of one device's memory rather than whole devices. */
  readonly share: boolean;
  readonly wantsGpu: boolean;
  /** Lower case; '' matches any model. */
  readonly model: string;
  readonly constraints: ReadonlyArray<readonly [string, string]>;
  readonly maxPerNode: number;
  /** GPU memory the tenant's quota still allows (Infinity: no limit); set before each attempt. */
  gpuMemoryRoom: number;
  /** Node position → replicas of the ask's workload there; set before each attempt. */
  replicas: ReadonlyMap<number, number> | undefined;
}

/** Replicas of the ask's workload on `node` (a position in ClusterState.nodes). */
export function replicasOn(p: PreparedAsk, node: number): number {
  return p.replicas === undefined ? 0 : (p.replicas.get(node) ?? 0);
}

export function prepareAsk(ask: Ask, order: number): PreparedAsk {
  const r = ask.resources;
  const share = r.gpus === 0 && r.gpuMemoryBytes > 0;
  return {
    ask,
    order,
    cpuMillis: r.cpuMillis,
    memoryBytes: r.memoryBytes,
    nicMbps: r.nicMbps,
    gpus: r.gpus,
    gpuMemoryBytes: r.gpuMemoryBytes,
    share,
    wantsGpu: r.gpus > 0 || share,
    model: r.gpuModel.toLowerCase(),
    constraints: Object.entries(ask.constraints),
    maxPerNode: ask.maxPerNode,
    gpuMemoryRoom: Infinity,
    replicas: undefined,
  };
}
