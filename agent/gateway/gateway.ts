// The inference gateway every agent runs (--gateway-listen, default 127.0.0.1:7780): the Open
// Inference Protocol v2 over HTTP, routed to a ready replica anywhere in the fleet. The routing
// table comes from the leader over the agent's session whenever it changes (never polled), so
// the gateway keeps serving with the last table it had while the control plane is away.
//
// Choice of replica: this host's replicas first, then the one with the fewest requests in
// flight (ties in turn). A request is retried on another replica when the first cannot be
// reached (nothing was received from it), up to three replicas. No ready replica → 503 with
// `{"error": …}`. Latency per model and replica is measured here and reported in heartbeats.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatHostPort, parseHostPort } from '../../shared/config.js';
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

export interface GatewayOptions {
  listen: string;
  /** This host's node name: its replicas are preferred. */
  node: string;
  log: Logger;
  /** Largest request body accepted (it is held to be re-sent on a retry). */
  maxBodyBytes?: number;
}

/** Requests may name the tenant whose model they mean when several tenants serve one name. */
export const TENANT_HEADER = 'mlfleet-tenant';
const MAX_ATTEMPTS = 3;
const DEFAULT_MAX_BODY_BYTES = 64 * 2 ** 20;
const MODEL_PATH = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?\/?$/;

export class Gateway {
  private routes: ModelRoute[] = [];
  private revision = -1;
  private readonly inFlight = new Map<string, number>();
  private turn = 0;
  private readonly windows = new Map<string, LatencyWindow>();
  /** One connection pool per replica address (undici: far less work per request than node:http's client). */
  private readonly pools = new Map<string, Pool>();
  private readonly maxBodyBytes: number;

  private constructor(
    private readonly server: http.Server,
    private readonly options: GatewayOptions,
  ) {
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  }

