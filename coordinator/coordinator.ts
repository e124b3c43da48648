// The coordinator process: the gRPC API, the ops HTTP server, and the campaign for
// leadership. Everything only the leader runs is switched on in establishLeadership and off
// in revokeLeadership (Nomad's leader.go), the moment the election lease is lost.
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { backoffDelay, sleep, systemClock, type Clock, type Random } from '../shared/clock.js';
import { formatHostPort, parseHostPort } from '../shared/config.js';
import { NotLeaderError } from '../shared/errors.js';
import { startOpsServer, type ExtraRoutes, type OpsServer } from '../shared/http-server.js';
import { blobRoutes } from './delivery/blob-routes.js';
import { dashboardRoutes } from './dashboard/static.js';
import { restRoutes, type RegisteredMethod } from './rest/router.js';
import { pushHandlers } from './delivery/delivery-service.js';
import { PieceManifests } from './delivery/manifests.js';
import { Uploads } from './delivery/uploads.js';
import { baseUrl } from '../shared/blob-http.js';
import { serverCredentials, warnIfPlaintext, type TlsMaterial } from '../shared/tls.js';
import { keys } from '../shared/keys.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { mlfleetV1, type ClusterStatus } from '../shared/proto.js';
import { Election, fencedTxn, type Leadership } from '../shared/store/election.js';
import { Lease } from '../shared/store/lease.js';
import { openStore } from '../shared/store/open-store.js';
import type { Store } from '../shared/store/store.js';
import { agentSessionHandler } from './api/agent-session.js';
import { artifactService, withEncodedChunks } from './api/artifact-service.js';
import type { JobOutputs } from './api/job-output-push.js';
import type { BlobStore } from './blobs/blob-store.js';
import { openBlobStore } from './blobs/open-blob-store.js';
import { BlobPeers, loadPeerSecret } from './blobs/blob-peers.js';
import { loadClusterGrantKeys } from './delivery/grant-keys.js';
import { locateHandler } from './delivery/locate-service.js';
import { S3BlobStore } from './blobs/s3-blob-store.js';
import { S3DirectAccess } from './blobs/s3-direct.js';
import { FetchTracker } from './delivery/tracker.js';
import type { GrantKeys } from '../shared/blob-http.js';
import { ArtifactRegistry } from './registry/artifact-registry.js';
import { RetentionEnforcer } from './registry/retention-enforcer.js';
import { clusterService } from './api/cluster-service.js';
import { eventService } from './api/event-service.js';
import { nodeService } from './api/node-service.js';
import { RpcEdge, withMalformedRequests } from './api/rpc.js';
import { tenantService } from './api/tenant-service.js';
import { tokenService } from './api/token-service.js';
import { AuditLog } from './audit-log.js';
import { NodeAdmission } from './auth/node-admission.js';
import { TokenRegistry, type Principal } from './auth/token-registry.js';
import { tokenChange, tokenTablePieces } from './auth/gateway-tokens.js';
import { broadcastWindowMs, TokenBroadcast } from './auth/token-broadcast.js';
import { LIMITS } from '../shared/limits.js';
import { bootstrap, ensureClusterId, type BootstrapTokens } from './bootstrap.js';
import { CoordinatorMetrics } from './metrics.js';
import { StartPhaseBook } from './workloads/start-phases.js';
import { Autoscaler, type AutoscalerOptions } from './autoscale/autoscaler.js';
import { NodeRegistry, type FencedWriter } from './node-registry.js';
import { allocationService, deploymentService, jobService } from './api/workload-service.js';
import { selectionService } from './api/selection-service.js';
import { stackService } from './api/stack-service.js';
import { sourceService } from './api/source-service.js';
import { SourcePoller, type SourcePollerOptions } from './sources/source-poller.js';
import type { SourceCredentials } from './sources/source-credentials.js';
import { WorkloadController, type WorkloadControllerOptions } from './workloads/controller.js';
import { EventLog } from './workloads/event-log.js';
import { LogRelay } from './workloads/log-relay.js';
import { StackRegistry } from './workloads/stacks.js';
import { RouteBook } from './workloads/routes.js';

