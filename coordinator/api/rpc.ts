// The gRPC edge of the coordinator: every call goes through here, so that authentication (the
// bearer token), authorization (coordinator/auth/rules.ts), the redirect of a follower to the
// leader, request validation, auditing of state-changing calls, and the conversion of thrown
// errors into statuses each happen in exactly one place. Order: no valid token →
// UNAUTHENTICATED; role not allowed → PERMISSION_DENIED; a follower → UNAVAILABLE with the
// leader's address; bad request → INVALID_ARGUMENT; then the handler.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../shared/log.js';
import { DeadlineExceededError, MlfleetError, NotLeaderError, PermissionDeniedError, ResourceExhaustedError, toGrpcError } from '../../shared/errors.js';
import { MALFORMED, validate, type z } from '../../shared/validation.js';
import type { AuditLog } from '../audit-log.js';
import type { Principal, TokenRegistry } from '../auth/token-registry.js';
import { RULES } from '../auth/rules.js';
import { Admission, type Lane } from './admission.js';
import type { FencedWriter } from '../node-registry.js';

/** What an open stream holds of its caller's share. */
export interface StreamShare {
  /** Holds the stream against `to`'s share instead; false (and nothing changed) when `to` has none left. */
  transfer(to: Principal): boolean;
}

export interface CallContext {
  metadata: grpc.Metadata;
  peer: string;
  principal: Principal;
  /** What a streaming call acts on, set by its handler once known (for the audit trail). */
  target?: string;
}

type Schema<T> = z.ZodType<T, z.ZodTypeDef, unknown>;

export interface RpcEdgeDeps {
  tokens: TokenRegistry;
  audit: AuditLog;
  /** The leader's fenced writer while this coordinator leads (audit entries are stored then). */
  leaderWriter(): FencedWriter | undefined;
  /** Throws NotLeaderError (a redirect) unless this coordinator leads. */
  requireLeader(): void;
  log: Logger;
  /** Bounds on each caller's open calls (default: DEFAULT_ADMISSION_LIMITS). */
  admission?: Admission;
  /** Told of each call refused for its caller's share (for metrics). */
  onRejected?(role: string): void;
  /** How long a shed call waits for its answer (default: REFUSAL_DELAY_MS). */
  refusalDelayMs?: number;
  /** How long an upload may send nothing before it is ended (default: UPLOAD_IDLE_MS). */
  uploadIdleMs?: number;
}

/** An upload that sends no message for this long is ended and its temporary data dropped. */
export const UPLOAD_IDLE_MS = 30_000;
/** How long a call shed for its caller's share waits for its answer (see RpcEdge.answer). */
export const REFUSAL_DELAY_MS = 1_000;
/** The refusals of admission, answered late. */
const shed = new WeakSet<Error>();

export class RpcEdge {
  readonly admission: Admission;
  readonly uploadIdleMs: number;
  private readonly refusalDelayMs: number;

  constructor(private readonly deps: RpcEdgeDeps) {
    this.admission = deps.admission ?? new Admission();
    this.uploadIdleMs = deps.uploadIdleMs ?? UPLOAD_IDLE_MS;
    this.refusalDelayMs = deps.refusalDelayMs ?? REFUSAL_DELAY_MS;
  }

