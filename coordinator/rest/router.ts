// The REST API on the coordinator's HTTP listener (docs/rest-api.md): the HTTP side of the route
// table (coordinator/rest/routes.ts). Each route runs the gRPC method's own registered handler,
// given a call object that carries the request built from the path, query and JSON body, and
// the caller's Authorization header as its metadata: the RpcEdge around every handler then
// authenticates, authorizes (coordinator/auth/rules.ts), admits, validates and audits exactly as
// for a gRPC call. Bodies are bounded before they are parsed; a follower redirects what only
// the leader answers to the leader's HTTP address (307); events are Server-Sent Events.
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../shared/log.js';
import type { WorkloadEvent } from '../../shared/proto.js';
import { INVALID } from '../../shared/validation.js';
import { workloadEventJson } from '../../shared/views/events.js';
import type { TokenRegistry } from '../auth/token-registry.js';
import { RULES } from '../auth/rules.js';
import { errorAnswer, RestError } from './errors.js';
import { openApiDocument } from './openapi.js';
import { protoRequest } from './proto-request.js';
import { API_PREFIX, matchRoute, queryFlag, queryNumber, type Route, type RouteInput } from './routes.js';

/** A JSON body larger than this is refused (413) before it is read further. */
export const MAX_JSON_BODY_BYTES = 1 << 20;
/** A comment line keeps an idle event stream (and the proxies on its way) open. */
export const SSE_HEARTBEAT_MS = 15_000;
/** Events a resumed stream (Last-Event-ID) replays at most, as WatchEvents allows. */
const MAX_REPLAY = 1000;

/** A gRPC method as the coordinator registered it: its definition and its (edge-wrapped) handler. */
export interface RegisteredMethod {
  definition: grpc.MethodDefinition<unknown, unknown>;
  handler: grpc.UntypedHandleCall;
}

export interface RestDeps {
  /** "Service.Method" → the registered method. */
  methods: ReadonlyMap<string, RegisteredMethod>;
  tokens: TokenRegistry;
  isLeader(): boolean;
  /** The leader's HTTP base URL (scheme://host:port) as it advertises it; undefined while unknown. */
  leaderHttp(): string | undefined;
  /** The coordinator has TLS: the API refuses plain text, as the blob routes do. */
  tls: boolean;
  log: Logger;
  heartbeatMs?: number;
}

export type RestRoutes = (req: http.IncomingMessage, res: http.ServerResponse, secure: boolean) => Promise<boolean>;

export function restRoutes(deps: RestDeps): RestRoutes {
  return async (req, res, secure) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== API_PREFIX && !url.pathname.startsWith(`${API_PREFIX}/`)) return false;
    try {
      await serve(deps, req, res, url, secure);
    } catch (err) {
      const known = err instanceof RestError || (typeof err === 'object' && err !== null && 'code' in err);
      if (!known) deps.log.error({ err, path: url.pathname }, 'unexpected error in REST route');
      sendError(res, err);
    }
    return true;
  };
}

