// The agent: one per host. Reports the host's capacity and health to the leader over one
// session, keeps the desired allocation set it is sent (persisted, so it outlives the
// control plane) and has the reconciler run it through the task driver (--driver), answers
// the leader's commands (prefetch, logs), and serves /healthz and /metrics. The gateway joins
// it in a later issue.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { systemClock, type Clock, type Random } from '../shared/clock.js';
import { startOpsServer, type OpsServer } from '../shared/http-server.js';
import { InvalidArgumentError } from '../shared/errors.js';
import { parseHostPort } from '../shared/config.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { channelCredentials, type TlsMaterial } from '../shared/tls.js';
import type { ChannelCredentials } from '@grpc/grpc-js';
import type { Allocation, Capacity } from '../shared/proto.js';
import { ALLOCATION_STATES } from '../shared/workloads.js';
import type { Driver, TaskStatus } from './drivers/driver.js';
import { DockerDriver } from './drivers/docker-driver.js';
import { ProcessDriver } from './drivers/process-driver.js';
import { processTaskUser } from './task-user.js';
import { detectInventory, loadInventoryFile } from './inventory.js';
import { HashPool } from './delivery/hash-pool.js';
import { leaderLocator } from './delivery/locator.js';
import { PieceFetcher } from './delivery/piece-fetcher.js';
import { coordinatorOutputPusher } from './job-output.js';
import { LocalState } from './local-state.js';
import { LogStreams } from './log-streams.js';
import { ModelCache } from './model-cache.js';
import { Reconciler, parseRunSpec } from './reconciler.js';
import { Gateway } from './gateway/gateway.js';
import { DeliveryCounters } from './delivery/counters.js';
import { registerDeliveryMetrics } from './delivery/metrics.js';
import { registerStartMetrics } from './start-metrics.js';
import { PeerRoutes } from './delivery/peer-routes.js';
import { UploadLimiter, peerUploadMbps } from './delivery/upload-limiter.js';
import { CoordinatorSession } from './session.js';
import { UsageSampler } from './usage.js';

export const AGENT_VERSION = '0.1.0';

export interface AgentOptions {
  coordinators: string[];
  name: string;
  dataDir: string;
  labels: Record<string, string>;
  driver: 'docker' | 'process';
  /** The user --driver process runs tasks as (agent/task-user.ts); unused by docker. */
  taskUser: string;
  gatewayListen: string;
  /** The gateway's gRPC inference address (--gateway-grpc-listen); undefined: none. */
  gatewayGrpcListen?: string;
  /** Requests the gateway holds per deployment with no ready replica (--gateway-queue-size; default 100). */
  gatewayQueueSize?: number;
  /** How long the gateway holds a request at most (--gateway-queue-timeout; default 30 s). */
  gatewayQueueTimeoutMs?: number;
  httpListen: string;
  /** Where other hosts reach this agent; defaults to the gateway address. */
  advertise: string | undefined;
  cacheMaxBytes: number;
  /** Blobs fetched at once (--max-concurrent-downloads; default 4); others wait their turn. */
  maxConcurrentDownloads?: number;
  inventoryFile: string | undefined;
  /** --peer-upload-mbps: the cap on bytes given to peers (0: none); undefined: from the inventory's NICs (upload-limiter.ts). */
  peerUploadMbps?: number;
  /** TLS to the coordinators (a client certificate for mutual TLS); undefined: plain text. */
  tls: TlsMaterial | undefined;
  /** Lets a node join the first time; afterwards it uses the credential the leader issued it. */
  joinToken: string | undefined;
}

const CREDENTIAL = 'nodeCredential';
/** The cluster's id, from the leader's welcome: the docker driver labels and tells apart containers by it. */
const CLUSTER = 'clusterId';

export interface AgentDeps {
  clock?: Clock;
  random?: Random;
  log?: Logger;
}

export class Agent {
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private closed = false;

