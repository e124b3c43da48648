// The leader's node registry: the live view of every node, fed by agent sessions. A node is
// `ready` while heartbeats arrive and `down` once --node-ttl passes without one. Heartbeats
// only touch memory; the store sees registrations and transitions, each a fenced
// compare-and-swap on the node's record. Exists only while this coordinator leads: built from
// the store when leadership is won (every node gets one TTL of grace to reconnect), dropped
// when it is lost.
import { isDeepStrictEqual } from 'node:util';
import type { Clock, Timer } from '../shared/clock.js';
import { ConflictError, FailedPreconditionError, NotFoundError } from '../shared/errors.js';
import type { Command } from '../shared/gen/mlfleet/v1/Command.js';
import type { DesiredSet } from '../shared/desired-pieces.js';
import type { RouteTable } from '../shared/gen/mlfleet/v1/RouteTable.js';
import type { TokenTable } from '../shared/gen/mlfleet/v1/TokenTable.js';
import { KeyedMutex } from '../shared/keyed-mutex.js';
import { keys } from '../shared/keys.js';
import type { Logger } from '../shared/log.js';
import type { Hello, Heartbeat, CacheEntry } from '../shared/proto.js';
import type { Compare, Op, Store, TxnResult } from '../shared/store/store.js';
import type { CoordinatorMetrics } from './metrics.js';
import { displayStatus, type NodeRecord, type NodeStatus, type NodeView } from './node-record.js';

/** Leader-only writes: each carries the leadership fence; throws NotLeaderError once deposed. */
export interface FencedWriter {
  txn(compares: Compare[], success: Op[], failure?: Op[]): Promise<TxnResult>;
}

/** What the registry needs of an agent's session: to end it when a newer one replaces it. */
export interface SessionHandle {
  readonly id: string;
  /** The id of the token the session authenticated with. */
  readonly tokenId: string;
  /** After a join: the id of the credential minted for the node ('' otherwise). */
  readonly credentialId: string;
  close(reason: string): void;
  /** Sends a command to the agent; false when the session can no longer take one. */
  command(command: Command): boolean;
  /** Sends the agent its full desired allocation set; false when the session has ended. */
  desired(set: DesiredSet): boolean;
  /** Sends the agent's gateway the routing table; false when the session has ended. */
  routes(table: RouteTable): boolean;
  /** Sends the agent's gateway a change of the tokens it checks; false when the session has ended. */
  tokens(table: TokenTable): boolean;
}

/** A node's stored record changed; `from` is undefined for a new node, `to` 'removed' after `nodes rm`. */
export interface NodeChange {
  node: string;
  from: NodeStatus | undefined;
  to: NodeStatus | 'removed';
}

export interface NodeRegistryDeps {
  store: Store;
  writer: FencedWriter;
  clock: Clock;
  log: Logger;
  metrics: CoordinatorMetrics;
  nodeTtlMs: number;
}

const MAX_CAS_ATTEMPTS = 5;

export class NodeRegistry {
  private readonly nodes = new Map<string, NodeView>();
  /** The nodes' names in list() order; undefined once a node comes or goes. */
  private sortedNames: string[] | undefined;
  private readonly sessions = new Map<string, SessionHandle>();
  /** Digests the leader told each node to prefetch: a node credential may download them. */
  private readonly prefetched = new Map<string, Set<string>>();
  private readonly queues = new KeyedMutex();
  private sweeper: Timer | undefined;
  private readonly listeners = new Set<(change: NodeChange) => void>();
  private closed = false;

  private constructor(private readonly deps: NodeRegistryDeps) {
  }

  /**
   * The leader now takes sessions: every node's TTL starts from here. Until this moment agents
   * could not reach this leader (it was still loading the workloads), so a TTL counted from the
   * load would mark healthy nodes down on a slow failover.
   */
  open(): void {
    if (this.sweeper || this.closed) return;
    const now = this.deps.clock.now();
    for (const view of this.nodes.values()) view.lastSeenMs = Math.max(view.lastSeenMs, now);
    const interval = Math.min(1000, Math.max(50, Math.floor(this.deps.nodeTtlMs / 10)));
    this.sweeper = this.deps.clock.setInterval(() => this.sweep(), interval);
  }

