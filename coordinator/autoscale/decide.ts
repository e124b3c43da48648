// The autoscaler's decision for one deployment (docs/autoscaling.md "Decisions"): how many
// replicas it should have now, from the fleet-wide concurrency the gateways report. Pure: no
// I/O, no timers, no clock; the runner (autoscaler.ts) gathers the inputs, keeps the state
// between ticks and applies the result.
import { formatDuration } from '../../shared/units.js';
import { DEFAULT_TARGET_CONCURRENCY, type AutoscaledDeployment, type AutoscalerView } from './target.js';

export interface DecideOptions {
  /** Window of the stable mean (scale-ups in the ordinary course). */
  stableWindowMs: number;
  /** Window of the panic mean (sudden spikes). */
  panicWindowMs: number;
  /** Panic when the panic recommendation is at least this many times the current size. */
  panicThreshold: number;
  /** A scale-down goes only to the highest panic recommendation of this long, and never within this long of a scale-up. */
  scaleDownDelayMs: number;
}

export const DEFAULT_DECIDE_OPTIONS: Readonly<DecideOptions> = {
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  scaleDownDelayMs: 60_000,
};

interface Sample {
  atMs: number;
  concurrency: number;
  requests: number;
}

interface Recommendation {
  atMs: number;
  replicas: number;
  /** The panic mean it came from (for the reason). */
  concurrency: number;
}

/** What the autoscaler remembers of one deployment between ticks. */
export interface ScalerState {
  /** First tick: no scale-down before a scale-down delay of history. */
  sinceMs: number;
  samples: Sample[];
  /** Panic recommendations, a scale-down delay and a panic window back. */
  recommendations: Recommendation[];
  panicking: boolean;
  /** Last tick at which the panic condition held. */
  panicConditionAtMs: number;
  /** Last scale-up (a wake included); undefined: none yet. */
  lastScaleUpMs: number | undefined;
  /** Last tick with a request arrived, in flight or held (or the first tick). */
  lastActivityMs: number;
  lastDecision: string;
  lastDecisionAtMs: number;
}

export interface DecideInput {
  nowMs: number;
  policy: AutoscaledDeployment;
  /** Fleet-wide mean concurrency now (the sum over gateways of their means). */
  concurrency: number;
  /** Fleet-wide requests in flight now, held ones included. */
  inFlight: number;
  /** Fleet-wide requests held for want of a ready replica. */
  waiting: number;
  /** Requests arrived since the last tick. */
  requests: number;
  /** A gateway asked for a wake-up since the last tick. */
  wake: boolean;
}

export interface Decision {
  state: ScalerState;
  /** The size it should have; equal to policy.replicas when nothing changes. */
  desired: number;
  /** Why it changes (the event); undefined when desired = policy.replicas. */
  reason: string | undefined;
  view: AutoscalerView;
}

export function initialScalerState(nowMs: number): ScalerState {
  return {
    sinceMs: nowMs,
    samples: [],
    recommendations: [],
    panicking: false,
    panicConditionAtMs: 0,
    lastScaleUpMs: undefined,
    lastActivityMs: nowMs,
    lastDecision: '',
    lastDecisionAtMs: 0,
  };
}

/** Replicas for `concurrency` in flight at `target` per replica. */
function recommend(concurrency: number, target: number): number {
  // A hair of float error must not add a replica (12 / 4 = 3, not 3.0000001 → 4).
  return Math.max(0, Math.ceil(concurrency / target - 1e-9));
}

/** Entries (oldest first) newer than `fromMs`, copied, with room for one more. */
function since<T extends { atMs: number }>(entries: readonly T[], fromMs: number): T[] {
  let i = 0;
  while (i < entries.length && entries[i]!.atMs <= fromMs) i++;
  return entries.slice(i);
}

/** Mean concurrency of the samples newer than each of two times (oldest first). */
function means(samples: readonly Sample[], stableFromMs: number, panicFromMs: number): { stable: number; panic: number } {
  let stableSum = 0;
  let stableN = 0;
  let panicSum = 0;
  let panicN = 0;
  for (const s of samples) {
    if (s.atMs > stableFromMs) {
      stableSum += s.concurrency;
      stableN++;
    }
    if (s.atMs > panicFromMs) {
      panicSum += s.concurrency;
      panicN++;
    }
  }
  return { stable: stableN === 0 ? 0 : stableSum / stableN, panic: panicN === 0 ? 0 : panicSum / panicN };
}

function figure(concurrency: number): string {
  return Number(concurrency.toFixed(1)).toString();
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : `${n} ${many}`;
}