  static async start(options: GatewayOptions): Promise<Gateway> {
    let gateway: Gateway | undefined;
    const server = http.createServer((req, res) => void gateway!.handle(req, res));
    server.keepAliveTimeout = 30_000;
    gateway = new Gateway(server, options);
    const { host, port } = parseHostPort(options.listen);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot listen on ${options.listen} for the inference gateway: ${err.message}`)));
      server.listen(port, host, () => resolve());
    });
    return gateway;
  }

  get address(): string {
    const { address, port } = this.server.address() as AddressInfo;
    return formatHostPort(address, port);
  }

  /** A routing table from the leader; an older revision than the one held is ignored. */
  setRoutes(table: RouteTable): void {
    if (table.revision < this.revision) return;
    this.revision = table.revision;
    this.routes = table.models;
    // Pools of replicas that left the table are closed.
    const addresses = new Set(table.models.flatMap((m) => m.endpoints.map((e) => e.address)));
    for (const [address, pool] of this.pools) {
      if (addresses.has(address)) continue;
      this.pools.delete(address);
      void pool.close().catch(() => undefined);
    }
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

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.destroy()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    try {
      if (url.pathname === '/v2/health/live') return json(res, 200, { live: true });
      if (url.pathname === '/v2/health/ready') {
        return this.revision >= 0 ? json(res, 200, { ready: true }) : json(res, 503, { error: 'the gateway has no routing table yet: its agent has not reached the leader' });
      }
      if (url.pathname === '/v2' || url.pathname === '/v2/') return json(res, 200, { name: 'mlfleet-gateway', version: '0.1.0', extensions: ['mlfleet-routing'] });
      if (url.pathname === '/v2/select/infer') {
        const chosen = this.choose(req, url);
        const body = await readBody(req, this.maxBodyBytes);
        res.setHeader('mlfleet-selected', `${chosen.route.tenant}/${chosen.route.model}`);
        res.setHeader('mlfleet-selection-reason', chosen.reason.replace(/[^\x20-\x7e]/g, '?'));
        await this.forward(req, res, chosen.route, undefined, `/v2/models/${encodeURIComponent(chosen.route.model)}/infer`, body, true);
        return;
      }
      const match = MODEL_PATH.exec(url.pathname);
      if (!match) return json(res, 404, { error: `no such route: ${req.method} ${url.pathname}` });
      const [, name, version] = match as unknown as [string, string, string | undefined];
      const route = this.find(decodeURIComponent(name), header(req, TENANT_HEADER));
      const body = await readBody(req, this.maxBodyBytes);
      await this.forward(req, res, route, version, url.pathname + url.search, body, match[3] === '/infer');
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) this.options.log.warn({ err }, 'gateway request failed');
      if (!res.headersSent) json(res, status, { error: (err as Error).message });
      else res.destroy();
    }
  }

  /**
   * `/v2/select/infer`: the model the criteria pick (shared/selection.ts, the same rule as the
   * coordinator's Select) among those this gateway can reach. Criteria come as headers
   * (mlfleet-type, mlfleet-input-format, mlfleet-output-format, mlfleet-prefer,
   * mlfleet-latency-weight, mlfleet-max-latency-ms) or the same names in the query
   * (type, input-format, …).
   */
  private choose(req: http.IncomingMessage, url: URL): { route: ModelRoute; reason: string } {
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
    const tenant = header(req, TENANT_HEADER);
    const routes = this.routes.filter((r) => tenant === undefined || r.tenant === tenant);
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

  private find(name: string, tenant: string | undefined): ModelRoute {
    const named = this.routes.filter((r) => r.model === name && (tenant === undefined || r.tenant === tenant));
    if (named.length === 0) {
      throw new HttpError(503, `no ready replica of model "${name}"${tenant ? ` in tenant "${tenant}"` : ''}: is it deployed and ready? (mlfleetctl deployments ls)`);
    }
    if (named.length > 1) {
      throw new HttpError(400, `model "${name}" is served by several tenants (${named.map((r) => r.tenant).join(', ')}): name one in the ${TENANT_HEADER} header`);
    }
    return named[0]!;
  }

  /** Sends the request to the best replica, then to the next ones while replicas cannot be reached. */
  private async forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    route: ModelRoute,
    version: string | undefined,
    path: string,
    body: Buffer,
    infer: boolean,
  ): Promise<void> {
    const candidates = this.order(route.endpoints.filter((e) => version === undefined || String(e.version) === version));
    if (candidates.length === 0) throw new HttpError(503, `no ready replica of model "${route.model}" version ${version}`);
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
        this.options.log.debug({ replica: endpoint.address, err: err.message }, 'replica unreachable; trying another');
      } finally {
        this.inFlight.set(endpoint.allocation, (this.inFlight.get(endpoint.allocation) ?? 1) - 1);
      }
    }
    throw new HttpError(503, `no replica of model "${route.model}" could be reached (${failures.join('; ')})`);
  }

  /** Local replicas first, then fewest in flight; ties take turns. */
  private order(endpoints: RouteEndpoint[]): RouteEndpoint[] {
    const turn = this.turn++;
    return endpoints
      .map((e, i) => ({ e, local: e.node === this.options.node ? 0 : 1, load: this.inFlight.get(e.allocation) ?? 0, rank: (i + turn) % endpoints.length }))
      .sort((a, b) => a.local - b.local || a.load - b.load || a.rank - b.rank)
      .map((x) => x.e);
  }

  /**
   * One attempt. Resolves with the replica's status once its answer has been passed on;
   * rejects with Unreachable when nothing came back from the replica (safe to retry elsewhere).
   */
  private async proxy(req: http.IncomingMessage, res: http.ServerResponse, endpoint: RouteEndpoint, path: string, body: Buffer): Promise<number> {
    let pool = this.pools.get(endpoint.address);
    if (!pool) {
      pool = new Pool(`http://${endpoint.address}`, { connections: 256, keepAliveTimeout: 10_000 });
      this.pools.set(endpoint.address, pool);
    }
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    }
    let answer: Dispatcher.ResponseData;
    try {
      answer = await pool.request({ method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path, headers, body });
    } catch (err) {
      // Nothing came back: the replica is gone or not listening; another may answer.
      throw new Unreachable((err as Error).message);
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
      else json(res, 502, { error: `replica ${endpoint.address} broke off its answer` });
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

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

class Unreachable extends Error {}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value || undefined;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `the request body is over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
