// How the REST API (coordinator/rest/) answers an error: the gRPC status the edge gave it,
// as grpc-gateway maps statuses to HTTP, with a body `{"error": {"code", "message"}}`.
import * as grpc from '@grpc/grpc-js';
import { MlfleetError, RETRY_AFTER_METADATA_KEY, toGrpcError } from '../../shared/errors.js';

const HTTP_STATUS: Readonly<Record<string, number>> = {
  OK: 200,
  CANCELLED: 499,
  UNKNOWN: 500,
  INVALID_ARGUMENT: 400,
  DEADLINE_EXCEEDED: 504,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 400,
  ABORTED: 409,
  OUT_OF_RANGE: 400,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  DATA_LOSS: 500,
  UNAUTHENTICATED: 401,
};

/** The error codes the API answers with (the gRPC status names). */
export const ERROR_CODES = Object.keys(HTTP_STATUS).filter((code) => code !== 'OK');

export interface ErrorBody {
  error: { code: string; message: string };
}

/** An error the REST layer answers itself (bad JSON, a body too large, an unknown route). */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The HTTP status of a gRPC status name; 500 for one it does not know. */
export function httpStatusOf(code: string): number {
  return HTTP_STATUS[code] ?? 500;
}

/** The gRPC status name of a numeric code (grpc.status[3] → INVALID_ARGUMENT). */
export function codeName(code: number | undefined): string {
  const name = code === undefined ? undefined : (grpc.status as unknown as Record<number, string>)[code];
  return name ?? 'INTERNAL';
}

/**
 * What an error from a handler (a grpc ServiceError-like object, or a RestError) answers:
 * status, headers (Retry-After in whole seconds for RESOURCE_EXHAUSTED) and body.
 */
export function errorAnswer(err: unknown): { status: number; headers: Record<string, string>; body: ErrorBody } {
  if (err instanceof RestError) return { status: err.status, headers: err.headers, body: { error: { code: err.code, message: err.message } } };
  // An error of ours thrown outside a handler (a token checked here, a bad query) reads as the edge would send it.
  const e = (MlfleetError.is(err) ? toGrpcError(err) : err) as Partial<grpc.ServiceError>;
  const code = codeName(typeof e.code === 'number' ? e.code : undefined);
  const message = e.details || (err instanceof Error ? err.message : String(err));
  const headers: Record<string, string> = {};
  if (code === 'RESOURCE_EXHAUSTED') {
    const ms = Number(e.metadata?.get(RETRY_AFTER_METADATA_KEY)[0]);
    headers['retry-after'] = String(Number.isFinite(ms) && ms > 0 ? Math.max(1, Math.ceil(ms / 1000)) : 1);
  }
  return { status: httpStatusOf(code), headers, body: { error: { code, message } } };
}
