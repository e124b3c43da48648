// The Open Inference Protocol v2 over gRPC on every gateway (--gateway-grpc-listen):
// inference.GRPCInferenceService from the protocol's own proto (proto/inference/). Each call is
// translated (oip-grpc-codec.ts) into the gateway's REST request and sent to the gateway's own
// HTTP listener on loopback, so routing, the bearer token check, tenant isolation, selection,
// size limits, the canary split and holding at zero are the REST side's (gateway.ts), not a
// copy; the answer is translated back. The caller's token travels in the `authorization`
// metadata ("Bearer <token>"), an admin names a tenant in `mlfleet-tenant`, and a ModelInfer
// with no model_name is a selection by the criteria in `mlfleet-type`, `mlfleet-input-format`, …
// metadata (as /v2/select/infer takes them as headers); the chosen model comes back in the
// `mlfleet-selected` metadata. With the gateway's TLS certificate the port speaks TLS only.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Pool, type Dispatcher } from 'undici';
import { formatHostPort, parseHostPort } from '../../shared/config.js';
import type { Logger } from '../../shared/log.js';
import type { TlsMaterial } from '../../shared/tls.js';
import { CodecError, codeForHttpStatus, inferRequestToRest, inferResponseFromRest, metadataFromRest, type ModelInferRequest } from './oip-grpc-codec.js';

export const OIP_PROTO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../proto/inference/open_inference_grpc.proto');
/** Field names as in the proto; 64-bit integers as decimal strings (exact past 2^53). */
export const OIP_LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
/** No gRPC message is taken past this; a deployment's own limit (--max-request-size) counts the JSON the replica receives. */
export const MAX_GRPC_MESSAGE_BYTES = 64 * 2 ** 20;
/** Metadata passed on to the gateway as headers: the token, an admin's tenant, selection criteria. */
const PASSED = ['authorization', 'mlfleet-tenant', 'mlfleet-type', 'mlfleet-input-format', 'mlfleet-output-format', 'mlfleet-prefer', 'mlfleet-latency-weight', 'mlfleet-max-latency-ms'];

export interface OipGrpcOptions {
  listen: string;
  /** The gateway's HTTP address (host:port) the calls are sent to. */
  gateway: string;
  /** The most bytes of JSON any deployment on the gateway's routing table takes now. */
  maxRequestBytes(): number;
  tls?: TlsMaterial;
  log: Logger;
}

interface HttpAnswer {
  status: number;
  body: unknown;
  headers: Dispatcher.ResponseData['headers'];
}

export class OipGrpcServer {
  private readonly pool: Pool;

  private constructor(
    private readonly server: grpc.Server,
    private readonly port: number,
    private readonly host: string,
    private readonly options: OipGrpcOptions,
  ) {
    const { host: gh, port: gp } = parseHostPort(options.gateway);
    // A gateway listening on every address is called on loopback.
    const local = gh === '0.0.0.0' ? '127.0.0.1' : gh === '::' ? '::1' : gh;
    this.pool = new Pool(`http://${formatHostPort(local, gp)}`, { connections: 64, keepAliveTimeout: 10_000 });
  }

