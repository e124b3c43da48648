// The gRPC edge of the coordinator: every handler goes through here, so request validation,
// the conversion of thrown errors into statuses, and the logging of unexpected failures
// happen in exactly one place.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../shared/log.js';
import { MlfleetError, toGrpcError } from '../../shared/errors.js';
import { MALFORMED, validate, type z } from '../../shared/validation.js';

export interface CallContext {
  metadata: grpc.Metadata;
  peer: string;
}

type Schema<T> = z.ZodType<T, z.ZodTypeDef, unknown>;

export function unary<Req, Res>(
  method: string,
  schema: Schema<Req>,
  handler: (request: Req, context: CallContext) => Promise<Res>,
  log: Logger,
): grpc.handleUnaryCall<unknown, Res> {
  return (call, callback) => {
    const run = async () => {
      const request = validate(schema, call.request, `${method} request`);
      return handler(request, { metadata: call.metadata, peer: call.getPeer() });
    };
    run().then(
      (response) => callback(null, response),
      (err: unknown) => {
        if (!MlfleetError.is(err)) log.error({ err, method }, 'unexpected error in RPC');
        callback(toGrpcError(err) as grpc.ServiceError);
      },
    );
  };
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
