// Synthetic clusters for the scheduler: one-line builders for nodes, asks, allocations and
// snapshots, a seeded heterogeneous fleet and workload mix (shared by the tests and the
// scheduler benchmark), and the invariant every plan must keep: applied to its snapshot, it
// over-commits nothing. The checker is written independently of the scheduler's own
// bookkeeping, so a bug there cannot hide itself here.
import assert from 'node:assert/strict';
import { seededRandom, type Random } from '../../shared/clock.js';
import { applyPlan, schedule, type ScheduleOptions } from '../../coordinator/scheduler/scheduler.js';
import type { Ask, Plan, SchedAllocation, SchedGpu, SchedNode, Snapshot, TenantQuota } from '../../coordinator/scheduler/types.js';

export const GiB = 2 ** 30;
export const PORT_RANGE: [number, number] = [30000, 32767];

export const H100 = { model: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * GiB };
export const A100 = { model: 'NVIDIA A100-SXM4-40GB', memoryBytes: 40 * GiB };
export const L4 = { model: 'NVIDIA L4', memoryBytes: 24 * GiB };
export const A10G = { model: 'NVIDIA A10G', memoryBytes: 24 * GiB };

export interface GpuSpec {
  model: string;
  memoryBytes: number;
}

/** `count` devices of one kind: `gpus(8, H100)`. */
export function gpus(count: number, spec: GpuSpec): GpuSpec[] {
  return Array.from({ length: count }, () => ({ ...spec }));
}

export interface NodeOptions {
  /** Cores. Default 32. */
  cpu?: number;
  /** Bytes. Default 128 GiB. */
  memory?: number;
  gpus?: GpuSpec[];
  labels?: Record<string, string>;
  ready?: boolean;
  cordoned?: boolean;
  /** 0: unknown. Default 0. */
  nicMbps?: number;
  cached?: string[];
}

export function node(name: string, options: NodeOptions = {}): SchedNode {
  return {
    name,
    ready: options.ready ?? true,
    cordoned: options.cordoned ?? false,
    labels: options.labels ?? {},
    cpuMillis: Math.round((options.cpu ?? 32) * 1000),
    memoryBytes: options.memory ?? 128 * GiB,
    gpus: (options.gpus ?? []).map((g, index): SchedGpu => ({ index, model: g.model, memoryBytes: g.memoryBytes })),
    nicMbps: options.nicMbps ?? 0,
    cached: new Set(options.cached ?? []),
  };
}

/** `count` identical nodes named prefix-0, prefix-1, …: `nodes(100, {gpus: gpus(8, H100)})`. */
export function nodes(count: number, options: NodeOptions = {}, prefix = 'node'): SchedNode[] {
  return Array.from({ length: count }, (_, i) => node(`${prefix}-${i}`, options));
}

export interface AskOptions {
  /** Cores. Default 1. */
  cpu?: number;
  /** Bytes. Default 1 GiB. */
  memory?: number;
  gpus?: number;
  gpuMemory?: number;
  gpuModel?: string;
  nicMbps?: number;
  tenant?: string;
  workload?: string;
  priority?: number;
  constraints?: Record<string, string>;
  maxPerNode?: number;
  modelDigest?: string;
  needsPort?: boolean;
  group?: string;
  preempt?: boolean;
}

export function ask(id: string, options: AskOptions = {}): Ask {
  const tenant = options.tenant ?? 't';
  return {
    id,
    workload: options.workload ?? `job/${tenant}/${id}`,
    tenant,
    priority: options.priority ?? 0,
    resources: {
      cpuMillis: Math.round((options.cpu ?? 1) * 1000),
      memoryBytes: options.memory ?? GiB,
      gpus: options.gpus ?? 0,
      gpuMemoryBytes: options.gpuMemory ?? 0,
      gpuModel: options.gpuModel ?? '',
      nicMbps: options.nicMbps ?? 0,
    },
    constraints: options.constraints ?? {},
    maxPerNode: options.maxPerNode ?? 0,
    modelDigest: options.modelDigest ?? '',
    needsPort: options.needsPort ?? false,
    group: options.group ?? '',
    preempt: options.preempt ?? false,
  };
}

