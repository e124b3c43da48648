// The typed client applications use (`import { connect } from 'mlfleet'`): the operations of
// models, datasets, deployments, jobs and inference, named as such platforms name them, over the
// gRPC CoordinatorClient (shared/client.ts) that mlfleetctl uses too. What goes in is what
// `mlfleetctl apply` and the flags take (base units); what comes out is the JSON shape
// `mlfleetctl … -o json` prints. Errors are the MlfleetError classes (shared/errors.ts).
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as delay } from 'node:timers/promises';
import type { ArtifactKind } from '../artifact-ref.js';
import { formatRef } from '../artifact-ref.js';
import type { CoordinatorClient } from '../client.js';
import { DeadlineExceededError } from '../errors.js';
import type { TlsMaterial } from '../tls.js';
import { compileDeploymentSpec, compileJobSpec, type DeploymentInput, type JobInput } from '../workload-spec.js';
import { artifactJson, artifactSummaryJson, artifactVersionJson, type ArtifactJson, type ArtifactSummaryJson, type ArtifactVersionJson } from '../views/artifacts.js';
import { deploymentJson, type DeploymentJson } from '../views/deployments.js';
import { jobJson, type JobJson } from '../views/jobs.js';
import { pullArtifact, pushArtifact, type Connection, type PushContent, type VersionMetadata } from './artifacts.js';
import type { ProgressFactory } from './artifact-transfer.js';
import { inferThrough, type InferRequest, type InferResponse, type InferTensor } from './infer.js';
import { jobLogs, waitForJob } from './jobs.js';

/** Options of every call that may name another tenant's object (admins only). */
export interface TenantOptions {
  tenant?: string;
  signal?: AbortSignal;
}

export interface PutOptions {
  /** The version's description (models: what selection by criteria reads). */
  metadata?: VersionMetadata;
  /** Point this alias at the new version once it is stored. */
  alias?: string;
  /** The content format (default: from the file extension; 'other' for bytes and streams). */
  format?: string;
  /** Required for a stream: its exact byte count. */
  sizeBytes?: number;
  signal?: AbortSignal;
  /** Called with each phase's byte counts (packing a directory, pushing). */
  progress?: ProgressFactory;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  progress?: ProgressFactory;
}

/** What `download` wrote: the version's JSON and where its content is now. */
export interface DownloadedJson extends ArtifactVersionJson {
  path: string;
}

/** Which version `get` describes: a number or an alias (neither: the artifact with all its versions). */
export type VersionSelector = { version: number; alias?: never } | { alias: string; version?: never };

/** Models or datasets: immutable numbered versions, aliases, pushed and pulled. */
export class Artifacts {
  constructor(
    private readonly conn: Connection,
    private readonly kind: ArtifactKind,
  ) {}

  /** Uploads a file or a directory (as a tar), bytes, or a stream as the next version of NAME. */
  async put(name: string, content: PushContent, options: PutOptions = {}): Promise<ArtifactVersionJson> {
    const version = await pushArtifact(this.conn, this.kind, name, content, options);
    if (options.alias) await this.conn.client.setAlias(this.kind, name, options.alias, version.version, { signal: options.signal });
    return artifactVersionJson(version);
  }

  /** NAME with its versions and aliases; with {version} or {alias}, that one version. */
  get(name: string, options?: { signal?: AbortSignal }): Promise<ArtifactJson>;
  get(name: string, which: VersionSelector & { signal?: AbortSignal }): Promise<ArtifactVersionJson>;
  async get(name: string, which: Partial<VersionSelector> & { signal?: AbortSignal } = {}): Promise<ArtifactJson | ArtifactVersionJson> {
    const { client } = this.conn;
    if (which.version === undefined && which.alias === undefined) return artifactJson(await client.getArtifact(this.kind, name, { signal: which.signal }), this.kind);
    const ref = formatRef({ name, version: which.version, alias: which.alias });
    return artifactVersionJson(await client.resolve(this.kind, ref, { signal: which.signal }));
  }

  /** Every NAME the caller's tenant has (admins: {tenant} for another's). */
  async list(options: TenantOptions = {}): Promise<ArtifactSummaryJson[]> {
    const { artifacts } = await this.conn.client.listArtifacts(this.kind, options.tenant, { signal: options.signal });
    return artifacts.map(artifactSummaryJson);
  }

  /** Points ALIAS of NAME at VERSION. */
  async alias(name: string, alias: string, version: number, options: { signal?: AbortSignal } = {}): Promise<ArtifactJson> {
    return artifactJson(await this.conn.client.setAlias(this.kind, name, alias, version, options), this.kind);
  }

  /**
   * Downloads REF (NAME, NAME:VERSION or NAME@ALIAS) to DEST, checked against its sha256: a file
   * to DEST (or DEST/NAME-vN.EXT when DEST is a directory), a directory into a new or empty DEST.
   */
  async download(ref: string, dest: string, options: DownloadOptions = {}): Promise<DownloadedJson> {
    const pulled = await pullArtifact(this.conn, this.kind, ref, dest, options);
    return { ...artifactVersionJson(pulled.version), path: pulled.path };
  }
}

export interface WaitDeploymentOptions extends TenantOptions {
  /** What counts as done (default: every replica of the current version ready, status "available"). */
  until?: (deployment: DeploymentJson) => boolean;
  /** Give up after this long (default 5 minutes). */
  timeoutMs?: number;
  pollMs?: number;
}

/** Serving deployments. */
export class Deployments {
  constructor(private readonly client: CoordinatorClient) {}

  /** Creates the deployment, or updates the one of that name (as `mlfleetctl apply`). */
  async create(spec: DeploymentInput, options: TenantOptions = {}): Promise<DeploymentJson> {
    return deploymentJson(await this.client.applyDeployment(compileDeploymentSpec(spec), options.tenant, { signal: options.signal }));
  }