  /** Rebuilds the view from the store; every node gets one TTL from open() to show up. */
  static async load(deps: NodeRegistryDeps): Promise<NodeRegistry> {
    const registry = new NodeRegistry(deps);
    const { kvs } = await deps.store.range(keys.nodesPrefix);
    const now = deps.clock.now();
    for (const kv of kvs) {
      const record = JSON.parse(kv.value) as NodeRecord;
      registry.nodes.set(record.name, {
        record,
        modRevision: kv.modRevision,
        lastHeartbeatMs: 0,
        lastSeenMs: now,
        usage: undefined,
        cache: [],
      });
    }
    deps.metrics.nodeCounts = () => registry.countByStatus();
    deps.log.info({ nodes: kvs.length }, 'node registry loaded');
    return registry;
  }

  /** Every node by name. The order is kept between calls: the controller lists the nodes on every pass. */
  list(): NodeView[] {
    this.sortedNames ??= [...this.nodes.keys()].sort((a, b) => a.localeCompare(b));
    return this.sortedNames.map((name) => this.nodes.get(name)!);
  }

  /** The node's view, or undefined when there is no such node. */
  find(name: string): NodeView | undefined {
    return this.nodes.get(name);
  }

  get(name: string): NodeView {
    const view = this.nodes.get(name);
    if (!view) throw new NotFoundError(`node "${name}" not found; \`mlfleetctl nodes ls\` lists the nodes`);
    return view;
  }

  /** A session said hello: register or refresh the node, mark it ready, adopt the session. */
  async hello(hello: Hello, session: SessionHandle): Promise<NodeView> {
    const previous = this.sessions.get(hello.nodeName);
    if (previous && previous.id !== session.id) previous.close(`replaced by a newer session of node ${hello.nodeName}`);
    this.sessions.set(hello.nodeName, session);
    const now = this.deps.clock.now();
    const view = await this.update(hello.nodeName, (current) => {
      const next: NodeRecord = {
        name: hello.nodeName,
        status: 'ready',
        cordoned: current?.cordoned ?? false,
        draining: current?.draining ?? false,
        address: hello.address,
        labels: hello.labels,
        capacity: hello.capacity!,
        agentVersion: hello.agentVersion,
        registeredAtMs: current?.registeredAtMs ?? now,
        statusChangedAtMs: current?.status === 'ready' ? current.statusChangedAtMs : now,
      };
      return current && isDeepStrictEqual(current, next) ? undefined : next;
    });
    view.lastHeartbeatMs = now;
    view.lastSeenMs = now;
    view.cache = hello.cache;
    view.peerUploadMbps = hello.peerUploadMbps;
    return view;
  }

  heartbeat(name: string, session: SessionHandle, heartbeat: Heartbeat): void {
    if (this.sessions.get(name) !== session) return;
    const view = this.nodes.get(name);
    if (!view) return;
    const now = this.deps.clock.now();
    view.lastHeartbeatMs = now;
    view.lastSeenMs = now;
    view.usage = heartbeat.usage ?? undefined;
    view.delivery = heartbeat.delivery ?? undefined;
    this.deps.metrics.heartbeats.inc();
    if (heartbeat.sentAtMs > 0) this.deps.metrics.heartbeatLag.observe(Math.max(0, now - heartbeat.sentAtMs) / 1000);
    if (view.record.status === 'down') this.markReady(name);
  }

  reportCache(name: string, session: SessionHandle, cache: CacheEntry[]): void {
    const view = this.sessions.get(name) === session ? this.nodes.get(name) : undefined;
    if (view) view.cache = cache;
  }

