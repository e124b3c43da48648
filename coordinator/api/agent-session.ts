// AgentService.Session: one bidirectional stream per agent. The agent says hello (identity and
// capacity), then heartbeats; the leader answers welcome and the agent's full desired
// allocation set. A follower ends the stream at once with a redirect to the leader.
import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Clock } from '../../shared/clock.js';
import { FailedPreconditionError, InvalidArgumentError, MlfleetError, PermissionDeniedError, UnavailableError, toGrpcError, ResourceExhaustedError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { AgentMessage, CoordinatorMessage, GatewayLoad, Hello } from '../../shared/proto.js';
import type { Command } from '../../shared/gen/mlfleet/v1/Command.js';
import { assertWellFormed, validate } from '../../shared/validation.js';
import { ALLOCATION_STATES } from '../../shared/workloads.js';
import { AGENT_START_PHASES, MAX_START_PHASES, MAX_START_PHASE_SECONDS } from '../../shared/start-phases.js';
import type { Principal } from '../auth/token-registry.js';
import type { StreamShare } from './rpc.js';
import type { CoordinatorMetrics } from '../metrics.js';
import type { NodeRegistry, SessionHandle } from '../node-registry.js';
import { gatewayLoadSchema, heartbeatSchema, helloSchema } from './schemas.js';
import type { WorkloadController } from '../workloads/controller.js';
import type { LogRelay } from '../workloads/log-relay.js';
import { desiredPieces, type DesiredSet } from '../../shared/desired-pieces.js';
import type { LatencySample__Output as LatencySample } from '../../shared/gen/mlfleet/v1/LatencySample.js';
import type { RouteTable } from '../../shared/gen/mlfleet/v1/RouteTable.js';
import type { TokenTable } from '../../shared/gen/mlfleet/v1/TokenTable.js';
import type { AllocationStatus } from '../../shared/proto.js';
import { z } from '../../shared/validation.js';

const allocationStatusSchema = z.object({
  id: z.string().min(1).max(64),
  state: z.enum(ALLOCATION_STATES),
  reason: z.string().max(4096),
  endpoint: z.string().max(300),
  exitCode: z.number().int(),
  updatedAtMs: z.number().int().nonnegative(),
  outputVersion: z.number().int().nonnegative().default(0),
  // Sent with a replica's first ready (docs/autoscaling.md "Cold starts"): the agent's phases, once each.
  startPhases: z
    .array(z.object({ phase: z.enum(AGENT_START_PHASES), seconds: z.number().finite().nonnegative().max(MAX_START_PHASE_SECONDS) }))
    .max(MAX_START_PHASES)
    .refine((phases) => new Set(phases.map((p) => p.phase)).size === phases.length, 'each start phase at most once')
    .default([]),
});
const allocationStatusesSchema = z.array(allocationStatusSchema).max(10_000);
const statusReportSchema = z.object({
  allocations: allocationStatusesSchema,
  cache: z.array(z.unknown()),
});

export interface AgentSessionDeps {
  /** The registry while this coordinator leads; throws NotLeaderError otherwise. */
  registry(): NodeRegistry;
  /** Revision of the desired allocation set sent after welcome. */
  revision(): Promise<number>;
  /** The workload controller while this coordinator leads: the node's desired set, reported states. */
  workloads(): WorkloadController;
  logs: LogRelay;
  /** The gateways' routing table as it stands (sent after the desired set), and their latency reports. */
  routes(): { table: RouteTable; record(gateway: string, samples: LatencySample[]): void };
  /** The tokens the gateways check, whole, in pieces (coordinator/auth/gateway-tokens.ts). */
  tokenTable(): TokenTable[];
  coordinatorId: string;
  /** The cluster's id (coordinator/bootstrap.ts ensureClusterId), while this coordinator leads. */
  clusterId(): string;
  leaderAddress(): string;
  /** The public key (SPKI DER) agents check the leader's peer grants with (coordinator/delivery/grant-keys.ts). */
  grantPublicKey?: Buffer;
  /** The node's session ended (the tracker forgets its fetches). */
  sessionEnded?(node: string): void;
  /** A gateway's load report, validated (the leader's Autoscaler.record; docs/autoscaling.md). */
  onLoad?(node: string, load: GatewayLoad): void;
  /**
   * Admits a new node that joined with a join token: mints its own credential (ALREADY_EXISTS
   * when the name is taken; coordinator/auth/node-admission.ts).
   */
  admit(nodeName: string, principal: Principal): Promise<{ token: string; credentialId: string }>;
  /** Revokes a credential minted for a session that ended before the agent could receive it. */
  abandon(credentialId: string): Promise<void>;
  heartbeatIntervalMs: number;
  nodeTtlMs: number;
  helloTimeoutMs: number;
  clock: Clock;
  log: Logger;
  metrics: CoordinatorMetrics;
}

type SessionCall = grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>;

/** Handles one authorized session (the RPC edge has checked the token's role). */
export function agentSessionHandler(deps: AgentSessionDeps): (call: SessionCall, principal: Principal, share: StreamShare) => void {
  return (call, principal, share) => {
    let registry: NodeRegistry;
    try {
      registry = deps.registry();
    } catch (err) {
      call.emit('error', toGrpcError(err));
      return;
    }
    new AgentSession(call, registry, principal, share, deps).start();
  };
}

class AgentSession implements SessionHandle {
  readonly id = randomUUID();
  private nodeName: string | undefined;
  /** After a join: the credential minted for this node (revoking it ends this session too). */
  credentialId = '';
  /** The welcome (with the credential, after a join) was written to the agent. */
  private delivered = false;
  private ended = false;
  private welcomed = false;
  private readonly log: Logger;

  constructor(
    private readonly call: SessionCall,
    private readonly registry: NodeRegistry,
    private readonly principal: Principal,
    private readonly share: StreamShare,
    private readonly deps: AgentSessionDeps,
  ) {
    this.log = deps.log.child({ session: this.id, peer: call.getPeer() });
  }

  start(): void {
    this.deps.metrics.sessions.inc();
    const helloTimer = this.deps.clock.setTimeout(
      () => this.fail(new InvalidArgumentError(`no hello within ${this.deps.helloTimeoutMs} ms of opening the session`)),
      this.deps.helloTimeoutMs,
    );
    this.call.on('data', (message: AgentMessage) => {
      try {
        this.receive(message, helloTimer.cancel);
      } catch (err) {
        this.fail(err);
      }
    });
    this.call.on('end', () => this.finish(() => this.call.end()));
    this.call.on('cancelled', () => this.finish(() => undefined));
    this.call.on('error', () => this.finish(() => undefined));
    this.call.on('close', () => helloTimer.cancel());
  }

  get tokenId(): string {
    return this.principal.tokenId;
  }

  command(command: Command): boolean {
    if (this.ended) return false;
    this.call.write({ command });
    return true;
  }

  desired(set: DesiredSet): boolean {
    if (this.ended || !this.welcomed) return false;
    this.writeDesired(set);
    return true;
  }

  /** The set in bounded pieces (shared/desired-pieces.ts), never one message that grows with the node. */
  private writeDesired(set: DesiredSet): void {
    for (const piece of desiredPieces(set)) this.call.write({ desired: piece });
  }

  routes(table: RouteTable): boolean {
    if (this.ended || !this.welcomed) return false;
    this.call.write({ routes: table });
    return true;
  }

  tokens(table: TokenTable): boolean {
    if (this.ended || !this.welcomed) return false;
    this.call.write({ tokens: table });
    return true;
  }

  close(reason: string): void {
    this.fail(new UnavailableError(reason));
  }

  private receive(message: AgentMessage, helloReceived: () => void): void {
    assertWellFormed(message, 'agent message');
    if (!message.msg) throw new InvalidArgumentError('agent message carries none of hello, heartbeat or status');
    if (message.msg === 'hello') {
      if (this.nodeName) throw new FailedPreconditionError('hello may only be sent once per session');
      const hello = validate(helloSchema, message.hello, 'hello') as Hello;
      validate(allocationStatusesSchema, hello.allocations, 'hello allocations');
      if (this.principal.role === 'node' && this.principal.node !== hello.nodeName) {
        throw new PermissionDeniedError(`this credential belongs to node "${this.principal.node}"; it cannot report for node "${hello.nodeName}"`);
      }
      helloReceived();
      this.nodeName = hello.nodeName;
      this.log.info({ node: hello.nodeName, version: hello.agentVersion }, 'agent connected');
      this.join(hello)
        .then(async (credential) => {
          try {
            if (this.ended) throw new UnavailableError('the agent left before it was welcomed');
            await this.registry.hello(hello, this);
            await this.welcome(hello, credential);
          } catch (err) {
            // The agent never received its credential: revoke it, so the name is not held by a
            // credential nobody has (a record written meanwhile needs `nodes rm`).
            if (credential && !this.delivered) await this.deps.abandon(this.credentialId).catch((e: unknown) => this.log.warn({ err: e }, 'could not revoke an undelivered node credential'));
            throw err;
          }
        })
        .catch((err: unknown) => this.fail(err));
      return;
    }
    if (!this.nodeName) throw new FailedPreconditionError('the first message of a session must be hello');
    if (message.msg === 'heartbeat') {
      validate(heartbeatSchema, message.heartbeat, 'heartbeat');
      this.registry.heartbeat(this.nodeName, this, message.heartbeat!);
      this.deps.routes().record(this.nodeName, message.heartbeat!.latencies);
    } else if (message.msg === 'status') {
      validate(statusReportSchema, message.status, 'status report');
      this.registry.reportCache(this.nodeName, this, message.status!.cache);
      this.reportStatuses(message.status!.allocations as AllocationStatus[]);
    } else if (message.msg === 'logs') {
      this.deps.logs.deliver(this.nodeName, message.logs!);
    } else if (message.msg === 'load') {
      const load = validate(gatewayLoadSchema, message.load, 'gateway load') as GatewayLoad;
      this.deps.onLoad?.(this.nodeName, load);
    }
  }

  /**
   * A join token admits a new node only; the node gets its own credential before the registry
   * hears of it, so an existing node's session is never replaced by a join. '' for a node
   * that connects with its credential.
   */
  private async join(hello: Hello): Promise<string> {
    if (this.principal.role !== 'join') return '';
    const { token, credentialId } = await this.deps.admit(hello.nodeName, this.principal);
    this.credentialId = credentialId;
    // Admitted: the session goes on as the node, so it no longer holds one of the join token's
    // few streams (a fleet joining with one token would otherwise stop at the first few nodes).
    if (!this.share.transfer({ tokenId: credentialId, role: 'node', tenant: '', node: hello.nodeName })) {
      throw new ResourceExhaustedError(`node ${hello.nodeName} already has every session it may have open; try again shortly`);
    }
    return token;
  }

  private async welcome(hello: Hello, nodeCredential: string): Promise<void> {
    if (this.ended) throw new UnavailableError('the agent left before it was welcomed');
    this.call.write({
      welcome: {
        nodeName: hello.nodeName,
        coordinatorId: this.deps.coordinatorId,
        leaderAddress: this.deps.leaderAddress(),
        heartbeatIntervalMs: this.deps.heartbeatIntervalMs,
        nodeTtlMs: this.deps.nodeTtlMs,
        nodeCredential,
        clusterId: this.deps.clusterId(),
        grantPublicKey: this.deps.grantPublicKey ?? Buffer.alloc(0),
      },
    });
    this.delivered = true;
    const workloads = this.deps.workloads();
    // What the agent runs now first (it may have finished or failed work while away), then
    // its desired set.
    await workloads.reportStatuses(hello.nodeName, hello.allocations as AllocationStatus[]);
    const revision = await this.deps.revision();
    if (this.ended) return;
    this.writeDesired({ revision, allocations: workloads.desiredFor(hello.nodeName) });
    workloads.markSent(hello.nodeName);
    // The tokens before the routes, so the gateway never routes without checking. Built and
    // written in the same turn as `welcomed` is set: no change in between is missed.
    for (const piece of this.deps.tokenTable()) this.call.write({ tokens: piece });
    this.call.write({ routes: this.deps.routes().table });
    this.welcomed = true;
  }

  private reportStatuses(statuses: AllocationStatus[]): void {
    const node = this.nodeName!;
    let workloads: WorkloadController;
    try {
      workloads = this.deps.workloads();
    } catch (err) {
      this.fail(err);
      return;
    }
    workloads.reportStatuses(node, statuses).catch((err: unknown) => this.log.warn({ err, node }, 'could not record allocation states'));
  }

  private fail(err: unknown): void {
    if (this.ended) return;
    if (!MlfleetError.is(err)) this.log.error({ err }, 'agent session failed');
    else this.log.info({ node: this.nodeName, reason: err.message }, 'ending agent session');
    this.finish(() => this.call.emit('error', toGrpcError(err)));
  }

  private finish(end: () => void): void {
    if (this.ended) return;
    this.ended = true;
    this.deps.metrics.sessions.dec();
    if (this.nodeName) {
      // A session a newer one replaced leaves the newer one's fetches alone.
      if (this.registry.disconnected(this.nodeName, this)) this.deps.sessionEnded?.(this.nodeName);
      this.deps.logs.nodeGone(this.nodeName);
    }
    end();
  }
}