export interface CoordinatorOptions {
  listen: string;
  httpListen: string;
  /** sqlite:PATH or etcd:URL[,URL…] */
  store: string;
  dataDir: string;
  /** Where blobs live: undefined for <data-dir>/blobs, `fs:PATH`, or `s3://bucket?endpoint=…`. */
  blobStore: string | undefined;
  /** The address agents and the CLI are redirected to; default: the bound gRPC address. */
  advertise: string | undefined;
  /** Where --http-listen (blob bytes) is reached; default: derived from advertise and the bound port. */
  httpAdvertise?: string | undefined;
  nodeTtlMs: number;
  /** TTL of the election lease: how long a dead leader holds leadership at most. */
  electionTtlMs: number;
  /** Stable identity among coordinators; default: host name plus a random suffix. */
  id: string | undefined;
  /** TLS for the gRPC API (mutual when it has a CA); undefined: plain text. */
  tls: TlsMaterial | undefined;
  /** Between two passes of the loop that fetches missing blobs from peers (default 5 s); not a flag. */
  blobSyncIntervalMs?: number;
  /** An upload that sends nothing for this long is ended (--upload-idle-timeout; default 30 s). */
  uploadIdleMs?: number;
  /** Workload controller tuning (tests shorten its tick); not a flag. */
  workloads?: Partial<WorkloadControllerOptions>;
  /** The autoscaler's tick and windows (tests and benchmarks shrink them). */
  autoscaler?: Pick<AutoscalerOptions, 'tickMs' | 'decide' | 'onDecision'>;
  /** Named credentials model sources may use (--source-credentials FILE, loaded at start). */
  sourceCredentials?: SourceCredentials;
  /** The source poller's tick, concurrency and timeouts (tests shrink them); not a flag. */
  sources?: Partial<SourcePollerOptions>;
  /** How often model retention is checked for every model (tests shrink it); not a flag. */
  retentionSweepMs?: number;
}

export interface CoordinatorDeps {
  clock?: Clock;
  random?: Random;
  log?: Logger;
  /** Called when this coordinator bootstrapped an empty store (the local cluster saves the admin token). */
  onBootstrap?: (tokens: BootstrapTokens) => void;
}

interface LeaderMember {
  id: string;
  address: string;
  /** The base URL of its HTTP listener (the REST API redirects writes there); absent from older coordinators. */
  http?: string;
}

type Role =
  | { kind: 'follower' }
  | { kind: 'leader'; leadership: Leadership; registry: NodeRegistry; writer: FencedWriter; workloads: WorkloadController; events: EventLog; routes: RouteBook; stacks: StackRegistry; clusterId: string; tracker: FetchTracker; autoscaler: Autoscaler; sources: SourcePoller; retention: RetentionEnforcer };

export class Coordinator {
  private role: Role = { kind: 'follower' };
  private leader: LeaderMember | undefined;
  private readonly abort = new AbortController();
  private loops: Promise<unknown> | undefined;
  private closing: Promise<void> | undefined;
  private readonly logs = new LogRelay();
  private readonly admission: NodeAdmission;
  /** Token changes on their way to every gateway, a burst of them in few messages. */
  private readonly tokenBroadcast: TokenBroadcast;
  /** The leader's unfinished resumable uploads (dropped when it steps down). */
  private readonly uploads: Uploads;
  readonly manifests: PieceManifests;
  /** The blob and upload routes of the HTTP listener, set by register(). */
  private blobRoutes: ExtraRoutes | undefined;
  /** The REST API (coordinator/rest/), set by register(). */
  private restRoutes: ExtraRoutes | undefined;