  /** The session ended. The node stays ready until its TTL runs out: it may just be reconnecting. False: a newer session had replaced it. */
  disconnected(name: string, session: SessionHandle): boolean {
    if (this.sessions.get(name) !== session) return false;
    this.sessions.delete(name);
    return true;
  }

  async cordon(name: string): Promise<NodeView> {
    this.get(name);
    return this.update(name, (r) => (r!.cordoned ? undefined : { ...r!, cordoned: true }));
  }

  async uncordon(name: string): Promise<NodeView> {
    this.get(name);
    return this.update(name, (r) => (!r!.cordoned && !r!.draining ? undefined : { ...r!, cordoned: false, draining: false }));
  }

  /** Cordons the node and marks it draining; the controllers of later issues move its work. */
  async drain(name: string): Promise<NodeView> {
    this.get(name);
    return this.update(name, (r) => (r!.cordoned && r!.draining ? undefined : { ...r!, cordoned: true, draining: true }));
  }

  /**
   * Deletes the node's record (`nodes rm`) and ends its session; its allocations then count as
   * on a node that is down. The caller revokes its credentials first, so it cannot come back.
   */
  async remove(name: string): Promise<NodeView> {
    return this.queues.run(name, async () => {
      const view = this.get(name);
      const key = keys.node(name);
      const result = await this.deps.writer.txn([{ key, target: 'modRevision', op: '=', value: view.modRevision }], [{ type: 'delete', key }]);
      if (!result.succeeded) throw new ConflictError(`node "${name}" changed while being removed; try again`);
      this.nodes.delete(name);
      this.sortedNames = undefined;
      this.prefetched.delete(name);
      const session = this.sessions.get(name);
      this.sessions.delete(name);
      session?.close(`node ${name} was removed by an admin`);
      const change: NodeChange = { node: name, from: displayStatus(view.record), to: 'removed' };
      queueMicrotask(() => {
        for (const listener of this.listeners) listener(change);
      });
      this.deps.log.info({ node: name }, 'node removed');
      return view;
    });
  }

  /** Sends a command to a node's agent; FAILED_PRECONDITION when it is not connected to this leader. */
  command(name: string, command: Command): void {
    this.get(name);
    const session = this.sessions.get(name);
    if (!session || !session.command(command)) {
      throw new FailedPreconditionError(`node "${name}" is not connected; it gets commands once its agent is back`);
    }
    if (command.prefetch?.digest) {
      const digests = this.prefetched.get(name) ?? new Set<string>();
      digests.add(command.prefetch.digest);
      this.prefetched.set(name, digests);
    }
  }

  /** Whether the leader told this node to prefetch the blob (it may then download it). */
  wasToldToPrefetch(name: string, digest: string): boolean {
    return this.prefetched.get(name)?.has(digest) ?? false;
  }

  /** Sends a node's agent its desired set; false when the node has no session with this leader. */
  sendDesired(name: string, set: DesiredSet): boolean {
    return this.sessions.get(name)?.desired(set) ?? false;
  }

  /** Sends every connected agent's gateway the routing table. */
  broadcastRoutes(table: RouteTable): void {
    for (const session of this.sessions.values()) session.routes(table);
  }

  /** How many agents hold a session with this leader. */
  sessionCount(): number {
    return this.sessions.size;
  }

  /** Sends every connected agent's gateway a change of the tokens it checks. */
  broadcastTokens(table: TokenTable): void {
    for (const session of this.sessions.values()) session.tokens(table);
  }

