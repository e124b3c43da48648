// The client SDK: one CoordinatorClient over the list of coordinator addresses an operator
// gave (`--coordinator ADDR[,ADDR…]`). Every call goes through one place, `withFailover`,
// which finds the leader: the known leader first, then the addresses in order; follows the
// `mlfleet-leader` redirect a follower answers with; backs off briefly while an election is
// on; and otherwise gives up with one UnavailableError that names every address and why it
// failed. Service methods below are one line each, so later services add methods, not logic.
// Streams go through it too: a download is judged on its first message, and a push first asks
// the address a cheap leader-only question, so that no byte of the body is read before the
// leader is found (a consumed body cannot be sent again to another address).
import * as grpc from '@grpc/grpc-js';
import type { Readable } from 'node:stream';
import { checkName, type ArtifactKind } from './artifact-ref.js';
import { backoffDelay, sleep, systemClock, type Clock, type Random } from './clock.js';
import {
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  MlfleetError,
  NotLeaderError,
  UnavailableError,
  fromGrpcError,
} from './errors.js';
import {
  mlfleetV1,
  type AllocationServiceClient,
  type Artifact,
  type ArtifactVersion,
  type ClusterStatus,
  type Deployment,
  type DeploymentServiceClient,
  type DeploymentSpec,
  type DownloadResponse,
  type Job,
  type JobServiceClient,
  type JobSpec,
  type ModelServiceClient,
  type Node,
  type PushHeader,
  type PushRequest,
  type Stack,
  type Tenant,
  type TokenInfo,
  type WorkloadEvent,
} from './proto.js';
import type { ClusterServiceClient } from './gen/mlfleet/v1/ClusterService.js';
import type { DeliveryServiceClient } from './gen/mlfleet/v1/DeliveryService.js';
import type { PushTicket__Output as PushTicket } from './gen/mlfleet/v1/PushTicket.js';
import type { BlobLocation__Output as BlobLocation } from './gen/mlfleet/v1/BlobLocation.js';
import type { NodeServiceClient } from './gen/mlfleet/v1/NodeService.js';
import type { PrefetchModelResponse__Output } from './gen/mlfleet/v1/PrefetchModelResponse.js';
import type { TenantServiceClient } from './gen/mlfleet/v1/TenantService.js';
import type { TokenServiceClient } from './gen/mlfleet/v1/TokenService.js';
import type { EventServiceClient } from './gen/mlfleet/v1/EventService.js';
import type { ListNodesResponse__Output } from './gen/mlfleet/v1/ListNodesResponse.js';
import type { CreateTenantRequest } from './gen/mlfleet/v1/CreateTenantRequest.js';
import type { SetTenantQuotaRequest } from './gen/mlfleet/v1/SetTenantQuotaRequest.js';
import type { ListTenantsResponse__Output } from './gen/mlfleet/v1/ListTenantsResponse.js';
import type { CreateTokenRequest } from './gen/mlfleet/v1/CreateTokenRequest.js';
import type { CreateTokenResponse__Output } from './gen/mlfleet/v1/CreateTokenResponse.js';
import type { ListTokensRequest } from './gen/mlfleet/v1/ListTokensRequest.js';
import type { ListTokensResponse__Output } from './gen/mlfleet/v1/ListTokensResponse.js';
import type { ListAuditEventsRequest } from './gen/mlfleet/v1/ListAuditEventsRequest.js';
import type { ListAuditEventsResponse__Output } from './gen/mlfleet/v1/ListAuditEventsResponse.js';
import type { ListArtifactsResponse__Output } from './gen/mlfleet/v1/ListArtifactsResponse.js';
import type { ListDeploymentsResponse__Output } from './gen/mlfleet/v1/ListDeploymentsResponse.js';
import type { ListJobsResponse__Output } from './gen/mlfleet/v1/ListJobsResponse.js';
import type { ListAllocationsResponse__Output } from './gen/mlfleet/v1/ListAllocationsResponse.js';
import type { LogChunk__Output } from './gen/mlfleet/v1/LogChunk.js';
import type { Stack as StackInput } from './gen/mlfleet/v1/Stack.js';
import type { StackServiceClient } from './gen/mlfleet/v1/StackService.js';
import type { SourceServiceClient } from './gen/mlfleet/v1/SourceService.js';
import type { SourceSpec as SourceSpecInput } from './gen/mlfleet/v1/SourceSpec.js';
import type { Source__Output as Source } from './gen/mlfleet/v1/Source.js';
import type { ListSourcesResponse__Output } from './gen/mlfleet/v1/ListSourcesResponse.js';
import type { SyncSourceResponse__Output } from './gen/mlfleet/v1/SyncSourceResponse.js';
import type { ListStacksResponse__Output } from './gen/mlfleet/v1/ListStacksResponse.js';
import type { SelectRequest as SelectInput } from './gen/mlfleet/v1/SelectRequest.js';
import type { SelectResponse__Output } from './gen/mlfleet/v1/SelectResponse.js';
import type { SelectionServiceClient } from './gen/mlfleet/v1/SelectionService.js';
import { formatDuration } from './units.js';
import { Wakeup } from './wakeup.js';
import { LIMITS } from './limits.js';

export const DEFAULT_COORDINATOR = '127.0.0.1:7700';

export interface CoordinatorClientOptions {
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /** Budget for one call, redirects and election retries included. Default 10s. */
  deadlineMs?: number;
  /** How long one address may take to accept a connection before the next is tried. Default 2s. */
  connectTimeoutMs?: number;
  /** Redirects followed within one pass over the addresses. Default 3. */
  maxRedirects?: number;
  /** Channel credentials; insecure by default (TLS comes later). */
  credentials?: grpc.ChannelCredentials;
  clock?: Clock;
  random?: Random;
}

/** Per-call knobs. */
export interface CallOptions {
  signal?: AbortSignal;
  /** Overrides the client's deadlineMs for this call (a long drain, say). */
  deadlineMs?: number;
}

export interface FailoverOptions extends CallOptions {
  /**
   * Whether only the leader answers (true for everything but ClusterService.GetStatus). A
   * leader-only success tells the client which address leads, so the next call goes there first.
   */
  leaderOnly?: boolean;
}

export interface NodeFilter {
  /** ready | down | draining */
  status?: string;
  /** Only nodes that carry every one of these labels. */
  selector?: Record<string, string>;
}