  private constructor(
    readonly id: string,
    readonly address: string,
    readonly options: CoordinatorOptions,
    readonly store: Store,
    readonly metrics: CoordinatorMetrics,
    private readonly server: grpc.Server,
    private readonly ops: OpsServer,
    private readonly election: Election,
    private readonly tokens: TokenRegistry,
    private readonly audit: AuditLog,
    private readonly artifacts: ArtifactRegistry,
    private readonly peers: BlobPeers,
    private readonly grantKeys: GrantKeys,
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly log: Logger,
    private readonly onBootstrap: ((tokens: BootstrapTokens) => void) | undefined,
  ) {
    this.admission = new NodeAdmission(store, tokens, clock);
    // With the S3 blob store, pushes go straight to the bucket (docs/delivery.md "Uploads").
    const direct = artifacts.blobs instanceof S3BlobStore ? new S3DirectAccess(artifacts.blobs) : undefined;
    this.uploads = new Uploads(artifacts.blobs, clock, {}, direct);
    this.manifests = new PieceManifests(artifacts.blobs, log.child({ component: 'manifests' }));
    // A revoked node credential or join token ends the sessions it opened (or, for a join
    // token's first session, the credential it was issued) at once.
    tokens.onRevoked((record) => {
      if ((record.role === 'node' || record.role === 'join') && this.role.kind === 'leader') this.role.registry.closeSessionsOf(record.id);
    });
    // A token created or revoked reaches every gateway (a revocation at once, within the
    // session's latency; additions in a burst of joins together, token-broadcast.ts).
    this.tokenBroadcast = new TokenBroadcast(
      clock,
      (change) => {
        if (this.role.kind === 'leader') this.role.registry.broadcastTokens(change);
      },
      () => broadcastWindowMs(this.role.kind === 'leader' ? this.role.registry.sessionCount() : 0),
    );
    tokens.onChange((record) => {
      if (this.role.kind !== 'leader') return;
      const change = tokenChange(record, this.clock.now());
      if (change) this.tokenBroadcast.change(change);
    });
  }

  static async create(options: CoordinatorOptions, deps: CoordinatorDeps = {}): Promise<Coordinator> {
    const clock = deps.clock ?? systemClock;
    const random = deps.random ?? Math.random;
    const id = options.id ?? `${os.hostname().toLowerCase()}-${randomBytes(3).toString('hex')}`;
    const log = (deps.log ?? silentLogger()).child({ component: 'coordinator', coordinator: id });
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    const store = await openStore(options.store, { clock, log });
    const metrics = new CoordinatorMetrics();
    const server = new grpc.Server({
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
      // Per connection. Each caller's share of open calls is bounded at the edge (admission.ts);
      // this bounds what one connection costs, refusals included (RpcEdge.answer).
      'grpc.max_concurrent_streams': 64,
      // Deliberate ceilings (shared/limits.ts): a larger request is refused by its size before
      // it is decoded; desired sets go out in pieces far under what agents accept.
      'grpc.max_receive_message_length': LIMITS.grpcReceiveBytes,
      'grpc.max_send_message_length': LIMITS.grpcClientReceiveBytes,
    } as grpc.ServerOptions);
    let ops: OpsServer | undefined;
    let blobs: BlobStore | undefined;
    try {
      const blobStore = await openBlobStore(options.blobStore, options.dataDir);
      blobs = blobStore;
      warnIfPlaintext(options.listen, options.tls, log, 'coordinator gRPC API');
      const port = await bind(server, options.listen, serverCredentials(options.tls));
      const { host } = parseHostPort(options.listen);
      const wildcard = host === '0.0.0.0' || host === '::';
      const address = options.advertise ?? (wildcard ? `${os.hostname()}:${port}` : formatHostPort(host, port));
      let self: Coordinator | undefined;
      // The dashboard answers last: every path no other route claims (coordinator/dashboard/static.ts).
      const dashboard = dashboardRoutes();
      ops = await startOpsServer(options.httpListen, () => self!.health(), metrics.registry, {
        tls: options.tls,
        routes: async (req, res, secure) =>
          (self?.blobRoutes ? (await self.restRoutes!(req, res, secure)) || (await self.blobRoutes(req, res, secure)) : false) || dashboard(req, res, secure),
      });
      const election = new Election(store, keys.electionPrefix, { clock, log });
      const tokens = await TokenRegistry.load(store, clock, log.child({ component: 'tokens' }));
      const audit = new AuditLog(store, clock, log.child({ component: 'audit' }));
      const artifacts = new ArtifactRegistry(store, blobStore, clock, log.child({ component: 'artifacts' }));
      const peers = new BlobPeers({ store, blobs: blobStore, selfId: id, secret: await loadPeerSecret(store), tls: options.tls, log: log.child({ component: 'blob-peers' }), intervalMs: options.blobSyncIntervalMs ?? 5_000, clock });
      artifacts.replicate = (blob) => peers.replicate(blob.digest, blob.sizeBytes);
      artifacts.fetchMissing = (digest, sizeBytes) => peers.ensureLocal(digest, sizeBytes);
      // One key for every coordinator: a new leader's grants verify with the key agents hold.
      const grantKeys = await loadClusterGrantKeys(store);
      self = new Coordinator(id, address, options, store, metrics, server, ops, election, tokens, audit, artifacts, peers, grantKeys, clock, random, log, deps.onBootstrap);
      self.register();
      return self;
    } catch (err) {
      server.forceShutdown();
      await ops?.close();
      await blobs?.close();
      await store.close();
      throw err;
    }
  }