/** `count` asks named prefix-0, … of one workload (replicas): `asks(3, {workload: 'deployment/t/web'})`. */
export function asks(count: number, options: AskOptions = {}, prefix = 'ask'): Ask[] {
  return Array.from({ length: count }, (_, i) => ask(`${prefix}-${i}`, options));
}

/** Something already running on `nodeName`, holding what an ask with `options` would. */
export function allocation(id: string, nodeName: string, options: AskOptions & { gpuIndexes?: number[]; hostPort?: number } = {}): SchedAllocation {
  const a = ask(id, options);
  return {
    id,
    node: nodeName,
    tenant: a.tenant,
    workload: a.workload,
    priority: a.priority,
    resources: a.resources,
    gpuIndexes: options.gpuIndexes ?? [],
    hostPort: options.hostPort ?? 0,
  };
}

export function quota(limits: Partial<TenantQuota>): TenantQuota {
  return { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, ...limits };
}

export function snapshot(parts: {
  nodes: SchedNode[];
  allocations?: SchedAllocation[];
  quotas?: Record<string, Partial<TenantQuota>>;
  portRange?: [number, number];
}): Snapshot {
  return {
    nodes: parts.nodes,
    allocations: parts.allocations ?? [],
    quotas: new Map(Object.entries(parts.quotas ?? {}).map(([tenant, limits]) => [tenant, quota(limits)])),
    portRange: parts.portRange ?? PORT_RANGE,
  };
}

// ---- A seeded fleet and workload mix (tests and bench/scheduler.ts) ----

const ZONES = ['a', 'b', 'c', 'd'];
export const MODEL_DIGESTS = Array.from({ length: 16 }, (_, i) => `sha256:${String(i).padStart(64, '0')}`);

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

/**
 * `n` hosts: 40% CPU-only (32–96 cores), 12% 8×H100 80GB, 18% 4×A100 40GB, 20% L4 hosts (2 or 4
 * devices), 10% single-A10G hosts; zones a–d; about 1% not ready and 1% cordoned; GPU hosts
 * caching up to three of MODEL_DIGESTS. Same `n` and `seed`, same fleet.
 */
export function heterogeneousCluster(n: number, seed: number): SchedNode[] {
  const random = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const roll = random();
    const zone = pick(random, ZONES);
    const state = random();
    const common = { ready: state >= 0.01, cordoned: state >= 0.01 && state < 0.02 };
    const cached = (): string[] => Array.from({ length: Math.floor(random() * 4) }, () => pick(random, MODEL_DIGESTS));
    if (roll < 0.4) {
      const cores = pick(random, [32, 64, 64, 96]);
      return node(`cpu-${i}`, { ...common, cpu: cores, memory: cores * 4 * GiB, nicMbps: 25_000, labels: { zone, class: 'cpu' } });
    }
    if (roll < 0.52) {
      return node(`h100-${i}`, { ...common, cpu: 192, memory: 2048 * GiB, gpus: gpus(8, H100), nicMbps: 400_000, labels: { zone, class: 'h100' }, cached: cached() });
    }
    if (roll < 0.7) {
      return node(`a100-${i}`, { ...common, cpu: 96, memory: 1024 * GiB, gpus: gpus(4, A100), nicMbps: 100_000, labels: { zone, class: 'a100' }, cached: cached() });
    }
    if (roll < 0.9) {
      const count = random() < 0.5 ? 2 : 4;
      // Some hosts do not report their NIC: 0, not checked.
      return node(`l4-${i}`, { ...common, cpu: 48, memory: 192 * GiB, gpus: gpus(count, L4), nicMbps: random() < 0.3 ? 0 : 50_000, labels: { zone, class: 'l4' }, cached: cached() });
    }
    return node(`a10g-${i}`, { ...common, cpu: 16, memory: 64 * GiB, gpus: gpus(1, A10G), nicMbps: 25_000, labels: { zone, class: 'a10g' }, cached: cached() });
  });
}