export type NodeList = ListNodesResponse__Output;
export type TenantList = ListTenantsResponse__Output;
/** The new token's record and its secret, which no later call returns. */
export type CreatedToken = CreateTokenResponse__Output;
export type TokenList = ListTokensResponse__Output;
export type AuditEventList = ListAuditEventsResponse__Output;
/** ListAuditEventsRequest.limit's ceiling. */
export const AUDIT_PAGE_MAX = 1000;
export type ArtifactList = ListArtifactsResponse__Output;
export type DeploymentList = ListDeploymentsResponse__Output;
export type JobList = ListJobsResponse__Output;
export type AllocationList = ListAllocationsResponse__Output;
export type StackList = ListStacksResponse__Output;
/** A stack to register: the fields left out take the proto's zero values (see stacks.proto). */
export type { StackInput };
/** What a selection asks: the hard criteria, and prefer or latencyWeight (see selection.proto). */
export type SelectCriteria = Omit<SelectInput, '_latencyWeight'>;
export type Selection = SelectResponse__Output;
export type { ArtifactKind, PushHeader };

export interface PushOptions extends CallOptions {
  /** Called as the body is handed to the connection, with the bytes sent so far. */
  onProgress?: (bytesSent: number) => void;
}

/** What to download: a user names a ref (`name`, `name:3`, `name@alias`), an agent a digest. */
export interface DownloadRequest {
  ref?: string;
  digest?: string;
  /** The first byte to send: where an interrupted download resumes. */
  offset?: number;
  /** Admins only: another tenant's artifact. */
  tenant?: string;
}

export interface Download {
  /** The version being sent; its sizeBytes is the whole content's, not what is left from the offset. */
  version: ArtifactVersion;
  /**
   * The bytes from the offset on. Iterate it to the end, or break out (which cancels the call);
   * it throws if the stream fails or ends short.
   */
  chunks: AsyncIterable<Buffer>;
}

export interface AllocationFilter {
  /** Admins: one tenant's (default: the caller's own; admins: every tenant's). */
  tenant?: string;
  node?: string;
  /** "NAME" or "deployment/NAME", "job/NAME". */
  workload?: string;
  /** Include ended allocations (failed, completed, stopped). */
  all?: boolean;
}

export interface LogsRequest {
  /** An allocation id, or a unique prefix of one. */
  allocation: string;
  /** Only the last this many bytes kept; 0 or absent: everything kept. */
  tailBytes?: number;
  /** Go on with new output until the allocation ends (or the caller stops). */
  follow?: boolean;
}

export interface WatchEventsOptions {
  /** Admins: one tenant's events (default: every tenant's); others always see their own. */
  tenant?: string;
  /** Only this object's events: "deployment/NAME", "job/NAME" or "node/NAME". */
  object?: string;
  /** How many past events to send first (0: none; at most 1000). */
  replay?: number;
  /** Keep the stream open for new events. */
  follow?: boolean;
}

export type { CreateTenantRequest, SetTenantQuotaRequest, CreateTokenRequest, ListTokensRequest, ListAuditEventsRequest };

/** A grpc-js client constructor, as mlfleetV1() hands them out. */
export type ServiceConstructor<C extends grpc.Client> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => C;

/** One unary call on one stub; the SDK's service methods are written as one of these. */
export type UnaryInvoker<C, Res> = (
  stub: C,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: grpc.requestCallback<Res>,
) => grpc.ClientUnaryCall;

/** What withFailover hands to one try on one address. */
export interface Attempt {
  address: string;
  channel: grpc.Channel;
  metadata: grpc.Metadata;
  /** Absolute deadline of the whole call. */
  deadline: Date;
  signal?: AbortSignal;
}

interface CompiledOptions {
  token: string | undefined;
  deadlineMs: number;
  connectTimeoutMs: number;
  maxRedirects: number;
  credentials: grpc.ChannelCredentials;
  clock: Clock;
  random: Random;
}

/** The size of each chunk a push sends: big enough to keep per-message costs small. */
export const PUSH_CHUNK_BYTES = 1024 * 1024;

/** Push chunks handed to grpc and not yet on the connection, at most. */
const MAX_PENDING_CHUNKS = 4;

/** The least time worth starting one more try with. */
const MIN_TRY_MS = 50;

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A coordinator that comes back (a restarted leader) is retried soon, not after grpc's 1s+.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  // No DNS TXT lookups for service config: one less round trip per host name.
  'grpc.service_config_disable_resolution': 1,
  // Deliberate ceilings (shared/limits.ts): what a coordinator accepts, and a margin for answers.
  'grpc.max_send_message_length': LIMITS.grpcReceiveBytes,
  'grpc.max_receive_message_length': LIMITS.grpcClientReceiveBytes,
};

/** Splits "a:1, b:2" (or a list of such strings) into addresses; at least one is required. */
export function parseCoordinatorAddresses(input: string | readonly string[]): string[] {
  const parts = (typeof input === 'string' ? [input] : input).flatMap((item) => item.split(','));
  const addresses = [...new Set(parts.map((p) => p.trim()).filter((p) => p.length > 0))];
  if (addresses.length === 0) {
    throw new InvalidArgumentError('no coordinator address given; pass --coordinator HOST:PORT[,HOST:PORT…]');
  }
  return addresses;
}

function compileOptions(options: CoordinatorClientOptions): CompiledOptions {
  const positive = (value: number | undefined, fallback: number, what: string): number => {
    const v = value ?? fallback;
    if (!Number.isFinite(v) || v <= 0) throw new InvalidArgumentError(`${what} must be a positive number of milliseconds, got ${v}`);
    return v;
  };
  const maxRedirects = options.maxRedirects ?? 3;
  if (!Number.isInteger(maxRedirects) || maxRedirects < 0) {
    throw new InvalidArgumentError(`maxRedirects must be a whole number >= 0, got ${maxRedirects}`);
  }
  return {
    token: options.token || undefined,
    deadlineMs: positive(options.deadlineMs, 10_000, 'deadlineMs'),
    connectTimeoutMs: positive(options.connectTimeoutMs, 2_000, 'connectTimeoutMs'),
    maxRedirects,
    credentials: options.credentials ?? grpc.credentials.createInsecure(),
    clock: options.clock ?? systemClock,
    random: options.random ?? Math.random,
  };
}

/** The outcome of one try on one address, as the failover loop sees it. */
type Verdict =
  | { kind: 'redirect'; leader: string }
  | { kind: 'no-leader' }
  | { kind: 'unreachable'; reason: string; timedOut?: boolean };

/** Thrown by a try that could not connect in time; carries the reason for the summary. */
class ConnectTimeout extends Error {}

export class CoordinatorClient {
  readonly addresses: readonly string[];
  private readonly options: CompiledOptions;
  private readonly channels = new Map<string, grpc.Channel>();
  private readonly stubs = new Map<ServiceConstructor<grpc.Client>, Map<string, grpc.Client>>();
  private knownLeader: string | undefined;
  private closed = false;