  get httpAddress(): string {
    return this.ops.address;
  }

  /**
   * The base URL (scheme://host:port) of this coordinator's blob routes, as agents and clients
   * reach them: --http-advertise, else the host of --advertise (or of the bound HTTP address
   * when that is not a wildcard) with the bound HTTP port; https when the coordinator has TLS.
   */
  get blobBaseUrl(): string {
    return baseUrl(this.options.httpAdvertise ?? advertisedHttp(this.address, this.ops.address), this.options.tls !== undefined);
  }

  get isLeader(): boolean {
    return this.role.kind === 'leader';
  }

  /** The leader's advertised address as this coordinator last saw it ('' while unknown). */
  get leaderAddress(): string {
    return this.leader?.address ?? '';
  }

  /** Starts campaigning and serving; resolves when the coordinator has closed. */
  run(): Promise<void> {
    const signal = this.abort.signal;
    this.loops ??= Promise.all([this.campaignLoop(signal), this.observeLoop(signal), this.tokens.run(signal), this.peers.run(signal)]);
    return this.loops.then(() => undefined);
  }

  /** Steps down (if leading), ends every stream and closes the store. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort(new Error('coordinator closing'));
      await this.loops;
      this.revokeLeadership();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => this.server.forceShutdown(), 2_000);
        this.server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await this.ops.close();
      this.peers.close();
      await this.artifacts.blobs.close();
      await this.store.close();
      this.log.info('coordinator stopped');
    })();
    return this.closing;
  }

  private register(): void {
    const v1 = mlfleetV1();
    const registry = () => this.leaderRole().registry;
    const workloads = () => this.leaderRole().workloads;
    const writer = () => this.leaderRole().writer;
    const revision = () => this.store.revision();
    const { store, tokens, audit } = this;
    const edge = new RpcEdge({
      tokens,
      audit,
      leaderWriter: () => (this.role.kind === 'leader' ? this.role.writer : undefined),
      requireLeader: () => void this.leaderRole(),
      log: this.log,
      uploadIdleMs: this.options.uploadIdleMs,
      onRejected: (role) => this.metrics.rejectedCalls.inc({ role }),
    });
    this.metrics.openCalls = () => edge.admission.inFlight();
    // Each method is kept by name too: the REST API calls the same handlers.
    const methods = new Map<string, RegisteredMethod>();
    const serve = (service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) => {
      for (const [name, definition] of Object.entries(service)) {
        const handler = implementation[name];
        if (handler) methods.set(`${definition.path.split('/')[1]!.split('.').pop()!}.${name}`, { definition, handler });
      }
      this.server.addService(withMalformedRequests(service), implementation);
    };
    serve(
      v1.AgentService.service,
      {
        Session: edge.stream('AgentService.Session', agentSessionHandler({
          registry,
          revision,
          workloads,
          logs: this.logs,
          routes: () => this.leaderRole().routes,
          tokenTable: () => tokenTablePieces(this.tokens.records(), this.clock.now()),
          admit: (nodeName, principal) => this.admitNode(nodeName, principal),
          abandon: async (credentialId) => void (await this.tokens.revoke(writer(), credentialId)),
          coordinatorId: this.id,
          clusterId: () => this.leaderRole().clusterId,
          leaderAddress: () => this.address,
          grantPublicKey: this.grantKeys.publicKeyDer,
          onLoad: (node, load) => {
            if (this.role.kind === 'leader') this.role.autoscaler.record(node, load);
          },
          sessionEnded: (node) => {
            if (this.role.kind === 'leader') this.role.tracker.forget(node);
            if (this.role.kind === 'leader') this.role.autoscaler.forget(node);
          },
          heartbeatIntervalMs: Math.max(100, Math.floor(this.options.nodeTtlMs / 3)),
          nodeTtlMs: this.options.nodeTtlMs,
          helloTimeoutMs: 10_000,
          clock: this.clock,
          log: this.log,
          metrics: this.metrics,
        })),
      } as grpc.UntypedServiceImplementation,
    );
    serve(v1.ClusterService.service, clusterService({ edge, status: () => this.status() }));
    serve(v1.NodeService.service, nodeService({ edge, registry, revision, tokens, writer, artifacts: this.artifacts, allocated: () => workloads().allocatedByNode() }));
    serve(v1.TenantService.service, tenantService({ edge, store, writer, now: () => this.clock.now(), storageUsed: (tenant) => this.artifacts.storageUsed(tenant), computeUsed: (tenant) => workloads().usage(tenant) }));
    // A node credential downloads only the blobs its node's allocations use or it was told to prefetch.
    const nodeMayFetch = (node: string, digest: string) => workloads().blobsOf(node).has(digest) || registry().wasToldToPrefetch(node, digest);
    const jobOutputs: JobOutputs = {
      target: (node, id) => workloads().jobOutputTarget(node, id),
      recordPart: (node, id, part) => workloads().recordOutputPart(node, id, part),
    };
    serve(withEncodedChunks(v1.ModelService.service), artifactService('model', { edge, registry: this.artifacts, writer, jobOutputs, nodeMayFetch }));
    serve(withEncodedChunks(v1.DatasetService.service), artifactService('dataset', { edge, registry: this.artifacts, writer, jobOutputs, nodeMayFetch }));
    // Where blob bytes are read and written (docs/delivery.md). With the S3 blob store, agents
    // read the bucket through presigned URLs and no byte passes here.
    const s3 = this.uploads.direct;
    const uploads = () => (this.leaderRole(), this.uploads);
    serve(v1.DeliveryService.service, {
      ...pushHandlers({ edge, registry: this.artifacts, writer, uploads, manifests: this.manifests, blobBaseUrl: () => this.blobBaseUrl, jobOutputs, now: () => this.clock.now() }),
      Locate: locateHandler({
        edge,
        artifacts: this.artifacts,
        manifests: this.manifests,
        nodeMayFetch,
        tracker: () => this.leaderRole().tracker,
        nodes: () => registry().list(),
        blobBaseUrl: () => this.blobBaseUrl,
        grantKeys: this.grantKeys,
        presignGet: s3 ? (digest) => s3.presignBlobGet(digest) : undefined,
        now: () => this.clock.now(),
        counted: (caller) => this.metrics.locates.inc({ caller }),
      }),
    } as grpc.UntypedServiceImplementation);
    this.blobRoutes = blobRoutes({ tokens, registry: this.artifacts, uploads, nodeMayFetch, tls: this.options.tls !== undefined, sentBytes: this.metrics.blobSentBytes, receivedBytes: this.metrics.uploadReceivedBytes, log: this.log.child({ component: 'blob-routes' }) });
    // Coordinators only, with the peer secret: copies of blobs (coordinator/blobs/blob-peers.ts).
    serve(v1.BlobPeerService.service, this.peers.service());
    serve(v1.TokenService.service, tokenService({ edge, store, tokens, writer }));
    serve(v1.EventService.service, eventService({ edge, audit, events: () => this.leaderRole().events }));
    const workloadDeps = { edge, workloads, registry, logs: this.logs };
    serve(v1.DeploymentService.service, deploymentService(workloadDeps));
    serve(v1.JobService.service, jobService(workloadDeps));
    serve(v1.AllocationService.service, allocationService(workloadDeps));
    serve(v1.StackService.service, stackService({ edge, stacks: () => this.leaderRole().stacks, stackUser: (stack) => workloads().stackUser(stack) }));
    serve(v1.SourceService.service, sourceService({ edge, store, clock: this.clock, credentials: this.options.sourceCredentials ?? new Map(), writer, poller: () => this.leaderRole().sources }));
    serve(v1.SelectionService.service, selectionService({ edge, workloads, artifacts: this.artifacts, latencyOf: (tenant, name) => this.deploymentLatency(tenant, name) }));
    this.restRoutes = restRoutes({
      methods,
      tokens,
      isLeader: () => this.isLeader,
      leaderHttp: () => this.leader?.http,
      tls: this.options.tls !== undefined,
      log: this.log.child({ component: 'rest' }),
    });
  }

  /**
   * Records a deployment's measured p50 latency, which model selection weighs (the agents'
   * measurements arrive here once the gateway reports them; tests call it directly). Leader only.
   */
  recordLatency(tenant: string, deployment: string, p50Ms: number): void {
    this.leaderRole().workloads.recordLatency(tenant, deployment, p50Ms);
  }