  /** Takes a share of the caller's open calls, or refuses with RESOURCE_EXHAUSTED and a retry hint. */
  private admit(principal: Principal, lane: Lane): () => void {
    const verdict = this.admission.admit(principal, lane);
    if (verdict.ok) return verdict.release;
    this.deps.onRejected?.(principal.role);
    // Shedding must cost little: a flood is refused thousands of times a second, and a stack
    // trace (of no use for a refusal) was the largest single cost of each.
    const depth = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      const refusal = new ResourceExhaustedError(verdict.reason, verdict.retryAfterMs);
      shed.add(refusal);
      throw refusal;
    } finally {
      Error.stackTraceLimit = depth;
    }
  }

  /** Authenticates the caller and checks that its role may call `method` ("Service.Method"). */
  authorize(method: string, metadata: grpc.Metadata): Principal {
    const principal = this.deps.tokens.authenticate(metadata);
    this.permit(method, principal);
    return principal;
  }

  private permit(method: string, principal: Principal): void {
    const rule = RULES[method];
    if (!rule) {
      this.deps.log.error({ method }, 'RPC has no authorization rule; refusing it');
      throw new PermissionDeniedError(`${method} is not open to any role`);
    }
    if (!rule.roles.includes(principal.role)) {
      throw new PermissionDeniedError(`a ${principal.role} token may not call ${method} (allowed: ${rule.roles.join(', ')})`);
    }
    if (!rule.anyCoordinator) this.deps.requireLeader();
  }

  /**
   * A unary handler. `target` names what a state-changing call acts on, for the audit trail
   * (e.g. `node/gpu-1`).
   */
  unary<Req, Res>(
    method: string,
    schema: Schema<Req>,
    handler: (request: Req, context: CallContext) => Promise<Res>,
    target?: (request: Req) => string,
  ): grpc.handleUnaryCall<unknown, Res> {
    const shortName = method.slice(method.indexOf('.') + 1);
    return (call, callback) => {
      let principal: Principal | undefined;
      let request: Req | undefined;
      let release = () => {};
      const run = async () => {
        const caller = this.deps.tokens.authenticate(call.metadata);
        principal = caller;
        this.permit(method, caller);
        release = this.admit(caller, 'unary');
        request = validate(schema, call.request, `${shortName} request`);
        return handler(request, { metadata: call.metadata, peer: call.getPeer(), principal: caller });
      };
      // A refused call is audited with what it aimed at, when the request says.
      const aim = () => {
        if (!target) return undefined;
        if (request !== undefined) return target(request);
        const parsed = schema.safeParse(call.request);
        return parsed.success ? target(parsed.data) : undefined;
      };
      run()
        .then(
          (response) => {
            this.audit(method, principal, aim(), call.getPeer(), undefined);
            callback(null, response);
          },
          (err: unknown) => {
            if (!MlfleetError.is(err)) this.deps.log.error({ err, method }, 'unexpected error in RPC');
            this.audit(method, principal, aim(), call.getPeer(), err);
            this.answer(err, () => callback(toGrpcError(err) as grpc.ServiceError));
          },
        )
        .finally(() => release());
    };
  }

  /** A client-streaming call (an upload): the handler reads the stream and answers once. */
  clientStream<Req, Res>(
    method: string,
    handler: (call: grpc.ServerReadableStream<Req, Res>, context: CallContext) => Promise<Res>,
  ): grpc.handleClientStreamingCall<Req, Res> {
    return (call, callback) => {
      let context: CallContext | undefined;
      let release = () => {};
      // A cancelled upload must end the handler's read loop, so that it cleans up.
      call.on('cancelled', () => call.destroy(new Error('the client cancelled the call')));
      const run = async () => {
        const principal = this.authorize(method, call.metadata);
        release = this.admit(principal, 'upload');
        context = { metadata: call.metadata, peer: call.getPeer(), principal };
        return handler(call, context);
      };
      run()
        .finally(() => release())
        .then(
          (response) => {
            this.audit(method, context?.principal, context?.target, call.getPeer(), undefined);
            callback(null, response);
          },
          (err: unknown) => {
            if (!MlfleetError.is(err) && !call.cancelled) this.deps.log.error({ err, method }, 'unexpected error in RPC');
            this.audit(method, context?.principal, context?.target, call.getPeer(), call.cancelled ? new Error('cancelled by the client') : err);
            this.answer(err, () => callback(toGrpcError(err) as grpc.ServiceError));
          },
        );
    };
  }

  /** A server-streaming call (a download): the handler writes and resolves when done. */
  serverStream<Req, Res>(
    method: string,
    schema: Schema<Req>,
    handler: (request: Req, context: CallContext, call: grpc.ServerWritableStream<unknown, Res>) => Promise<void>,
  ): grpc.handleServerStreamingCall<unknown, Res> {
    const shortName = method.slice(method.indexOf('.') + 1);
    return (call) => {
      let release = () => {};
      // Released when the client goes, even before the handler has noticed.
      call.once('cancelled', () => release());
      const run = async () => {
        const principal = this.authorize(method, call.metadata);
        release = this.admit(principal, 'stream');
        if (call.cancelled) release();
        const request = validate(schema, call.request, `${shortName} request`);
        await handler(request, { metadata: call.metadata, peer: call.getPeer(), principal }, call);
      };
      run()
        .finally(() => release())
        .then(
          () => call.end(),
          (err: unknown) => {
            if (call.cancelled) return;
            if (!MlfleetError.is(err)) this.deps.log.error({ err, method }, 'unexpected error in RPC');
            this.answer(err, () => call.emit('error', toGrpcError(err)));
          },
        );
    };
  }

  /**
   * A bidirectional stream: authorized once, when it opens. Its share of its caller's streams
   * can be handed to another principal (`share.transfer`): an agent's first session opens under
   * the join token and goes on as its node once admitted, so that a join token's small share
   * bounds the joins in progress, not every node that ever joined with it.
   */
  stream<Req, Res>(
    method: string,
    handler: (call: grpc.ServerDuplexStream<Req, Res>, principal: Principal, share: StreamShare) => void,
  ): grpc.handleBidiStreamingCall<Req, Res> {
    return (call) => {
      let principal: Principal;
      let release: () => void;
      try {
        principal = this.authorize(method, call.metadata);
        release = this.admit(principal, 'stream');
      } catch (err) {
        this.answer(err, () => call.emit('error', toGrpcError(err)));
        return;
      }
      let ended = false;
      // However the stream ends: the client goes, the handler ends it or fails it.
      for (const event of ['cancelled', 'finish', 'close', 'error']) {
        call.once(event, () => {
          ended = true;
          release();
        });
      }
      const share: StreamShare = {
        transfer: (to) => {
          if (ended) return true;
          const verdict = this.admission.admit(to, 'stream');
          if (!verdict.ok) return false;
          release();
          release = verdict.release;
          return true;
        },
      };
      handler(call, principal, share);
    };
  }

  /**
   * Sends an error answer; a call shed for its caller's share is answered only after
   * `refusalDelayMs`, holding one of its connection's (at most 64) streams meanwhile: a caller
   * that ignores the hint and retries at once is then refused at most 64 times a second per
   * connection, instead of as fast as the leader can refuse, which would leave it nothing else.
   */
  private answer(err: unknown, send: () => void): void {
    if (err instanceof ResourceExhaustedError && shed.has(err) && this.refusalDelayMs > 0) setTimeout(send, this.refusalDelayMs);
    else send();
  }

  private audit(method: string, principal: Principal | undefined, target: string | undefined, peer: string, err: unknown): void {
    if (!RULES[method]?.mutating || !principal) return;
    // A shed call did nothing, and a flood of them must not become a flood of audit writes:
    // mlfleet_rpc_rejected_total counts them.
    if (err instanceof Error && shed.has(err)) return;
    // A follower's redirect is not an action: the leader audits the call it then gets.
    if (err instanceof NotLeaderError || (MlfleetError.is(err) && err.code === 'NOT_LEADER')) return;
    const failed = err !== undefined;
    this.deps.audit.record(
      {
        tokenId: principal.tokenId,
        role: principal.role,
        tenant: principal.tenant,
        method,
        target: target ?? '',
        result: failed ? (MlfleetError.is(err) ? grpc.status[err.grpcStatus] : 'INTERNAL') : 'OK',
        message: failed ? (err instanceof Error ? err.message : String(err)) : '',
        peer,
      },
      this.deps.leaderWriter(),
    );
  }
}

