// The inference gateway every agent runs (--gateway-listen, default 127.0.0.1:7780): the Open
// Inference Protocol v2 over HTTP, routed to a ready replica anywhere in the fleet. The routing
// table comes from the leader over the agent's session whenever it changes (never polled), so
// the gateway keeps serving with the last table it had while the control plane is away.
//
// Trust (DESIGN principle 11): every request but /v2/health/* carries a bearer token, checked
// here against the tokens the leader sends over the session (token-book.ts), with no call to
// the leader; who may reach which model is decided by access.ts. Replicas listen on their
// host's loopback only: a replica on this host is called at 127.0.0.1:port, a replica on
// another host through that host's gateway (the hop), authenticated by this node's credential
// and naming the replica in `mlfleet-replica`. The caller's token never reaches a replica.
// With the agent's TLS material (--tls-cert, --tls-key, --tls-ca: the cluster has mutual TLS),
// the same port also speaks HTTPS (told apart by the first byte), hops go over HTTPS with this
// node's certificate, and a hop that does not come over mutual TLS is refused.
//
// Choice of replica: this host's replicas first, then the one with the fewest requests in
// flight (ties in turn). A request is retried on another replica when the first cannot be
// reached (nothing was received from it), up to three replicas. No ready replica → 503 with
// `{"error": …}`, except for an autoscaled deployment (ModelRoute.holds) with none: its
// inference is held until one is ready (hold-queue.ts). Inference is counted per deployment and
// reported to the leader's autoscaler (load-meter.ts, docs/autoscaling.md). Latency per model and replica is measured here and reported in heartbeats.
// The same protocol over gRPC (--gateway-grpc-listen) is oip-grpc.ts, which sends each call here.
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { formatHostPort, parseHostPort } from '../../shared/config.js';
import { closeSilentConnections, deadlines, sniffProtocol } from '../../shared/http-server.js';
import type { LatencySample } from '../../shared/gen/mlfleet/v1/LatencySample.js';
import type { ModelRoute__Output as ModelRoute } from '../../shared/gen/mlfleet/v1/ModelRoute.js';
import type { RouteEndpoint__Output as RouteEndpoint } from '../../shared/gen/mlfleet/v1/RouteEndpoint.js';
import type { RouteTable__Output as RouteTable } from '../../shared/gen/mlfleet/v1/RouteTable.js';
import type { Logger } from '../../shared/log.js';
import { LatencyWindow } from './latency.js';
import { pipeline } from 'node:stream/promises';
import { Pool, type Dispatcher } from 'undici';
import { NotFoundError } from '../../shared/errors.js';
import { select, type Candidate, type Criteria } from '../../shared/selection.js';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { TokenTable__Output as TokenTable } from '../../shared/gen/mlfleet/v1/TokenTable.js';
import { splitHostPort } from '../../shared/workloads.js';
import { AccessError, TENANT_HEADER, checkMayInfer, notFound, routeFor, selectable, type Sender } from './access.js';
import { TokenBook } from './token-book.js';
import { BodyError, DEFAULT_MAX_REQUEST_BYTES, declaredLength, takeBody, tooLarge, type RequestBody } from './request-body.js';
import { LoadMeter, type DeploymentMeter } from './load-meter.js';
import { HoldError, HoldQueues } from './hold-queue.js';
import type { GatewayLoad__Output as GatewayLoad } from '../../shared/gen/mlfleet/v1/GatewayLoad.js';
import type { TlsMaterial } from '../../shared/tls.js';
import { BLOBS_PATH } from '../../shared/blob-http.js';
import { OipGrpcServer } from './oip-grpc.js';

