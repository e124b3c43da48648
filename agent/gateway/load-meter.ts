// What the gateway tells the leader's autoscaler (docs/autoscaling.md, "Signals"): per
// deployment (tenant, name), the inference requests in flight (held ones included), their
// time-weighted mean over the report's interval, those held for want of a ready replica, and
// those that arrived. Reports go out through `send` (the agent session's `AgentMessage.load`):
// every second while any deployment is busy, once more after it quiets (so the leader sees
// zero), and at once, coalesced per deployment to one per WAKE_COALESCE_MS, when a request is
// held (`wake`). A surge — the mean since the last report, over at least SURGE_SPAN_MS, at
// least SURGE_FACTOR times the last reported one — is reported at once too, so a step in load
// reaches the leader within a quarter second rather than at the next tick of the second.
//
// On the request path: arrive/depart are O(1) arithmetic on a meter the caller keeps for the
// request's life (found once, through two Map lookups with no key built); the only timer is the
// one report tick, armed when the first request of a quiet spell arrives. Pure apart from the
// injected clock: tested on a fake clock (test/agent/load-meter.test.ts).
import type { Clock, Timer } from '../../shared/clock.js';
import type { DeploymentLoad__Output as DeploymentLoad } from '../../shared/gen/mlfleet/v1/DeploymentLoad.js';
import type { GatewayLoad__Output as GatewayLoad } from '../../shared/gen/mlfleet/v1/GatewayLoad.js';

export const REPORT_INTERVAL_MS = 1_000;
/** At most one immediate (wake) report per deployment this often. */
export const WAKE_COALESCE_MS = 100;
/** A surge report needs a mean over at least this long, and goes at most this often per deployment. */
export const SURGE_SPAN_MS = 250;
/** A surge: the running mean at least this many times the last reported one (and at least 2 in flight). */
export const SURGE_FACTOR = 2;

/** One deployment's counts; the gateway holds it from a request's arrival to its end. */
export class DeploymentMeter {
  inFlight = 0;
  waiting = 0;
  arrivals = 0;
  /** ∫ inFlight dt since the interval began (request·ms). */
  private area = 0;
  private changedAt: number;
  private intervalStart: number;
  /** A request was held in this interval. */
  private woke = false;
  /** The last report said nothing was happening: nothing more to say until something does. */
  settled = true;
  lastWakeAt = -Infinity;
  wakeTimer: Timer | undefined;
  /** The mean concurrency of the last interval reported (surges are measured against it). */
  reported = 0;

  constructor(
    readonly tenant: string,
    readonly deployment: string,
    now: number,
  ) {
    this.changedAt = now;
    this.intervalStart = now;
  }

  /** Moves the integral to `now` (call before inFlight changes). */
  advance(now: number): void {
    this.area += this.inFlight * (now - this.changedAt);
    this.changedAt = now;
  }

  /** A quiet meter's interval starts again with its next request (so a long quiet spell does not dilute the mean). */
  restart(now: number): void {
    this.changedAt = now;
    this.intervalStart = now;
    this.settled = false;
  }

  /** When the interval being measured began. */
  get intervalStartMs(): number {
    return this.intervalStart;
  }

  /** Whether the running mean (over at least SURGE_SPAN_MS) is a surge against the last report. */
  surging(now: number): boolean {
    const span = now - this.intervalStart;
    if (span < SURGE_SPAN_MS) return false;
    const mean = (this.area + this.inFlight * (now - this.changedAt)) / span;
    return mean >= 2 && mean >= SURGE_FACTOR * this.reported;
  }

  markWake(): void {
    this.woke = true;
  }

  /** The figures since the interval began; `reset` starts a new interval (periodic reports do, wakes do not). */
  snapshot(now: number, reset: boolean, wake: boolean): DeploymentLoad {
    this.advance(now);
    const span = now - this.intervalStart;
    const load: DeploymentLoad = {
      tenant: this.tenant,
      deployment: this.deployment,
      concurrency: span > 0 ? this.area / span : this.inFlight,
      inFlight: this.inFlight,
      waiting: this.waiting,
      requests: this.arrivals,
      wake: wake || this.waiting > 0 || this.woke,
    };
    if (reset) {
      this.reported = load.concurrency;
      this.settled = this.inFlight === 0 && this.arrivals === 0 && this.area === 0;
      this.area = 0;
      this.arrivals = 0;
      this.woke = false;
      this.intervalStart = now;
    }
    return load;
  }
}

