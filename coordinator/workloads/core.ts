// What the workload controller's concerns share: the state it holds (deployments, jobs,
// allocations, as last read or written, with their store revisions), its one mutation queue, and
// the writes and events every concern makes. The controller (controller.ts) owns it and runs the
// pass; jobs.ts, deployments.ts and autoscaled.ts each act on it for their concern.
import { randomBytes } from 'node:crypto';
import { NotFoundError } from '../../shared/errors.js';
import type { ResourceRequest } from '../../shared/proto.js';
import type { Op } from '../../shared/store/store.js';
import type { FencedWriter } from '../node-registry.js';
import type { Ask } from '../scheduler/types.js';
import type { EventInput } from './event-log.js';
import type { NodeHealth, Stop } from './reconcile.js';
import type { AllocationRecord, DeploymentRecord, JobRecord, WorkloadKind } from './records.js';
import type { WorkloadControllerDeps, WorkloadControllerOptions } from './controller.js';

export interface Stored<T> {
  record: T;
  modRevision: number;
}

export interface PendingAsk {
  ask: Ask;
  kind: WorkloadKind;
  tenant: string;
  name: string;
  allocation: Omit<AllocationRecord, 'node' | 'gpuIndexes' | 'hostPort'>;
}

export type EventArgs = Omit<EventInput, 'allocation' | 'node'> & Partial<Pick<EventInput, 'allocation' | 'node'>>;

/** The controller's state and shared operations, as its concerns see them. */
export interface WorkloadCore {
  readonly deps: WorkloadControllerDeps;
  readonly options: WorkloadControllerOptions;
  readonly deployments: Map<string, Stored<DeploymentRecord>>;
  readonly jobs: Map<string, Stored<JobRecord>>;
  readonly allocations: Map<string, Stored<AllocationRecord>>;
  /** Why a workload's replicas or workers are waiting (the scheduler's last explanation), by workloadKey. */
  readonly pendingReasons: Map<string, string>;
  /** Whether leadership ended (the controller was closed). */
  closed(): boolean;
  /** Runs `fn` in the one mutation queue. */
  mutate<T>(fn: () => Promise<T>): Promise<T>;
  /** Asks for a reconcile pass soon. */
  kick(): void;
  /** Sends each node whose desired set changed its new set. */
  pushDesired(): void;
  /** Records an event; one about a whole workload names no allocation and no node. */
  event(input: EventArgs): void;
  putWorkload<T extends DeploymentRecord | JobRecord>(map: Map<string, Stored<T>>, key: string, record: T, existing: Stored<T> | undefined): Promise<void>;
  writeStops(stops: Stop[], extra?: Op[], compares?: Parameters<FencedWriter['txn']>[0], keepStatus?: boolean): Promise<void>;
  writeAllocations(updates: AllocationRecord[], extra?: Op[], compares?: Parameters<FencedWriter['txn']>[0]): Promise<void>;
  allocationsOf(kind: WorkloadKind, tenant: string, name: string): AllocationRecord[];
  /** Every allocation by its workloadKey, in one scan (allocationsOf scans once per call). */
  byWorkload(): Map<string, AllocationRecord[]>;
  nodeHealth(): (node: string) => NodeHealth;
}

/** What a replica or worker reserves when its spec asks for nothing. */
export const DEFAULT_RESOURCES = { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 };

export function found<T>(stored: T | undefined, what: string): T {
  if (!stored) throw new NotFoundError(`${what} not found`);
  return stored;
}

/** The keys of a tenant's (or, undefined, every tenant's) workloads, in key order. */
export function listed(map: Map<string, Stored<{ tenant: string }>>, tenant: string | undefined): string[] {
  return [...map.entries()]
    .filter(([, stored]) => tenant === undefined || stored.record.tenant === tenant)
    .map(([key]) => key)
    .sort();
}

export function withDefaults(requested: ResourceRequest | null): ResourceRequest {
  const r = requested ?? { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 };
  return {
    cpuMillis: r.cpuMillis || DEFAULT_RESOURCES.cpuMillis,
    memoryBytes: r.memoryBytes || DEFAULT_RESOURCES.memoryBytes,
    gpus: r.gpus,
    gpuMemoryBytes: r.gpuMemoryBytes,
    gpuModel: r.gpuModel,
    nicMbps: r.nicMbps,
  };
}

export function newAllocationId(): string {
  return randomBytes(8).toString('hex');
}

/** A new allocation, pending, to run `run` (placement fills node, GPUs and port). */
export function newAllocation(
  now: number,
  id: string,
  kind: WorkloadKind,
  tenant: string,
  workload: string,
  priority: number,
  resources: ResourceRequest,
  run: AllocationRecord['run'],
  generation: number,
  attempt: number,
  rank: number,
): PendingAsk['allocation'] {
  return { id, kind, workload, tenant, priority, resources, run, generation, attempt, rank, desired: 'run', status: 'pending', reason: '', endpoint: '', exitCode: 0, outputVersion: 0, createdAtMs: now, updatedAtMs: now };
}
