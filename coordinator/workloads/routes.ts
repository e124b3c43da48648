// The routing table of the agents' inference gateways: every model with ready replicas, where
// they are and which version each serves, with the registry's metadata and the latency the
// gateways measure (for selection by criteria). Built by the leader after each reconcile pass
// and pushed to every agent when it changes (never polled); gateways' latency reports arrive in
// heartbeats and live in memory only, like heartbeats themselves. An autoscaled deployment's
// model has a route even with no ready replica (`holds`: its gateway holds requests while a
// replica starts, docs/autoscaling.md), carrying who may infer and how large a request may be.
import type { Clock } from '../../shared/clock.js';
import type { LatencySample__Output as LatencySample } from '../../shared/gen/mlfleet/v1/LatencySample.js';
import type { ModelRoute__Output as ModelRoute } from '../../shared/gen/mlfleet/v1/ModelRoute.js';
import type { RouteTable__Output as RouteTable } from '../../shared/gen/mlfleet/v1/RouteTable.js';
import type { ArtifactMetadata } from '../../shared/proto.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import { isAutoscaled } from './autoscaled.js';
import { summarizeTraffic, type TrafficReport } from './traffic.js';
import type { DeploymentTraffic } from '../../shared/proto.js';
import type { AllocationRecord, DeploymentRecord } from './records.js';

/** Latency reports older than this no longer count. */
const LATENCY_WINDOW_MS = 60_000;
/** Latency changes alone are pushed to the gateways at most this often. */
const LATENCY_PUSH_MS = 5_000;

interface Measured {
  tenant: string;
  model: string;
  allocation: string;
  p50Ms: number;
  p99Ms: number;
  count: number;
  errors: number;
  atMs: number;
  gateway: string;
  /** Since the gateway's previous heartbeat; 0: its first. */
  intervalMs: number;
}

/** What the gateways measured for a set of replicas (rollout-guard.ts's Traffic). */
export interface ReplicaTraffic {
  count: number;
  errors: number;
  /** The largest p99 any gateway reported for them; 0: not measured. */
  p99Ms: number;
}

export class RouteBook {
  private readonly latencies = new Map<string, Measured>();
  /** Requests and errors per replica summed over every report since it was first measured (rollout-guard.ts); pruned as replicas leave the table. */
  private readonly totals = new Map<string, { count: number; errors: number }>();
  /** Each gateway's latest heartbeat: when, and since its previous one (traffic.ts's request rate). */
  private readonly beats = new Map<string, { atMs: number; intervalMs: number }>();
  /** The reports by replica, rebuilt on demand after a heartbeat (deploymentTraffic). */
  private byAllocation: Map<string, Measured[]> | undefined;
  private readonly metadata = new Map<string, ArtifactMetadata | undefined>();
  private current: RouteTable = { revision: 0, models: [] };
  private signature = '';
  private pushedLatencies = '';
  private pushedAtMs = 0;

  constructor(
    private readonly artifacts: ArtifactRegistry,
    private readonly clock: Clock,
  ) {}

  /** The table as last built. */
  get table(): RouteTable {
    return this.current;
  }

  /** A gateway's report (from the heartbeat of node `gateway`). */
  record(gateway: string, samples: LatencySample[]): void {
    const now = this.clock.now();
    const previous = this.beats.get(gateway);
    const intervalMs = previous && now > previous.atMs ? now - previous.atMs : 0;
    this.beats.set(gateway, { atMs: now, intervalMs });
    if (samples.length > 0) this.byAllocation = undefined;
    for (const s of samples) {
      if (s.count === 0 || !(s.p50Ms >= 0)) continue;
      const total = this.totals.get(s.allocation) ?? { count: 0, errors: 0 };
      total.count += s.count;
      total.errors += s.errors || 0;
      this.totals.set(s.allocation, total);
      this.latencies.set(`${gateway}\u0000${s.allocation}`, { tenant: s.tenant, model: s.model, allocation: s.allocation, p50Ms: s.p50Ms, p99Ms: s.p99Ms || 0, count: s.count, errors: s.errors || 0, atMs: now, gateway, intervalMs });
    }
  }