  constructor(addresses: string | readonly string[], options: CoordinatorClientOptions = {}) {
    this.addresses = parseCoordinatorAddresses(addresses);
    this.options = compileOptions(options);
  }

  /** The address that last answered a leader-only call (undefined until one has). */
  get leader(): string | undefined {
    return this.knownLeader;
  }

  // ---- ClusterService ------------------------------------------------------------------

  clusterStatus(options: CallOptions = {}): Promise<ClusterStatus> {
    return this.unary<ClusterServiceClient, ClusterStatus>(
      mlfleetV1().ClusterService,
      (s, md, o, cb) => s.getStatus({}, md, o, cb),
      { ...options, leaderOnly: false },
    );
  }

  // ---- NodeService ---------------------------------------------------------------------

  listNodes(filter: NodeFilter = {}, options: CallOptions = {}): Promise<NodeList> {
    const request = { status: filter.status ?? '', selector: filter.selector ?? {} };
    return this.unary<NodeServiceClient, NodeList>(mlfleetV1().NodeService, (s, md, o, cb) => s.listNodes(request, md, o, cb), options);
  }

  getNode(name: string, options: CallOptions = {}): Promise<Node> {
    return this.unary<NodeServiceClient, Node>(mlfleetV1().NodeService, (s, md, o, cb) => s.getNode({ name }, md, o, cb), options);
  }

  cordonNode(name: string, options: CallOptions = {}): Promise<Node> {
    return this.unary<NodeServiceClient, Node>(mlfleetV1().NodeService, (s, md, o, cb) => s.cordonNode({ name }, md, o, cb), options);
  }

  uncordonNode(name: string, options: CallOptions = {}): Promise<Node> {
    return this.unary<NodeServiceClient, Node>(mlfleetV1().NodeService, (s, md, o, cb) => s.uncordonNode({ name }, md, o, cb), options);
  }

  drainNode(name: string, options: CallOptions = {}): Promise<Node> {
    return this.unary<NodeServiceClient, Node>(mlfleetV1().NodeService, (s, md, o, cb) => s.drainNode({ name }, md, o, cb), options);
  }

  /** Revokes the node's credentials, deletes its record and replaces its work; answers the node as it was. */
  removeNode(name: string, options: CallOptions = {}): Promise<Node> {
    return this.unary<NodeServiceClient, Node>(mlfleetV1().NodeService, (s, md, o, cb) => s.removeNode({ name }, md, o, cb), options);
  }

  /** Has the node fetch a model version into its cache now; answers with what it will fetch. */
  prefetchModel(node: string, ref: string, tenant = '', options: CallOptions = {}): Promise<PrefetchModelResponse__Output> {
    return this.unary<NodeServiceClient, PrefetchModelResponse__Output>(mlfleetV1().NodeService, (s, md, o, cb) => s.prefetchModel({ node, ref, tenant }, md, o, cb), options);
  }

  // ---- TenantService -------------------------------------------------------------------

  createTenant(request: CreateTenantRequest, options: CallOptions = {}): Promise<Tenant> {
    return this.unary<TenantServiceClient, Tenant>(mlfleetV1().TenantService, (s, md, o, cb) => s.createTenant(request, md, o, cb), options);
  }

  listTenants(options: CallOptions = {}): Promise<TenantList> {
    return this.unary<TenantServiceClient, TenantList>(mlfleetV1().TenantService, (s, md, o, cb) => s.listTenants({}, md, o, cb), options);
  }

  getTenant(name: string, options: CallOptions = {}): Promise<Tenant> {
    return this.unary<TenantServiceClient, Tenant>(mlfleetV1().TenantService, (s, md, o, cb) => s.getTenant({ name }, md, o, cb), options);
  }

  setTenantQuota(request: SetTenantQuotaRequest, options: CallOptions = {}): Promise<Tenant> {
    return this.unary<TenantServiceClient, Tenant>(mlfleetV1().TenantService, (s, md, o, cb) => s.setTenantQuota(request, md, o, cb), options);
  }

  // ---- TokenService --------------------------------------------------------------------

  createToken(request: CreateTokenRequest, options: CallOptions = {}): Promise<CreatedToken> {
    return this.unary<TokenServiceClient, CreatedToken>(mlfleetV1().TokenService, (s, md, o, cb) => s.createToken(request, md, o, cb), options);
  }

  listTokens(request: ListTokensRequest = {}, options: CallOptions = {}): Promise<TokenList> {
    return this.unary<TokenServiceClient, TokenList>(mlfleetV1().TokenService, (s, md, o, cb) => s.listTokens(request, md, o, cb), options);
  }

  revokeToken(id: string, options: CallOptions = {}): Promise<TokenInfo> {
    return this.unary<TokenServiceClient, TokenInfo>(mlfleetV1().TokenService, (s, md, o, cb) => s.revokeToken({ id }, md, o, cb), options);
  }

  // ---- EventService --------------------------------------------------------------------

  listAuditEvents(request: ListAuditEventsRequest = {}, options: CallOptions = {}): Promise<AuditEventList> {
    return this.unary<EventServiceClient, AuditEventList>(mlfleetV1().EventService, (s, md, o, cb) => s.listAuditEvents(request, md, o, cb), options);
  }

  /**
   * The audit trail newest first, page after page (each page one call, of up to 1000
   * entries), until `limit` entries (default: all) or the oldest entry.
   */
  async *auditEventPages(request: { tenant?: string; limit?: number } = {}, options: CallOptions = {}): AsyncGenerator<AuditEventList['events']> {
    let left = request.limit ?? Infinity;
    let pageToken = '';
    while (left > 0) {
      const page = await this.listAuditEvents({ tenant: request.tenant ?? '', limit: Math.min(left, AUDIT_PAGE_MAX), pageToken }, options);
      const events = page.events.slice(0, left);
      left -= events.length;
      if (events.length > 0) yield events;
      if (!page.nextPageToken) return;
      pageToken = page.nextPageToken;
    }
  }

  /**
   * Workload events: the newest `replay` ones, then (with `follow`) each new one as it happens,
   * until the caller stops iterating, aborts `signal`, or the stream ends. See serverStream.
   */
  watchEvents(request: WatchEventsOptions = {}, options: CallOptions = {}): AsyncIterable<WorkloadEvent> {
    const message = { tenant: request.tenant ?? '', object: request.object ?? '', replay: request.replay ?? 0, follow: request.follow ?? false };
    return this.serverStream<EventServiceClient, WorkloadEvent>(mlfleetV1().EventService, (s, md, o) => s.watchEvents(message, md, o), 'event stream', options);
  }

