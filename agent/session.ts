// The agent's side of the session: connect to any listed coordinator, follow redirects to the
// leader, say hello, heartbeat at the interval the leader asks for, hand desired allocation
// sets and commands to the agent, and carry its status reports and log data back. Any failure ends the attempt; the next one starts after a jittered
// backoff (a redirect is followed at once) and says hello again.
import * as grpc from '@grpc/grpc-js';
import { backoffDelay, sleep, type Clock, type Random, type Timer } from '../shared/clock.js';
import { setBearer } from '../shared/auth.js';
import { AlreadyExistsError, MlfleetError, NotLeaderError, UnauthenticatedError, UnavailableError, fromGrpcError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { mlfleetV1, type AgentMessageIn, type CoordinatorMessageOut, type DeliveryCounters, type Usage } from '../shared/proto.js';
import type { Hello } from '../shared/gen/mlfleet/v1/Hello.js';
import { DesiredAssembler, type DesiredSet } from '../shared/desired-pieces.js';
import { LIMITS } from '../shared/limits.js';
import type { Welcome__Output } from '../shared/gen/mlfleet/v1/Welcome.js';
import type { Command__Output } from '../shared/gen/mlfleet/v1/Command.js';
import type { StatusReport } from '../shared/gen/mlfleet/v1/StatusReport.js';
import type { LatencySample } from '../shared/gen/mlfleet/v1/LatencySample.js';
import type { RouteTable__Output } from '../shared/gen/mlfleet/v1/RouteTable.js';
import type { TokenTable__Output } from '../shared/gen/mlfleet/v1/TokenTable.js';

export type SessionState = 'connecting' | 'connected' | 'stopped';

export interface SessionOptions {
  coordinators: string[];
  hello: () => Hello;
  usage: () => Usage;
  /** The gateway's latency measurements since the last heartbeat. */
  latencies?: () => LatencySample[];
  /** What the agent's blob deliveries moved since it started (agent/delivery/counters.ts), for every heartbeat. */
  delivery?: () => DeliveryCounters;
  /** A routing table for the gateway. */
  onRoutes?: (table: RouteTable__Output) => void;
  /** The tokens the gateway checks: a piece of the whole table, or a change. */
  onTokens?: (table: TokenTable__Output) => void;
  /** A whole desired set, once every piece of it has come (shared/desired-pieces.ts). */
  onDesired: (desired: DesiredSet) => void;
  /**
   * The leader welcomed this session. What changed between the hello and now was dropped (see
   * send), so this is when to report the current state again.
   */
  onConnected?: () => void;
  /** A command from the leader (prefetch a blob, logs, …). */
  onCommand?: (command: Command__Output) => void;
  /** The bearer token for the next attempt: the node credential, or the join token until there is one. */
  token: () => string | undefined;
  /** The leader issued this node its own credential (after a join). */
  onCredential?: (credential: string) => void;
  /** The coordinator refused the token (revoked, unknown): the agent may fall back to its join token. */
  onUnauthenticated?: (err: UnauthenticatedError) => void;
  /**
   * The leader refused a join: the node's name is taken (a join token admits new nodes only).
   * The session keeps retrying with backoff, in case an admin removes the node.
   */
  onJoinRefused?: (err: AlreadyExistsError) => void;
  clock: Clock;
  random: Random;
  log: Logger;
  /** Redirects followed in a row before backing off (guards against a redirect loop). */
  maxRedirects?: number;
  /** TLS to the coordinators (shared/tls.ts channelCredentials); default: plain text. */
  credentials?: grpc.ChannelCredentials;
  /** Extra gRPC channel options (the fleet benchmark gives each simulated agent its own connection). */
  channelOptions?: grpc.ChannelOptions;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 15_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.max_reconnect_backoff_ms': 1_000,
  // Deliberate ceilings: the leader sends bounded pieces, far under what is accepted here.
  'grpc.max_receive_message_length': LIMITS.grpcClientReceiveBytes,
  'grpc.max_send_message_length': LIMITS.grpcReceiveBytes,
};

export class CoordinatorSession {
  state: SessionState = 'connecting';
  /** The coordinator this session talks to while connected. */
  connectedTo: string | undefined;
  welcome: Welcome__Output | undefined;
  /**
   * The key the leader signs peers' grants with (Welcome.grant_public_key), kept while the
   * session reconnects, so that peers holding grants are still served while the leader is away.
   */
  grantPublicKey: Buffer | undefined;

  private current: grpc.ClientDuplexStream<AgentMessageIn, CoordinatorMessageOut> | undefined;

  constructor(private readonly options: SessionOptions) {}

  /** Sends a status report now if connected (the next hello carries the state anyway). */
  report(status: StatusReport): void {
    this.send({ status });
  }

  /**
   * Sends one message to the leader if connected, else drops it (false): what the leader
   * missed it learns from the next hello, or asks for again.
   */
  send(message: AgentMessageIn): boolean {
    if (this.state !== 'connected' || !this.current) return false;
    this.current.write(message);
    return true;
  }

  /** Keeps a session open until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { coordinators, clock, random, log } = this.options;
    const maxRedirects = this.options.maxRedirects ?? 3;
    let failures = 0;
    let redirects = 0;
    let next = 0;
    // Addresses tried since the last pause: every listed coordinator is tried once before
    // backing off, so a dead one costs nothing when another answers.
    let untried = coordinators.length;
    let redirect: string | undefined;
    while (!signal.aborted) {
      const address = redirect ?? coordinators[next++ % coordinators.length]!;
      redirect = undefined;
      let electing = false;
      try {
        await this.attempt(address, signal);
      } catch (err) {
        if (signal.aborted) break;
        const error = MlfleetError.is(err) ? err : new UnavailableError(String(err));
        if (error instanceof UnauthenticatedError) this.options.onUnauthenticated?.(error);
        if (error instanceof AlreadyExistsError) this.options.onJoinRefused?.(error);
        if (error instanceof NotLeaderError && error.leader && error.leader !== address && redirects < maxRedirects) {
          redirects += 1;
          redirect = error.leader;
          log.info({ from: address, to: error.leader }, 'following redirect to the leader');
          continue;
        }
        electing = error instanceof NotLeaderError;
        if (!(error instanceof AlreadyExistsError) || !this.options.onJoinRefused) log.warn({ coordinator: address, err: error.message }, 'coordinator session failed');
      }
      const wasWelcomed = this.welcome !== undefined;
      if (wasWelcomed) failures = 0;
      this.welcome = undefined;
      this.connectedTo = undefined;
      this.state = 'connecting';
      redirects = 0;
      untried -= 1;
      if (!wasWelcomed && untried > 0) continue;
      untried = coordinators.length;
      // While an election is on, the new leader is seconds away: retry often, because it gives
      // nodes only one TTL to reconnect before it marks them down.
      const delay = electing ? backoffDelay(Math.min(failures++, 3), random, 100, 800) : backoffDelay(failures++, random, 250, 5_000);
      await sleep(clock, delay, signal).catch(() => undefined);
    }
    this.state = 'stopped';
  }

  /** One session with one coordinator; resolves when the coordinator ends it, rejects on error. */
  private attempt(address: string, signal: AbortSignal): Promise<void> {
    const { clock, log } = this.options;
    const client = new (mlfleetV1().AgentService)(address, this.options.credentials ?? grpc.credentials.createInsecure(), { ...CHANNEL_OPTIONS, ...this.options.channelOptions });
    const call = client.Session(setBearer(new grpc.Metadata(), this.options.token()));
    this.current = call;
    let heartbeat: Timer | undefined;
    let seq = 0;
    // Pieces gathered on this session only: a set half-sent before a break is sent again whole.
    const assembler = new DesiredAssembler();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      const done = (err?: Error) => {
        heartbeat?.cancel();
        if (this.current === call) this.current = undefined;
        signal.removeEventListener('abort', onAbort);
        client.close();
        if (err) reject(err);
        else resolve();
      };
      call.on('data', (message: CoordinatorMessageOut) => {
        if (message.msg === 'welcome' && message.welcome) {
          this.welcome = message.welcome;
          if (message.welcome.grantPublicKey.length > 0) this.grantPublicKey = Buffer.from(message.welcome.grantPublicKey);
          if (message.welcome.nodeCredential) this.options.onCredential?.(message.welcome.nodeCredential);
          this.state = 'connected';
          this.connectedTo = address;
          log.info({ coordinator: address, leader: message.welcome.leaderAddress }, 'connected to the leader');
          this.options.onConnected?.();
          const send = () => {
            const beat: AgentMessageIn = { heartbeat: { seq: ++seq, sentAtMs: clock.now(), usage: this.options.usage(), latencies: this.options.latencies?.() ?? [], delivery: this.options.delivery?.() } };
            call.write(beat);
          };
          heartbeat?.cancel();
          heartbeat = clock.setInterval(send, Math.max(100, message.welcome.heartbeatIntervalMs));
        } else if (message.msg === 'desired' && message.desired) {
          const set = assembler.add(message.desired);
          if (set) this.options.onDesired(set);
        } else if (message.msg === 'routes' && message.routes) {
          this.options.onRoutes?.(message.routes);
        } else if (message.msg === 'tokens' && message.tokens) {
          this.options.onTokens?.(message.tokens);
        } else if (message.msg === 'command' && message.command) {
          this.options.onCommand?.(message.command);
        }
      });
      call.on('error', (err: grpc.ServiceError) => done(fromGrpcError(err)));
      call.on('end', () => done());
      call.write({ hello: this.options.hello() });
    });
  }
}
