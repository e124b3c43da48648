// The leader's autoscaler (docs/autoscaling.md): ticks every 500 ms (and at once on a wake),
// takes each autoscaled deployment's fleet-wide load from the LoadBook, asks the pure decide()
// for its size, and applies a change through the controller's resizeDeployment. Only the leader
// runs one: started when leadership is won, closed when it is lost.
import type { Logger } from '../../shared/log.js';
import type { Clock, Timer } from '../../shared/clock.js';
import type { GatewayLoad } from '../../shared/proto.js';
import { decide, DEFAULT_DECIDE_OPTIONS, initialScalerState, type DecideOptions, type ScalerState } from './decide.js';
import { LoadBook, loadKey } from './load-book.js';
import type { AutoscaleTarget, AutoscalerView } from './target.js';

/** A load report covering less than this is a gateway's surge report (docs/autoscaling.md). */
const SURGE_REPORT_MAX_MS = 900;

export interface AutoscaleDecisionEvent {
  tenant: string;
  name: string;
  from: number;
  to: number;
  reason: string;
  atMs: number;
}

export interface AutoscalerOptions {
  target: AutoscaleTarget;
  clock: Clock;
  log: Logger;
  /** Each change decided (before it is applied): for metrics and benchmarks. */
  onDecision?(event: AutoscaleDecisionEvent): void;
  tickMs?: number;
  decide?: Partial<DecideOptions>;
  /** A gateway report older than this counts as zero. */
  staleMs?: number;
}

interface Tracked {
  state: ScalerState;
  view: AutoscalerView | undefined;
}

export class Autoscaler {
  private readonly book: LoadBook;
  private readonly tracked = new Map<string, Tracked>();
  private readonly tickMs: number;
  private readonly options: DecideOptions;
  private timer: Timer | undefined;
  private running: Promise<void> | undefined;
  /** A wake (or a tick) came while one was running: run once more after it. */
  private again = false;
  private closed = false;
  /** A pass has listed the deployments. */
  private ticked = false;

  constructor(private readonly deps: AutoscalerOptions) {
    this.tickMs = deps.tickMs ?? 500;
    this.options = { ...DEFAULT_DECIDE_OPTIONS, ...deps.decide };
    this.book = new LoadBook(deps.staleMs);
  }

  start(): void {
    if (this.closed || this.timer) return;
    this.timer = this.deps.clock.setInterval(() => void this.tick(), this.tickMs);
  }

  /** Stops ticking and waits for a tick in flight. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.again = false;
    await this.running;
  }

  /**
   * One gateway's report (validated by the agent session). A wake, or a request held for a
   * deployment below one replica, runs a tick at once.
   */
  record(node: string, load: GatewayLoad): void {
    if (this.closed) return;
    this.book.record(node, load, this.deps.clock.now());
    if (load.deployments.some((d) => (d.wake || d.waiting > 0) && this.asleep(d.tenant, d.deployment))) this.wake();
    // A gateway's surge report (it covers less than the usual second: load doubled since its
    // last report) is decided on at once.
    else if (load.intervalMs > 0 && load.intervalMs < SURGE_REPORT_MAX_MS) this.wake();
  }

  /**
   * Whether a request for the deployment is worth a tick now: it is autoscaled and at zero (or
   * no tick has run yet, as on a new leader). A deployment already asked to grow, or not
   * autoscaled, waits for the next tick; so a stream of wakes costs no pass each.
   */
  private asleep(tenant: string, name: string): boolean {
    if (this.tracked.size === 0 && !this.ticked) return true;
    const view = this.tracked.get(loadKey(tenant, name))?.view;
    return view !== undefined && view.desiredReplicas < 1;
  }

  /** The node's session ended: its gateway's reports no longer count. */
  forget(node: string): void {
    this.book.forget(node);
  }

  /** Runs a tick at once (or right after the one in flight). */
  wake(): void {
    if (this.closed) return;
    void this.tick();
  }

  /** How many (node, deployment) load reports it holds now. */
  get reports(): number {
    return this.book.size;
  }

  /** The autoscaler's view of a deployment (for `deployments show`); undefined before its first tick. */
  view(tenant: string, name: string): AutoscalerView | undefined {
    return this.tracked.get(loadKey(tenant, name))?.view;
  }

  /** Runs one pass; at most one at a time (a call meanwhile runs one more after it). Resolves when done. */
  tick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again && !this.closed);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async pass(): Promise<void> {
    let deployments;
    try {
      deployments = this.deps.target.autoscaled();
    } catch (err) {
      this.deps.log.warn({ err }, 'autoscaler: could not list the autoscaled deployments');
      return;
    }
    this.ticked = true;
    const now = this.deps.clock.now();
    const seen = new Set<string>();
    const changes: AutoscaleDecisionEvent[] = [];
    for (const policy of deployments) {
      const key = loadKey(policy.tenant, policy.name);
      seen.add(key);
      const tracked = this.tracked.get(key) ?? { state: initialScalerState(now), view: undefined };
      const load = this.book.fleet(policy.tenant, policy.name, now);
      const decision = decide(tracked.state, { nowMs: now, policy, ...load }, this.options);
      tracked.state = decision.state;
      tracked.view = decision.view;
      this.tracked.set(key, tracked);
      if (decision.desired !== policy.replicas && decision.reason) {
        changes.push({ tenant: policy.tenant, name: policy.name, from: policy.replicas, to: decision.desired, reason: decision.reason, atMs: now });
      }
    }
    for (const key of this.tracked.keys()) if (!seen.has(key)) this.tracked.delete(key);
    this.book.retain(seen, now);
    for (const change of changes) {
      if (this.closed) return;
      try {
        this.deps.onDecision?.(change);
      } catch (err) {
        this.deps.log.warn({ err }, 'autoscaler: the decision hook failed');
      }
      this.deps.log.info({ tenant: change.tenant, deployment: change.name, replicas: change.to }, change.reason);
      try {
        await this.deps.target.resizeDeployment(change.tenant, change.name, change.to, change.reason);
      } catch (err) {
        this.deps.log.warn({ err, tenant: change.tenant, deployment: change.name }, 'autoscaler: could not resize the deployment');
      }
    }
  }
}
