// One inference through an agent's inference gateway (Open Inference Protocol v2 over HTTP), for
// the SDK's fleet.infer and `mlfleetctl infer`. REF is `name` (any ready replica), `name:3`
// (replicas of version 3) or `name@alias` (the version the alias names, resolved by the
// coordinator first). The gateway checks the bearer token itself; a public deployment also
// answers without one.
import http from 'node:http';
import { parseRef } from '../artifact-ref.js';
import type { CoordinatorClient } from '../client.js';
import { parseHostPort } from '../config.js';
import {
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  MlfleetError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  DeadlineExceededError,
} from '../errors.js';

/** Where `mlfleetctl infer` and the SDK send inferences unless told: the local agent's gateway. */
export const DEFAULT_GATEWAY = '127.0.0.1:7780';

/** An OIP v2 tensor, as the protocol's JSON carries it. */
export interface InferTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
  parameters?: Record<string, unknown>;
}

/** The protocol's request body. */
export interface InferRequest {
  id?: string;
  inputs: InferTensor[];
  outputs?: Array<{ name: string; parameters?: Record<string, unknown> }>;
  parameters?: Record<string, unknown>;
}

/** The protocol's answer. */
export interface InferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: InferTensor[];
  parameters?: Record<string, unknown>;
}

export interface InferOptions {
  /** An agent's gateway, host:port (default DEFAULT_GATEWAY). */
  gateway?: string;
  /** Another tenant's model (admins), or the tenant whose public model is meant. */
  tenant?: string;
  token?: string;
  signal?: AbortSignal;
}

/** The URL path of an inference on REF's model (and version, when REF names one). */
export function inferPath(name: string, version: number | undefined): string {
  return `/v2/models/${encodeURIComponent(name)}${version === undefined ? '' : `/versions/${version}`}/infer`;
}

/** A gateway's refusal as the error class its HTTP status means. */
export function gatewayError(status: number, message: string, retryAfter?: string): MlfleetError {
  const text = `the gateway answered ${status}: ${message}`;
  switch (status) {
    case 400:
    case 413:
      return new InvalidArgumentError(text);
    case 401:
      return new UnauthenticatedError(text);
    case 403:
      return new PermissionDeniedError(text);
    case 404:
      return new NotFoundError(text);
    case 409:
    case 412:
      return new FailedPreconditionError(text);
    case 429: {
      const seconds = Number(retryAfter);
      return new ResourceExhaustedError(text, Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined);
    }
    case 502:
    case 503:
      return new UnavailableError(text);
    case 504:
      return new DeadlineExceededError(text);
    default:
      return new InternalError(text);
  }
}

/**
 * Sends `body` (the protocol's request, as an object or as JSON text) to REF's model through a
 * gateway; resolves with the parsed answer, or throws the error its status means.
 */
export async function inferThrough(client: CoordinatorClient, ref: string, body: InferRequest | string, options: InferOptions = {}): Promise<InferResponse> {
  const parsed = parseRef(ref);
  let version = parsed.version;
  if (parsed.alias !== undefined) version = (await client.resolve('model', ref, { signal: options.signal })).version;
  const gateway = options.gateway ?? DEFAULT_GATEWAY;
  const answer = await post(gateway, inferPath(parsed.name, version), typeof body === 'string' ? body : JSON.stringify(body), options);
  let json: { error?: string } & Partial<InferResponse>;
  try {
    json = JSON.parse(answer.body || '{}') as typeof json;
  } catch {
    json = { error: answer.body };
  }
  if (answer.status !== 200) throw gatewayError(answer.status, json.error ?? answer.body, answer.retryAfter);
  return json as InferResponse;
}

interface Answer {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

function post(gateway: string, path: string, body: string, options: InferOptions): Promise<Answer> {
  const { host, port } = parseHostPort(gateway);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    if (options.tenant) headers['mlfleet-tenant'] = options.tenant;
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    const req = http.request({ host, port, path, method: 'POST', headers, signal: options.signal }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, retryAfter: res.headers['retry-after'] as string | undefined }));
      res.on('error', reject);
    });
    req.on('error', (err) => reject(options.signal?.aborted ? err : new UnavailableError(`cannot reach the gateway at ${gateway}: ${err.message}`)));
    req.end(body);
  });
}
