// Scheduler benchmark: 100,000 single-replica asks onto 10,000 heterogeneous nodes,
// the way the leader runs the scheduler — in batches of 1,000 asks, each plan applied to the
// snapshot (applyPlan) before the next batch is scheduled. Goal: >= 10,000 placements/s.
//   npm run bench -- scheduler            10,000 nodes, 100,000 asks
//   npm run bench -- scheduler --quick    1,000 nodes, 10,000 asks
//
// Phases: "pure" times schedule() + applyPlan() alone. "committed" runs the leader's placement
// path into a SQLite store: each batch is scheduled, turned into allocation records (with the
// RunSpec an agent gets) and written by commitPlan — fenced by a real leadership, chunked at the
// controller's 100 operations per transaction, each chunk compare-and-swapping the plan keys of
// the nodes it places on — then applied to the snapshot for the next batch.
// The cluster and asks come from the scheduler test harness (heterogeneousCluster, syntheticAsks).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { commitPlan, type PlanWrite } from '../../coordinator/workloads/plan-commit.js';
import type { AllocationRecord } from '../../coordinator/workloads/records.js';
import { Election, fencedTxn } from '../../shared/store/election.js';
import { Lease } from '../../shared/store/lease.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import type { RunSpec } from '../../shared/workloads.js';
import { applyPlan, schedule } from '../../coordinator/scheduler/scheduler.js';
import type { Ask, SchedNode, TenantQuota } from '../../coordinator/scheduler/types.js';
import { heterogeneousCluster, overcommits, snapshot, syntheticAsks } from '../helpers/cluster-harness.js';

const quick = process.argv.includes('--quick');
const NODES = quick ? 1_000 : 10_000;
const ASKS = quick ? 10_000 : 100_000;
const BATCH = 1_000;
const GOAL_PLACEMENTS_PER_SEC = 10_000;
const GOAL_COMMITTED_PER_SEC = 2_000;

interface BenchWorkload {
  nodes: SchedNode[];
  asks: Ask[];
  /** Two tenants with limits, so the quota path is exercised; the other 18 have none. */
  quotas: Record<string, Partial<TenantQuota>>;
}

