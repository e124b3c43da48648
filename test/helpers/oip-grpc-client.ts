// A plain client of the gateway's inference.GRPCInferenceService, built from the protocol's own
// proto file with @grpc/proto-loader (as any third-party client would be), for the OIP gRPC tests.
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { OIP_PROTO } from '../../agent/gateway/oip-grpc.js';

export interface OipCallOptions {
  token?: string;
  /** More request metadata: mlfleet-tenant, mlfleet-type, … */
  metadata?: Record<string, string>;
  deadlineMs?: number;
}

/** Calls `method` and resolves with the reply and the response's initial metadata; rejects with the grpc.ServiceError. */
export type OipCall = (method: string, request: object, options?: OipCallOptions) => Promise<{ reply: any; metadata: grpc.Metadata }>;

export function oipClient(t: TestContext, address: string, credentials = grpc.credentials.createInsecure()): OipCall {
  const definition = protoLoader.loadSync(OIP_PROTO, { keepCase: true, longs: String, defaults: true, oneofs: true });
  const Service = (grpc.loadPackageDefinition(definition) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } }).inference.GRPCInferenceService;
  const client = new Service(address, credentials);
  t.after(() => client.close());
  return (method, request, options = {}) =>
    new Promise((resolve, reject) => {
      const metadata = new grpc.Metadata();
      if (options.token) metadata.set('authorization', `Bearer ${options.token}`);
      for (const [k, v] of Object.entries(options.metadata ?? {})) metadata.set(k, v);
      let headers = new grpc.Metadata();
      const call = (client[method] as Function).call(client, request, metadata, { deadline: Date.now() + (options.deadlineMs ?? 20_000) }, (err: grpc.ServiceError | null, reply: unknown) =>
        err ? reject(err) : resolve({ reply, metadata: headers }),
      ) as grpc.ClientUnaryCall;
      call.on('metadata', (m) => (headers = m));
    });
}
