// How good a feasible node is for an ask; the highest score wins (ties: the node seen first in
// the call's shuffled order). The terms and their weights:
//
//   score = 1    × bin-pack     how full the node is after the placement, 0..1: for whole GPUs the
//                               share of its devices held; for a GPU-memory share how full the
//                               chosen device becomes; for CPU-only work the mean of CPU and memory
//                               utilisation. Packing keeps whole hosts (and whole devices) free
//                               for the large asks that need them.
//         + 0.75 × cached       the node's model cache holds the ask's modelDigest: no download.
//                               Below a full bin-pack term on purpose: a host the ask fills
//                               completely is worth more than a one-off download, since
//                               fragmentation lasts.
//         − 3    × replicas     replicas of the same workload already on the node (this plan's
//                               included). It outweighs every other term together (1 + 0.75 + 1),
//                               so replicas land on distinct nodes whenever the candidates allow.
//         − 1    × GPU host     a CPU-only ask on a host with GPUs. Bin-pack being at most 1, any
//                               CPU-only candidate comes first, unless the GPU host caches the
//                               ask's model and packs it better by more than 0.25: GPU hosts'
//                               CPU and memory are kept for the GPU work that can run nowhere else.
import { pickShareDevice } from './devices.js';
import type { NodeState } from './node-state.js';
import { replicasOn, type PreparedAsk } from './prepared-ask.js';

export const WEIGHTS = {
  binPack: 1,
  cached: 0.75,
  replica: 3,
  gpuHostForCpuWork: 1,
} as const;

export function binPack(ns: NodeState, p: PreparedAsk): number {
  if (p.gpus > 0) return (ns.deviceCount - ns.freeDevices + p.gpus) / ns.deviceCount;
  if (p.share) {
    const d = pickShareDevice(ns, p);
    return (ns.sharedBytes[d]! + p.gpuMemoryBytes) / ns.deviceMemory[d]!;
  }
  const node = ns.node;
  const cpu = node.cpuMillis > 0 ? (node.cpuMillis - ns.freeCpu + p.cpuMillis) / node.cpuMillis : 1;
  const memory = node.memoryBytes > 0 ? (node.memoryBytes - ns.freeMemory + p.memoryBytes) / node.memoryBytes : 1;
  return (cpu + memory) / 2;
}

export function score(ns: NodeState, p: PreparedAsk): number {
  let s = WEIGHTS.binPack * binPack(ns, p) - WEIGHTS.replica * replicasOn(p, ns.index);
  if (p.ask.modelDigest !== '' && ns.node.cached.has(p.ask.modelDigest)) s += WEIGHTS.cached;
  if (!p.wantsGpu && ns.deviceCount > 0) s -= WEIGHTS.gpuHostForCpuWork;
  return s;
}