  // ---- DeploymentService ---------------------------------------------------------------

  /** Creates the deployment, or updates it (rolling out a changed spec replica by replica). */
  applyDeployment(spec: DeploymentSpec, tenant = '', options: CallOptions = {}): Promise<Deployment> {
    return this.unary<DeploymentServiceClient, Deployment>(mlfleetV1().DeploymentService, (s, md, o, cb) => s.applyDeployment({ spec, tenant }, md, o, cb), options);
  }

  listDeployments(tenant = '', options: CallOptions = {}): Promise<DeploymentList> {
    return this.unary<DeploymentServiceClient, DeploymentList>(mlfleetV1().DeploymentService, (s, md, o, cb) => s.listDeployments({ tenant }, md, o, cb), options);
  }

  getDeployment(name: string, tenant = '', options: CallOptions = {}): Promise<Deployment> {
    return this.unary<DeploymentServiceClient, Deployment>(mlfleetV1().DeploymentService, (s, md, o, cb) => s.getDeployment({ name, tenant }, md, o, cb), options);
  }

  /** A canary's new generation replaces the stable one (PromoteDeployment). */
  promoteDeployment(name: string, tenant = '', options: CallOptions = {}): Promise<Deployment> {
    return this.unary<DeploymentServiceClient, Deployment>(mlfleetV1().DeploymentService, (s, md, o, cb) => s.promoteDeployment({ name, tenant }, md, o, cb), options);
  }

  /** Back to the last good version, pinned (RollbackDeployment). */
  rollbackDeployment(name: string, tenant = '', options: CallOptions = {}): Promise<Deployment> {
    return this.unary<DeploymentServiceClient, Deployment>(mlfleetV1().DeploymentService, (s, md, o, cb) => s.rollbackDeployment({ name, tenant }, md, o, cb), options);
  }

  scaleDeployment(name: string, replicas: number, tenant = '', options: CallOptions = {}): Promise<Deployment> {
    const request = { name, replicas, tenant };
    return this.unary<DeploymentServiceClient, Deployment>(mlfleetV1().DeploymentService, (s, md, o, cb) => s.scaleDeployment(request, md, o, cb), options);
  }

  /** Stops every replica and forgets the deployment. */
  async deleteDeployment(name: string, tenant = '', options: CallOptions = {}): Promise<void> {
    await this.unary<DeploymentServiceClient, unknown>(mlfleetV1().DeploymentService, (s, md, o, cb) => s.deleteDeployment({ name, tenant }, md, o, cb), options);
  }

  // ---- JobService ----------------------------------------------------------------------

  /** Submits a job; ALREADY_EXISTS (AlreadyExistsError) when one of that name exists. */
  runJob(spec: JobSpec, tenant = '', options: CallOptions = {}): Promise<Job> {
    return this.unary<JobServiceClient, Job>(mlfleetV1().JobService, (s, md, o, cb) => s.runJob({ spec, tenant }, md, o, cb), options);
  }

  listJobs(tenant = '', options: CallOptions = {}): Promise<JobList> {
    return this.unary<JobServiceClient, JobList>(mlfleetV1().JobService, (s, md, o, cb) => s.listJobs({ tenant }, md, o, cb), options);
  }

  getJob(name: string, tenant = '', options: CallOptions = {}): Promise<Job> {
    return this.unary<JobServiceClient, Job>(mlfleetV1().JobService, (s, md, o, cb) => s.getJob({ name, tenant }, md, o, cb), options);
  }

  /** Stops the job's workers; the job ends `cancelled`. */
  cancelJob(name: string, tenant = '', options: CallOptions = {}): Promise<Job> {
    return this.unary<JobServiceClient, Job>(mlfleetV1().JobService, (s, md, o, cb) => s.cancelJob({ name, tenant }, md, o, cb), options);
  }

  // ---- AllocationService ---------------------------------------------------------------

  listAllocations(filter: AllocationFilter = {}, options: CallOptions = {}): Promise<AllocationList> {
    const request = { tenant: filter.tenant ?? '', node: filter.node ?? '', workload: filter.workload ?? '', all: filter.all ?? false };
    return this.unary<AllocationServiceClient, AllocationList>(mlfleetV1().AllocationService, (s, md, o, cb) => s.listAllocations(request, md, o, cb), options);
  }

  /**
   * An allocation's output, as its node's agent kept it: the raw bytes, in chunks. With
   * `follow`, new output keeps coming until the allocation ends or the caller stops.
   */
  async *logs(request: LogsRequest, options: CallOptions = {}): AsyncGenerator<Buffer> {
    const message = { allocation: request.allocation, tailBytes: request.tailBytes ?? 0, follow: request.follow ?? false };
    const stream = this.serverStream<AllocationServiceClient, LogChunk__Output>(mlfleetV1().AllocationService, (s, md, o) => s.getLogs(message, md, o), 'log stream', options);
    for await (const chunk of stream) if (chunk.data.length > 0) yield chunk.data;
  }

  // ---- StackService --------------------------------------------------------------------

  /** Built-in stacks first, then the registered ones. */
  listStacks(options: CallOptions = {}): Promise<StackList> {
    return this.unary<StackServiceClient, StackList>(mlfleetV1().StackService, (s, md, o, cb) => s.listStacks({}, md, o, cb), options);
  }

  getStack(name: string, options: CallOptions = {}): Promise<Stack> {
    return this.unary<StackServiceClient, Stack>(mlfleetV1().StackService, (s, md, o, cb) => s.getStack({ name }, md, o, cb), options);
  }

  /** Creates a user stack or replaces the one of that name (admins; built-ins cannot be replaced). */
  registerStack(stack: StackInput, options: CallOptions = {}): Promise<Stack> {
    return this.unary<StackServiceClient, Stack>(mlfleetV1().StackService, (s, md, o, cb) => s.registerStack({ stack }, md, o, cb), options);
  }

  async deleteStack(name: string, options: CallOptions = {}): Promise<void> {
    await this.unary<StackServiceClient, unknown>(mlfleetV1().StackService, (s, md, o, cb) => s.deleteStack({ name }, md, o, cb), options);
  }

  // ---- SourceService -------------------------------------------------------------------

  /** A bucket prefix whose new objects become versions of a model (docs/sources.md). */
  createSource(spec: SourceSpecInput, options: CallOptions & { tenant?: string } = {}): Promise<Source> {
    return this.unary<SourceServiceClient, Source>(mlfleetV1().SourceService, (s, md, o, cb) => s.createSource({ spec, tenant: options.tenant ?? '' }, md, o, cb), options);
  }