/**
 * Wraps a service definition so that bytes that do not decode as the request message reach
 * the handler as a MALFORMED marker (answered INVALID_ARGUMENT) instead of grpc-js's INTERNAL.
 */
export function withMalformedRequests<S extends grpc.ServiceDefinition>(service: S): S {
  const wrapped: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return { [MALFORMED]: (err as Error).message };
        }
      },
    };
  }
  return wrapped as unknown as S;
}

/** Resolves when the stream can take more, or the client went away; leaves no listener behind. */
export function drainedOrCancelled(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('cancelled', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
  });
}

/**
 * The messages of a client stream, each awaited at most `idleMs`: a peer that stops sending
 * ends the call with DEADLINE_EXCEEDED (and the reader's cleanup runs) instead of holding its
 * temporary file and descriptor for ever.
 */
export function messagesWithin<T>(call: grpc.ServerReadableStream<T, unknown>, idleMs: number, what: string): AsyncIterator<T> {
  const messages = call[Symbol.asyncIterator]() as AsyncIterator<T>;
  return {
    next: () =>
      new Promise<IteratorResult<T>>((resolve, reject) => {
        const timer = setTimeout(() => {
          const err = new DeadlineExceededError(`${what} sent nothing for ${idleMs} ms; it was ended (send the data without pausing that long)`);
          reject(err);
          call.destroy(err);
        }, idleMs);
        messages.next().then(
          (result) => {
            clearTimeout(timer);
            resolve(result);
          },
          (err: unknown) => {
            clearTimeout(timer);
            reject(err);
          },
        );
      }),
  };
}
