// What a snapshot's allocations hold on one node: free CPU, memory and NIC bandwidth, the
// holders of each GPU device, ports in use, and the allocations themselves. A ClusterIndex keeps one per node; each schedule() call starts its own mutable
// NodeState from it. Once built, a NodeLoad is not changed: a new snapshot gets copies of the
// nodes it changed (ClusterIndex.derive).
import type { SchedAllocation, SchedNode } from './types.js';

export class NodeLoad {
  readonly node: SchedNode;
  /** Per device, by position: model in lower case, and memory. Never change. */
  readonly models: readonly string[];
  readonly deviceMemory: readonly number[];
  freeCpu: number;
  freeMemory: number;
  /** Infinity when the node's bandwidth is unknown (then it is not checked). */
  freeNic: number;
  readonly wholeHolders: number[];
  readonly sharedBytes: number[];
  readonly shareHolders: number[];
  /** Devices with no holder at all. */
  freeDevices: number;
  /** Allocations with a port of the scheduler's range. */
  portsInRange: number;
  readonly allocations: SchedAllocation[];

  private constructor(from: NodeLoad | SchedNode) {
    if (from instanceof NodeLoad) {
      this.node = from.node;
      this.models = from.models;
      this.deviceMemory = from.deviceMemory;
      this.freeCpu = from.freeCpu;
      this.freeMemory = from.freeMemory;
      this.freeNic = from.freeNic;
      this.wholeHolders = from.wholeHolders.slice();
      this.sharedBytes = from.sharedBytes.slice();
      this.shareHolders = from.shareHolders.slice();
      this.freeDevices = from.freeDevices;
      this.portsInRange = from.portsInRange;
      this.allocations = from.allocations.slice();
      return;
    }
    const node = from;
    this.node = node;
    this.models = node.gpus.map((g) => g.model.toLowerCase());
    this.deviceMemory = node.gpus.map((g) => g.memoryBytes);
    this.freeCpu = node.cpuMillis;
    this.freeMemory = node.memoryBytes;
    this.freeNic = node.nicMbps > 0 ? node.nicMbps : Infinity;
    this.wholeHolders = new Array<number>(node.gpus.length).fill(0);
    this.sharedBytes = new Array<number>(node.gpus.length).fill(0);
    this.shareHolders = new Array<number>(node.gpus.length).fill(0);
    this.freeDevices = node.gpus.length;
    this.portsInRange = 0;
    this.allocations = [];
  }

  /** A node nothing runs on. */
  static empty(node: SchedNode): NodeLoad {
    return new NodeLoad(node);
  }

  /** An independent copy, to change for a new snapshot. */
  copy(): NodeLoad {
    return new NodeLoad(this);
  }

  /** The position of the device with nvidia-smi index `index`, or -1. */
  position(index: number): number {
    const gpus = this.node.gpus;
    if (gpus[index]?.index === index) return index;
    return gpus.findIndex((g) => g.index === index);
  }

  /**
   * Adds (sign 1) or removes (sign -1) what `alloc` holds; returns what it counts against a
   * GPU-memory quota (its whole devices' memory, or its share).
   */
  add(alloc: SchedAllocation, sign: 1 | -1, [first, last]: readonly [number, number]): number {
    const r = alloc.resources;
    if (sign === 1) {
      this.allocations.push(alloc);
    } else {
      const at = this.allocations.indexOf(alloc);
      if (at >= 0) this.allocations.splice(at, 1);
    }
    this.freeCpu -= sign * r.cpuMillis;
    this.freeMemory -= sign * r.memoryBytes;
    if (this.freeNic !== Infinity) this.freeNic -= sign * r.nicMbps;
    if (alloc.hostPort >= first && alloc.hostPort <= last) this.portsInRange += sign;
    if (r.gpus === 0 && r.gpuMemoryBytes > 0) {
      const d = alloc.gpuIndexes.length > 0 ? this.position(alloc.gpuIndexes[0]!) : -1;
      if (d >= 0) {
        const wasFree = this.wholeHolders[d] === 0 && this.shareHolders[d] === 0;
        this.sharedBytes[d]! += sign * r.gpuMemoryBytes;
        this.shareHolders[d]! += sign;
        this.freeDevices += Number(this.wholeHolders[d] === 0 && this.shareHolders[d] === 0) - Number(wasFree);
      }
      return r.gpuMemoryBytes;
    }
    let gpuMemoryBytes = 0;
    for (const index of alloc.gpuIndexes) {
      const d = this.position(index);
      if (d < 0) continue;
      const wasFree = this.wholeHolders[d] === 0 && this.shareHolders[d] === 0;
      this.wholeHolders[d]! += sign;
      this.freeDevices += Number(this.wholeHolders[d] === 0 && this.shareHolders[d] === 0) - Number(wasFree);
      gpuMemoryBytes += this.deviceMemory[d]!;
    }
    return gpuMemoryBytes;
  }
}