  listSources(options: CallOptions & { tenant?: string } = {}): Promise<ListSourcesResponse__Output> {
    return this.unary<SourceServiceClient, ListSourcesResponse__Output>(mlfleetV1().SourceService, (s, md, o, cb) => s.listSources({ tenant: options.tenant ?? '' }, md, o, cb), options);
  }

  getSource(name: string, options: CallOptions & { tenant?: string } = {}): Promise<Source> {
    return this.unary<SourceServiceClient, Source>(mlfleetV1().SourceService, (s, md, o, cb) => s.getSource({ name, tenant: options.tenant ?? '' }, md, o, cb), options);
  }

  async deleteSource(name: string, options: CallOptions & { tenant?: string } = {}): Promise<void> {
    await this.unary<SourceServiceClient, unknown>(mlfleetV1().SourceService, (s, md, o, cb) => s.deleteSource({ name, tenant: options.tenant ?? '' }, md, o, cb), options);
  }

  /** Polls the source now and answers what that poll imported (a download may take a while: give a deadline). */
  syncSource(name: string, options: CallOptions & { tenant?: string } = {}): Promise<SyncSourceResponse__Output> {
    return this.unary<SourceServiceClient, SyncSourceResponse__Output>(mlfleetV1().SourceService, (s, md, o, cb) => s.syncSource({ name, tenant: options.tenant ?? '' }, md, o, cb), options);
  }

  // ---- SelectionService ----------------------------------------------------------------

  /** The best ready deployment for the criteria, with why; NOT_FOUND (NotFoundError) saying why none is. */
  select(criteria: SelectCriteria, options: CallOptions = {}): Promise<Selection> {
    return this.unary<SelectionServiceClient, Selection>(mlfleetV1().SelectionService, (s, md, o, cb) => s.select(criteria, md, o, cb), options);
  }

  // ---- DeliveryService: resumable pushes (docs/delivery.md) --------------------------------

  /** Where a blob's bytes can be read (DeliveryService.Locate): a user names a ref or a digest of their tenant's. */
  locate(request: { kind: ArtifactKind; ref?: string; digest?: string; tenant?: string }, options: CallOptions = {}): Promise<BlobLocation> {
    const message = { kind: request.kind, ref: request.ref ?? '', digest: request.digest ?? '', tenant: request.tenant ?? '' };
    return this.unary<DeliveryServiceClient, BlobLocation>(mlfleetV1().DeliveryService as ServiceConstructor<DeliveryServiceClient>, (s, md, o, cb) => s.locate(message, md, o, cb), options);
  }

  /** Opens a resumable push (or finds again the caller's unfinished one with `uploadKey`). */
  beginPush(kind: ArtifactKind, header: PushHeader, uploadKey: string, options: CallOptions = {}): Promise<PushTicket> {
    const request = { kind, header, uploadKey };
    return this.unary<DeliveryServiceClient, PushTicket>(mlfleetV1().DeliveryService as ServiceConstructor<DeliveryServiceClient>, (s, md, o, cb) => s.beginPush(request, md, o, cb), options);
  }

  /** Publishes an upload whose bytes have all arrived (an upload to the bucket: with its parts' ETags, in order). */
  commitPush(uploadId: string, options: CallOptions = {}, partEtags: readonly string[] = []): Promise<ArtifactVersion> {
    return this.unary<DeliveryServiceClient, ArtifactVersion>(mlfleetV1().DeliveryService as ServiceConstructor<DeliveryServiceClient>, (s, md, o, cb) => s.commitPush({ uploadId, partEtags: [...partEtags] }, md, o, cb), options);
  }

  // ---- ModelService and DatasetService (one shape, told apart by kind) -------------------

  listArtifacts(kind: ArtifactKind, tenant = '', options: CallOptions = {}): Promise<ArtifactList> {
    return this.unary<ModelServiceClient, ArtifactList>(artifactService(kind), (s, md, o, cb) => s.listArtifacts({ tenant }, md, o, cb), options);
  }

  getArtifact(kind: ArtifactKind, name: string, options: CallOptions = {}): Promise<Artifact> {
    return this.unary<ModelServiceClient, Artifact>(artifactService(kind), (s, md, o, cb) => s.getArtifact({ name }, md, o, cb), options);
  }

  /** `name` (the latest version), `name:3` or `name@alias` → the version it means now. */
  resolve(kind: ArtifactKind, ref: string, options: CallOptions = {}): Promise<ArtifactVersion> {
    return this.unary<ModelServiceClient, ArtifactVersion>(artifactService(kind), (s, md, o, cb) => s.resolve({ ref }, md, o, cb), options);
  }

  setAlias(kind: ArtifactKind, name: string, alias: string, version: number, options: CallOptions = {}): Promise<Artifact> {
    const request = { name, alias, version };
    return this.unary<ModelServiceClient, Artifact>(artifactService(kind), (s, md, o, cb) => s.setAlias(request, md, o, cb), options);
  }

  /** A model's retention: keep the `keep` newest versions (see README), or `off` to keep all. */
  setRetention(name: string, retention: { keep: number; keepAliased: boolean } | 'off', options: CallOptions = {}): Promise<Artifact> {
    const request = retention === 'off' ? { name, off: true } : { name, keep: retention.keep, keepAliased: retention.keepAliased };
    return this.unary<ModelServiceClient, Artifact>(artifactService('model'), (s, md, o, cb) => s.setRetention(request, md, o, cb), options);
  }

  deleteVersion(kind: ArtifactKind, name: string, version: number, options: CallOptions = {}): Promise<Artifact> {
    const request = { name, version };
    return this.unary<ModelServiceClient, Artifact>(artifactService(kind), (s, md, o, cb) => s.deleteVersion(request, md, o, cb), options);
  }

  /**
   * Uploads `body` as the next version of `header.name`; `header.sizeBytes` must be the exact
   * number of bytes the body yields. Sent to the leader in chunks of PUSH_CHUNK_BYTES, reading
   * the body only as fast as the connection takes it. Aborting `signal` cancels the call: the
   * coordinator then discards what it received and records no version. The call has no
   * deadline unless `deadlineMs` is given (finding the leader keeps the client's). The body
   * is consumed whatever happens: a Readable is destroyed if the push fails.
   */
  async push(kind: ArtifactKind, header: PushHeader, body: AsyncIterable<Buffer> | Readable, options: PushOptions = {}): Promise<ArtifactVersion> {
    const service = artifactService(kind);
    const name = header.name ?? '';
    try {
      checkName(name);
      return await this.pushToLeader(service, name, header, body, options);
    } catch (err) {
      // The body is the push's to consume: one never read (a refusal) is closed here too.
      if (isReadable(body)) body.destroy();
      throw err;
    }
  }