  /** The fleet-wide p50 of a model: the gateways' recent reports, weighted by their request counts. */
  latencyOf(tenant: string, model: string): number | undefined {
    return this.weighted((m) => m.tenant === tenant && m.model === model);
  }

  /** The same over the given replicas only (one deployment's). */
  latencyOfReplicas(allocations: ReadonlySet<string>): number | undefined {
    return this.weighted((m) => allocations.has(m.allocation));
  }

  /**
   * Over the given replicas: the requests and errors every gateway reported since each was first
   * measured (summed over heartbeats, so a small share of traffic still adds up), and the largest
   * p99 of the gateways' latest reports within the window.
   */
  trafficOf(allocations: ReadonlySet<string>): ReplicaTraffic {
    const now = this.clock.now();
    const traffic: ReplicaTraffic = { count: 0, errors: 0, p99Ms: 0 };
    for (const id of allocations) {
      const total = this.totals.get(id);
      if (!total) continue;
      traffic.count += total.count;
      traffic.errors += total.errors;
    }
    for (const m of this.latencies.values()) {
      if (now - m.atMs > LATENCY_WINDOW_MS || !allocations.has(m.allocation) || !this.totals.has(m.allocation)) continue;
      traffic.p99Ms = Math.max(traffic.p99Ms, m.p99Ms);
    }
    return traffic;
  }

  /** What the gateways measured of one deployment's replicas (Deployment.traffic); null: nothing lately. */
  deploymentTraffic(allocations: Iterable<string>): DeploymentTraffic | null {
    const now = this.clock.now();
    if (!this.byAllocation) {
      this.byAllocation = new Map();
      for (const m of this.latencies.values()) {
        if (now - m.atMs > LATENCY_WINDOW_MS) continue;
        const list = this.byAllocation.get(m.allocation);
        if (list) list.push(m);
        else this.byAllocation.set(m.allocation, [m]);
      }
    }
    const reports: TrafficReport[] = [];
    for (const id of allocations) for (const m of this.byAllocation.get(id) ?? []) reports.push({ ...m, beatAtMs: this.beats.get(m.gateway)?.atMs ?? m.atMs });
    return summarizeTraffic(reports, now, LATENCY_WINDOW_MS);
  }

  /** One replica's requests and errors summed since it was first measured (a copy); undefined: never measured or gone. */
  countsOf(allocation: string): { count: number; errors: number } | undefined {
    const total = this.totals.get(allocation);
    return total && { ...total };
  }

  private weighted(include: (m: Measured) => boolean): number | undefined {
    const now = this.clock.now();
    let weighted = 0;
    let count = 0;
    for (const [key, m] of this.latencies) {
      if (now - m.atMs > LATENCY_WINDOW_MS) {
        this.latencies.delete(key);
        continue;
      }
      if (!include(m)) continue;
      weighted += m.p50Ms * m.count;
      count += m.count;
    }
    return count > 0 ? weighted / count : undefined;
  }