export interface AskMix {
  /** Tenants named tenant-0, … Default 20. */
  tenants?: number;
  /** Id prefix, for several batches of asks over one run. Default 'a'. */
  prefix?: string;
}

/**
 * `count` single-replica asks, sized so that on heterogeneousCluster(count / 10) most fit:
 * 65% CPU-only (0.5–4 cores, a third of them servers with a port, a tenth pinned to a zone),
 * 10% whole GPUs (1–4 devices; H100, A100, L4 or any model), 25% GPU-memory shares (4–20 GiB,
 * with a port). Replicas come in workloads of 1–4 asks, some limited to one per node; GPU asks
 * name a model digest. Same arguments, same asks.
 */
export function syntheticAsks(count: number, seed: number, mix: AskMix = {}): Ask[] {
  const random = seededRandom(seed);
  const tenants = mix.tenants ?? 20;
  const prefix = mix.prefix ?? 'a';
  const out: Ask[] = [];
  let workload = 0;
  while (out.length < count) {
    const tenant = `tenant-${Math.floor(random() * tenants)}`;
    const replicas = Math.min(count - out.length, 1 + Math.floor(random() * 4));
    const kind = random();
    const priority = pick(random, [0, 10, 10, 50, 100]);
    const base: AskOptions = { tenant, priority, workload: `deployment/${tenant}/w${prefix}${workload++}`, maxPerNode: replicas > 1 && random() < 0.3 ? 1 : 0 };
    let options: AskOptions;
    if (kind < 0.65) {
      options = {
        ...base,
        cpu: pick(random, [0.5, 1, 2, 2, 4]),
        memory: pick(random, [2, 4, 8, 16]) * GiB,
        needsPort: random() < 0.33,
        ...(random() < 0.1 ? { constraints: { zone: pick(random, ZONES) } } : {}),
      };
    } else if (kind < 0.75) {
      const devices = pick(random, [1, 1, 1, 1, 1, 2, 2, 4]);
      options = { ...base, gpus: devices, gpuModel: pick(random, ['H100', 'H100', 'A100', 'L4', '']), cpu: 8 * devices, memory: 32 * GiB * devices, modelDigest: pick(random, MODEL_DIGESTS) };
    } else {
      options = {
        ...base,
        gpuMemory: pick(random, [4, 8, 8, 12, 16, 20]) * GiB,
        gpuModel: pick(random, ['', '', '', 'L4', 'A100']),
        cpu: 2,
        memory: 8 * GiB,
        needsPort: true,
        modelDigest: pick(random, MODEL_DIGESTS),
      };
    }
    for (let r = 0; r < replicas; r++) out.push(ask(`${prefix}${out.length}`, options));
  }
  return out;
}

// ---- Invariants ----

