// Whether an ask fits a node: a fixed list of small named checks, in order. A node that does not
// fit is counted under the FIRST check it fails, so a failure reads "0/12 nodes: 9 insufficient
// GPU memory, 3 cordoned" with every node counted once.
//
// The order: the node's state (ready, cordoned), then what the ask demands of the node whatever
// it runs (constraints, spread limit, GPU model), then free resources, then ports, then the
// tenant's GPU-memory quota (the one quota limit that depends on which devices a node offers).
// Static reasons come first because they are the ones a person can act on: "no GPU model "H100""
// says more than "insufficient CPU" about a CPU-only host.
import type { ClusterState } from './cluster-state.js';
import { devicesMemory, gpuShortage, pickWholeDevices, Shortage } from './devices.js';
import type { NodeState } from './node-state.js';
import { replicasOn, type PreparedAsk } from './prepared-ask.js';

export interface FeasibilityCheck {
  readonly name: string;
  fails(ns: NodeState, p: PreparedAsk, state: ClusterState): boolean;
  /** What the failure explanation says about a node that fails this check. */
  reason(p: PreparedAsk, ns: NodeState): string;
  /** The reason depends on the node, not only on the ask. */
  readonly perNode?: boolean;
}

function firstFailedConstraint(ns: NodeState, p: PreparedAsk): number {
  const labels = ns.node.labels;
  for (let i = 0; i < p.constraints.length; i++) {
    const [key, value] = p.constraints[i]!;
    if (!Object.hasOwn(labels, key) || labels[key] !== value) return i;
  }
  return -1;
}

export const checks: readonly FeasibilityCheck[] = [
  { name: 'ready', fails: (ns) => !ns.node.ready, reason: () => 'not ready' },
  { name: 'cordoned', fails: (ns) => ns.node.cordoned, reason: () => 'cordoned' },
  {
    name: 'constraints',
    fails: (ns, p) => p.constraints.length > 0 && firstFailedConstraint(ns, p) >= 0,
    reason: (p, ns) => {
      const [key, value] = p.constraints[firstFailedConstraint(ns, p)]!;
      return `constraint ${key}=${value}`;
    },
    perNode: true,
  },
  {
    name: 'max-per-node',
    fails: (ns, p) => p.maxPerNode > 0 && replicasOn(p, ns.index) >= p.maxPerNode,
    reason: (p) => `max ${p.maxPerNode} per node`,
  },
  {
    name: 'gpu-model',
    fails: (ns, p) => p.wantsGpu && p.model !== '' && !ns.hasModel(p.model),
    reason: (p) => `no GPU model "${p.ask.resources.gpuModel}"`,
  },
  { name: 'cpu', fails: (ns, p) => ns.freeCpu < p.cpuMillis, reason: () => 'insufficient CPU' },
  { name: 'memory', fails: (ns, p) => ns.freeMemory < p.memoryBytes, reason: () => 'insufficient memory' },
  { name: 'nic', fails: (ns, p) => ns.freeNic < p.nicMbps, reason: () => 'insufficient NIC bandwidth' },
  {
    name: 'gpus',
    fails: (ns, p) => p.wantsGpu && gpuShortage(ns, p) !== Shortage.None,
    reason: (p, ns) => (gpuShortage(ns, p) === Shortage.Memory ? 'insufficient GPU memory' : 'insufficient GPUs'),
    perNode: true,
  },
  {
    name: 'port',
    fails: (ns, p, state) => p.ask.needsPort && ns.portsInRange >= state.portCount,
    reason: () => 'no free port',
  },
  {
    name: 'gpu-memory-quota',
    fails: (ns, p) => p.gpus > 0 && p.gpuMemoryRoom !== Infinity && devicesMemory(ns, pickWholeDevices(ns, p)!) > p.gpuMemoryRoom,
    reason: () => "over the tenant's GPU memory quota",
  },
];

export const QUOTA_CHECK = checks.findIndex((c) => c.name === 'gpu-memory-quota');

/**
 * Whether `p` fits `ns`: always the same answer as `firstFailure(ns, p, state) < 0`, but in one
 * function and in the order that turns most nodes away soonest (free CPU and memory first). The
 * scans call this for every node they visit; only an ask that fits nowhere pays for the named
 * checks, to explain itself.
 */
export function fits(ns: NodeState, p: PreparedAsk, state: ClusterState): boolean {
  if (ns.freeCpu < p.cpuMillis || ns.freeMemory < p.memoryBytes || ns.freeNic < p.nicMbps || !ns.usable) return false;
  // A node without the model has no device that matches: gpuShortage() answers for both checks.
  if (p.wantsGpu && (p.gpus > ns.freeDevices || gpuShortage(ns, p) !== Shortage.None)) return false;
  if (p.constraints.length > 0 && firstFailedConstraint(ns, p) >= 0) return false;
  if (p.maxPerNode > 0 && replicasOn(p, ns.index) >= p.maxPerNode) return false;
  if (p.ask.needsPort && ns.portsInRange >= state.portCount) return false;
  if (p.gpus > 0 && p.gpuMemoryRoom !== Infinity && devicesMemory(ns, pickWholeDevices(ns, p)!) > p.gpuMemoryRoom) return false;
  return true;
}

/** The index in `checks` of the first check `ns` fails, or -1 when the ask fits. */
export function firstFailure(ns: NodeState, p: PreparedAsk, state: ClusterState): number {
  for (let i = 0; i < checks.length; i++) if (checks[i]!.fails(ns, p, state)) return i;
  return -1;
}

/** Counts nodes by reason: "0/12 nodes: 9 insufficient GPU memory, 3 cordoned". */
export class Explanation {
  /** Per check, the nodes failing it first (checks whose reason does not depend on the node). */
  private readonly byCheck = new Int32Array(checks.length);
  private readonly example: Array<NodeState | undefined> = new Array(checks.length);
  private readonly byReason = new Map<string, { count: number; check: number }>();

  constructor(private readonly p: PreparedAsk) {}

  add(check: number, ns: NodeState, count = 1): void {
    if (!checks[check]!.perNode) {
      this.byCheck[check]! += count;
      this.example[check] ??= ns;
      return;
    }
    const reason = checks[check]!.reason(this.p, ns);
    const entry = this.byReason.get(reason);
    if (entry) entry.count += count;
    else this.byReason.set(reason, { count, check });
  }

  /** Reasons by count, most first; ties in check order, then by name. */
  toString(total: number): string {
    const entries = [...this.byReason].map(([reason, { count, check }]) => ({ reason, count, check }));
    this.byCheck.forEach((count, check) => {
      if (count > 0) entries.push({ reason: checks[check]!.reason(this.p, this.example[check]!), count, check });
    });
    const parts = entries
      .sort((x, y) => y.count - x.count || x.check - y.check || (x.reason < y.reason ? -1 : x.reason > y.reason ? 1 : 0))
      .map(({ reason, count }) => `${count} ${reason}`);
    return `0/${total} nodes: ${parts.join(', ') || 'none in the cluster'}`;
  }
}
