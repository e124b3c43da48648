// The client SDK: one CoordinatorClient over the list of coordinator addresses an operator
// gave (`--coordinator ADDR[,ADDR…]`). Every call goes through one place, `withFailover`,
// which finds the leader: the known leader first, then the addresses in order; follows the
// `mlfleet-leader` redirect a follower answers with; backs off briefly while an election is
// on; and otherwise gives up with one UnavailableError that names every address and why it
// failed. Service methods below are one line each, so later services add methods, not logic.
import * as grpc from '@grpc/grpc-js';
import { backoffDelay, sleep, systemClock, type Clock, type Random } from './clock.js';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  MlfleetError,
  NotLeaderError,
  UnavailableError,
  fromGrpcError,
} from './errors.js';
import { mlfleetV1, type ClusterStatus, type Node, type Tenant, type TokenInfo } from './proto.js';
import type { ClusterServiceClient } from './gen/mlfleet/v1/ClusterService.js';
import type { NodeServiceClient } from './gen/mlfleet/v1/NodeService.js';
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
import { formatDuration } from './units.js';

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

/** The least time worth starting one more try with. */
const MIN_TRY_MS = 50;

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A coordinator that comes back (a restarted leader) is retried soon, not after grpc's 1s+.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  // No DNS TXT lookups for service config: one less round trip per host name.
  'grpc.service_config_disable_resolution': 1,
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

  // ---- the generic machinery -------------------------------------------------------------

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

  private async unaryOnce<C extends grpc.Client, Res>(
    service: ServiceConstructor<C>,
    invoke: UnaryInvoker<C, Res>,
    attempt: Attempt,
  ): Promise<Res> {
    const connectMs = Math.min(this.options.connectTimeoutMs, attempt.deadline.getTime() - Date.now());
    await waitForConnection(attempt.channel, connectMs, attempt.signal);
    const stub = this.stub(service, attempt.address, attempt.channel);
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