  async get(name: string, options: TenantOptions = {}): Promise<DeploymentJson> {
    return deploymentJson(await this.client.getDeployment(name, options.tenant, { signal: options.signal }));
  }

  async list(options: TenantOptions = {}): Promise<DeploymentJson[]> {
    return (await this.client.listDeployments(options.tenant, { signal: options.signal })).deployments.map(deploymentJson);
  }

  /** Runs N replicas (0 stops them all and keeps the deployment). */
  async scale(name: string, replicas: number, options: TenantOptions = {}): Promise<DeploymentJson> {
    return deploymentJson(await this.client.scaleDeployment(name, replicas, options.tenant, { signal: options.signal }));
  }

  /** Stops every replica and forgets the deployment. */
  async delete(name: string, options: TenantOptions = {}): Promise<void> {
    await this.client.deleteDeployment(name, options.tenant, { signal: options.signal });
  }

  /** Resolves once the deployment is ready (or `until` says so); DeadlineExceededError after timeoutMs. */
  async wait(name: string, options: WaitDeploymentOptions = {}): Promise<DeploymentJson> {
    const until = options.until ?? ((d: DeploymentJson) => d.status === 'available' && d.readyReplicas >= d.replicas);
    const deadline = Date.now() + (options.timeoutMs ?? 5 * 60_000);
    for (;;) {
      const deployment = await this.get(name, options);
      if (until(deployment)) return deployment;
      if (Date.now() >= deadline) throw new DeadlineExceededError(`deployment "${name}" is not ready after ${options.timeoutMs ?? 300_000} ms: ${deployment.status}${deployment.message ? `: ${deployment.message}` : ''}`);
      await delay(options.pollMs ?? 500, undefined, { signal: options.signal });
    }
  }
}

export interface LogsOptions extends TenantOptions {
  /** Keep reading new output until the job's workers end (or `signal` aborts, or the loop breaks). */
  follow?: boolean;
  /** Only the last this many bytes kept of each worker. */
  tailBytes?: number;
}

/** Training and data-processing jobs. */
export class Jobs {
  constructor(private readonly client: CoordinatorClient) {}

  /** Submits a job (one of that name that exists is refused: AlreadyExistsError). */
  async run(spec: JobInput, options: TenantOptions = {}): Promise<JobJson> {
    return jobJson(await this.client.runJob(compileJobSpec(spec), options.tenant, { signal: options.signal }));
  }

  async get(name: string, options: TenantOptions = {}): Promise<JobJson> {
    return jobJson(await this.client.getJob(name, options.tenant, { signal: options.signal }));
  }

  async list(options: TenantOptions = {}): Promise<JobJson[]> {
    return (await this.client.listJobs(options.tenant, { signal: options.signal })).jobs.map(jobJson);
  }

  /** Stops the job's workers; it ends cancelled. */
  async cancel(name: string, options: TenantOptions = {}): Promise<JobJson> {
    return jobJson(await this.client.cancelJob(name, options.tenant, { signal: options.signal }));
  }

  /** Resolves with the job once it has ended: succeeded, failed or cancelled (look at .status). */
  async wait(name: string, options: TenantOptions & { pollMs?: number } = {}): Promise<JobJson> {
    return jobJson(await waitForJob(this.client, name, options));
  }

  /** The output of the job's current (or last) attempt as text; several workers' lines start with [rank N]. */
  async *logs(name: string, options: LogsOptions = {}): AsyncGenerator<string> {
    const decoder = new StringDecoder('utf8');
    for await (const chunk of jobLogs(this.client, name, options)) {
      const text = decoder.write(chunk);
      if (text) yield text;
    }
    const rest = decoder.end();
    if (rest) yield rest;
  }
}

export interface FleetOptions {
  /** The coordinator address(es) as given (part of a resumable upload's key). */
  coordinator: string;
  token: string | undefined;
  tls: TlsMaterial | undefined;
  /** The inference gateway fleet.infer uses unless told. */
  gateway: string | undefined;
}

export interface FleetInferOptions {
  /** An agent's gateway, host:port (default: the one given to connect, else 127.0.0.1:7780). */
  gateway?: string;
  tenant?: string;
  signal?: AbortSignal;
}

/** A connection to an mlfleet cluster; make one with connect(), end it with close(). */
export class Fleet {
  readonly models: Artifacts;
  readonly datasets: Artifacts;
  readonly deployments: Deployments;
  readonly jobs: Jobs;

  /** `client`: the lower-level gRPC client, for what the SDK has no operation for. */
  constructor(
    readonly client: CoordinatorClient,
    private readonly options: FleetOptions,
  ) {
    const conn: Connection = { client, coordinator: options.coordinator, token: options.token, tls: options.tls };
    this.models = new Artifacts(conn, 'model');
    this.datasets = new Artifacts(conn, 'dataset');
    this.deployments = new Deployments(client);
    this.jobs = new Jobs(client);
  }

  /**
   * One inference through a gateway: REF is a deployed model's NAME, NAME:VERSION or NAME@ALIAS;
   * `inputs` the protocol's request ({inputs: [...]}) or just its input tensors.
   */
  infer(ref: string, inputs: InferRequest | InferTensor[], options: FleetInferOptions = {}): Promise<InferResponse> {
    const body = Array.isArray(inputs) ? { inputs } : inputs;
    return inferThrough(this.client, ref, body, { gateway: options.gateway ?? this.options.gateway, tenant: options.tenant, token: this.options.token, signal: options.signal });
  }

  /** Closes the connection; idempotent. */
  close(): void {
    this.client.close();
  }
}