  /** A deployment's p50 as the gateways measured it, else as recorded (recordLatency). */
  private deploymentLatency(tenant: string, deployment: string): number | undefined {
    const { routes, workloads } = this.leaderRole();
    const replicas = new Set(workloads.listAllocations({ tenant, node: '', workload: deployment, all: false }).filter((a) => a.kind === 'deployment').map((a) => a.id));
    return routes.latencyOfReplicas(replicas) ?? workloads.latencyOf(tenant, deployment);
  }

  /** What only the leader has; NotLeaderError (a redirect) otherwise. */
  private leaderRole(): Extract<Role, { kind: 'leader' }> {
    if (this.role.kind === 'leader') return this.role;
    throw new NotLeaderError(this.leaderAddress);
  }

  /** A new node that joined with a join token gets its own credential; an existing name is refused. */
  private async admitNode(nodeName: string, principal: Principal): Promise<{ token: string; credentialId: string }> {
    const { writer, registry } = this.leaderRole();
    const { token, credential } = await this.admission.admit(writer, principal, nodeName, () => registry.find(nodeName) !== undefined);
    this.log.info({ node: nodeName, credential: credential.id, joinToken: principal.tokenId }, 'admitted a new node and issued its credential');
    return { token, credentialId: credential.id };
  }

  private async status(): Promise<ClusterStatus> {
    const { kvs, revision } = await this.store.range(keys.coordinatorsPrefix);
    const leaderId = this.leader?.id;
    return {
      leader: this.leaderAddress,
      coordinators: kvs
        .map((kv) => JSON.parse(kv.value) as LeaderMember)
        .map((member) => ({ id: member.id, address: member.address, role: member.id === leaderId ? 'leader' : 'follower' })),
      store: this.store.kind,
      revision,
    };
  }