export interface GatewayOptions {
  listen: string;
  /** This host's node name: its replicas are preferred. */
  node: string;
  log: Logger;
  /** This node's credential, which other gateways accept for the hop; undefined before the node joined. */
  credential(): string | undefined;
  clock?: Clock;
  /** The agent's TLS material: with a certificate and a CA, HTTPS beside HTTP and hops over mutual TLS. */
  tls?: TlsMaterial;
  /** Answers other agents' requests under /v1/blobs/ (agent/delivery/peer-routes.ts), after the token is checked here. */
  peers?: { handle(req: http.IncomingMessage, res: http.ServerResponse, sender: Sender, pathname: string): Promise<void> };
  /** Where the load reports go (the agent session's AgentMessage.load; docs/autoscaling.md). */
  reportLoad?: (load: GatewayLoad) => void;
  /** Requests held per deployment with no ready replica (--gateway-queue-size; default 100). */
  queueSize?: number;
  /** How long a request is held at most (--gateway-queue-timeout; default 30 s). */
  queueTimeoutMs?: number;
  /** false: no load is measured (only for the gateway-autoscale bench's baseline). */
  measureLoad?: boolean;
  /** Draws in [0, 1) for the canary split (default Math.random; tests may fix it). */
  random?: () => number;
  /** Where the Open Inference Protocol's gRPC service listens (oip-grpc.ts); undefined: nowhere. */
  grpcListen?: string;
}

export { TENANT_HEADER } from './access.js';
/** A hop from another gateway names the replica of this host it is for. */
export const REPLICA_HEADER = 'mlfleet-replica';
/** Set on a hop's answer when this host's replica could not be reached: the sender may try another. */
const HOP_UNREACHABLE = 'mlfleet-hop-unreachable';
const MAX_ATTEMPTS = 3;
/** A whole inference request, body included, must arrive within this long. */
const REQUEST_TIMEOUT_MS = 120_000;
const MODEL_PATH = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?\/?$/;

export class Gateway {
  private routes: ModelRoute[] = [];
  private revision = -1;
  private sessionFresh = false;
  private readonly inFlight = new Map<string, number>();
  private turn = 0;
  private readonly windows = new Map<string, LatencyWindow>();
  /** One connection pool per replica address (undici: far less work per request than node:http's client). */
  private readonly pools = new Map<string, Pool>();
  private readonly tokens: TokenBook;
  /** Inference requests per deployment, for the leader's autoscaler; undefined when not measured. */
  private readonly load: LoadMeter | undefined;
  private readonly holds: HoldQueues;
  /** inference.GRPCInferenceService, translated to this gateway's REST routes (--gateway-grpc-listen). */
  private grpc: OipGrpcServer | undefined;

  /** Hops go over mutual TLS (the agent has a certificate and a CA). */
  private readonly mutual: boolean;

  private constructor(
    private readonly server: net.Server,
    private readonly servers: http.Server[],
    private readonly options: GatewayOptions,
  ) {
    this.mutual = options.tls?.cert !== undefined && options.tls.ca !== undefined;
    const clock = options.clock ?? systemClock;
    this.tokens = new TokenBook(clock);
    this.load = options.measureLoad === false ? undefined : new LoadMeter({ clock, send: options.reportLoad ?? (() => undefined) });
    this.holds = new HoldQueues({ clock, size: options.queueSize, timeoutMs: options.queueTimeoutMs, meter: this.load });
  }