/** Every way `s` holds more than its nodes have; [] when it is sound. */
export function overcommits(s: Snapshot): string[] {
  const problems: string[] = [];
  const byName = new Map(s.nodes.map((n) => [n.name, n]));
  const used = new Map<string, { cpu: number; memory: number; nic: number; whole: Map<number, string[]>; shares: Map<number, number>; ports: Map<number, string> }>();
  for (const a of s.allocations) {
    const n = byName.get(a.node);
    if (n === undefined) {
      problems.push(`${a.id}: on unknown node ${a.node}`);
      continue;
    }
    let u = used.get(n.name);
    if (u === undefined) {
      u = { cpu: 0, memory: 0, nic: 0, whole: new Map(), shares: new Map(), ports: new Map() };
      used.set(n.name, u);
    }
    const r = a.resources;
    u.cpu += r.cpuMillis;
    u.memory += r.memoryBytes;
    u.nic += r.nicMbps;
    if (r.gpus > 0) {
      if (a.gpuIndexes.length !== r.gpus) problems.push(`${a.id}: holds ${a.gpuIndexes.length} devices, asked ${r.gpus}`);
      for (const index of a.gpuIndexes) {
        const gpu = n.gpus.find((g) => g.index === index);
        if (gpu === undefined) problems.push(`${a.id}: GPU ${index} not on ${n.name}`);
        else if (gpu.memoryBytes < r.gpuMemoryBytes) problems.push(`${a.id}: GPU ${index} on ${n.name} has less memory than asked`);
        else if (!gpu.model.toLowerCase().includes(r.gpuModel.toLowerCase())) problems.push(`${a.id}: GPU ${index} on ${n.name} is not a ${r.gpuModel}`);
        u.whole.set(index, [...(u.whole.get(index) ?? []), a.id]);
      }
    } else if (r.gpuMemoryBytes > 0) {
      const index = a.gpuIndexes[0];
      const gpu = n.gpus.find((g) => g.index === index);
      if (a.gpuIndexes.length !== 1 || index === undefined || gpu === undefined) problems.push(`${a.id}: a share needs one device of ${n.name}, holds [${a.gpuIndexes}]`);
      else if (!gpu.model.toLowerCase().includes(r.gpuModel.toLowerCase())) problems.push(`${a.id}: GPU ${index} on ${n.name} is not a ${r.gpuModel}`);
      else u.shares.set(index, (u.shares.get(index) ?? 0) + r.gpuMemoryBytes);
    }
    if (a.hostPort !== 0) {
      const other = u.ports.get(a.hostPort);
      if (other !== undefined) problems.push(`${a.id}: port ${a.hostPort} on ${n.name} already held by ${other}`);
      u.ports.set(a.hostPort, a.id);
    }
  }
  for (const [name, u] of used) {
    const n = byName.get(name)!;
    if (u.cpu > n.cpuMillis) problems.push(`${name}: CPU ${u.cpu}m held of ${n.cpuMillis}m`);
    if (u.memory > n.memoryBytes) problems.push(`${name}: memory ${u.memory} held of ${n.memoryBytes}`);
    if (n.nicMbps > 0 && u.nic > n.nicMbps) problems.push(`${name}: NIC ${u.nic} Mbps held of ${n.nicMbps}`);
    for (const [index, holders] of u.whole) {
      if (holders.length > 1) problems.push(`${name}: GPU ${index} held whole by ${holders.join(', ')}`);
      if (u.shares.has(index)) problems.push(`${name}: GPU ${index} held whole by ${holders[0]} and shared`);
    }
    for (const [index, bytes] of u.shares) {
      const gpu = n.gpus.find((g) => g.index === index)!;
      if (bytes > gpu.memoryBytes) problems.push(`${name}: GPU ${index} shares ${bytes} bytes of ${gpu.memoryBytes}`);
    }
  }
  return problems;
}

/** What each tenant uses in `s`, in quota units, counted the way the README states. */
export function tenantUsage(s: Snapshot): Map<string, TenantQuota> {
  const byName = new Map(s.nodes.map((n) => [n.name, n]));
  const usage = new Map<string, TenantQuota>();
  for (const a of s.allocations) {
    const u = usage.get(a.tenant) ?? quota({});
    usage.set(a.tenant, u);
    const r = a.resources;
    u.cpuMillis += r.cpuMillis;
    u.memoryBytes += r.memoryBytes;
    if (r.gpus > 0) {
      u.gpus += r.gpus;
      for (const index of a.gpuIndexes) u.gpuMemoryBytes += byName.get(a.node)?.gpus.find((g) => g.index === index)?.memoryBytes ?? r.gpuMemoryBytes;
    } else {
      u.gpuMemoryBytes += r.gpuMemoryBytes;
    }
  }
  return usage;
}

/**
 * The invariant every plan keeps. Applied to `before`, `plan` (made for `asked`):
 * over-commits no node (CPU, memory, NIC, whole GPUs never shared or doubly held, shares within
 * a device's memory, host ports unique per node); places only on ready, uncordoned nodes that
 * meet the constraints, with a port from the range exactly when one is needed; answers every
 * ask exactly once; preempts only allocations that exist; takes no tenant over a quota limit it
 * was within (or further over one it already exceeded); breaks no max-per-node limit.
 */
