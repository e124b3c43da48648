// The leader's book of what the gateways see (docs/autoscaling.md "Signals"): the latest
// DeploymentLoad per (node, deployment), in memory only. A report older than the staleness
// limit counts as zero; a node whose session ends is forgotten. Time comes in as arguments.
import type { DeploymentLoad, GatewayLoad } from '../../shared/proto.js';

/** A report older than this counts as zero. */
export const LOAD_STALE_MS = 3_000;

export interface FleetLoad {
  /** Sum over gateways of their mean concurrency. */
  concurrency: number;
  inFlight: number;
  waiting: number;
  /** Requests arrived since the last call for this deployment (consumed). */
  requests: number;
  /** A gateway asked for a wake-up since the last call for this deployment (consumed). */
  wake: boolean;
}

interface Entry {
  atMs: number;
  load: DeploymentLoad;
}

interface Pending {
  requests: number;
  wake: boolean;
}

function keyOf(tenant: string, deployment: string): string {
  return `${tenant}/${deployment}`;
}

export class LoadBook {
  /** deployment key → node → latest report. */
  private readonly latest = new Map<string, Map<string, Entry>>();
  /** deployment key → requests and wakes not yet taken by a tick. */
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly staleMs = LOAD_STALE_MS) {}

  /** Takes one gateway's report, received at `nowMs` (the leader's clock, not the agent's). */
  record(node: string, load: GatewayLoad, nowMs: number): void {
    for (const d of load.deployments) {
      const key = keyOf(d.tenant, d.deployment);
      let byNode = this.latest.get(key);
      if (!byNode) this.latest.set(key, (byNode = new Map()));
      byNode.set(node, { atMs: nowMs, load: d });
      if (d.requests > 0 || d.wake) {
        const p = this.pending.get(key) ?? { requests: 0, wake: false };
        p.requests += d.requests;
        p.wake ||= d.wake;
        this.pending.set(key, p);
      }
    }
  }

  /** The node left (its session ended): its reports no longer count. */
  forget(node: string): void {
    for (const [key, byNode] of this.latest) {
      byNode.delete(node);
      if (byNode.size === 0) this.latest.delete(key);
    }
  }

  /** Fleet-wide load of one deployment; takes the requests and the wake it returns. */
  fleet(tenant: string, name: string, nowMs: number): FleetLoad {
    const key = keyOf(tenant, name);
    const out: FleetLoad = { concurrency: 0, inFlight: 0, waiting: 0, requests: 0, wake: false };
    const byNode = this.latest.get(key);
    if (byNode) {
      for (const [node, e] of byNode) {
        if (nowMs - e.atMs > this.staleMs) {
          byNode.delete(node);
          continue;
        }
        out.concurrency += e.load.concurrency;
        out.inFlight += e.load.inFlight;
        out.waiting += e.load.waiting;
      }
      if (byNode.size === 0) this.latest.delete(key);
    }
    const p = this.pending.get(key);
    if (p) {
      out.requests = p.requests;
      out.wake = p.wake;
      this.pending.delete(key);
    }
    return out;
  }

  /** Drops all about deployments not in `keep` (gone, or not autoscaled), and reports gone stale. */
  retain(keep: ReadonlySet<string>, nowMs: number): void {
    for (const [key, byNode] of this.latest) {
      if (!keep.has(key)) {
        this.latest.delete(key);
        continue;
      }
      for (const [node, e] of byNode) if (nowMs - e.atMs > this.staleMs) byNode.delete(node);
      if (byNode.size === 0) this.latest.delete(key);
    }
    for (const key of this.pending.keys()) if (!keep.has(key)) this.pending.delete(key);
  }

  /** How many (node, deployment) reports it holds. */
  get size(): number {
    let n = 0;
    for (const byNode of this.latest.values()) n += byNode.size;
    return n;
  }
}

export { keyOf as loadKey };