  static async start(options: GatewayOptions): Promise<Gateway> {
    let gateway: Gateway | undefined;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void gateway!.handle(req, res);
    // A request head within HEADERS_TIMEOUT_MS, a whole request (its body too) within two minutes.
    const plain = http.createServer(deadlines(REQUEST_TIMEOUT_MS), handler);
    const { tls } = options;
    // Client certificates are asked for, not required: consumers may call over HTTPS without one.
    const secure = tls?.cert && tls.key ? https.createServer({ ...deadlines(REQUEST_TIMEOUT_MS), cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.ca !== undefined, rejectUnauthorized: false }, handler) : undefined;
    const servers = secure ? [plain, secure] : [plain];
    for (const s of servers) {
      s.keepAliveTimeout = 30_000;
      closeSilentConnections(s);
    }
    const server = secure ? net.createServer((socket) => sniffProtocol(socket, plain, secure)) : plain;
    gateway = new Gateway(server, servers, options);
    const { host, port } = parseHostPort(options.listen);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot listen on ${options.listen} for the inference gateway: ${err.message}`)));
      server.listen(port, host, () => resolve());
    });
    if (options.grpcListen !== undefined) {
      try {
        gateway.grpc = await OipGrpcServer.start({
          listen: options.grpcListen,
          gateway: gateway.address,
          maxRequestBytes: () => Math.max(DEFAULT_MAX_REQUEST_BYTES, ...gateway!.routes.flatMap((r) => r.endpoints.map(maxRequestBytes))),
          tls,
          log: options.log.child({ component: 'oip-grpc' }),
        });
      } catch (err) {
        await gateway.close();
        throw err;
      }
    }
    return gateway;
  }

  get address(): string {
    const { address, port } = this.server.address() as AddressInfo;
    return formatHostPort(address, port);
  }

  /** Where the gRPC inference service listens; undefined when it does not. */
  get grpcAddress(): string | undefined {
    return this.grpc?.address;
  }

  /**
   * A new session (perhaps with a new leader, whose tables count their revisions afresh): its
   * first table replaces the one held whatever its revision.
   */
  newSession(): void {
    this.sessionFresh = true;
  }

  /** A routing table from the leader; an older revision than the one held (in one session) is ignored. */
  setRoutes(table: RouteTable): void {
    if (!this.sessionFresh && table.revision < this.revision) return;
    this.sessionFresh = false;
    this.revision = table.revision;
    this.routes = table.models;
    this.holds.release(this.routes);
    // Pools of replicas (and gateways) that left the table are closed.
    const addresses = new Set(table.models.flatMap((m) => m.endpoints.map((e) => this.target(e).origin)));
    for (const [address, pool] of this.pools) {
      if (addresses.has(address)) continue;
      this.pools.delete(address);
      void pool.close().catch(() => undefined);
    }
  }

  /** A piece of the tokens table from the leader, or a change of it. */
  setTokens(table: TokenTable): void {
    this.tokens.apply(table);
  }

  /** The models this gateway can route to now. */
  get table(): readonly ModelRoute[] {
    return this.routes;
  }

  /** What was measured since the last call, per model and replica (for the next heartbeat). */
  takeLatencies(): LatencySample[] {
    const samples: LatencySample[] = [];
    const routed = new Set(this.routes.flatMap((r) => r.endpoints.map((e) => e.allocation)));
    for (const [key, window] of this.windows) {
      const measured = window.take();
      const [tenant, model, allocation] = key.split('\u0000') as [string, string, string];
      // A replica that left the table (a rollout replaced it) is measured no more: its window
      // goes once its last samples are taken, so windows do not pile up with every rollout.
      if (!routed.has(allocation)) this.windows.delete(key);
      if (measured) samples.push({ tenant, model, allocation, ...measured });
    }
    return samples;
  }

  /** Requests held now for a deployment with no ready replica. */
  /** Requests held now for want of a ready replica, every deployment together. */
  heldTotal(): number {
    return this.holds.total();
  }

  held(tenant: string, deployment: string): number {
    return this.holds.waiting(`${tenant}/${deployment}`);
  }

  /** After the session reconnects (a new leader): the deployments with held requests are reported again at once, with wake. */
  rewake(): void {
    this.load?.rewake();
  }

  async close(): Promise<void> {
    await this.grpc?.close();
    this.holds.close();
    this.load?.close();
    await Promise.all([...this.pools.values()].map((pool) => pool.destroy()));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.servers) s.closeAllConnections();
    await closed;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = requestUrl(req);
      if (url.pathname === '/v2/health/live') return json(res, 200, { live: true });
      if (url.pathname === '/v2/health/ready') {
        if (this.revision < 0 || !this.tokens.ready) {
          return json(res, 503, { error: 'the gateway has no routing table or tokens yet: its agent has not reached the leader' });
        }
        return json(res, 200, { ready: true });
      }
      const sender = this.authenticate(req);
      if (url.pathname.startsWith(BLOBS_PATH)) {
        if (this.mutual && !(req.socket as TLSSocket).authorized) throw new AccessError(403, 'this cluster has mutual TLS: peers must fetch over it, with a node certificate the CA signed');
        if (!this.options.peers) throw new HttpError(404, 'this gateway serves no blobs');
        return await this.options.peers.handle(req, res, sender, url.pathname);
      }
      const replica = header(req, REPLICA_HEADER);
      if (replica !== undefined || (!sender.anonymous && sender.caller.role === 'node')) return await this.hop(req, res, url, sender, replica);
      checkMayInfer(sender);
      if (url.pathname === '/v2' || url.pathname === '/v2/') {
        if (sender.anonymous) throw unauthenticated('no token');
        return json(res, 200, { name: 'mlfleet-gateway', version: '0.1.0', extensions: ['mlfleet-routing'] });
      }
      if (url.pathname === '/v2/select/infer') {
        if (sender.anonymous) throw unauthenticated('no token: selection chooses among your tenant\'s models');
        const chosen = this.choose(req, url, sender);
        res.setHeader('mlfleet-selected', `${chosen.route.tenant}/${chosen.route.model}`);
        res.setHeader('mlfleet-selection-reason', chosen.reason.replace(/[^\x20-\x7e]/g, '?'));
        await this.forward(req, res, chosen.route, undefined, `/v2/models/${encodeURIComponent(chosen.route.model)}/infer`, true);
        return;
      }
      const match = MODEL_PATH.exec(url.pathname);
      if (!match) return json(res, 404, { error: `no such route: ${req.method} ${url.pathname.slice(0, 200)}` });
      const [, name, version] = match as unknown as [string, string, string | undefined];
      const model = decodePathPart(name);
      const named = header(req, TENANT_HEADER);
      const route = routeFor(this.routes, sender, model, named);
      if (route.holds && route.endpoints.length === 0) {
        // Scaled to zero or waking: inference waits for a replica; ready and metadata say it is not ready.
        if (match[3] !== '/infer') throw new HttpError(503, `deployment ${route.tenant}/${route.deployment} has no ready replica (scaled to zero or starting)`);
        const find = (routes: readonly ModelRoute[]) => {
          try {
            return routeFor(routes, sender, model, named);
          } catch {
            return undefined;
          }
        };
        await this.holdThenForward(req, res, route, find, version, url.pathname + url.search);
        return;
      }
      await this.forward(req, res, route, version, url.pathname + url.search, match[3] === '/infer');
    } catch (err) {
      if (err instanceof ClientGone) return;
      if (err instanceof HoldError && err.status === 503) res.setHeader('retry-after', String(err.retryAfterS));
      const status = err instanceof HttpError || err instanceof AccessError || err instanceof BodyError || err instanceof HoldError ? err.status : 500;
      if (status === 500) this.options.log.warn({ err }, 'gateway request failed');
      if (status === 401) res.setHeader('www-authenticate', 'Bearer realm="mlfleet"');
      if (!res.headersSent) json(res, status, { error: (err as Error).message });
      else res.destroy();
    }
  }

  /** The request's sender: its bearer token checked, or anonymous when it has none (401 for a bad one). */
  private authenticate(req: http.IncomingMessage): Sender {
    const authorization = req.headers.authorization;
    if (authorization === undefined) return { anonymous: true };
    const verdict = this.tokens.verify(authorization);
    if (!verdict.ok) throw unauthenticated(verdict.reason);
    return { anonymous: false, caller: verdict.caller };
  }

  /**
   * A request another gateway sends on to a replica of this host: only node credentials may, and
   * only for a replica that runs here. Its answer is passed back as it comes; a replica that
   * cannot be reached is said so in a header, so that the sender tries another.
   */
  private async hop(req: http.IncomingMessage, res: http.ServerResponse, url: URL, sender: Sender, replica: string | undefined): Promise<void> {
    if (sender.anonymous || sender.caller.role !== 'node') throw new AccessError(403, `${REPLICA_HEADER} is for gateways: send the request without it`);
    if (replica === undefined) throw new AccessError(403, `a node credential may only pass requests between gateways (with ${REPLICA_HEADER})`);
    if (this.mutual && !(req.socket as TLSSocket).authorized) throw new AccessError(403, 'this cluster has mutual TLS: hops between gateways must come over it, with a node certificate the CA signed');
    const endpoint = this.routes.flatMap((r) => r.endpoints).find((e) => e.allocation === replica && e.node === this.options.node);
    if (!endpoint) {
      res.setHeader(HOP_UNREACHABLE, '1');
      throw new HttpError(503, `replica ${replica.slice(0, 64)} does not serve on node ${this.options.node}`);
    }
    const body = await takeBody(req, maxRequestBytes(endpoint));
    try {
      await this.proxy(req, res, endpoint, url.pathname + url.search, body);
    } catch (err) {
      if (!(err instanceof Unreachable)) throw err;
      res.setHeader(HOP_UNREACHABLE, '1');
      throw new HttpError(503, `replica ${replica} on node ${this.options.node} cannot be reached: ${err.message}`);
    }
  }

  /**
   * `/v2/select/infer`: the model the criteria pick (shared/selection.ts, the same rule as the
   * coordinator's Select) among those this gateway can reach. Criteria come as headers
   * (mlfleet-type, mlfleet-input-format, mlfleet-output-format, mlfleet-prefer,
   * mlfleet-latency-weight, mlfleet-max-latency-ms) or the same names in the query
   * (type, input-format, …).
   */
  private choose(req: http.IncomingMessage, url: URL, sender: Sender): { route: ModelRoute; reason: string } {
    const get = (name: string) => header(req, `mlfleet-${name}`) ?? url.searchParams.get(name) ?? '';
    const prefer = get('prefer');
    if (prefer !== '' && prefer !== 'latency' && prefer !== 'accuracy') throw new HttpError(400, `prefer must be latency or accuracy, not "${prefer}"`);
    const number = (name: string, max: number) => {
      const text = get(name);
      if (text === '') return undefined;
      const value = Number(text);
      if (!Number.isFinite(value) || value < 0 || value > max) throw new HttpError(400, `${name} must be a number from 0 to ${max}, not "${text}"`);
      return value;
    };
    const criteria: Criteria = {
      type: get('type'),
      inputFormat: get('input-format'),
      outputFormat: get('output-format'),
      prefer,
      latencyWeight: number('latency-weight', 1),
      maxLatencyMs: number('max-latency-ms', 3_600_000) ?? 0,
    };
    if (!criteria.type && !criteria.inputFormat && !criteria.outputFormat) {
      throw new HttpError(400, 'say what kind of model: at least one of type, input-format and output-format (as mlfleet-* headers or query parameters)');
    }
    const routes = selectable(this.routes, sender, header(req, TENANT_HEADER));
    const candidates: Candidate[] = routes.map((r) => ({
      deployment: r.deployment,
      tenant: r.tenant,
      model: r.model,
      version: Math.max(...r.endpoints.map((e) => e.version)),
      type: r.type,
      inputFormat: r.inputFormat,
      outputFormat: r.outputFormat,
      accuracy: r.accuracy,
      latencyMs: r.latencyP50Ms > 0 ? r.latencyP50Ms : undefined,
      endpoints: r.endpoints.map((e) => e.address),
      ready: r.endpoints.length > 0,
    }));
    let selected;
    try {
      selected = select(candidates, criteria);
    } catch (err) {
      if (err instanceof NotFoundError) throw new HttpError(404, err.message);
      throw err;
    }
    const route = routes.find((r) => r.tenant === selected.winner.tenant && r.model === selected.winner.model)!;
    return { route, reason: selected.reason };
  }

  /** Sends the request to the best replica, then to the next ones while replicas cannot be reached. */
  private async forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    route: ModelRoute,
    version: string | undefined,
    path: string,
    infer: boolean,
  ): Promise<void> {
    const matching = route.endpoints.filter((e) => version === undefined || String(e.version) === version);
    if (matching.length === 0) throw notFound(route.model, version);
    // Inference counts toward its deployment's load (health and metadata calls do not: a load
    // balancer's probes must not keep a deployment from scaling to zero).
    const meter = infer ? this.load?.meter(route.tenant, matching[0]!.deployment || route.deployment) : undefined;
    if (meter) this.load!.arrive(meter);
    try {
      // The body is bounded by what the most generous of these deployments takes, and goes only to
      // replicas whose deployment takes its size.
      const body = await takeBody(req, Math.max(...matching.map(maxRequestBytes)));
      await this.dispatch(req, res, route, matching, path, infer, body);
    } finally {
      if (meter) this.load!.depart(meter);
    }
  }

  /**
   * A request for a deployment with no ready replica (ModelRoute.holds): checked for size like
   * any other, then held (hold-queue.ts) until a routing table gives it a ready endpoint, and
   * sent on to it; 503 with Retry-After when the queue is full or the wait too long.
   */
  private async holdThenForward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    route: ModelRoute,
    find: (routes: readonly ModelRoute[]) => ModelRoute | undefined,
    version: string | undefined,
    path: string,
  ): Promise<void> {
    const limit = Number(route.maxRequestBytes) || DEFAULT_MAX_REQUEST_BYTES;
    const length = declaredLength(req);
    if (length !== undefined && length > limit) {
      req.resume();
      throw tooLarge(limit);
    }
    const name = `${route.tenant}/${route.deployment}`;
    const meter: DeploymentMeter | undefined = this.load?.meter(route.tenant, route.deployment);
    if (this.holds.waiting(name) >= this.holds.size) {
      // Refused, but demand all the same: the leader sees it among the arrivals (the queue is full, so the meter is busy and reporting).
      if (meter) meter.arrivals += 1;
      req.resume();
      throw new HoldError(`deployment ${name} has no ready replica and ${this.holds.size} requests are already waiting; try again shortly`);
    }
    if (meter) this.load!.arrive(meter);
    const gone = new AbortController();
    const onClose = () => gone.abort(new ClientGone());
    res.once('close', onClose);
    let body: RequestBody | undefined;
    try {
      // Held with its body: whole when small, else a stream whose socket backpressure pauses
      // (bounded by the route's max_request_bytes).
      body = await takeBody(req, limit);
      const ready = await this.holds.hold(name, meter, find, gone.signal);
      res.off('close', onClose);
      const matching = ready.endpoints.filter((e) => version === undefined || String(e.version) === version);
      if (matching.length === 0) throw notFound(ready.model, version);
      await this.dispatch(req, res, ready, matching, path, true, body);
    } catch (err) {
      if (body?.kind === 'stream' && !res.headersSent) {
        body.chunks.destroy();
        req.resume();
      }
      throw err;
    } finally {
      res.off('close', onClose);
      if (meter) this.load!.depart(meter);
    }
  }

  /** Sends a taken body to the best of `matching`, then to the next ones while replicas cannot be reached. */
  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse, route: ModelRoute, matching: RouteEndpoint[], path: string, infer: boolean, body: RequestBody): Promise<void> {
    const size = body.kind === 'whole' ? body.data.length : body.length;
    const candidates = this.split(route, this.order(size === undefined ? matching : matching.filter((e) => maxRequestBytes(e) >= size)));
    if (candidates.length === 0) throw tooLarge(Math.max(...matching.map(maxRequestBytes)));
    const failures: string[] = [];
    for (const endpoint of candidates.slice(0, MAX_ATTEMPTS)) {
      const started = performance.now();
      this.inFlight.set(endpoint.allocation, (this.inFlight.get(endpoint.allocation) ?? 0) + 1);
      try {
        const status = await this.proxy(req, res, endpoint, path, body);
        if (infer) this.window(route, endpoint).add(performance.now() - started, status >= 500);
        return;
      } catch (err) {
        if (!(err instanceof Unreachable)) throw err;
        if (infer) this.window(route, endpoint).add(performance.now() - started, true);
        failures.push(`${endpoint.address}: ${err.message}`);
        // A streamed body goes to one replica: the client that sent it to that one took it (and
        // destroys it when the request fails).
        if (body.kind === 'stream') break;
        this.options.log.debug({ replica: endpoint.address, err: err.message }, 'replica unreachable; trying another');
      } finally {
        this.inFlight.set(endpoint.allocation, (this.inFlight.get(endpoint.allocation) ?? 1) - 1);
      }
    }
    throw new HttpError(503, `no replica of model "${route.model}" could be reached (${failures.join('; ')})`);
  }

  /**
   * A canary (ModelRoute.canary_percent): that share of requests, drawn at random, goes to the
   * endpoints marked canary and the rest to the stable ones; the other side stays as a fallback
   * when the chosen one cannot be reached. Without both sides the order stands.
   */
  private split(route: ModelRoute, ordered: RouteEndpoint[]): RouteEndpoint[] {
    const percent = route.canaryPercent;
    if (!(percent > 0) || !ordered.some((e) => e.canary) || ordered.every((e) => e.canary)) return ordered;
    const toCanary = (this.options.random ?? Math.random)() * 100 < percent;
    return ordered.filter((e) => e.canary === toCanary).concat(ordered.filter((e) => e.canary !== toCanary));
  }

  /** Local replicas first, then fewest in flight; ties take turns. */
  private order(endpoints: RouteEndpoint[]): RouteEndpoint[] {
    const turn = this.turn++;
    return endpoints
      .map((e, i) => ({ e, local: e.node === this.options.node ? 0 : 1, load: this.inFlight.get(e.allocation) ?? 0, rank: (i + turn) % endpoints.length }))
      .sort((a, b) => a.local - b.local || a.load - b.load || a.rank - b.rank)
      .map((x) => x.e);
  }

  /** Where a replica is called: at this host's loopback, or through its host's gateway. */
  private target(endpoint: RouteEndpoint): { origin: string; hop: boolean } {
    if (endpoint.node === this.options.node) return { origin: formatHostPort('127.0.0.1', Number(splitHostPort(endpoint.address).port)), hop: false };
    return { origin: endpoint.gateway, hop: true };
  }

  /**
   * One attempt. Resolves with the replica's status once its answer has been passed on;
   * rejects with Unreachable when nothing came back from the replica (safe to retry elsewhere).
   */
  private async proxy(req: http.IncomingMessage, res: http.ServerResponse, endpoint: RouteEndpoint, path: string, body: RequestBody): Promise<number> {
    const { origin, hop } = this.target(endpoint);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name) && !CREDENTIALS.has(name)) headers[name] = value;
    }
    if (hop) {
      const credential = this.options.credential();
      if (!credential) throw new Unreachable(`node ${endpoint.node}'s replica is reached through its gateway, and this node has no credential yet`);
      if (!origin) throw new Unreachable(`node ${endpoint.node} has no gateway address`);
      headers.authorization = `Bearer ${credential}`;
      headers[REPLICA_HEADER] = endpoint.allocation;
    }
    if (body.kind === 'stream' && body.length !== undefined) headers['content-length'] = String(body.length);
    let pool = this.pools.get(origin);
    if (!pool) {
      const tls = this.options.tls;
      pool =
        hop && this.mutual
          ? new Pool(`https://${origin}`, { connections: 256, keepAliveTimeout: 10_000, connect: { ca: tls!.ca, cert: tls!.cert, key: tls!.key } })
          : new Pool(`http://${origin}`, { connections: 256, keepAliveTimeout: 10_000 });
      this.pools.set(origin, pool);
    }
    let answer: Dispatcher.ResponseData;
    try {
      answer = await pool.request({ method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path, headers, body: body.kind === 'whole' ? body.data : body.chunks });
    } catch (err) {
      // The body passed its bound on the way: the request was cut, and the caller is told why.
      if (err instanceof BodyError) throw err;
      // Nothing came back: the replica is gone or not listening; another may answer.
      throw new Unreachable((err as Error).message);
    }
    if (hop && answer.headers[HOP_UNREACHABLE] !== undefined) {
      const text = await answer.body.text().catch(() => '');
      throw new Unreachable(`through node ${endpoint.node}'s gateway: ${text.slice(0, 300)}`);
    }
    const out: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
    }
    const length = Number(answer.headers['content-length']);
    try {
      if (length >= 0 && length <= WHOLE_ANSWER_BYTES) {
        // Most answers are small: passed on whole, with their length, the status line, headers
        // and body go out in one write (a chunked answer would take a write more per request,
        // and the write syscalls are most of what a gateway spends).
        const chunks: Buffer[] = [];
        for await (const chunk of answer.body as AsyncIterable<Buffer>) chunks.push(chunk);
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        res.writeHead(answer.statusCode, { ...out, 'content-length': String(body.length) });
        res.end(body);
      } else {
        res.writeHead(answer.statusCode, out);
        await pipeline(answer.body, res);
      }
    } catch {
      if (res.headersSent) res.destroy();
      else json(res, 502, { error: `replica ${endpoint.allocation} broke off its answer` });
      return 502;
    }
    return answer.statusCode;
  }

  private window(route: ModelRoute, endpoint: RouteEndpoint): LatencyWindow {
    const key = `${route.tenant}\u0000${route.model}\u0000${endpoint.allocation}`;
    let window = this.windows.get(key);
    if (!window) {
      window = new LatencyWindow();
      this.windows.set(key, window);
    }
    return window;
  }
}