export function assertNoOvercommit(before: Snapshot, plan: Plan, asked: readonly Ask[]): void {
  const askById = new Map(asked.map((a) => [a.id, a]));
  const answered = [...plan.placements.map((p) => p.askId), ...plan.failures.map((f) => f.askId)];
  assert.deepEqual([...answered].sort(), asked.map((a) => a.id).sort(), 'every ask is answered exactly once');
  const existing = new Set(before.allocations.map((a) => a.id));
  const preempted = plan.preemptions.map((p) => p.allocationId);
  assert.equal(new Set(preempted).size, preempted.length, 'an allocation is preempted at most once');
  for (const id of preempted) assert.ok(existing.has(id), `preempted allocation ${id} exists`);
  const placedIds = new Set(plan.placements.map((p) => p.askId));
  for (const p of plan.preemptions) assert.ok(placedIds.has(p.askId), `preemption of ${p.allocationId} is for a placed ask`);

  const byName = new Map(before.nodes.map((n) => [n.name, n]));
  for (const p of plan.placements) {
    const a = askById.get(p.askId)!;
    const n = byName.get(p.node);
    assert.ok(n, `${p.askId}: placed on a node of the snapshot`);
    assert.ok(n.ready && !n.cordoned, `${p.askId}: placed on a ready, uncordoned node`);
    for (const [k, v] of Object.entries(a.constraints)) assert.equal(n.labels[k], v, `${p.askId}: constraint ${k}=${v}`);
    if (a.needsPort) assert.ok(p.hostPort >= before.portRange[0] && p.hostPort <= before.portRange[1], `${p.askId}: port ${p.hostPort} in range`);
    else assert.equal(p.hostPort, 0, `${p.askId}: no port when none is needed`);
  }

  const after = applyPlan(before, plan, asked);
  assert.deepEqual(overcommits(after), [], 'the plan over-commits nothing');

  const usageBefore = tenantUsage(before);
  const usageAfter = tenantUsage(after);
  for (const [tenant, limits] of before.quotas) {
    const was = usageBefore.get(tenant) ?? quota({});
    const now = usageAfter.get(tenant) ?? quota({});
    for (const field of ['cpuMillis', 'memoryBytes', 'gpus', 'gpuMemoryBytes'] as const) {
      if (limits[field] > 0 && now[field] > limits[field]) {
        assert.ok(now[field] <= was[field], `tenant ${tenant}: ${field} ${now[field]} over quota ${limits[field]} (was ${was[field]})`);
      }
    }
  }

  const perNode = new Map<string, number>();
  for (const a of after.allocations) perNode.set(`${a.node} ${a.workload}`, (perNode.get(`${a.node} ${a.workload}`) ?? 0) + 1);
  const beforePerNode = new Map<string, number>();
  for (const a of before.allocations) beforePerNode.set(`${a.node} ${a.workload}`, (beforePerNode.get(`${a.node} ${a.workload}`) ?? 0) + 1);
  for (const p of plan.placements) {
    const a = askById.get(p.askId)!;
    const key = `${p.node} ${a.workload}`;
    if (a.maxPerNode > 0) {
      assert.ok(perNode.get(key)! <= Math.max(a.maxPerNode, beforePerNode.get(key) ?? 0), `${p.askId}: at most ${a.maxPerNode} of ${a.workload} on ${p.node}`);
    }
  }
}

/** schedule(), then assertNoOvercommit on its plan: what every test calls. */
export function scheduleChecked(s: Snapshot, asked: Ask[], options?: ScheduleOptions): Plan {
  const plan = schedule(s, asked, options);
  assertNoOvercommit(s, plan, asked);
  return plan;
}

/** Where each ask went: askId → node name (failed asks absent). */
export function placedOn(plan: Plan): Map<string, string> {
  return new Map(plan.placements.map((p) => [p.askId, p.node]));
}