async function serve(deps: RestDeps, req: http.IncomingMessage, res: http.ServerResponse, url: URL, secure: boolean): Promise<void> {
  const method = req.method ?? 'GET';
  const match = matchRoute(method, url.pathname);
  if (!match) throw new RestError(404, 'NOT_FOUND', `no route ${url.pathname}: see ${API_PREFIX}/openapi.json`);
  if ('allowed' in match) throw new RestError(405, 'UNIMPLEMENTED', `${url.pathname} takes ${match.allowed.join(', ')}, not ${method}`, { allow: match.allowed.join(', ') });
  const { route, params } = match;
  if (route.kind === 'openapi') return sendJson(res, 200, openApiDocument());
  if (deps.tls && !secure) throw new RestError(403, 'PERMISSION_DENIED', 'use https: this coordinator has TLS, and tokens never travel in plain text');
  const metadata = new grpc.Metadata();
  const authorization = req.headers.authorization;
  if (authorization) metadata.set('authorization', authorization);
  if (route.rpc && !RULES[route.rpc]?.anyCoordinator && !deps.isLeader()) {
    // As the gRPC edge does: who may not call at all learns nothing of where the leader is.
    deps.tokens.authenticate(metadata);
    return redirectToLeader(deps, req, res);
  }
  if (route.kind === 'whoami') {
    const principal = deps.tokens.authenticate(metadata);
    return sendJson(res, 200, { role: principal.role, tenant: principal.tenant, tokenId: principal.tokenId });
  }
  const peer = `${req.socket.remoteAddress ?? ''}:${req.socket.remotePort ?? 0}`;
  const input: RouteInput = { params, query: url.searchParams, body: {} };
  // A body that is not valid JSON, or has bad fields, is answered by the edge (INVALID_ARGUMENT),
  // after it has authenticated and authorized the caller as for any other call.
  let invalid: string | undefined;
  if (method === 'POST' || method === 'PUT') {
    const parsed = await readJson(req);
    if ('problem' in parsed) invalid = parsed.problem;
    else {
      input.body = parsed.value;
      invalid = bodyProblem(route, parsed.value);
    }
  }
  const call = (rpc: string, build: () => Record<string, unknown>) => new Invocation(deps, rpc, metadata, peer, invalid !== undefined ? { [INVALID]: invalid } : buildRequest(deps, rpc, build));
  switch (route.kind) {
    case 'unary':
    case 'list':
      return answerUnary(res, route, input, await call(route.rpc!, () => route.request!(input)).unary());
    case 'allocation': {
      const listed = (await call(route.rpc!, () => route.request!(input)).unary()) as { allocations: Array<{ id: string }> };
      const found = listed.allocations.find((a) => a.id === params.id);
      if (!found) throw new RestError(404, 'NOT_FOUND', `allocation "${params.id}" not found`);
      return sendJson(res, 200, route.response!(found as never, input));
    }
    case 'content': {
      const version = (await call(route.rpc!, () => route.request!(input)).unary()) as { digest: string };
      res.writeHead(307, { location: `/v1/blobs/${version.digest}`, 'content-length': '0' }).end();
      return;
    }
    case 'logs':
      return streamLogs(res, [{ invocation: call(route.rpc!, () => route.request!(input)), prefix: '' }]);
    case 'job-logs':
      return jobLogs(res, input, (rpc, build) => call(rpc, build));
    case 'events':
      return streamEvents(deps, req, res, input, (build) => call(route.rpc!, build));
    default:
      throw new RestError(500, 'INTERNAL', `route kind ${route.kind} has no handler`);
  }
}

/** The request, or the words of why it is not one (answered by the edge as INVALID_ARGUMENT). */
function buildRequest(deps: RestDeps, rpc: string, build: () => Record<string, unknown>): unknown {
  const method = deps.methods.get(rpc);
  if (!method) throw new RestError(501, 'UNIMPLEMENTED', `${rpc} is not served here`);
  try {
    return protoRequest(method.definition, build());
  } catch (err) {
    return { [INVALID]: (err as Error).message };
  }
}