/** Answers up to this size are read whole and sent on in one write; larger ones are streamed. */
const WHOLE_ANSWER_BYTES = 1 << 20;

/** Headers that belong to one connection, not to the request passed on. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection', 'host', 'content-length']);
/** The caller's credentials stop at the gateway: a replica (another tenant's image, maybe) never sees a token. */
const CREDENTIALS = new Set(['authorization', 'cookie', 'proxy-authorization', REPLICA_HEADER]);

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

class Unreachable extends Error {}

/** The client went away while its request was held: nothing to answer. */
class ClientGone extends Error {
  constructor() {
    super('the client went away while its request was held');
  }
}

/** The request's path and query; 400 for a target no URL parser takes. */
function requestUrl(req: http.IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://gateway');
  } catch {
    throw new HttpError(400, 'the request target is not a valid path');
  }
}

/** A model name from the path; 400 for a malformed percent-encoding. */
function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, 'the model name in the path is not valid percent-encoding');
  }
}

/** What a replica's deployment takes. */
function maxRequestBytes(endpoint: RouteEndpoint): number {
  return Number(endpoint.maxRequestBytes) || DEFAULT_MAX_REQUEST_BYTES;
}

function unauthenticated(reason: string): AccessError {
  return new AccessError(401, `${reason}: send "authorization: Bearer <token>" with a token of the model's tenant (mlfleetctl tokens create)`);
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value || undefined;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