  private constructor(
    readonly options: AgentOptions,
    readonly capacity: Capacity,
    readonly labels: Record<string, string>,
    readonly session: CoordinatorSession,
    readonly cache: ModelCache,
    /** What this agent's deliveries moved (heartbeats and /metrics read it), and the fetcher. */
    readonly delivery: AgentDelivery,
    readonly reconciler: Reconciler,
    readonly gateway: Gateway,
    private readonly driver: Driver,
    private readonly logStreams: LogStreams,
    private readonly state: LocalState,
    private readonly ops: OpsServer,
    private readonly log: Logger,
  ) {}

  static async create(options: AgentOptions, deps: AgentDeps = {}): Promise<Agent> {
    const clock = deps.clock ?? systemClock;
    const random = deps.random ?? Math.random;
    const log = (deps.log ?? silentLogger()).child({ component: 'agent', node: options.name });

    const inventory = options.inventoryFile
      ? await loadInventoryFile(options.inventoryFile, { hostname: options.name })
      : { ...(await detectInventory({ log })), labels: {} as Record<string, string> };
    const labels = { ...(inventory.labels ?? {}), ...options.labels };
    const state = LocalState.open(options.dataDir);
    if (!state.getMeta(CREDENTIAL) && !options.joinToken) {
      state.close();
      throw new InvalidArgumentError(
        'this node has not joined yet and has no join token: pass --join-token or --join-token-file (the coordinator writes one to <data-dir>/join-token)',
      );
    }
    let driver: Driver;
    try {
      if (options.driver === 'docker') {
        driver = await DockerDriver.create({
          node: options.name,
          log,
          cluster: () => state.getMeta(CLUSTER),
          // Containers made before clusters had ids: only those this agent started are its own.
          ownsUnlabelled: (allocationId) => state.runs().has(allocationId),
        });
      } else {
        const taskUser = processTaskUser(options.taskUser, log);
        driver = new ProcessDriver({ dataDir: options.dataDir, node: options.name, log, taskUser });
      }
    } catch (err) {
      state.close();
      throw err;
    }

    const metrics = new Registry();
    collectDefaultMetrics({ register: metrics, prefix: 'mlfleet_agent_' });
    // One count of what deliveries moved, for the fetcher, the peer routes, heartbeats and /metrics.
    const counters = new DeliveryCounters();
    registerDeliveryMetrics(metrics, counters);
    const uploadMbps = peerUploadMbps(options.peerUploadMbps, inventory.capacity?.nics ?? []);
    const sessionId = randomUUID();
    const sampler = new UsageSampler();
    const credentials = channelCredentials(options.tls);
    // The node's credential, kept in agent.db and held here: every session, download, push and
    // gateway hop presents it, and the hop is on the inference path.
    let credential = state.getMeta(CREDENTIAL);
    const token = () => credential ?? options.joinToken;
    const delivery = agentDelivery(counters, () => session.connectedTo, () => credential, credentials, options, clock, log.child({ component: 'delivery' }));
    const cache = ModelCache.open({
      dir: path.join(options.dataDir, 'cache'),
      db: state.database,
      maxBytes: options.cacheMaxBytes,
      source: delivery.fetcher,
      maxConcurrentDownloads: options.maxConcurrentDownloads,
      clock,
      log: log.child({ component: 'model-cache' }),
      // What adopted tasks use is not evicted before the reconciler leases it again.
      keep: blobsInUse(state.desired().allocations),
    });
    const session: CoordinatorSession = new CoordinatorSession({
      coordinators: options.coordinators,
      clock,
      random,
      log,
      usage: () => sampler.sample(),
      latencies: () => gateway.takeLatencies(),
      delivery: () => counters.toProto(),
      onRoutes: (table) => gateway.setRoutes(table),
      onTokens: (table) => gateway.setTokens(table),
      credentials,
      token,
      onCredential: (issued) => {
        state.setMeta(CREDENTIAL, issued);
        credential = issued;
        log.info('joined: stored this node\'s credential');
      },
      onUnauthenticated: (err) => {
        if (!credential) return;
        state.deleteMeta(CREDENTIAL);
        credential = undefined;
        log.warn({ reason: err.message }, options.joinToken ? 'node credential refused; joining again with the join token' : 'node credential refused and there is no join token: an admin must give this node a join token');
      },
      onJoinRefused: (err) => {
        log.error({ node: options.name, reason: err.message }, `the coordinator refused this node's join: node "${options.name}" already exists and a join token admits new nodes only; an admin must run \`mlfleetctl nodes rm ${options.name}\` (or start this agent with --name NAME for a new node); retrying with backoff`);
      },
      hello: () => ({
        nodeName: options.name,
        agentVersion: AGENT_VERSION,
        address: options.advertise ?? gateway.address,
        labels,
        capacity: inventory.capacity,
        appliedRevision: state.desired().revision,
        allocations: reconciler.statuses(),
        cache: cache.entries(),
        sessionId,
        peerUploadMbps: uploadMbps,
      }),
      // Statuses that changed while the hello was on its way were dropped: the full set again.
      onConnected: () => {
        const clusterId = session.welcome?.clusterId;
        if (clusterId && clusterId !== state.getMeta(CLUSTER)) {
          const before = state.getMeta(CLUSTER);
          if (before) log.warn({ before, now: clusterId }, "this node now belongs to another cluster: containers labelled with the old cluster's id are left alone and no longer managed");
          state.setMeta(CLUSTER, clusterId);
        }
        session.report({ allocations: reconciler.statuses(), cache: cache.entries() });
        // A new leader numbers its routing tables afresh; it hears at once of the deployments
        // this gateway holds requests for.
        gateway.newSession();
        gateway.rewake();
        // Prefetches cut by a restart or a lost leader go on without being asked for again.
        void cache.resumePrefetches();
      },
      onDesired: (desired) => {
        const set = { revision: desired.revision, allocations: desired.allocations };
        if (state.saveDesired(set)) {
          log.debug({ revision: desired.revision, allocations: desired.allocations.length }, 'desired allocations updated');
          reconciler.setDesired(set);
        }
      },
      onCommand: (command) => {
        if (command.logs) {
          logStreams.open(command.id, command.logs);
          return;
        }
        if (command.cancelLogs) {
          logStreams.cancel(command.cancelLogs.commandId);
          return;
        }
        const prefetch = command.prefetch;
        if (!prefetch) return;
        log.info({ digest: prefetch.digest, ref: prefetch.ref }, 'prefetching into the model cache');
        cache
          .prefetch({ digest: prefetch.digest, sizeBytes: prefetch.sizeBytes, directory: prefetch.directory })
          .catch((err: unknown) => log.warn({ digest: prefetch.digest, err: (err as Error).message }, 'prefetch failed'));
      },
    });
    // The leader takes each report's cache list as the whole cache, so every report carries it.
    const reconciler = new Reconciler({
      driver,
      cache,
      state,
      advertiseHost: parseHostPort(options.advertise ?? options.gatewayListen).host,
      onStatus: (allocations) => session.report({ allocations, cache: cache.entries() }),
      onStarted: registerStartMetrics(metrics),
      dataDir: options.dataDir,
      pushOutput: coordinatorOutputPusher({ leader: () => session.connectedTo, token, credentials, tls: options.tls }),
      clock,
      log,
    });
    const logStreams = new LogStreams({
      driver,
      knows: (allocationId) => reconciler.has(allocationId),
      send: (logs) => void session.send({ logs }),
      log,
    });
    cache.onChange(() => session.report({ allocations: [], cache: cache.entries() }));
    new Gauge({
      name: 'mlfleet_agent_allocations',
      help: 'allocations on this host by state',
      labelNames: ['state'],
      registers: [metrics],
      collect() {
        const counts = new Map<string, number>();
        for (const status of reconciler.statuses()) counts.set(status.state, (counts.get(status.state) ?? 0) + 1);
        for (const state of ALLOCATION_STATES) this.set({ state }, counts.get(state) ?? 0);
      },
    });
    new Gauge({
      name: 'mlfleet_agent_connected',
      help: '1 while the agent has a session with the leader',
      registers: [metrics],
      collect() {
        this.set(session.state === 'connected' ? 1 : 0);
      },
    });

    let ops: OpsServer;
    let gateway: Gateway;
    try {
      gateway = await Gateway.start({
        listen: options.gatewayListen,
        grpcListen: options.gatewayGrpcListen,
        node: options.name,
        // The hop to other hosts' gateways goes with this node's own credential (never the join token).
        credential: () => credential,
        tls: options.tls,
        clock,
        log: log.child({ component: 'gateway' }),
        reportLoad: (load) => void session.send({ load }),
        queueSize: options.gatewayQueueSize,
        queueTimeoutMs: options.gatewayQueueTimeoutMs,
        peers: new PeerRoutes({
          holder: cache,
          grantKey: () => session.grantPublicKey,
          limiter: uploadMbps > 0 ? new UploadLimiter(uploadMbps, clock) : undefined,
          counters,
          memory: delivery.fetcher.memory,
          onPeerPieces: (digest, node, headers) => delivery.fetcher.learnPeerPieces(digest, node, headers),
          clock,
          log: log.child({ component: 'peer-routes' }),
        }),
      });
      ops = await startOpsServer(
        options.httpListen,
        () => ({ ok: true, node: options.name, session: session.state, coordinator: session.connectedTo ?? null }),
        metrics,
      );
    } catch (err) {
      await gateway!?.close();
      await reconciler.close();
      await driver.close();
      await cache.close();
      await delivery.close();
      state.close();
      throw err;
    }
    new Gauge({
      name: 'mlfleet_gateway_held_requests',
      help: 'inference requests the gateway holds now for deployments with no ready replica (scaled to zero or waking)',
      registers: [metrics],
      collect() {
        this.set(gateway.heldTotal());
      },
    });
    return new Agent(options, inventory.capacity, labels, session, cache, delivery, reconciler, gateway, driver, logStreams, state, ops, log);
  }

