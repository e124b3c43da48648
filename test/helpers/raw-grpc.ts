// Calls any mlfleet RPC by its proto definition, with raw requests and a bearer token, and
// reports the answer as a status name: for tests that sweep every RPC (authorization matrix,
// validation) and need the streaming kinds too.
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { mlfleetV1 } from '../../shared/proto.js';

export type Answer = 'OK' | 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'NOT_FOUND' | string;

export interface Method {
  name: string;
  def: grpc.MethodDefinition<unknown, unknown>;
}

export function methods(): Method[] {
  const v1 = mlfleetV1() as unknown as Record<string, { service?: grpc.ServiceDefinition }>;
  return Object.entries(v1)
    .filter(([, value]) => value.service)
    .flatMap(([service, value]) => Object.entries(value.service!).map(([name, def]) => ({ name: `${service}.${name}`, def })));
}

export function statusName(code: grpc.status): Answer {
  return grpc.status[code] as Answer;
}

/** Opens an agent session, says hello as `node`, and reports the first answer. */
export function openSession(address: string, token: string | undefined, node: string): Promise<{ answer: Answer; credential?: string; details?: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const def = mlfleetV1().AgentService.service.Session;
  return new Promise((resolve) => {
    const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, setBearer(new grpc.Metadata(), token));
    let settled = false;
    const settle = (result: { answer: Answer; credential?: string; details?: string }) => {
      if (settled) return;
      settled = true;
      call.cancel();
      client.close();
      resolve(result);
    };
    call.on('data', (message: { welcome?: { nodeCredential: string } }) => {
      if (message.welcome) settle({ answer: 'OK', credential: message.welcome.nodeCredential });
    });
    call.on('error', (err: grpc.ServiceError) => settle({ answer: statusName(err.code), details: err.details }));
    call.write({
      hello: {
        nodeName: node,
        agentVersion: 'test',
        address: '127.0.0.1:7780',
        capacity: { cpuMillis: 1000, memoryBytes: 2 ** 30 },
      },
    });
  });
}

export function callClientStream(address: string, method: Method, messages: unknown[], token: string | undefined): Promise<{ answer: Answer; details: string; response?: unknown }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest(method.def.path, method.def.requestSerialize, method.def.responseDeserialize, setBearer(new grpc.Metadata(), token), (err, response) => {
      client.close();
      resolve({ answer: err ? statusName(err.code) : 'OK', details: err?.details ?? '', response });
    });
    for (const message of messages) call.write(message);
    call.end();
  });
}

export function callServerStream(address: string, method: Method, request: unknown, token: string | undefined): Promise<{ answer: Answer; details: string; messages: unknown[] }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(method.def.path, method.def.requestSerialize, method.def.responseDeserialize, request, setBearer(new grpc.Metadata(), token));
    const messages: unknown[] = [];
    const done = (answer: Answer, details = '') => {
      client.close();
      resolve({ answer, details, messages });
    };
    call.on('data', (message: unknown) => messages.push(message));
    call.on('error', (err: grpc.ServiceError) => done(statusName(err.code), err.details));
    call.on('end', () => done('OK'));
  });
}

export function callUnary(address: string, method: Method, request: unknown, token: string | undefined): Promise<{ answer: Answer; details: string; response?: unknown }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(method.def.path, method.def.requestSerialize, method.def.responseDeserialize, request, setBearer(new grpc.Metadata(), token), (err, response) => {
      client.close();
      resolve({ answer: err ? statusName(err.code) : 'OK', details: err?.details ?? '', response });
    });
  });
}

/** One RPC by its full name, e.g. "ModelService.Push". */
export function method(name: string): Method {
  const found = methods().find((m) => m.name === name);
  if (!found) throw new Error(`no RPC ${name} in the proto`);
  return found;
}