  static async start(options: OipGrpcOptions): Promise<OipGrpcServer> {
    const definition = protoLoader.loadSync(OIP_PROTO, OIP_LOADER_OPTIONS);
    const service = (grpc.loadPackageDefinition(definition) as unknown as { inference: { GRPCInferenceService: { service: grpc.ServiceDefinition } } }).inference.GRPCInferenceService.service;
    const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES, 'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES });
    const { host, port } = parseHostPort(options.listen);
    const { tls } = options;
    // Client certificates are not asked for: consumers call with a bearer token, as over HTTPS.
    const credentials = tls?.cert && tls.key ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : grpc.ServerCredentials.createInsecure();
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(formatHostPort(host, port), credentials, (err, p) => (err ? reject(new Error(`cannot listen on ${options.listen} for the gateway's gRPC inference: ${err.message}`)) : resolve(p))),
    );
    const oip = new OipGrpcServer(server, bound, host, options);
    server.addService(service, oip.handlers());
    return oip;
  }

  get address(): string {
    return formatHostPort(this.host, this.port);
  }

  /** Ends every call at once (a held one too: it would otherwise wait out its queue timeout), as the HTTP side closes its connections. */
  async close(): Promise<void> {
    this.server.forceShutdown();
    await this.pool.destroy();
  }

  private handlers(): grpc.UntypedServiceImplementation {
    const unary =
      <Req>(run: (request: Req, metadata: grpc.Metadata, signal: AbortSignal) => Promise<{ reply: object; metadata?: grpc.Metadata }>): grpc.handleUnaryCall<Req, object> =>
      (call, callback) => {
        const abort = new AbortController();
        call.on('cancelled', () => abort.abort());
        run(call.request, call.metadata, abort.signal).then(
          ({ reply, metadata }) => {
            if (metadata) call.sendMetadata(metadata);
            callback(null, reply);
          },
          (err: unknown) => callback(this.toStatus(err)),
        );
      };
    return {
      ServerLive: unary(async (_r: object, md, signal) => {
        const a = await this.call('GET', '/v2/health/live', md, signal);
        return { reply: { live: a.status === 200 } };
      }),
      ServerReady: unary(async (_r: object, md, signal) => {
        const a = await this.call('GET', '/v2/health/ready', md, signal);
        return { reply: { ready: a.status === 200 } };
      }),
      ServerMetadata: unary(async (_r: object, md, signal) => {
        const a = ok(await this.call('GET', '/v2', md, signal));
        const body = a.body as { name?: string; version?: string; extensions?: string[] };
        return { reply: { name: body.name ?? '', version: body.version ?? '', extensions: body.extensions ?? [] } };
      }),
      ModelReady: unary(async (r: { name: string; version: string }, md, signal) => {
        const a = await this.call('GET', `${modelPath(r.name, r.version)}/ready`, md, signal);
        // Not ready (no replica yet, scaled to zero, loading) is an answer; a model the caller may not reach is not.
        if (a.status === 503) return { reply: { ready: false } };
        ok(a);
        return { reply: { ready: true } };
      }),
      ModelMetadata: unary(async (r: { name: string; version: string }, md, signal) => {
        const a = ok(await this.call('GET', modelPath(r.name, r.version), md, signal));
        return { reply: metadataFromRest(a.body) };
      }),
      ModelInfer: unary(async (r: ModelInferRequest, md, signal) => {
        const { body, raw } = inferRequestToRest(r, Math.floor(this.options.maxRequestBytes() / 2));
        const path = r.model_name ? `${modelPath(r.model_name, r.model_version)}/infer` : '/v2/select/infer';
        const a = ok(await this.call('POST', path, md, signal, body));
        const reply = inferResponseFromRest(a.body, raw);
        // The protocol echoes the request's id; a replica that leaves it out does not lose it.
        reply.id ||= r.id;
        const selected = a.headers['mlfleet-selected'];
        if (r.model_name || typeof selected !== 'string') return { reply };
        const metadata = new grpc.Metadata();
        metadata.set('mlfleet-selected', selected);
        const reason = a.headers['mlfleet-selection-reason'];
        if (typeof reason === 'string') metadata.set('mlfleet-selection-reason', reason);
        return { reply, metadata };
      }),
    };
  }

  /** One request to the gateway's own HTTP listener, with the caller's token and mlfleet-* metadata. */
  private async call(method: 'GET' | 'POST', path: string, metadata: grpc.Metadata, signal: AbortSignal, body?: string): Promise<HttpAnswer> {
    const headers: Record<string, string> = {};
    for (const name of PASSED) {
      const value = metadata.get(name)[0];
      if (typeof value === 'string') headers[name] = value;
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    let answer: Dispatcher.ResponseData;
    try {
      answer = await this.pool.request({ method, path, headers, body, signal });
    } catch (err) {
      if (signal.aborted) throw err;
      // The gateway's own port did not answer: it is closing.
      throw new CodecError(grpc.status.UNAVAILABLE, `the gateway is not taking requests: ${(err as Error).message}`);
    }
    const text = await answer.body.text();
    let parsed: unknown = {};
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = { error: text.slice(0, 500) };
    }
    return { status: answer.statusCode, body: parsed, headers: answer.headers };
  }

  private toStatus(err: unknown): Partial<grpc.StatusObject> {
    if (err instanceof CodecError) return { code: err.code, details: err.message };
    if (err instanceof HttpFailure) return { code: codeForHttpStatus(err.status), details: err.message, metadata: err.metadata };
    if ((err as Error).name === 'AbortError') return { code: grpc.status.CANCELLED, details: 'the call was cancelled' };
    this.options.log.warn({ err }, 'gateway gRPC call failed');
    return { code: grpc.status.INTERNAL, details: `the gateway failed: ${(err as Error).message}` };
  }
}

/** An HTTP answer other than 200, carried to the gRPC status: the gateway's message, and Retry-After as metadata. */
class HttpFailure extends Error {
  readonly metadata = new grpc.Metadata();
  constructor(
    readonly status: number,
    answer: HttpAnswer,
  ) {
    const error = (answer.body as { error?: unknown }).error;
    super(typeof error === 'string' ? error : typeof error === 'object' && error ? String((error as { message?: unknown }).message ?? JSON.stringify(error)) : `the gateway answered HTTP ${status}`);
    const retry = answer.headers['retry-after'];
    if (typeof retry === 'string') this.metadata.set('retry-after', retry);
  }
}

function ok(answer: HttpAnswer): HttpAnswer {
  if (answer.status !== 200) throw new HttpFailure(answer.status, answer);
  return answer;
}

function modelPath(name: string, version: string): string {
  if (!name) throw new CodecError(grpc.status.INVALID_ARGUMENT, 'name the model');
  return `/v2/models/${encodeURIComponent(name)}${version ? `/versions/${encodeURIComponent(version)}` : ''}`;
}
