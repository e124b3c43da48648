// A task driver runs one allocation on this host: the docker driver as a container (dockerode),
// the process driver as a child process of the agent for hosts without Docker. The reconciler
// (agent/reconciler.ts) is the only caller; it decides what should run, a driver only does it.
// Every driver finds the tasks it started again after an agent restart (`list`), so the agent
// adopts them instead of starting duplicates (DESIGN principle 7).
import type { RunSpec } from '../../shared/workloads.js';
import type { TaskOwner } from '../task-dirs.js';

export interface Mount {
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
}

/** Everything a driver needs to start one allocation's task. */
export interface Task {
  allocationId: string;
  /** "deployment" | "job", and the workload's name and tenant, for labels and logs. */
  kind: string;
  workload: string;
  tenant: string;
  spec: RunSpec;
  cpuMillis: number;
  memoryBytes: number;
  /** GPU devices assigned by the scheduler (nvidia-smi indexes). */
  gpuIndexes: number[];
  /** Host port the server's `spec.port` is published on (0: none). */
  hostPort: number;
  /** Model and datasets from the cache, as the reconciler resolved them (read-only). */
  mounts: Mount[];
  /** The full environment (shared/workloads.ts taskEnvironment plus the spec's env). */
  env: Record<string, string>;
}

export interface TaskStatus {
  allocationId: string;
  /** The Task's kind ("deployment" | "job"); '' when the driver does not know it. */
  kind: string;
  running: boolean;
  /** Set once the task has exited; undefined while running or when unknown (adopted and gone). */
  exitCode: number | undefined;
  startedAtMs: number;
  /** When it ended (or was stopped); 0 while running, or when the driver cannot tell. */
  finishedAtMs: number;
  /** Why it stopped when the driver knows more than the exit code ("OOM killed"). */
  reason: string;
}

export interface LogOptions {
  /** Only the last this many bytes of what is kept (0: all of it). */
  tailBytes: number;
  /** Go on with new output until the task ends or `signal` aborts. */
  follow: boolean;
  signal: AbortSignal;
}

/** What a driver says of a start as it goes, for its phase timings (shared/start-phases.ts). */
export interface StartHooks {
  /** The task was created (its container, or the process driver's task directory) and is about to start. */
  created?(): void;
}

export interface Driver {
  readonly name: 'docker' | 'process';
  /** The user tasks run as, who owns their writable directories; undefined: the agent's own. */
  readonly taskOwner?: TaskOwner;
  /**
   * Starts the task. Idempotent: a task of this allocation that already exists (running or
   * exited) is left as it is. `hooks.created` is called once the task is created, before it is
   * started (not for a task that already existed).
   */
  start(task: Task, hooks?: StartHooks): Promise<void>;
  /**
   * Stops the task (SIGTERM, then SIGKILL after `graceMs`) and keeps it, ended, with its logs:
   * it holds no resources and binds no port, `list` shows it as not running with the time it
   * ended, and `logs` still reads it. Idempotent; nothing happens to a task that is not there.
   */
  stop(allocationId: string, graceMs: number): Promise<void>;
  /** Stops the task (as `stop`) and removes it with its logs. Idempotent. */
  remove(allocationId: string, graceMs: number): Promise<void>;
  /** Every task this driver started on this host that still exists, running, exited or stopped. */
  list(): Promise<TaskStatus[]>;
  /** The task's output (stdout and stderr interleaved), bounded by what the driver keeps. */
  logs(allocationId: string, options: LogOptions): AsyncIterable<Buffer>;
  close(): Promise<void>;
}
