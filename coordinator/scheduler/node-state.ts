// One node as the scheduler sees it during a single schedule() call: what is free now (CPU,
// memory, NIC bandwidth), who holds each GPU device (whole or by memory shares), which host
// ports are taken. Starts from the snapshot's NodeLoad, then changes in place as the plan grows
// (ClusterState journals every change).
import type { NodeLoad } from './node-load.js';
import type { SchedAllocation, SchedNode } from './types.js';

/** What one allocation or placement holds on its node. Device numbers are positions in `node.gpus`. */
export interface Holding {
  cpuMillis: number;
  memoryBytes: number;
  nicMbps: number;
  /** Whole devices, or (shareBytes > 0) the one device shared. */
  devices: number[];
  shareBytes: number;
  /** 0: none. */
  hostPort: number;
}

/** An allocation of the snapshot, indexed on its node. */
export interface HeldAllocation extends Holding {
  readonly alloc: SchedAllocation;
  /** What it counts against a GPU-memory quota: its whole devices' memory, or its share. */
  readonly gpuMemoryBytes: number;
  /** Stopped by this plan (see preemption.ts for what that frees, and for whom). */
  evicted: boolean;
}

const NO_DEVICES: number[] = [];

export class NodeState {
  readonly node: SchedNode;
  /** Position in ClusterState.nodes. */
  readonly index: number;
  /** Ready and not cordoned (copied here: the scans read it for every node they visit). */
  readonly usable: boolean;
  freeCpu: number;
  freeMemory: number;
  /** Infinity when the node's bandwidth is unknown (then it is not checked). */
  freeNic: number;
  /** Per device, by position: model in lower case, memory, holders. */
  readonly models: readonly string[];
  readonly deviceMemory: readonly number[];
  /** Whole holders (more than one only while a preempted allocation's hold lingers, see preemption.ts). */
  readonly wholeHolders: number[];
  readonly sharedBytes: number[];
  readonly shareHolders: number[];
  /** Devices with no holder at all: the ones a whole-GPU ask may take. */
  freeDevices: number;
  /** The snapshot's allocations here (the index's: not changed). */
  readonly allocations: readonly SchedAllocation[];
  private held: HeldAllocation[] | undefined;
  /** Holders per host port; made on first use from `allocations` (most nodes never need it). */
  private ports: Map<number, number> | undefined;
  /** Ports of the scheduler's range in use here. */
  portsInRange: number;

  constructor(load: NodeLoad, index: number) {
    this.node = load.node;
    this.index = index;
    this.usable = load.node.ready && !load.node.cordoned;
    this.freeCpu = load.freeCpu;
    this.freeMemory = load.freeMemory;
    this.freeNic = load.freeNic;
    this.models = load.models;
    this.deviceMemory = load.deviceMemory;
    const gpus = load.models.length > 0;
    this.wholeHolders = gpus ? load.wholeHolders.slice() : NO_DEVICES;
    this.sharedBytes = gpus ? load.sharedBytes.slice() : NO_DEVICES;
    this.shareHolders = gpus ? load.shareHolders.slice() : NO_DEVICES;
    this.freeDevices = load.freeDevices;
    this.allocations = load.allocations;
    this.portsInRange = load.portsInRange;
  }

  get deviceCount(): number {
    return this.models.length;
  }

  /** The position of the device with nvidia-smi index `index`, or -1. */
  position(index: number): number {
    const gpus = this.node.gpus;
    if (gpus[index]?.index === index) return index;
    return gpus.findIndex((g) => g.index === index);
  }

  /** The device indexes (as the agent knows them) of device positions. */
  indexes(devices: number[]): number[] {
    return devices.map((d) => this.node.gpus[d]!.index);
  }

  hasModel(model: string): boolean {
    for (const m of this.models) if (m.includes(model)) return true;
    return false;
  }

  deviceFree(d: number): boolean {
    return this.wholeHolders[d] === 0 && this.shareHolders[d] === 0;
  }

  /** The snapshot's allocations here, as holdings (made on first use: only preemption needs them). */
  heldAllocations(): HeldAllocation[] {
    this.held ??= this.allocations.map((alloc) => {
      const r = alloc.resources;
      const share = r.gpus === 0 && r.gpuMemoryBytes > 0;
      const devices = (share ? alloc.gpuIndexes.slice(0, 1) : alloc.gpuIndexes).map((i) => this.position(i)).filter((d) => d >= 0);
      return {
        alloc,
        cpuMillis: r.cpuMillis,
        memoryBytes: r.memoryBytes,
        nicMbps: r.nicMbps,
        devices,
        shareBytes: share && devices.length > 0 ? r.gpuMemoryBytes : 0,
        hostPort: alloc.hostPort,
        gpuMemoryBytes: share ? r.gpuMemoryBytes : devices.reduce((sum, d) => sum + this.deviceMemory[d]!, 0),
        evicted: false,
      };
    });
    return this.held;
  }

  /** Adds (sign 1) or removes (sign -1) a holding's resources; its port only when `withPort`. */
  hold(h: Holding, sign: 1 | -1, withPort: boolean, portRange: readonly [number, number]): void {
    this.freeCpu -= sign * h.cpuMillis;
    this.freeMemory -= sign * h.memoryBytes;
    if (this.freeNic !== Infinity) this.freeNic -= sign * h.nicMbps;
    if (h.shareBytes > 0) {
      const d = h.devices[0]!;
      const wasFree = this.deviceFree(d);
      this.sharedBytes[d]! += sign * h.shareBytes;
      this.shareHolders[d]! += sign;
      this.freeDevices += Number(this.deviceFree(d)) - Number(wasFree);
    } else {
      for (const d of h.devices) {
        const wasFree = this.deviceFree(d);
        this.wholeHolders[d]! += sign;
        this.freeDevices += Number(this.deviceFree(d)) - Number(wasFree);
      }
    }
    if (withPort && h.hostPort > 0) this.holdPort(h.hostPort, sign, portRange);
  }

  private holdPort(port: number, sign: 1 | -1, range: readonly [number, number]): void {
    const ports = this.portHolders(range);
    const count = (ports.get(port) ?? 0) + sign;
    if (count === 0) ports.delete(port);
    else ports.set(port, count);
    const inRange = port >= range[0] && port <= range[1];
    if (inRange && ((sign === 1 && count === 1) || (sign === -1 && count === 0))) this.portsInRange += sign;
  }

  private portHolders([first, last]: readonly [number, number]): Map<number, number> {
    if (this.ports === undefined) {
      this.ports = new Map();
      this.portsInRange = 0;
      for (const { hostPort } of this.allocations) {
        if (hostPort <= 0) continue;
        const count = (this.ports.get(hostPort) ?? 0) + 1;
        this.ports.set(hostPort, count);
        if (count === 1 && hostPort >= first && hostPort <= last) this.portsInRange++;
      }
    }
    return this.ports;
  }

  /**
   * A port of the range nobody holds here, or 0. The search starts at a point the ask's id
   * hashes to (wrapping around), as Nomad picks dynamic ports at random: a replacement for an
   * allocation that failed on its port (taken by something outside mlfleet, or by another agent
   * on the same machine) is a new ask and tries elsewhere in the range, not the same port again.
   */
  freePort(range: readonly [number, number], askId: string): number {
    const ports = this.portHolders(range);
    const size = range[1] - range[0] + 1;
    const start = fnv1a(askId) % size;
    for (let i = 0; i < size; i++) {
      const port = range[0] + ((start + i) % size);
      if (!ports.has(port)) return port;
    }
    return 0;
  }
}

/** 32-bit FNV-1a: a cheap, stable spread of ids over a range. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