  private health() {
    return { ok: true, id: this.id, role: this.role.kind, leader: this.leaderAddress || null, store: this.store.kind };
  }

  /**
   * Holds a lease (which also keeps this coordinator's membership key), campaigns, leads until
   * the lease or the leader key is lost, and starts over. Closing resigns, so a clean
   * shutdown hands leadership over at once instead of after the lease TTL.
   */
  private async campaignLoop(signal: AbortSignal): Promise<void> {
    const member: LeaderMember = { id: this.id, address: this.address, http: this.blobBaseUrl };
    let failures = 0;
    while (!signal.aborted) {
      let lease: Lease | undefined;
      let leadership: Leadership | undefined;
      try {
        const onRenewed = (gapMs: number) => this.metrics.noteLeaseRenewal(gapMs);
        lease = await Lease.create(this.store, this.options.electionTtlMs, { clock: this.clock, log: this.log, onRenewed });
        await this.store.put(keys.coordinator(this.id), JSON.stringify(member), { lease: lease.id });
        leadership = await this.election.campaign(JSON.stringify(member), lease, AbortSignal.any([signal, lease.lost]));
        await this.establishLeadership(leadership);
        failures = 0;
        await aborted(AbortSignal.any([signal, leadership.lost]));
        if (!signal.aborted) {
          this.log.warn('leadership lost');
          this.metrics.leadershipLosses.inc();
        }
      } catch (err) {
        if (!signal.aborted) this.log.warn({ err: (err as Error).message }, 'campaign failed');
      } finally {
        this.revokeLeadership();
        if (signal.aborted) await leadership?.resign().catch(() => undefined);
        await lease?.revoke().catch(() => undefined);
      }
      if (!signal.aborted) await sleep(this.clock, backoffDelay(failures++, this.random, 100, 2_000), signal).catch(() => undefined);
    }
  }