export function decide(previous: ScalerState, input: DecideInput, options: DecideOptions = DEFAULT_DECIDE_OPTIONS): Decision {
  const { nowMs, policy } = input;
  const o = options;
  const current = policy.replicas;
  const target = policy.targetConcurrency > 0 ? policy.targetConcurrency : DEFAULT_TARGET_CONCURRENCY;
  const concurrency = Number.isFinite(input.concurrency) ? Math.max(0, input.concurrency) : 0;

  // Samples and means.
  const keepFrom = nowMs - Math.max(o.stableWindowMs, o.panicWindowMs);
  const samples = since(previous.samples, keepFrom);
  samples.push({ atMs: nowMs, concurrency, requests: input.requests });
  const { stable: stableMean, panic: panicMean } = means(samples, nowMs - o.stableWindowMs, nowMs - o.panicWindowMs);
  const stableRec = recommend(stableMean, target);
  // The panic signal also takes the latest figure (the gateways' last second): a step is seen
  // within a tick or two, not once it has filled a panic window's mean. Ordinary noise stays far
  // below the panic threshold (twice the current capacity), so it does not panic on it.
  const panicSignal = Math.max(panicMean, concurrency);
  const panicRec = recommend(panicSignal, target);
  const recommendations = since(previous.recommendations, nowMs - o.scaleDownDelayMs - o.panicWindowMs);
  recommendations.push({ atMs: nowMs, replicas: panicRec, concurrency: panicSignal });

  // Activity (scale to zero) and panic.
  const active = input.requests > 0 || input.inFlight > 0 || input.waiting > 0 || input.wake;
  const lastActivityMs = active ? nowMs : previous.lastActivityMs;
  const panicCondition = current > 0 && panicRec >= o.panicThreshold * current;
  let panicking = previous.panicking;
  let panicConditionAtMs = previous.panicConditionAtMs;
  if (panicCondition) {
    panicking = true;
    panicConditionAtMs = nowMs;
  } else if (panicking && nowMs - panicConditionAtMs >= o.stableWindowMs) {
    panicking = false;
  }

  // Bounds.
  const toZero = policy.minReplicas === 0 && policy.scaleToZeroAfterMs > 0;
  const idleMs = nowMs - lastActivityMs;
  // At zero it stays there until a request comes (a new leader does not wake what sleeps).
  const floor = toZero ? (current === 0 || idleMs >= policy.scaleToZeroAfterMs ? 0 : 1) : Math.max(policy.minReplicas, 1);
  const ceiling = policy.maxReplicas;

  let wanted = current;
  let why: string | undefined;
  if (current === 0) {
    if (active) {
      wanted = Math.max(1, panicRec);
      const waiting = Math.max(input.waiting, input.wake ? 1 : 0, input.inFlight);
      why = waiting > 0 ? `${plural(waiting, 'a request is', 'requests are')} waiting` : `${plural(input.requests, 'a request', 'requests')} arrived`;
    }
  } else if (panicking) {
    if (panicRec > current) {
      wanted = panicRec;
      why = `${figure(panicSignal)} in flight / target ${target} (panic)`;
    }
  } else if (stableRec > current) {
    wanted = stableRec;
    why = `${figure(stableMean)} in flight / target ${target}`;
  } else if (
    nowMs - previous.sinceMs >= o.scaleDownDelayMs &&
    (previous.lastScaleUpMs === undefined || nowMs - previous.lastScaleUpMs >= o.scaleDownDelayMs)
  ) {
    // Down only to the highest panic recommendation of the delay, and only once that highest
    // has stopped falling (the one a panic window earlier is no higher): the tail of a spike
    // leaving the delay then gives one scale-down, not one per step of the tail.
    let highest = recommendations[recommendations.length - 1]!;
    let before = 0;
    for (const r of recommendations) {
      before = Math.max(before, r.replicas);
      if (r.atMs > nowMs - o.scaleDownDelayMs && r.replicas > highest.replicas) highest = r;
    }
    // Never under the stable recommendation either, so a shorter delay than the stable window
    // cannot make a scale-down that the next tick undoes.
    const down = Math.max(highest.replicas, stableRec);
    if (down < current && before <= highest.replicas) {
      wanted = down;
      why = `${figure(down === highest.replicas ? highest.concurrency : stableMean)} in flight / target ${target}`;
    }
  }
  // Idle long enough: to zero whatever the delays say (no request at all for that long).
  if (toZero && floor === 0 && current > 0) {
    wanted = 0;
    why = `idle for ${formatDuration(idleMs)}`;
  }

  let desired = wanted;
  let blocked = '';
  if (desired < floor) {
    desired = floor;
    why ??= policy.minReplicas > 0 ? `min replicas is ${policy.minReplicas}` : 'scale to zero is off';
  }
  if (desired > ceiling) {
    blocked = `at max replicas (${ceiling}): ${desired} wanted`;
    desired = ceiling;
    if (current > ceiling) why = `max replicas is ${ceiling}`;
  }
  if (policy.quotaHeadroom !== undefined && desired > current + policy.quotaHeadroom) {
    const allowed = policy.quotaHeadroom;
    blocked = `tenant ${policy.tenant} is at its quota: ${allowed === 0 ? 'no more replicas' : plural(allowed, '1 more replica', 'more replicas')} allowed`;
    desired = Math.max(current, Math.min(desired, current + allowed));
  }

  let reason: string | undefined;
  let lastDecision = previous.lastDecision;
  let lastDecisionAtMs = previous.lastDecisionAtMs;
  let lastScaleUpMs = previous.lastScaleUpMs;
  if (desired !== current) {
    reason = `${current === 0 ? 'woke' : 'scaled'} ${current} → ${desired}: ${why ?? 'bounds'}`;
    lastDecision = reason;
    lastDecisionAtMs = nowMs;
    if (desired > current) lastScaleUpMs = nowMs;
  }

  const window = Math.min(o.panicWindowMs, Math.max(nowMs - previous.sinceMs, 1));
  let arrived = 0;
  for (const s of samples) if (s.atMs > nowMs - o.panicWindowMs) arrived += s.requests;
  const state: ScalerState = {
    sinceMs: previous.sinceMs,
    samples,
    recommendations,
    panicking,
    panicConditionAtMs,
    lastScaleUpMs,
    lastActivityMs,
    lastDecision,
    lastDecisionAtMs,
  };
  return {
    state,
    desired,
    reason,
    view: {
      desiredReplicas: desired,
      inFlight: input.inFlight,
      waiting: input.waiting,
      requestRate: (arrived * 1000) / window,
      stableConcurrency: stableMean,
      panicConcurrency: panicMean,
      panicking,
      lastDecision,
      lastDecisionAtMs,
      idleSinceMs: active ? 0 : lastActivityMs,
      blocked,
    },
  };
}