function bodyProblem(route: Route, body: unknown): string | undefined {
  if (!route.body) return body === undefined || (typeof body === 'object' && body !== null && Object.keys(body).length === 0) ? undefined : 'this route takes no body';
  const result = route.body.safeParse(body);
  if (result.success) return undefined;
  return result.error.issues
    .slice(0, 20)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : 'the body'}: ${issue.message}`)
    .join('; ');
}

function answerUnary(res: http.ServerResponse, route: Route, input: RouteInput, message: unknown): void {
  if (route.status === 204) {
    res.writeHead(204).end();
    return;
  }
  const shaped = route.response!(message as never, input);
  if (route.kind === 'list') {
    const items = shaped as unknown[];
    if (route.pagedBy) {
      // The RPC cut the page (its request's limit and after); `more` says whether one follows.
      const more = (message as { more?: boolean }).more === true;
      return sendJson(res, 200, { items, nextCursor: more && items.length > 0 ? route.pagedBy(items[items.length - 1] as never) : null });
    }
    return sendJson(res, 200, { items, nextCursor: null });
  }
  const status = route.created ? (route.created(message as never) ? 201 : 200) : (route.status ?? 200);
  sendJson(res, status, shaped);
}

function redirectToLeader(deps: RestDeps, req: http.IncomingMessage, res: http.ServerResponse): void {
  const leader = deps.leaderHttp();
  if (!leader) throw new RestError(503, 'UNAVAILABLE', 'no leader is elected yet; retry shortly', { 'retry-after': '1' });
  req.resume();
  res.writeHead(307, { location: `${leader}${req.url ?? '/'}`, 'content-type': 'application/json' }).end(`${JSON.stringify({ error: { code: 'UNAVAILABLE', message: `this coordinator is not the leader; the leader is ${leader}` } })}\n`);
}

/** Reads a JSON body of at most MAX_JSON_BODY_BYTES (413 beyond, before parsing). */
async function readJson(req: http.IncomingMessage): Promise<{ value: unknown } | { problem: string }> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_JSON_BODY_BYTES) {
    req.resume();
    throw new RestError(413, 'INVALID_ARGUMENT', `the body is ${declared} bytes, over the limit of ${MAX_JSON_BODY_BYTES} for a JSON body`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BODY_BYTES) {
      req.destroy();
      throw new RestError(413, 'INVALID_ARGUMENT', `the body is over the limit of ${MAX_JSON_BODY_BYTES} bytes for a JSON body`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return { value: {} };
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (err) {
    return { problem: `the body is not valid JSON: ${(err as Error).message}` };
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': String(Buffer.byteLength(text)), ...headers }).end(text);
}

function sendError(res: http.ServerResponse, err: unknown): void {
  const { status, headers, body } = errorAnswer(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, body, headers);
}

/**
 * One call of a registered handler with a call object of our own: unary (the callback's answer)
 * or server-streaming (each message written to `onMessage`, until the handler ends the call).
 */
class Invocation extends EventEmitter {
  cancelled = false;

  constructor(
    private readonly deps: RestDeps,
    private readonly rpc: string,
    readonly metadata: grpc.Metadata,
    private readonly peer: string,
    private readonly message: unknown,
  ) {
    super();
    this.on('error', () => undefined);
  }

  /**
   * The edge reads the request to validate it once the caller is authenticated, authorized and
   * admitted (coordinator/api/rpc.ts): from then on only the request's own validity (answered
   * at once) or the handler can fail the call, so a stream's head may go out ('checked').
   */
  get request(): unknown {
    this.emit('checked');
    return this.message;
  }

  getPeer(): string {
    return this.peer;
  }

  private method(): RegisteredMethod {
    const method = this.deps.methods.get(this.rpc);
    if (!method) throw new RestError(501, 'UNIMPLEMENTED', `${this.rpc} is not served here`);
    return method;
  }

  /** The answer, as a gRPC client would decode it (every field, longs as numbers, enums as names). */
  unary(): Promise<unknown> {
    const { definition, handler } = this.method();
    return new Promise((resolve, reject) => {
      (handler as grpc.handleUnaryCall<unknown, unknown>)(this as unknown as grpc.ServerUnaryCall<unknown, unknown>, (err, value) => {
        if (err) reject(err);
        else resolve(definition.responseDeserialize(definition.responseSerialize(value)));
      });
    });
  }

  private sink: ((message: unknown) => boolean) | undefined;

  /** For the handler: a message of the stream. */
  write(message: unknown): boolean {
    const { definition } = this.method();
    return this.sink ? this.sink(definition.responseDeserialize(definition.responseSerialize(message))) : true;
  }

  end(): void {
    this.emit('rest-end');
  }

  /** Runs a server-streaming handler; resolves when it ends the stream, rejects with its error. */
  stream(onMessage: (message: unknown) => boolean, cancel: EventEmitter): Promise<void> {
    const { handler } = this.method();
    this.sink = onMessage;
    cancel.on('drain', () => this.emit('drain'));
    return new Promise((resolve, reject) => {
      // The client went: the handler is told, and nobody waits for it any more.
      cancel.once('cancel', () => {
        this.cancelled = true;
        this.emit('cancelled');
        resolve();
      });
      this.once('rest-end', () => resolve());
      this.prependListener('error', (err: unknown) => reject(err));
      (handler as grpc.handleServerStreamingCall<unknown, unknown>)(this as unknown as grpc.ServerWritableStream<unknown, unknown>);
    });
  }
}

/**
 * A response that streams: its head (200 and `headers`) goes out with the first bytes, or once
 * the call has got past the edge's checks (`Invocation` 'checked', then a turn of the event loop
 * for the request's validation), so that a refused call is still answered with its status and
 * JSON error (a call shed for its caller's share is answered a second late: it must not get a
 * 200 meanwhile).
 */
class StreamedResponse extends EventEmitter {
  private started = false;

  constructor(
    private readonly res: http.ServerResponse,
    private readonly headers: Record<string, string>,
  ) {
    super();
    res.on('drain', () => this.emit('drain'));
    res.on('close', () => {
      if (!res.writableFinished) this.emit('cancel');
    });
  }

  /** Sends the head once `invocation` is past the edge's checks. */
  startWhenChecked(invocation: Invocation): void {
    invocation.once('checked', () => setImmediate(() => this.start()));
  }

  get gone(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  start(): void {
    if (this.started || this.gone) return;
    this.started = true;
    this.res.writeHead(200, this.headers);
    this.res.flushHeaders();
  }

  write(data: string | Buffer): boolean {
    this.start();
    return this.gone ? true : this.res.write(data);
  }

  /** Ends the answer; an error before the head is its JSON error, after it `trailer(err)`'s words. */
  finish(err: unknown, trailer: (err: unknown) => string): void {
    if (this.gone) return;
    if (err === undefined) {
      this.start();
      this.res.end();
    } else if (!this.started) {
      this.started = true;
      sendError(this.res, err);
    } else {
      this.res.end(trailer(err));
    }
  }
}

function errorLine(err: unknown): string {
  const { body } = errorAnswer(err);
  return `\nerror: ${body.error.code}: ${body.error.message}\n`;
}

/** Logs as text/plain: each source's bytes (several: each line prefixed), until all end. */
async function streamLogs(res: http.ServerResponse, sources: Array<{ invocation: Invocation; prefix: string }>): Promise<void> {
  const out = new StreamedResponse(res, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  for (const { invocation } of sources) out.startWhenChecked(invocation);
  try {
    await Promise.all(
      sources.map(({ invocation, prefix }) => {
        const lines = prefixer(prefix);
        return invocation
          .stream((message) => out.write(lines.push((message as { data: Buffer }).data)), out)
          .then(() => {
            const rest = lines.flush();
            if (rest.length > 0) out.write(rest);
          });
      }),
    );
    out.finish(undefined, errorLine);
  } catch (err) {
    out.emit('cancel');
    out.finish(err, errorLine);
  }
}

/** Prefixes each whole line with `prefix` (none: the bytes as they come). */
export function prefixer(prefix: string): { push(data: Buffer): Buffer; flush(): Buffer } {
  let partial = Buffer.alloc(0);
  return {
    push(data) {
      if (!prefix) return data;
      const all = Buffer.concat([partial, data]);
      const end = all.lastIndexOf(0x0a);
      if (end < 0) {
        partial = all;
        return Buffer.alloc(0);
      }
      partial = all.subarray(end + 1);
      const whole = all.subarray(0, end + 1).toString('utf8');
      return Buffer.from(whole.replace(/^(?=.)/gm, prefix));
    },
    flush() {
      const rest = partial;
      partial = Buffer.alloc(0);
      return prefix && rest.length > 0 ? Buffer.from(`${prefix}${rest.toString('utf8')}\n`) : rest;
    },
  };
}

async function jobLogs(res: http.ServerResponse, input: RouteInput, call: (rpc: string, build: () => Record<string, unknown>) => Invocation): Promise<void> {
  const follow = queryFlag(input.query, 'follow');
  const tailBytes = queryNumber(input.query, 'tail', 0, 0, 2 ** 31);
  const job = (await call('JobService.GetJob', () => ({ name: input.params.name, tenant: input.query.get('tenant') ?? '' })).unary()) as {
    status: string;
    message: string;
    spec: { workers: number; partitions: number } | null;
    allocations: Array<{ id: string; node: string; rank: number }>;
  };
  const placed = job.allocations.filter((a) => a.node !== '').sort((a, b) => a.rank - b.rank);
  if (placed.length === 0) throw new RestError(400, 'FAILED_PRECONDITION', `job "${input.params.name}" has no worker placed yet (${job.status}${job.message ? `: ${job.message}` : ''}); try again once it runs`);
  const partitioned = (job.spec?.partitions ?? 0) > 0;
  const several = (job.spec?.workers ?? 1) > 1 || partitioned || placed.length > 1;
  const unit = partitioned ? 'partition' : 'rank';
  const sources = placed.map((a) => ({ invocation: call('AllocationService.GetLogs', () => ({ allocation: a.id, follow, tailBytes })), prefix: several ? `[${unit} ${a.rank}] ` : '' }));
  return streamLogs(res, sources);
}

/** The event id to resume after: Last-Event-ID, else ?since=; undefined for a fresh stream. */
export function resumeAfter(header: string | undefined, since: string | null): number | undefined {
  const value = header ?? since ?? undefined;
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new RestError(400, 'INVALID_ARGUMENT', `Last-Event-ID (or since): expected an event id, got ${JSON.stringify(value.slice(0, 40))}`);
  return Number(value);
}

/** One Server-Sent Event: `id:` the event's sequence, `data:` its JSON (one line). */
export function sseEvent(id: number, data: unknown): string {
  return `id: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
}