/** The cluster, the asks and the quotas, the same on every run. */
function workload(nodeCount = NODES, askCount = ASKS): BenchWorkload {
  return {
    nodes: heterogeneousCluster(nodeCount, 1),
    asks: syntheticAsks(askCount, 2),
    quotas: { 'tenant-0': { gpus: (nodeCount / 10_000) * 1500 }, 'tenant-1': { cpuMillis: (nodeCount / 10_000) * 2_000_000 } },
  };
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

/** schedule() and applyPlan() in batches, as the leader runs them, without a store. */
function pure({ nodes, asks, quotas }: BenchWorkload) {
  let snap = snapshot({ nodes, quotas });
  let placements = 0;
  let failures = 0;
  let quotaFailures = 0;
  let preemptions = 0;
  let scheduleMs = 0;
  let applyMs = 0;
  const batchMs: number[] = [];
  const cpuAtStart = process.cpuUsage();
  const started = performance.now();
  for (let b = 0; b * BATCH < asks.length; b++) {
    const batch = asks.slice(b * BATCH, (b + 1) * BATCH);
    const t0 = performance.now();
    const plan = schedule(snap, batch, { seed: b });
    const t1 = performance.now();
    snap = applyPlan(snap, plan, batch);
    const t2 = performance.now();
    scheduleMs += t1 - t0;
    applyMs += t2 - t1;
    batchMs.push(t2 - t0);
    placements += plan.placements.length;
    failures += plan.failures.length;
    quotaFailures += plan.failures.filter((f) => f.quota).length;
    preemptions += plan.preemptions.length;
    if ((b + 1) % 10 === 0 || (b + 1) * BATCH >= asks.length) {
      const elapsed = (performance.now() - started) / 1000;
      console.log(`pure: ${Math.min((b + 1) * BATCH, asks.length)}/${asks.length} asks, ${placements} placed, ${failures} failed, ${elapsed.toFixed(1)}s (last batch ${(t2 - t0).toFixed(0)} ms)`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuAtStart);
  // CPU time as well as wall time: on a shared machine the wall clock also counts other work.
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  batchMs.sort((a, b) => a - b);
  // Not timed: the final cluster holds no more than it has (the tests check every plan; this is the bench's own sanity).
  const problems = overcommits(snap);
  if (problems.length > 0) throw new Error(`the benchmark's plans over-commit: ${problems.slice(0, 3).join('; ')}`);
  return {
    placementsPerSec: Math.round(placements / seconds),
    placements,
    failures,
    quotaFailures,
    preemptions,
    seconds: Number(seconds.toFixed(2)),
    cpuSeconds: Number(cpuSeconds.toFixed(2)),
    placementsPerCpuSec: Math.round(placements / cpuSeconds),
    scheduleSeconds: Number((scheduleMs / 1000).toFixed(2)),
    applySeconds: Number((applyMs / 1000).toFixed(2)),
    batchMsP50: Number(percentile(batchMs, 0.5).toFixed(1)),
    batchMsP99: Number(percentile(batchMs, 0.99).toFixed(1)),
  };
}

/** The leader's path: schedule, build records, commit with per-node plan checks into SQLite. */
async function committed({ nodes, asks, quotas }: BenchWorkload) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-scheduler-bench-'));
  const store = await SqliteStore.create(path.join(dir, 'c.db'));
  const lease = await Lease.create(store, 30_000);
  try {
    const leadership = await new Election(store, '/mlfleet/election/coordinator').campaign('bench', lease, new AbortController().signal);
    const writer = { txn: (c: Parameters<typeof fencedTxn>[2], s: Parameters<typeof fencedTxn>[3], f?: Parameters<typeof fencedTxn>[4]) => fencedTxn(store, leadership, c, s, f) };
    const run: RunSpec = {
      image: 'mlfleet/runtime:0.1.0', command: ['node', 'server.js'], env: {}, port: 8080, readinessPath: '/v2/health/ready', readinessTimeoutMs: 600_000,
      model: { kind: 'model', ref: 'bench/model:1', name: 'model', version: 1, digest: `sha256:${'0'.repeat(64)}`, sizeBytes: 1 << 20, directory: false, mountPath: '/model' },
      datasets: [], rank: 0, worldSize: 1,
    };
    const byId = new Map(asks.map((a) => [a.id, a]));
    const revisions = new Map<string, number>();
    let snap = snapshot({ nodes, quotas });
    let placements = 0;
    let conflicts = 0;
    let commitMs = 0;
    const started = performance.now();
    for (let b = 0; b * BATCH < asks.length; b++) {
      const batch = asks.slice(b * BATCH, (b + 1) * BATCH);
      const plan = schedule(snap, batch, { seed: b });
      const now = Date.now();
      const writes: PlanWrite[] = plan.placements.map((p) => {
        const ask = byId.get(p.askId)!;
        const record: AllocationRecord = {
          id: p.askId, kind: 'deployment', workload: ask.workload.split('/')[2] ?? ask.workload, tenant: ask.tenant, node: p.node, priority: ask.priority,
          resources: { ...ask.resources }, gpuIndexes: p.gpuIndexes, hostPort: p.hostPort, run, generation: 1, attempt: 0, rank: 0,
          desired: 'run', status: 'pending', reason: '', endpoint: '', exitCode: 0, createdAtMs: now, updatedAtMs: now,
        };
        return { node: p.node, record, group: ask.group || p.askId };
      });
      const t0 = performance.now();
      const result = await commitPlan(writer, writes, revisions, 100);
      commitMs += performance.now() - t0;
      for (const [node, revision] of result.nodeRevisions) revisions.set(node, revision);
      conflicts += result.conflicted.size;
      placements += result.written.length;
      snap = applyPlan(snap, plan, batch);
      if ((b + 1) % 10 === 0 || (b + 1) * BATCH >= asks.length) {
        console.log(`committed: ${Math.min((b + 1) * BATCH, asks.length)}/${asks.length} asks, ${placements} placed, ${((performance.now() - started) / 1000).toFixed(1)}s`);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const stored = (await store.range('/mlfleet/allocations/')).kvs.length;
    if (stored !== placements) throw new Error(`${placements} placements committed but ${stored} allocation records stored`);
    return {
      placementsPerSec: Math.round(placements / seconds),
      placements,
      conflicts,
      seconds: Number(seconds.toFixed(2)),
      commitSeconds: Number((commitMs / 1000).toFixed(2)),
    };
  } finally {
    await lease.revoke().catch(() => undefined);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const generated = performance.now();
const work = workload();
console.log(`generated ${work.nodes.length} nodes and ${work.asks.length} asks in ${((performance.now() - generated) / 1000).toFixed(1)}s`);
const result = pure(work);
console.log(`pure: ${result.placementsPerSec} placements/s (${result.placements} placed, ${result.failures} failed, ${result.seconds}s)`);
const stored = await committed(work);
console.log(`committed: ${stored.placementsPerSec} placements/s (${stored.placements} placed into SQLite, ${stored.seconds}s, of which commits ${stored.commitSeconds}s)`);
console.log(JSON.stringify({
  bench: 'scheduler',
  nodes: work.nodes.length,
  workloads: work.asks.length,
  batchSize: BATCH,
  pure: result,
  committed: stored,
  goalPlacementsPerSec: GOAL_PLACEMENTS_PER_SEC,
  goalCommittedPerSec: GOAL_COMMITTED_PER_SEC,
  goalMet: quick ? null : result.placementsPerSec >= GOAL_PLACEMENTS_PER_SEC && stored.placementsPerSec >= GOAL_COMMITTED_PER_SEC,
}));