  /** Calls `listener` after every change of a node's stored record (status, cordon, drain, capacity). */
  onChange(listener: (change: NodeChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Ends every session that authenticated with this token, or was issued it as its credential (it was just revoked). */
  closeSessionsOf(tokenId: string): void {
    for (const session of [...this.sessions.values()]) {
      if (session.tokenId === tokenId || session.credentialId === tokenId) session.close(`token ${tokenId} was revoked`);
    }
  }

  close(): void {
    this.closed = true;
    this.sweeper?.cancel();
    this.deps.metrics.nodeCounts = undefined;
    for (const session of this.sessions.values()) session.close('this coordinator no longer leads');
    this.sessions.clear();
  }

  private markReady(name: string): void {
    const now = this.deps.clock.now();
    this.update(name, (r) => (r && r.status === 'down' ? { ...r, status: 'ready', statusChangedAtMs: now } : undefined))
      .catch((err: unknown) => this.deps.log.warn({ err, node: name }, 'could not mark node ready'));
  }

  private sweep(): void {
    if (this.closed) return;
    const now = this.deps.clock.now();
    for (const view of this.nodes.values()) {
      if (view.record.status !== 'ready' || now - view.lastSeenMs < this.deps.nodeTtlMs) continue;
      const name = view.record.name;
      this.update(name, (r) => {
        const stillSilent = this.deps.clock.now() - this.nodes.get(name)!.lastSeenMs >= this.deps.nodeTtlMs;
        return r && r.status === 'ready' && stillSilent ? { ...r, status: 'down', statusChangedAtMs: now } : undefined;
      }).catch((err: unknown) => this.deps.log.warn({ err, node: name }, 'could not mark node down'));
    }
  }

  /**
   * Applies `mutate` to a node's record and writes the result with a compare on the record's
   * modRevision plus the leadership fence. One update per node at a time; a lost compare
   * re-reads the record and tries again. `mutate` returns undefined when nothing changes.
   */
  private update(name: string, mutate: (current: NodeRecord | undefined) => NodeRecord | undefined): Promise<NodeView> {
    const run = async (): Promise<NodeView> => {
      const key = keys.node(name);
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        const view = this.nodes.get(name);
        const next = mutate(view?.record);
        if (!next) return view!;
        const result = await this.deps.writer.txn(
          [{ key, target: 'modRevision', op: '=', value: view?.modRevision ?? 0 }],
          [{ type: 'put', key, value: JSON.stringify(next) }],
          [{ type: 'get', key }],
        );
        if (result.succeeded) {
          this.apply(name, next, result.revision, view);
          return this.nodes.get(name)!;
        }
        const latest = result.results[0];
        if (latest?.type === 'get' && latest.kv) this.apply(name, JSON.parse(latest.kv.value) as NodeRecord, latest.kv.modRevision, view);
        else {
          this.nodes.delete(name);
          this.sortedNames = undefined;
        }
      }
      throw new ConflictError(`node "${name}" kept changing while being updated; try again`);
    };
    return this.queues.run(name, run);
  }

  private apply(name: string, record: NodeRecord, modRevision: number, previous: NodeView | undefined): void {
    if (previous && previous.record.status !== record.status) {
      this.deps.metrics.nodeTransitions.inc({ to: record.status });
      this.deps.log.info({ node: name, from: displayStatus(previous.record), to: displayStatus(record) }, 'node status changed');
    }
    const now = this.deps.clock.now();
    const change: NodeChange = { node: name, from: previous ? displayStatus(previous.record) : undefined, to: displayStatus(record) };
    queueMicrotask(() => {
      for (const listener of this.listeners) listener(change);
    });
    if (!this.nodes.has(name)) this.sortedNames = undefined;
    this.nodes.set(name, {
      record,
      modRevision,
      lastHeartbeatMs: previous?.lastHeartbeatMs ?? 0,
      lastSeenMs: previous?.lastSeenMs ?? now,
      usage: previous?.usage,
      delivery: previous?.delivery,
      peerUploadMbps: previous?.peerUploadMbps,
      cache: previous?.cache ?? [],
    });
  }

  private countByStatus(): Record<string, number> {
    const counts = { ready: 0, down: 0, draining: 0 };
    for (const view of this.nodes.values()) counts[displayStatus(view.record)] += 1;
    return counts;
  }
}
