// Every RPC of the API, generated from the proto's service list: malformed bytes and empty
// requests are answered INVALID_ARGUMENT with a message naming the problem, and change nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { mlfleetV1 } from '../../shared/proto.js';
import { setBearer } from '../../shared/auth.js';
import { startLeader } from '../helpers/coordinator.js';
import { methods } from '../helpers/raw-grpc.js';

/** RPCs for which an all-defaults request means something valid ("everything"). */
const EMPTY_IS_VALID = new Set([
  'ClusterService.GetStatus',
  'NodeService.ListNodes',
  'TenantService.ListTenants',
  'TokenService.ListTokens',
  'EventService.ListAuditEvents',
  'ModelService.ListArtifacts',
  'DatasetService.ListArtifacts',
  'DeploymentService.ListDeployments',
  'JobService.ListJobs',
  'AllocationService.ListAllocations',
  'EventService.WatchEvents',
  'StackService.ListStacks',
  'SourceService.ListSources',
]);

interface Started {
  coordinator: Coordinator;
  admin: string;
  join: string;
}

function startCoordinator(t: import('node:test').TestContext): Promise<Started> {
  return startLeader(t, { id: 'validation' });
}

type Call = { code: grpc.status; details: string };

/** Calls a method with raw bytes as the request, as an admin (or, for the agent session, with the join token). */
function callRaw(started: Started, path: string, body: Buffer, stream: boolean): Promise<Call> {
  const address = started.coordinator.address;
  const metadata = setBearer(new grpc.Metadata(), path.endsWith('/Session') ? started.join : started.admin);
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise<Call>((resolve) => {
    const done = (err: grpc.ServiceError | null) => {
      client.close();
      resolve({ code: err?.code ?? grpc.status.OK, details: err?.details ?? '' });
    };
    if (stream) {
      const call = client.makeBidiStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b, metadata);
      call.on('data', () => undefined);
      call.on('error', done);
      call.on('end', () => done(null));
      call.write(body);
    } else {
      client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, metadata, (err) => done(err));
    }
  });
}

function callServerStreamRaw(started: Started, path: string, body: Buffer): Promise<Call> {
  const client = new grpc.Client(started.coordinator.address, grpc.credentials.createInsecure());
  return new Promise<Call>((resolve) => {
    const call = client.makeServerStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, setBearer(new grpc.Metadata(), started.admin));
    const done = (err: grpc.ServiceError | null) => {
      client.close();
      resolve({ code: err?.code ?? grpc.status.OK, details: err?.details ?? '' });
    };
    call.on('data', () => undefined);
    call.on('error', done);
    call.on('end', () => done(null));
  });
}

test('every RPC answers INVALID_ARGUMENT to bytes that are not its request message', async (t) => {
  const started = await startCoordinator(t);
  const all = methods();
  assert.ok(all.length >= 7, `found ${all.length} RPCs in the proto`);
  // Field 1 as a length-delimited value that runs past the end of the buffer.
  const garbage = Buffer.from([0x0a, 0xff, 0x01, 0x02]);
  for (const method of all) {
    const answer = await callRaw(started, method.def.path, garbage, method.def.requestStream);
    assert.equal(answer.code, grpc.status.INVALID_ARGUMENT, `${method.name}: ${answer.details}`);
    assert.match(answer.details, /not a valid protobuf message|invalid/i, method.name);
  }
});

test('every RPC that needs fields answers INVALID_ARGUMENT to an empty request, naming the field', async (t) => {
  const started = await startCoordinator(t);
  for (const method of methods().filter((m) => !EMPTY_IS_VALID.has(m.name))) {
    const answer = await callRaw(started, method.def.path, Buffer.alloc(0), method.def.requestStream);
    assert.equal(answer.code, grpc.status.INVALID_ARGUMENT, `${method.name}: ${answer.details}`);
    assert.ok(answer.details.length > 10, `${method.name} explains: ${answer.details}`);
  }
  for (const name of EMPTY_IS_VALID) {
    const method = methods().find((m) => m.name === name)!;
    const answer = method.def.responseStream
      ? await callServerStreamRaw(started, method.def.path, Buffer.alloc(0))
      : await callRaw(started, method.def.path, Buffer.alloc(0), false);
    assert.equal(answer.code, grpc.status.OK, `${name}: ${answer.details}`);
  }
});

test('bad field values are refused with the field and the rule', async (t) => {
  const { coordinator, admin } = await startCoordinator(t);
  const v1 = mlfleetV1();
  const nodes = new v1.NodeService(coordinator.address, grpc.credentials.createInsecure());
  t.after(() => nodes.close());
  const md = () => setBearer(new grpc.Metadata(), admin);
  const ask = (fn: (cb: (err: grpc.ServiceError | null) => void) => void) =>
    new Promise<grpc.ServiceError | null>((resolve) => fn((err) => resolve(err)));

  const badName = await ask((cb) => nodes.GetNode({ name: 'Not A Node/..' }, md(), cb));
  assert.equal(badName?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(badName!.details, /^invalid GetNode request: name: must be lowercase/);

  const badStatus = await ask((cb) => nodes.ListNodes({ status: 'sleeping' }, md(), cb));
  assert.equal(badStatus?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(badStatus!.details, /status: must be ready, down or draining/);

  const missing = await ask((cb) => nodes.CordonNode({ name: 'no-such-node' }, md(), cb));
  assert.equal(missing?.code, grpc.status.NOT_FOUND);
  assert.match(missing!.details, /node "no-such-node" not found/);
});
