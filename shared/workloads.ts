// Workload nouns shared by the coordinator, the agent and the CLI: what an allocation runs
// (the RunSpec the coordinator resolves and the agent's drivers execute), allocation and
// workload states, and the environment a task is given.
import type { ArtifactMetadata } from './proto.js';

/** A blob (model or dataset version) the task needs in the node's cache, and where it goes. */
export interface RunBlob {
  kind: 'model' | 'dataset';
  /** What it was resolved from, for logs and events: "tenant/name:3". */
  ref: string;
  /** The artifact's name (datasets are mounted at /data/<name>). */
  name: string;
  version: number;
  digest: string;
  sizeBytes: number;
  /** The blob is a packed directory (unpacked in the cache). */
  directory: boolean;
  /** Where the container sees it (read-only): /model, /data/<name>. */
  mountPath: string;
}

/** Where a job's model goes (JobSpec.output, resolved): pushed from rank 0's /output on success. */
export interface RunOutput {
  /** A model name of the job's tenant: the push is its next version. */
  model: string;
  /** '' : from the file's extension (or saved_model.pb in a directory), else other. */
  format: string;
  /** As given; the coordinator sets sourceJob and sourceDatasets when it takes the push. */
  metadata: ArtifactMetadata;
}

/** The writable directories a job's worker gets, in containers. */
export const OUTPUT_MOUNT = '/output';
export const CHECKPOINT_MOUNT = '/checkpoint';
/** The port each worker of a multi-worker job listens on for its peers, inside its container. */
export const JOB_PEER_PORT = 29500;

/**
 * What an allocation runs, resolved by the coordinator (stack, image, model version) and sent to
 * the agent as Allocation.spec_json. The agent needs nothing else to run it, even while the
 * control plane is away.
 */
export interface RunSpec {
  /** Container image (docker driver). The process driver runs `command` on the host instead. */
  image: string;
  /** argv; empty: the image's own entrypoint and command. */
  command: string[];
  env: Record<string, string>;
  /** Port the server listens on inside the container (0: none, as for most jobs). */
  port: number;
  /** HTTP GET path that answers 200 once the server is ready ('' : ready once running). */
  readinessPath: string;
  /** How long a server may take to become ready before the allocation fails (ms). */
  readinessTimeoutMs: number;
  /** Serving: the model; jobs: none (their inputs are datasets). */
  model: RunBlob | undefined;
  datasets: RunBlob[];
  /** Jobs: the worker's index and the gang's size (a partitioned job's: the partition and K). */
  rank: number;
  worldSize: number;
  /** Partitioned jobs: K, the number of partitions (this worker's partition is `rank`). */
  partitions?: number;
  /** Jobs: which attempt this is (1 = the first run; a retry counts up). */
  attempt?: number;
  /** Jobs with several workers: host:port of every rank, in rank order (MLFLEET_PEERS). */
  peers?: string[];
  /** Jobs: the model rank 0's /output becomes when the job succeeds. */
  output?: RunOutput;
  /**
   * Partitioned jobs with an output dataset: its name. Every partition's /output goes to the
   * leader as a part (a directory tar, empty or not) once it exits 0; the leader makes the
   * dataset's version from the union of the parts.
   */
  outputDataset?: string;
}

/** The lifecycle of one allocation as its agent reports it. */
export const ALLOCATION_STATES = ['pending', 'pulling', 'starting', 'running', 'ready', 'failed', 'completed', 'stopped'] as const;
export type AllocationState = (typeof ALLOCATION_STATES)[number];

/** States after which an allocation never runs again. */
export const TERMINAL_STATES: ReadonlySet<AllocationState> = new Set(['failed', 'completed', 'stopped']);

export const DEPLOYMENT_STATUSES = ['available', 'progressing', 'pending', 'degraded'] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];

export const JOB_STATUSES = ['pending', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Where the model is mounted in a serving container when the stack says nothing else. */
export const MODEL_MOUNT = '/model';
export const DEFAULT_READINESS_PATH = '/v2/health/ready';

/**
 * The environment every task gets besides its own `env`: who it is, where its inputs are and
 * which port to serve on. The process driver points the paths at the cache on the host; the
 * docker driver at the mounts.
 */
export function taskEnvironment(
  allocationId: string,
  spec: RunSpec,
  paths: { model: string | undefined; datasets: Record<string, string>; port: number; output?: string; checkpoint?: string },
): Record<string, string> {
  const env: Record<string, string> = {
    MLFLEET_ALLOCATION_ID: allocationId,
    MLFLEET_RANK: String(spec.rank),
    MLFLEET_WORLD_SIZE: String(spec.worldSize),
    ...(spec.attempt !== undefined ? { MLFLEET_ATTEMPT: String(spec.attempt) } : {}),
  };
  if (spec.partitions) {
    env.MLFLEET_PARTITION = String(spec.rank);
    env.MLFLEET_PARTITIONS = String(spec.partitions);
  }
  if (spec.peers && spec.peers.length > 0) {
    // torch.distributed's env:// rendezvous reads MASTER_ADDR and MASTER_PORT.
    env.MLFLEET_PEERS = spec.peers.join(',');
    const master = splitHostPort(spec.peers[0]!);
    env.MASTER_ADDR = master.host;
    env.MASTER_PORT = master.port;
  }
  if (paths.output !== undefined) env.MLFLEET_OUTPUT_PATH = paths.output;
  if (paths.checkpoint !== undefined) env.MLFLEET_CHECKPOINT_PATH = paths.checkpoint;
  if (paths.model !== undefined) env.MLFLEET_MODEL_PATH = paths.model;
  // The name and version a serving runtime answers under (the ONNX stack's /v2/models/{name}).
  if (spec.model !== undefined) {
    env.MLFLEET_MODEL_NAME = spec.model.name;
    env.MLFLEET_MODEL_VERSION = String(spec.model.version);
  }
  if (paths.port > 0) env.PORT = String(paths.port);
  for (const [name, dir] of Object.entries(paths.datasets)) env[`MLFLEET_DATASET_${envName(name)}`] = dir;
  return { ...env, ...spec.env };
}

/** "host:port" or "[v6]:port" → its parts (the host without brackets). */
export function splitHostPort(address: string): { host: string; port: string } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  return { host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port: address.slice(colon + 1) };
}

function envName(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}