  private pushToLeader(
    service: ServiceConstructor<ModelServiceClient>,
    name: string,
    header: PushHeader,
    body: AsyncIterable<Buffer> | Readable,
    options: PushOptions,
  ): Promise<ArtifactVersion> {
    return this.withFailover(async (attempt) => {
      // The leader answers GetArtifact (NOT_FOUND for a new name); a follower redirects, and a
      // caller who may not read this name hears so before any byte is sent.
      try {
        await this.unaryOnce<ModelServiceClient, Artifact>(service, (s, md, o, cb) => s.getArtifact({ name }, md, o, cb), attempt);
      } catch (err) {
        if (!(isServiceError(err) && err.code === grpc.status.NOT_FOUND)) throw err;
      }
      // From here the body is being read: whatever happens is the answer, never a retry elsewhere.
      try {
        return await this.pushOnce(service, header, body, attempt, options);
      } catch (err) {
        throw finalStreamError(err, 'push', attempt.signal);
      }
    }, { ...options, leaderOnly: true });
  }

  /**
   * Starts a download from the leader: resolves once the coordinator has said which version it
   * sends. The bytes then come through `chunks`; see Download.
   */
  download(kind: ArtifactKind, request: DownloadRequest, options: CallOptions = {}): Promise<Download> {
    const service = artifactService(kind);
    const message = { ref: request.ref ?? '', digest: request.digest ?? '', offset: request.offset ?? 0, tenant: request.tenant ?? '' };
    return this.withFailover(async (attempt) => {
      const { first, messages, release } = await this.openStream<ModelServiceClient, DownloadResponse>(
        service,
        (s, md, o) => s.download(message, md, o),
        attempt,
        options,
      );
      const version = first.done ? undefined : first.value.version;
      if (!version) {
        release();
        throw new InternalError(`the coordinator at ${attempt.address} began the download without saying what it sends`);
      }
      const expected = version.sizeBytes - message.offset;
      const signal = attempt.signal;
      async function* chunks(): AsyncGenerator<Buffer> {
        let received = 0;
        try {
          for (;;) {
            let next: IteratorResult<DownloadResponse>;
            try {
              next = await messages.next();
            } catch (err) {
              throw finalStreamError(err, 'download', signal);
            }
            if (next.done) break;
            const chunk = next.value.chunk;
            if (!chunk || chunk.length === 0) continue;
            received += chunk.length;
            if (received > expected) throw new InternalError(`the download of ${version!.name}:${version!.version} sent more than its ${version!.sizeBytes} bytes`);
            yield chunk;
          }
          if (received !== expected) {
            throw new UnavailableError(`the download of ${version!.name}:${version!.version} ended after ${message.offset + received} of ${version!.sizeBytes} bytes`);
          }
        } finally {
          release();
        }
      }
      return { version, chunks: chunks() };
    }, { ...options, leaderOnly: true });
  }

  // ---- the generic machinery -------------------------------------------------------------