  /**
   * Rebuilds the table from the deployments and their allocations; returns it when it changed
   * (to be pushed to every agent), undefined when it did not.
   */
  async rebuild(
    deployments: Array<{ record: DeploymentRecord; allocations: AllocationRecord[] }>,
    gatewayOf: (node: string) => string,
  ): Promise<RouteTable | undefined> {
    const byModel = new Map<string, ModelRoute & { newest: number }>();
    const routeOf = (record: DeploymentRecord, model: string) => {
      const key = `${record.tenant}/${model}`;
      let route = byModel.get(key);
      if (!route) {
        route = { tenant: record.tenant, model, endpoints: [], type: '', inputFormat: '', outputFormat: '', accuracy: 0, latencyP50Ms: 0, deployment: record.spec.name, newest: 0, holds: false, public: false, maxRequestBytes: 0, canaryPercent: 0 };
        byModel.set(key, route);
      }
      return route;
    };
    for (const { record, allocations } of deployments) {
      const model = record.run.model;
      if (!model) continue;
      // A canary in progress: its new generation's replicas take canaryPercent of the requests,
      // once both it and the stable generation have a ready replica.
      const serving = allocations.filter((a) => a.desired === 'run' && a.status === 'ready' && a.endpoint && a.run.model);
      const canary = record.canaryOf !== undefined && serving.some((a) => a.generation === record.generation) && serving.some((a) => a.generation !== record.generation);
      if (canary) routeOf(record, model.name).canaryPercent = record.spec.rollout?.canaryPercent ?? 0;
      for (const a of serving) {
        if (!a.run.model) continue;
        const route = routeOf(record, model.name);
        route.endpoints.push({
          allocation: a.id,
          node: a.node,
          address: a.endpoint,
          version: a.run.model.version,
          deployment: record.spec.name,
          gateway: gatewayOf(a.node),
          public: record.spec.public,
          maxRequestBytes: record.spec.maxRequestBytes,
          canary: canary && a.generation === record.generation,
        });
        if (a.run.model.version > route.newest) {
          route.newest = a.run.model.version;
          route.deployment = record.spec.name;
        }
      }
    }
    // Autoscaled deployments' models are routed even at zero ready replicas: the gateway holds
    // their requests (authenticated and size-checked by the route's own public/maxRequestBytes).
    for (const { record } of deployments) {
      const model = record.run.model;
      if (!model || !isAutoscaled(record.spec)) continue;
      const route = routeOf(record, model.name);
      route.holds = true;
      route.public = record.spec.public;
      route.maxRequestBytes = Number(record.spec.maxRequestBytes);
      if (route.endpoints.length === 0) {
        route.deployment = record.spec.name;
        route.newest = Math.max(route.newest, record.resolvedVersion);
      }
    }
    const live = new Set(deployments.flatMap(({ allocations }) => allocations.map((a) => a.id)));
    for (const id of this.totals.keys()) if (!live.has(id)) this.totals.delete(id);
    const models: ModelRoute[] = [];
    for (const route of [...byModel.values()].sort((a, b) => `${a.tenant}/${a.model}`.localeCompare(`${b.tenant}/${b.model}`))) {
      const { newest, ...rest } = route;
      const meta = await this.metadataOf(route.tenant, route.model, newest);
      rest.endpoints.sort((a, b) => a.allocation.localeCompare(b.allocation));
      models.push({
        ...rest,
        type: meta?.type ?? '',
        inputFormat: meta?.inputFormat ?? '',
        outputFormat: meta?.outputFormat ?? '',
        accuracy: meta?.accuracy ?? 0,
        latencyP50Ms: Number((this.latencyOf(route.tenant, route.model) ?? 0).toFixed(3)),
      });
    }
    // Where replicas are (or what they serve) is news at once; latency, which moves all the
    // time, at most every LATENCY_PUSH_MS.
    const signature = JSON.stringify(models.map((m) => ({ ...m, latencyP50Ms: undefined })));
    const latencies = JSON.stringify(models.map((m) => m.latencyP50Ms));
    const now = this.clock.now();
    const moved = signature !== this.signature;
    if (!moved && (latencies === this.pushedLatencies || now - this.pushedAtMs < LATENCY_PUSH_MS)) return undefined;
    this.signature = signature;
    this.pushedLatencies = latencies;
    this.pushedAtMs = now;
    this.current = { revision: Number(this.current.revision) + 1, models };
    return this.current;
  }

  private async metadataOf(tenant: string, model: string, version: number): Promise<ArtifactMetadata | undefined> {
    const key = `${tenant}/${model}:${version}`;
    if (!this.metadata.has(key)) {
      try {
        const { version: found } = await this.artifacts.resolve('model', tenant, { name: model, version });
        this.metadata.set(key, found.metadata);
      } catch {
        // The version was removed; the route still serves, without metadata.
        return undefined;
      }
    }
    return this.metadata.get(key);
  }
}
