// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/deployments.ts, which keeps the table and detail renderings.
import { ROLLOUT_DEFAULTS as guardDefaults } from '../rollout-spec.js';
import { DEFAULT_TARGET_CONCURRENCY, isAutoscaled } from '../autoscale-spec.js';
import type { AutoscalerView, Deployment, DeploymentTraffic } from '../proto.js';
import { isoOrNull, sortedRecord } from './json.js';
import { allocationJson, resourcesJson, type AllocationJson, type ResourcesJson } from './allocations.js';

export interface DeploymentJson {
  name: string;
  tenant: string;
  /** The REF as given: name, name:3 or name@alias. */
  model: string;
  /** The model version the REF resolved to (0 before it did). */
  resolvedVersion: number;
  modelDigest: string;
  /** One of stack and image is set; the other is ''. */
  stack: string;
  image: string;
  command: string[];
  env: Record<string, string>;
  /** 0: the stack's port (or 8080). */
  port: number;
  /** '': the stack's (or /v2/health/ready). */
  readinessPath: string;
  replicas: number;
  readyReplicas: number;
  /** available | progressing | pending | degraded */
  status: string;
  /** Why, when replicas are pending or failing; '' otherwise. */
  message: string;
  generation: number;
  resources: ResourcesJson;
  constraints: Record<string, string>;
  /** 0: no limit. */
  maxPerNode: number;
  priority: number;
  rollout: { maxSurge: number; maxUnavailable: number };
  /** Anonymous inference through the gateways (--public). */
  public: boolean;
  /** The largest request body the gateways pass on; 0: the default (8 MiB). */
  maxRequestBytes: number;
  /** The bounds of an autoscaled deployment (docs/autoscaling.md); null for a fixed size. */
  autoscaling: AutoscalingJson | null;
  /** What the leader's autoscaler sees and last decided; null for a fixed size (or before it has looked). */
  autoscaler: AutoscalerJson | null;
  /** What the gateways measure of its replicas, fleet-wide; null before any gateway reported lately. */
  traffic: TrafficJson | null;
  /** Changes roll out as canaries of this share (1–99); null: plain rolling updates. */
  canary: { percent: number; readyReplicas: number } | null;
  /** Automatic rollback's thresholds, defaults filled in; null: off. */
  autoRollback: { maxErrorRate: number; maxP99Ratio: number; watchMs: number; minRequests: number } | null;
  /** The model version last fully rolled out and healthy through its watch (0: none yet). */
  lastGoodVersion: number;
  /** Rolled back: not following its alias until applied or promoted. */
  pinned: boolean;
  allocations: AllocationJson[];
  createdAt: string | null;
  updatedAt: string | null;
}

export interface AutoscalingJson {
  minReplicas: number;
  maxReplicas: number;
  /** In-flight requests per replica aimed at (the default, 4, filled in). */
  targetConcurrency: number;
  /** 0: never to zero. */
  scaleToZeroAfterMs: number;
}

export interface AutoscalerJson {
  desiredReplicas: number;
  inFlight: number;
  waiting: number;
  requestRate: number;
  stableConcurrency: number;
  panicConcurrency: number;
  panicking: boolean;
  lastDecision: string;
  lastDecisionAt: string | null;
  /** null: requests seen lately. */
  idleSince: string | null;
  /** Why it cannot grow; '' when it can. */
  blocked: string;
}

export interface TrafficJson {
  /** Requests per second. */
  requestRate: number;
  p50Ms: number;
  p99Ms: number;
  /** The share of requests that failed, 0-1. */
  errorRate: number;
  measuredAt: string | null;
}

function trafficJson(t: DeploymentTraffic): TrafficJson {
  return { requestRate: t.requestRate, p50Ms: t.p50Ms, p99Ms: t.p99Ms, errorRate: t.errorRate, measuredAt: isoOrNull(Number(t.measuredAtMs)) };
}

function autoscalerJson(v: AutoscalerView): AutoscalerJson {
  return {
    desiredReplicas: v.desiredReplicas,
    inFlight: v.inFlight,
    waiting: v.waiting,
    requestRate: v.requestRate,
    stableConcurrency: v.stableConcurrency,
    panicConcurrency: v.panicConcurrency,
    panicking: v.panicking,
    lastDecision: v.lastDecision,
    lastDecisionAt: isoOrNull(Number(v.lastDecisionAtMs)),
    idleSince: isoOrNull(Number(v.idleSinceMs)),
    blocked: v.blocked,
  };
}

export function deploymentJson(d: Deployment): DeploymentJson {
  const spec = d.spec;
  return {
    name: spec?.name ?? '',
    tenant: d.tenant,
    model: spec?.model ?? '',
    resolvedVersion: d.resolvedVersion,
    modelDigest: d.modelDigest,
    stack: spec?.stack ?? '',
    image: spec?.image ?? '',
    command: [...(spec?.command ?? [])],
    env: sortedRecord(spec?.env ?? {}),
    port: spec?.port ?? 0,
    readinessPath: spec?.readinessPath ?? '',
    replicas: spec?.replicas ?? 0,
    readyReplicas: d.readyReplicas,
    status: d.status,
    message: d.message,
    generation: d.generation,
    resources: resourcesJson(spec?.resources ?? null),
    constraints: sortedRecord(spec?.constraints ?? {}),
    maxPerNode: spec?.maxPerNode ?? 0,
    priority: spec?.priority ?? 0,
    rollout: { maxSurge: spec?.rollout?.maxSurge ?? 1, maxUnavailable: spec?.rollout?.maxUnavailable ?? 0 },
    public: spec?.public ?? false,
    maxRequestBytes: Number(spec?.maxRequestBytes ?? 0),
    autoscaling: isAutoscaled(spec)
      ? {
          minReplicas: spec!.minReplicas,
          maxReplicas: spec!.maxReplicas,
          targetConcurrency: spec!.targetConcurrency > 0 ? spec!.targetConcurrency : DEFAULT_TARGET_CONCURRENCY,
          scaleToZeroAfterMs: Number(spec!.scaleToZeroAfterMs),
        }
      : null,
    autoscaler: isAutoscaled(spec) && d.autoscaler ? autoscalerJson(d.autoscaler) : null,
    traffic: d.traffic ? trafficJson(d.traffic) : null,
    canary: (spec?.rollout?.canaryPercent ?? 0) > 0 ? { percent: spec!.rollout!.canaryPercent, readyReplicas: d.canaryReplicas } : null,
    autoRollback: spec?.rollout?.autoRollbackOff
      ? null
      : {
          maxErrorRate: spec?.rollout?.maxErrorRate || guardDefaults.maxErrorRate,
          maxP99Ratio: spec?.rollout?.maxP99Ratio || guardDefaults.maxP99Ratio,
          watchMs: Number(spec?.rollout?.watchMs ?? 0) || guardDefaults.watchMs,
          minRequests: spec?.rollout?.minRequests || guardDefaults.minRequests,
        },
    lastGoodVersion: d.lastGoodVersion,
    pinned: d.pinned,
    allocations: d.allocations.map(allocationJson),
    createdAt: isoOrNull(d.createdAtMs),
    updatedAt: isoOrNull(d.updatedAtMs),
  };
}

/** Whether ApplyDeployment made it just now (it answers with the deployment either way). */
export function wasCreated(d: Deployment): boolean {
  return d.generation === 1 && d.createdAtMs > 0 && d.createdAtMs === d.updatedAtMs;
}