async function streamEvents(deps: RestDeps, req: http.IncomingMessage, res: http.ServerResponse, input: RouteInput, call: (build: () => Record<string, unknown>) => Invocation): Promise<void> {
  const after = resumeAfter(req.headers['last-event-id'] as string | undefined, input.query.get('since'));
  const follow = queryFlag(input.query, 'follow', true);
  const replay = after !== undefined ? MAX_REPLAY : queryNumber(input.query, 'replay', 0, 0, MAX_REPLAY);
  const invocation = call(() => ({ tenant: input.query.get('tenant') ?? '', object: input.query.get('object') ?? '', replay, follow }));
  const out = new StreamedResponse(res, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
  out.startWhenChecked(invocation);
  const heartbeat = setInterval(() => out.write(': keep-alive\n\n'), deps.heartbeatMs ?? SSE_HEARTBEAT_MS);
  out.once('cancel', () => clearInterval(heartbeat));
  try {
    await invocation.stream((message) => {
      const event = message as WorkloadEvent;
      if (after !== undefined && event.id <= after) return true;
      return out.write(sseEvent(event.id, workloadEventJson(event)));
    }, out);
    out.finish(undefined, () => '');
  } catch (err) {
    out.finish(err, (e) => `event: error\ndata: ${JSON.stringify(errorAnswer(e).body)}\n\n`);
  } finally {
    clearInterval(heartbeat);
  }
}