  /**
   * A server-streaming call that only reads (events, logs), as an async iterable. The leader is
   * found the way a unary call finds it: a follower's redirect, a refusal or a NOT_FOUND arrives
   * instead of the first message, so the stream is judged on that first message (or on its end)
   * — which, for a followed stream with nothing to say yet, may come much later. After the first
   * message an error is final. Breaking out of the loop, or aborting `signal`, cancels the call.
   */
  async *serverStream<C extends grpc.Client, Res>(
    service: ServiceConstructor<C>,
    open: (stub: C, metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<Res>,
    what: StreamKind,
    options: CallOptions = {},
  ): AsyncGenerator<Res> {
    const opened = await this.withFailover((attempt) => this.openStream(service, open, attempt, options), { ...options, leaderOnly: true });
    try {
      for (let next = opened.first; !next.done; ) {
        yield next.value;
        try {
          next = await opened.messages.next();
        } catch (err) {
          throw finalStreamError(err, what, options.signal);
        }
      }
    } finally {
      opened.release();
    }
  }

  /**
   * Opens a server stream on one attempt and waits for its first message (or its end): a
   * follower's redirect, a NOT_FOUND or a refusal arrives instead of it, as an attempt's error.
   * Aborting the attempt's signal cancels the call; `release` ends it.
   */
  private async openStream<C extends grpc.Client, Res>(
    service: ServiceConstructor<C>,
    open: (stub: C, metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<Res>,
    attempt: Attempt,
    options: CallOptions,
  ): Promise<{ first: IteratorResult<Res>; messages: AsyncIterator<Res>; release: () => void }> {
    const stub = await this.connectedStub(service, attempt);
    const call = open(stub, attempt.metadata, { deadline: streamDeadline(options, attempt) });
    const onAbort = () => call.cancel();
    attempt.signal?.addEventListener('abort', onAbort, { once: true });
    const release = () => {
      attempt.signal?.removeEventListener('abort', onAbort);
      call.cancel(); // a no-op once the call has ended
    };
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<Res>;
    try {
      return { first: await messages.next(), messages, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** One unary call of any service, with leader discovery, redirects and retries. */
  unary<C extends grpc.Client, Res>(
    service: ServiceConstructor<C>,
    invoke: UnaryInvoker<C, Res>,
    options: FailoverOptions = {},
  ): Promise<Res> {
    return this.withFailover((attempt) => this.unaryOnce(service, invoke, attempt), options);
  }

  /**
   * Runs `attemptFn` against the leader, wherever it is. `attemptFn` rejects with the grpc
   * ServiceError it got; the loop decides whether that means "ask someone else" (a redirect,
   * no leader yet, a dead address) or is the answer (any other error, converted with
   * fromGrpcError). Streaming calls reuse this by opening their stream inside `attemptFn`.
   */
  async withFailover<T>(attemptFn: (attempt: Attempt) => Promise<T>, options: FailoverOptions = {}): Promise<T> {
    if (this.closed) throw new FailedPreconditionError('this coordinator client is closed');
    const { clock, random, maxRedirects } = this.options;
    const { signal, leaderOnly = true } = options;
    const deadlineAt = clock.now() + (options.deadlineMs ?? this.options.deadlineMs);
    // Why each address failed, in the order first tried; later rounds update the reason.
    const failures = new Map<string, string>();

    for (let round = 0; ; round += 1) {
      signal?.throwIfAborted();
      const queue = this.candidates();
      const tried = new Set<string>();
      const redirectTargets = new Set<string>();
      let hops = 0;
      // A follower said "no leader yet", or pointed at a leader that did not answer: an
      // election is on or about to be, so another pass shortly may well succeed.
      let electionOn = false;

      while (queue.length > 0 && clock.now() < deadlineAt) {
        const address = queue.shift()!;
        if (tried.has(address)) continue;
        tried.add(address);
        const attempt: Attempt = {
          address,
          channel: this.channel(address),
          metadata: this.metadata(),
          deadline: new Date(Date.now() + (deadlineAt - clock.now())),
          signal,
        };
        let verdict: Verdict;
        try {
          const result = await attemptFn(attempt);
          if (leaderOnly) this.knownLeader = address;
          return result;
        } catch (err) {
          if (signal?.aborted) throw signal.reason;
          verdict = this.judge(err, deadlineAt);
        }
        if (this.knownLeader === address) this.knownLeader = undefined;
        switch (verdict.kind) {
          case 'redirect':
            failures.set(address, `not the leader; redirected to ${verdict.leader}`);
            if (hops < maxRedirects && !tried.has(verdict.leader)) {
              hops += 1;
              redirectTargets.add(verdict.leader);
              queue.unshift(verdict.leader);
            } else {
              electionOn = true; // followers disagree about the leader while it settles
            }
            break;
          case 'no-leader':
            failures.set(address, 'no leader elected yet');
            electionOn = true;
            break;
          case 'unreachable':
            // Running out of time on a last try says less than what the address said before.
            if (!(verdict.timedOut && failures.has(address))) failures.set(address, verdict.reason);
            if (redirectTargets.has(address)) electionOn = true;
            break;
        }
      }

      // Keep trying until the deadline (an election takes about a lease TTL), but leave the
      // last try enough time to be a real one.
      const remaining = deadlineAt - clock.now();
      if (!electionOn || remaining < 2 * MIN_TRY_MS) throw new UnavailableError(summarize(failures));
      await sleep(clock, Math.min(backoffDelay(round, random, 100, 1_000), remaining - MIN_TRY_MS), signal);
    }
  }

  /** Closes every channel; calls made afterwards fail. Idempotent. */
  close(): void {
    this.closed = true;
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
    this.stubs.clear();
  }

  /** The known leader first, then the configured addresses in order. */
  private candidates(): string[] {
    return [...new Set([...(this.knownLeader ? [this.knownLeader] : []), ...this.addresses])];
  }

  private channel(address: string): grpc.Channel {
    // close() during a call must not leave a fresh channel behind for the retry loop.
    if (this.closed) throw new FailedPreconditionError('this coordinator client is closed');
    let channel = this.channels.get(address);
    if (!channel) {
      channel = new grpc.Channel(address, this.options.credentials, CHANNEL_OPTIONS);
      this.channels.set(address, channel);
    }
    return channel;
  }

  /** One stub per (service, address), all services to an address sharing its channel. */
  private stub<C extends grpc.Client>(service: ServiceConstructor<C>, address: string, channel: grpc.Channel): C {
    let byAddress = this.stubs.get(service);
    if (!byAddress) {
      byAddress = new Map();
      this.stubs.set(service, byAddress);
    }
    let stub = byAddress.get(address);
    if (!stub) {
      stub = new service(address, this.options.credentials, { channelOverride: channel });
      byAddress.set(address, stub);
    }
    return stub as C;
  }

  private metadata(): grpc.Metadata {
    // Not waitForReady: a dead address must fail now so the next one gets its turn.
    const metadata = new grpc.Metadata({ waitForReady: false });
    if (this.options.token) metadata.set('authorization', `Bearer ${this.options.token}`);
    return metadata;
  }

  /** The stub for this try, once its channel has connected (or failed to, which the call then says). */
  private async connectedStub<C extends grpc.Client>(service: ServiceConstructor<C>, attempt: Attempt): Promise<C> {
    const connectMs = Math.min(this.options.connectTimeoutMs, attempt.deadline.getTime() - Date.now());
    await waitForConnection(attempt.channel, connectMs, attempt.signal);
    return this.stub(service, attempt.address, attempt.channel);
  }

  private async unaryOnce<C extends grpc.Client, Res>(
    service: ServiceConstructor<C>,
    invoke: UnaryInvoker<C, Res>,
    attempt: Attempt,
  ): Promise<Res> {
    const stub = await this.connectedStub(service, attempt);
    return new Promise<Res>((resolve, reject) => {
      const onAbort = () => call.cancel();
      const call = invoke(stub, attempt.metadata, { deadline: attempt.deadline }, (err, value) => {
        attempt.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value as Res);
      });
      attempt.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * One client-streaming Push on the address the caller settled on: the header, then the body
   * in chunks, never more than MAX_PENDING_CHUNKS ahead of the connection. Resolves with the server's
   * answer; rejects with it, with the body's own error (after cancelling, so the server keeps
   * nothing), or with the grpc CANCELLED that follows an abort.
   */
  private async pushOnce(
    service: ServiceConstructor<ModelServiceClient>,
    header: PushHeader,
    body: AsyncIterable<Buffer> | Readable,
    attempt: Attempt,
    options: PushOptions,
  ): Promise<ArtifactVersion> {
    const stub = await this.connectedStub(service, attempt);
    attempt.signal?.throwIfAborted();
    return new Promise<ArtifactVersion>((resolve, reject) => {
      let settled = false;
      const finish = (err: unknown, value?: ArtifactVersion) => {
        if (settled) return;
        settled = true;
        attempt.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value!);
      };
      const call = stub.push(attempt.metadata, { deadline: streamDeadline(options, attempt) }, (err, value) => finish(err, value));
      const onAbort = () => call.cancel();
      attempt.signal?.addEventListener('abort', onAbort, { once: true });
      // Backpressure from the socket, not from grpc's buffer (16 messages, 16 MiB): a write's
      // callback runs once its bytes are on the connection, and at most a few are pending.
      // That bounds memory and makes the progress count bytes sent, not bytes queued.
      let pending = 0;
      const wakeup = new Wakeup();
      const poke = () => wakeup.wake();
      call.on('status', poke); // the answer came: stop waiting for room
      const send = async () => {
        call.write({ header } satisfies PushRequest);
        let sent = 0;
        for await (const chunk of inChunks(body, PUSH_CHUNK_BYTES)) {
          if (settled) return; // the server answered already (a refusal): leaving the loop closes the body
          pending += 1;
          call.write({ chunk } satisfies PushRequest, () => {
            pending -= 1;
            sent += chunk.length;
            options.onProgress?.(sent);
            poke();
          });
          while (pending >= MAX_PENDING_CHUNKS && !settled) await wakeup.wait();
        }
        if (!settled) call.end();
      };
      send().catch((err: unknown) => {
        // The body failed (a file vanished, a link inside a directory): the upload is incomplete,
        // so the server must drop it. The body's reason is the one worth telling.
        finish(err);
        call.cancel();
      });
    });
  }

  /** Sorts a failed try into "ask elsewhere" verdicts; anything else is the call's answer. */
  private judge(err: unknown, deadlineAt: number): Verdict {
    if (err instanceof ConnectTimeout) return { kind: 'unreachable', reason: err.message, timedOut: true };
    if (MlfleetError.is(err)) throw err;
    if (!isServiceError(err)) throw err;
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      const budget = deadlineAt - this.options.clock.now();
      return { kind: 'unreachable', reason: budget <= 0 ? 'no answer before the deadline' : 'timed out', timedOut: true };
    }
    const mapped = fromGrpcError(err);
    if (mapped instanceof NotLeaderError) {
      return mapped.leader ? { kind: 'redirect', leader: mapped.leader } : { kind: 'no-leader' };
    }
    if (mapped instanceof UnavailableError) return { kind: 'unreachable', reason: describeUnavailable(err.details || err.message) };
    throw mapped;
  }
}

/**
 * Waits until the channel is connected or has failed to connect (in which case the call,
 * made without waitForReady, fails at once with grpc's own reason, e.g. ECONNREFUSED).
 * Only an address that neither accepts nor refuses — a black hole — runs into the timeout.
 */
function waitForConnection(channel: grpc.Channel, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const { READY, TRANSIENT_FAILURE, SHUTDOWN } = grpc.connectivityState;
  return new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + Math.max(0, timeoutMs);
    let settled = false;
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = () => finish(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const check = (state: grpc.connectivityState) => {
      if (settled) return;
      if (state === READY || state === TRANSIENT_FAILURE || state === SHUTDOWN) return finish();
      if (Date.now() >= deadline) return finish(new ConnectTimeout(`no connection within ${formatDuration(timeoutMs)}`));
      // The watch's own deadline timer is cleared by grpc when the state changes first.
      channel.watchConnectivityState(state, deadline, (error) => {
        if (error) finish(new ConnectTimeout(`no connection within ${formatDuration(timeoutMs)}`));
        else check(channel.getConnectivityState(false));
      });
    };
    check(channel.getConnectivityState(true));
  });
}

/** The service for a kind: models and datasets speak the same protocol. */
function artifactService(kind: ArtifactKind): ServiceConstructor<ModelServiceClient> {
  const v1 = mlfleetV1();
  // DatasetService lacks ModelService's SetRetention, which is only ever called on models.
  return (kind === 'model' ? v1.ModelService : v1.DatasetService) as unknown as ServiceConstructor<ModelServiceClient>;
}

/**
 * A stream runs as long as its bytes take: no deadline, unless the caller set one for this
 * call (then the whole call's, leader discovery included).
 */
function streamDeadline(options: CallOptions, attempt: Attempt): Date | number {
  return options.deadlineMs !== undefined ? attempt.deadline : Infinity;
}

/** What a stream carries, for the message when it is cut off. */
type StreamKind = 'push' | 'download' | 'event stream' | 'log stream';

const AFTER_CUT: Record<StreamKind, string> = {
  push: 'nothing was stored; push again',
  download: 'run it again to resume',
  'event stream': 'run it again to go on watching',
  'log stream': 'run it again to go on reading',
};

/**
 * An error once a stream has started moving bytes: typed, and never a reason to try another
 * address (the bytes are gone). The leader stepping down mid-stream says what to do about it.
 */
function finalStreamError(err: unknown, what: StreamKind, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (MlfleetError.is(err) || !isServiceError(err)) return err;
  const mapped = fromGrpcError(err);
  if (mapped instanceof NotLeaderError || mapped instanceof UnavailableError) {
    return new UnavailableError(`the ${what} was cut off (${describeUnavailable(err.details || err.message)}); ${AFTER_CUT[what]}`);
  }
  return mapped;
}

/**
 * The body re-cut into chunks of `size` bytes (the last one shorter), whatever sizes it comes
 * in: a tar stream yields 512-byte headers, a file 64 KiB reads.
 */
export async function* inChunks(body: AsyncIterable<Buffer | Uint8Array | string>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const piece of body) {
    let buffer = typeof piece === 'string' ? Buffer.from(piece) : Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    while (buffer.length > 0) {
      const take = Math.min(size - pendingBytes, buffer.length);
      pending.push(buffer.subarray(0, take));
      pendingBytes += take;
      buffer = buffer.subarray(take);
      if (pendingBytes === size) {
        yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
}

function isReadable(body: unknown): body is Readable {
  return typeof (body as Partial<Readable>).destroy === 'function' && typeof (body as Partial<Readable>).pipe === 'function';
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number';
}

const SOCKET_REASONS: [RegExp, string][] = [
  [/ECONNREFUSED/, 'connection refused'],
  [/ENOTFOUND|EAI_AGAIN|EAI_NONAME|DNS resolution failed|Name resolution failed/i, 'host not found'],
  [/EHOSTUNREACH|ENETUNREACH/, 'host unreachable'],
  [/ECONNRESET|socket hang up/i, 'connection reset'],
  [/ETIMEDOUT/, 'connection timed out'],
  [/EADDRNOTAVAIL/, 'address not available'],
  [/Protocol error|Received RST_STREAM|http2/i, 'not a gRPC server'],
  [/certificate|SSL|TLS|handshake|alert/i, 'TLS handshake failed: check --tls-ca, --tls-cert and --tls-key'],
  [/No connection established/, 'no connection: if the coordinator uses TLS, pass --tls-ca (and --tls-cert/--tls-key for mutual TLS)'],
];

/** grpc's multi-part UNAVAILABLE details → a few words for the one-line summary. */
function describeUnavailable(details: string): string {
  for (const [pattern, reason] of SOCKET_REASONS) if (pattern.test(details)) return reason;
  // grpc-js appends an empty "Resolution note:" and similar trailers; keep the first clause.
  return details.split('\n')[0]!.replace(/\s*Resolution note:.*$/i, '').replace(/[.;,\s]+$/, '').trim() || 'unavailable';
}

function summarize(failures: Map<string, string>): string {
  if (failures.size === 0) return 'cannot reach coordinator: the deadline passed before any address was tried';
  const parts = [...failures].map(([address, reason]) => `${address} (${reason})`);
  return `cannot reach coordinator at ${parts.join(', ')}`;
}
