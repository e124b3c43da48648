// Which GPU devices of a node an ask gets. Whole devices are never shared: a whole-GPU ask takes
// only devices nobody holds in any way. A GPU-memory ask takes a share of one device nobody
// holds whole, bin-packed: the fullest device that still fits, so empty devices stay whole.
import type { NodeState } from './node-state.js';
import type { PreparedAsk } from './prepared-ask.js';

/** Why a node's GPUs cannot serve an ask. */
export const Shortage = {
  None: 0,
  /** Too few devices (of the model) free, or the node has too few at all. */
  Devices: 1,
  /** The devices are there, but too small (whole) or too full (share). */
  Memory: 2,
} as const;
export type Shortage = (typeof Shortage)[keyof typeof Shortage];

export function gpuShortage(ns: NodeState, p: PreparedAsk): Shortage {
  if (!p.wantsGpu) return Shortage.None;
  const models = ns.models;
  const memory = ns.deviceMemory;
  if (p.share) {
    let open = false;
    for (let d = 0; d < models.length; d++) {
      if (ns.wholeHolders[d] !== 0 || !models[d]!.includes(p.model)) continue;
      open = true;
      if (memory[d]! - ns.sharedBytes[d]! >= p.gpuMemoryBytes) return Shortage.None;
    }
    return open ? Shortage.Memory : Shortage.Devices;
  }
  let matching = 0;
  let bigEnough = 0;
  let free = 0;
  for (let d = 0; d < models.length; d++) {
    if (!models[d]!.includes(p.model)) continue;
    matching++;
    if (memory[d]! < p.gpuMemoryBytes) continue;
    bigEnough++;
    if (ns.deviceFree(d)) free++;
  }
  if (free >= p.gpus) return Shortage.None;
  // Enough devices of the model, but too small: memory is the answer that helps the reader.
  return bigEnough < p.gpus && matching >= p.gpus ? Shortage.Memory : Shortage.Devices;
}

/**
 * `p.gpus` free devices of the model with enough memory, smallest first (big devices stay for
 * asks that need them; a GPU-memory quota is charged the least), then by position.
 */
export function pickWholeDevices(ns: NodeState, p: PreparedAsk): number[] | undefined {
  const candidates: number[] = [];
  for (let d = 0; d < ns.models.length; d++) {
    if (ns.deviceFree(d) && ns.deviceMemory[d]! >= p.gpuMemoryBytes && ns.models[d]!.includes(p.model)) candidates.push(d);
  }
  if (candidates.length < p.gpus) return undefined;
  candidates.sort((a, b) => ns.deviceMemory[a]! - ns.deviceMemory[b]! || a - b);
  return candidates.slice(0, p.gpus);
}

/** The device for a GPU-memory share: the one left fullest after it (ties: lowest position), or -1. */
export function pickShareDevice(ns: NodeState, p: PreparedAsk): number {
  let best = -1;
  let bestLeft = Infinity;
  for (let d = 0; d < ns.models.length; d++) {
    if (ns.wholeHolders[d] !== 0 || !ns.models[d]!.includes(p.model)) continue;
    const left = ns.deviceMemory[d]! - ns.sharedBytes[d]! - p.gpuMemoryBytes;
    if (left >= 0 && left < bestLeft) {
      best = d;
      bestLeft = left;
    }
  }
  return best;
}

export function devicesMemory(ns: NodeState, devices: number[]): number {
  let sum = 0;
  for (const d of devices) sum += ns.deviceMemory[d]!;
  return sum;
}