  get httpAddress(): string {
    return this.ops.address;
  }

  /** The tasks this agent's driver has on the host (running or ended): what a close leaves running. */
  tasks(): Promise<TaskStatus[]> {
    return this.driver.list();
  }

  /** Runs the reconciler and the session until close(); resolves once both have stopped. */
  run(): Promise<void> {
    void this.reconciler.sync().finally(() => this.cache.releaseKept());
    this.running ??= Promise.all([this.reconciler.run(this.abort.signal), this.session.run(this.abort.signal)]).then(() => undefined);
    return this.running;
  }

  /** Stops the session, the reconciler and the servers. Workloads keep running: they belong to the host, not this process. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(new Error('agent closing'));
    await this.running;
    await this.logStreams.close();
    await this.reconciler.close();
    await this.driver.close();
    await this.gateway.close();
    await this.ops.close();
    await this.cache.close();
    await this.delivery.close();
    this.state.close();
    this.log.info('agent stopped');
  }
}

export interface AgentDelivery {
  counters: DeliveryCounters;
  fetcher: PieceFetcher;
  close(): Promise<void>;
}

/** The piece fetcher the cache pulls through, locating with the leader, and its counters. */
function agentDelivery(
  counters: DeliveryCounters,
  leader: () => string | undefined,
  credential: () => string | undefined,
  credentials: ChannelCredentials,
  options: AgentOptions,
  clock: Clock,
  log: Logger,
): AgentDelivery {
  const hashPool = new HashPool();
  // Only the node credential fetches blobs: a join token is refused by every blob route.
  const fetcher = new PieceFetcher({ locate: leaderLocator({ leader, token: credential, credentials }), token: credential, tls: options.tls, counters, hashPool, clock, log });
  return {
    counters,
    fetcher,
    async close() {
      await fetcher.close();
      await hashPool.close();
    },
  };
}

/** The model and dataset digests a desired set's allocations use. */
function blobsInUse(allocations: Allocation[]): string[] {
  const digests: string[] = [];
  for (const allocation of allocations) {
    try {
      const run = parseRunSpec(allocation.specJson);
      if (run.model) digests.push(run.model.digest);
      for (const dataset of run.datasets) digests.push(dataset.digest);
    } catch {
      // An unreadable spec fails its allocation in the reconciler; it protects nothing here.
    }
  }
  return digests;
}