  /** Follows who leads, for redirects and cluster status. */
  private async observeLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        for await (const value of this.election.observe(signal)) {
          this.leader = value ? (JSON.parse(value) as LeaderMember) : undefined;
        }
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn({ err: (err as Error).message }, 'observing the election failed; retrying');
        await sleep(this.clock, 500, signal).catch(() => undefined);
      }
    }
  }

  private async establishLeadership(leadership: Leadership): Promise<void> {
    const writer: FencedWriter = { txn: (compares, success, failure) => fencedTxn(this.store, leadership, compares, success, failure) };
    const bootstrapped = await bootstrap(this.store, writer, this.tokens, this.options.dataDir, this.clock);
    if (bootstrapped) {
      this.log.info({ adminTokenFile: bootstrapped.adminTokenFile, joinTokenFile: bootstrapped.joinTokenFile }, 'bootstrapped an empty store');
      this.onBootstrap?.(bootstrapped);
    }
    const clusterId = await ensureClusterId(this.store, writer, this.clock);
    const registry = await NodeRegistry.load({
      store: this.store,
      writer,
      clock: this.clock,
      log: this.log.child({ component: 'node-registry' }),
      metrics: this.metrics,
      nodeTtlMs: this.options.nodeTtlMs,
    });
    let workloads: WorkloadController;
    let events: EventLog;
    let stacks: StackRegistry;
    const routes = new RouteBook(this.artifacts, this.clock);
    let rebuilding = false;
    // After each pass: the gateways' routing table, pushed to every agent when it changed.
    const rebuildRoutes = () => {
      if (rebuilding) return;
      rebuilding = true;
      routes
        .rebuild(workloads.serving(), (node) => registry.find(node)?.record.address ?? '')
        .then((table) => table && registry.broadcastRoutes(table))
        .catch((err: unknown) => this.log.warn({ err }, 'could not rebuild the routing table'))
        .finally(() => (rebuilding = false));
    };
    try {
      events = await EventLog.load(this.store, writer, this.clock, this.log.child({ component: 'events' }));
      stacks = await StackRegistry.load(this.store, writer);
      workloads = await WorkloadController.load({
        store: this.store,
        writer,
        nodes: registry,
        artifacts: this.artifacts,
        stacks,
        events,
        clock: this.clock,
        log: this.log.child({ component: 'workloads' }),
        options: this.options.workloads,
        onPass: rebuildRoutes,
        scratchDir: path.join(this.options.dataDir, 'scratch'),
        startPhases: new StartPhaseBook((phases) => this.metrics.observeStart(phases)),
      });
    } catch (err) {
      registry.close();
      throw err;
    }
    registry.onChange((change) => {
      workloads.kick();
      if (change.from !== undefined && change.from !== change.to) {
        events.record({ tenant: '', object: `node/${change.node}`, allocation: '', node: change.node, type: `Node${change.to[0]!.toUpperCase()}${change.to.slice(1)}`, message: `${change.from} → ${change.to}` });
      }
    });
    // The autoscaler sizes autoscaled deployments from the gateways' load (docs/autoscaling.md).
    const autoscaler = new Autoscaler({ target: workloads, clock: this.clock, log: this.log.child({ component: 'autoscaler' }), ...this.options.autoscaler });
    workloads.useAutoscalerViews((tenant, name) => autoscaler.view(tenant, name));
    // Automatic rollback judges a rollout by what the gateways measure of its replicas.
    workloads.rollouts.trafficOf = (allocations) => routes.trafficOf(allocations);
    workloads.rollouts.countsOf = (allocation) => routes.countsOf(allocation);
    workloads.useTrafficViews((allocations) => routes.deploymentTraffic(allocations));
    autoscaler.start();
    // Model sources follow their buckets (docs/sources.md).
    const sources = new SourcePoller({
      store: this.store,
      writer,
      artifacts: this.artifacts,
      credentials: this.options.sourceCredentials ?? new Map(),
      events,
      clock: this.clock,
      log: this.log.child({ component: 'sources' }),
      scratchDir: path.join(this.options.dataDir, 'scratch'),
      onImported: (tenant, source, sizeBytes) => this.metrics.sourceImportedBytes.inc({ tenant, source }, sizeBytes),
      onPolled: (ok) => this.metrics.sourcePolls.inc({ result: ok ? 'ok' : 'error' }),
      ...(this.options.sources ? { options: this.options.sources } : {}),
    });
    sources.start();
    // Model retention (README "Models and datasets"): on pushes, on SetRetention, and a sweep.
    const retention = new RetentionEnforcer({ store: this.store, registry: this.artifacts, writer, event: (e) => events.record(e), clock: this.clock, log: this.log.child({ component: 'retention' }), ...(this.options.retentionSweepMs ? { sweepMs: this.options.retentionSweepMs } : {}) });
    retention.start();
    this.role = { kind: 'leader', leadership, registry, writer, workloads, events, routes, stacks, clusterId, tracker: new FetchTracker(this.random), autoscaler, sources, retention };
    registry.open();
    this.uploads.startSweeping();
    this.leader = { id: this.id, address: this.address, http: this.blobBaseUrl };
    this.metrics.isLeader.set(1);
    this.log.info({ address: this.address }, 'elected leader');
  }

  private revokeLeadership(): void {
    if (this.role.kind !== 'leader') return;
    void this.role.autoscaler.close();
    void this.role.sources.close();
    this.role.retention.close();
    this.role.workloads.close();
    this.role.registry.close();
    this.tokenBroadcast.stop();
    void this.uploads.close().catch((err: unknown) => this.log.warn({ err }, 'could not drop unfinished uploads'));
    this.role = { kind: 'follower' };
    if (this.leader?.id === this.id) this.leader = undefined;
    this.metrics.isLeader.set(0);
    this.log.info('stepped down');
  }
}

function bind(server: grpc.Server, listen: string, credentials: grpc.ServerCredentials): Promise<number> {
  const { host, port } = parseHostPort(listen);
  const target = formatHostPort(host, port);
  return new Promise((resolve, reject) =>
    server.bindAsync(target, credentials, (err, bound) =>
      err ? reject(new Error(`cannot listen on ${listen} for gRPC: ${err.message}`)) : resolve(bound),
    ),
  );
}

function aborted(signal: AbortSignal): Promise<void> {
  return signal.aborted ? Promise.resolve() : new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** The HTTP address to advertise: the bound one, with the advertised gRPC host when it was bound to a wildcard. */
function advertisedHttp(advertise: string, bound: string): string {
  const http = parseHostPort(bound);
  if (http.host !== '0.0.0.0' && http.host !== '::') return bound;
  return formatHostPort(parseHostPort(advertise).host, http.port);
}
