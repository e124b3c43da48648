// Typed errors with a stable `code` and their gRPC status, converted at the RPC edge in one
// place (toGrpcError / fromGrpcError) so domain code throws meaning, not transport details.
import { Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { truncate } from './truncate.js';

export const LEADER_METADATA_KEY = 'mlfleet-leader';
/** On a RESOURCE_EXHAUSTED answer: milliseconds to wait before trying again. */
export const RETRY_AFTER_METADATA_KEY = 'retry-after-ms';

const MARK = Symbol.for('mlfleet.error');

export class MlfleetError extends Error {
  readonly [MARK] = true;
  constructor(
    readonly code: string,
    readonly grpcStatus: Status,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** Works across duplicate copies of this module, unlike instanceof. */
  static is(value: unknown): value is MlfleetError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[MARK] === true;
  }
}

export class InvalidArgumentError extends MlfleetError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', Status.INVALID_ARGUMENT, message);
  }
}

export class NotFoundError extends MlfleetError {
  constructor(message: string) {
    super('NOT_FOUND', Status.NOT_FOUND, message);
  }
}

export class AlreadyExistsError extends MlfleetError {
  constructor(message: string) {
    super('ALREADY_EXISTS', Status.ALREADY_EXISTS, message);
  }
}

export class FailedPreconditionError extends MlfleetError {
  constructor(message: string) {
    super('FAILED_PRECONDITION', Status.FAILED_PRECONDITION, message);
  }
}

/** A compare-and-swap lost to a concurrent writer; the caller re-reads and retries. */
export class ConflictError extends MlfleetError {
  constructor(message: string) {
    super('CONFLICT', Status.ABORTED, message);
  }
}

export class ResourceExhaustedError extends MlfleetError {
  /** `retryAfterMs`: when the caller may try again, sent as the `retry-after-ms` metadata. */
  constructor(message: string, readonly retryAfterMs?: number) {
    super('RESOURCE_EXHAUSTED', Status.RESOURCE_EXHAUSTED, message);
  }
}

/** A call that waited too long on its peer (an upload that stopped sending). */
export class DeadlineExceededError extends MlfleetError {
  constructor(message: string) {
    super('DEADLINE_EXCEEDED', Status.DEADLINE_EXCEEDED, message);
  }
}

/** Stored bytes are not what their digest names: the store is damaged. */
export class DataLossError extends MlfleetError {
  constructor(message: string) {
    super('DATA_LOSS', Status.DATA_LOSS, message);
  }
}

export class PermissionDeniedError extends MlfleetError {
  constructor(message: string) {
    super('PERMISSION_DENIED', Status.PERMISSION_DENIED, message);
  }
}

export class UnauthenticatedError extends MlfleetError {
  constructor(message: string) {
    super('UNAUTHENTICATED', Status.UNAUTHENTICATED, message);
  }
}

/** This coordinator does not lead; `leader` is the address to ask instead ('' while unknown). */
export class NotLeaderError extends MlfleetError {
  constructor(readonly leader: string) {
    super(
      'NOT_LEADER',
      Status.UNAVAILABLE,
      leader ? `this coordinator is not the leader; the leader is ${leader}` : 'no leader is elected yet; retry shortly',
    );
  }
}

export class UnavailableError extends MlfleetError {
  constructor(message: string) {
    super('UNAVAILABLE', Status.UNAVAILABLE, message);
  }
}

export class InternalError extends MlfleetError {
  constructor(message: string) {
    super('INTERNAL', Status.INTERNAL, message);
  }
}

/** The RPC edge: any thrown value becomes a gRPC error with the right status. */
/** A last bound on an error's text: one that quotes an input whole could not even be delivered. */
const ERROR_MAX_BYTES = 8 * 1024;

export function toGrpcError(err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  if (MlfleetError.is(err)) {
    if (err instanceof NotLeaderError || err.code === 'NOT_LEADER') {
      metadata.set(LEADER_METADATA_KEY, (err as NotLeaderError).leader ?? '');
    }
    if (err instanceof ResourceExhaustedError && err.retryAfterMs !== undefined) metadata.set(RETRY_AFTER_METADATA_KEY, String(err.retryAfterMs));
    return { code: err.grpcStatus, details: truncate(err.message, ERROR_MAX_BYTES), metadata };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: Status.INTERNAL, details: truncate(`internal error: ${message}`, ERROR_MAX_BYTES), metadata };
}

/** The client edge: a gRPC error becomes the matching typed error. */
export function fromGrpcError(err: ServiceError): MlfleetError {
  const details = err.details || err.message;
  switch (err.code) {
    case Status.INVALID_ARGUMENT:
      return new InvalidArgumentError(details);
    case Status.NOT_FOUND:
      return new NotFoundError(details);
    case Status.ALREADY_EXISTS:
      return new AlreadyExistsError(details);
    case Status.FAILED_PRECONDITION:
      return new FailedPreconditionError(details);
    case Status.ABORTED:
      return new ConflictError(details);
    case Status.RESOURCE_EXHAUSTED: {
      const retryAfter = Number(err.metadata?.get(RETRY_AFTER_METADATA_KEY)[0]);
      return new ResourceExhaustedError(details, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined);
    }
    case Status.PERMISSION_DENIED:
      return new PermissionDeniedError(details);
    case Status.UNAUTHENTICATED:
      return new UnauthenticatedError(details);
    case Status.UNAVAILABLE: {
      const leader = err.metadata?.get(LEADER_METADATA_KEY);
      if (leader && leader.length > 0) return new NotLeaderError(String(leader[0]));
      return new UnavailableError(details);
    }
    default:
      return new InternalError(details);
  }
}