export interface LoadMeterOptions {
  clock: Clock;
  /** Where reports go (the agent session); a report sent while disconnected may be dropped. */
  send: (load: GatewayLoad) => void;
  intervalMs?: number;
}

export class LoadMeter {
  private readonly byTenant = new Map<string, Map<string, DeploymentMeter>>();
  private tick: Timer | undefined;
  private readonly intervalMs: number;
  private closed = false;

  constructor(private readonly options: LoadMeterOptions) {
    this.intervalMs = options.intervalMs ?? REPORT_INTERVAL_MS;
  }

  /** The meter of one deployment (made on first use). */
  meter(tenant: string, deployment: string): DeploymentMeter {
    let deployments = this.byTenant.get(tenant);
    if (!deployments) {
      deployments = new Map();
      this.byTenant.set(tenant, deployments);
    }
    let meter = deployments.get(deployment);
    if (!meter) {
      meter = new DeploymentMeter(tenant, deployment, this.options.clock.now());
      deployments.set(deployment, meter);
    }
    return meter;
  }

  /** A request for the deployment arrived (it is in flight until depart). */
  arrive(meter: DeploymentMeter): void {
    const now = this.options.clock.now();
    if (meter.settled) meter.restart(now);
    else meter.advance(now);
    meter.inFlight += 1;
    meter.arrivals += 1;
    if (this.tick === undefined && !this.closed) this.tick = this.options.clock.setTimeout(this.report, this.intervalMs);
    else if (!this.closed && meter.surging(now)) this.options.send({ sentAtMs: now, intervalMs: now - meter.intervalStartMs, deployments: [meter.snapshot(now, true, false)] });
  }

  /** The request ended (answered, refused, or its client went away). */
  depart(meter: DeploymentMeter): void {
    meter.advance(this.options.clock.now());
    meter.inFlight -= 1;
  }

  /** An arrived request is held for want of a ready replica: the leader hears of it at once. */
  hold(meter: DeploymentMeter): void {
    meter.waiting += 1;
    meter.markWake();
    this.wake(meter);
  }

  /** A held request left the queue (forwarded, refused, or gone). */
  unhold(meter: DeploymentMeter): void {
    meter.waiting -= 1;
  }

  /** After a reconnect (a new leader): every deployment with held requests is reported again at once, with wake. */
  rewake(): void {
    for (const deployments of this.byTenant.values()) {
      for (const meter of deployments.values()) if (meter.waiting > 0) this.wake(meter, true);
    }
  }

  close(): void {
    this.closed = true;
    this.tick?.cancel();
    this.tick = undefined;
    for (const deployments of this.byTenant.values()) for (const meter of deployments.values()) meter.wakeTimer?.cancel();
  }

  /** An immediate report of this deployment, unless one went within WAKE_COALESCE_MS (then one goes when that time is up). */
  private wake(meter: DeploymentMeter, force = false): void {
    if (this.closed) return;
    const now = this.options.clock.now();
    const since = now - meter.lastWakeAt;
    if (!force && since < WAKE_COALESCE_MS) {
      meter.wakeTimer ??= this.options.clock.setTimeout(() => {
        meter.wakeTimer = undefined;
        this.wake(meter, true);
      }, WAKE_COALESCE_MS - since);
      return;
    }
    meter.wakeTimer?.cancel();
    meter.wakeTimer = undefined;
    meter.lastWakeAt = now;
    this.options.send({ sentAtMs: now, intervalMs: 0, deployments: [meter.snapshot(now, false, true)] });
  }

  /** The periodic report: every deployment not yet settled; re-armed while any has something to say. */
  private readonly report = (): void => {
    this.tick = undefined;
    const now = this.options.clock.now();
    const deployments: DeploymentLoad[] = [];
    let busy = false;
    for (const [tenant, meters] of this.byTenant) {
      for (const [name, meter] of meters) {
        if (meter.settled) {
          // Quiet and said so: forgotten (made again by the next request), so the map holds only live deployments.
          if (meter.inFlight === 0 && meter.waiting === 0 && meter.wakeTimer === undefined) meters.delete(name);
          continue;
        }
        deployments.push(meter.snapshot(now, true, false));
        busy = true;
      }
      if (meters.size === 0) this.byTenant.delete(tenant);
    }
    if (deployments.length > 0) this.options.send({ sentAtMs: now, intervalMs: this.intervalMs, deployments });
    if (busy && !this.closed) this.tick = this.options.clock.setTimeout(this.report, this.intervalMs);
  };
}
