// Each caller's share of open calls, enforced at the RPC edge of a real (in-process) leader: a
// consumer past its streams is refused RESOURCE_EXHAUSTED with a retry hint while admins and
// agents are still served; uploads are bounded per tenant and end when they stall.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_ADMISSION_LIMITS } from '../../coordinator/api/admission.js';
import { setBearer } from '../../shared/auth.js';
import { CoordinatorClient } from '../../shared/client.js';
import { RETRY_AFTER_METADATA_KEY, ResourceExhaustedError, fromGrpcError } from '../../shared/errors.js';
import { isTransient } from '../../agent/job-output.js';
import { startLeader } from '../helpers/coordinator.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { eventually } from '../helpers/eventually.js';
import { callServerStream, callUnary, method, openSession, statusName } from '../helpers/raw-grpc.js';

const WATCH = method('EventService.WatchEvents');
const PUSH = method('ModelService.Push');

interface Opened {
  call: grpc.ClientReadableStream<unknown>;
  /** Settles with the error once the stream fails (never, while it stays open). */
  failed: Promise<grpc.ServiceError>;
}

function watch(client: grpc.Client, token: string): Opened {
  const call = client.makeServerStreamRequest(WATCH.def.path, WATCH.def.requestSerialize, WATCH.def.responseDeserialize, { replay: 5, follow: true }, setBearer(new grpc.Metadata(), token));
  call.on('data', () => {});
  const failed = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
  return { call, failed };
}

function stalledPush(client: grpc.Client, token: string, name: string): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest(PUSH.def.path, PUSH.def.requestSerialize, PUSH.def.responseDeserialize, setBearer(new grpc.Metadata(), token), (err) => resolve(err));
    call.write({ header: { name, format: 'onnx', sizeBytes: 1_000_000 } });
    call.write({ chunk: Buffer.alloc(1024, 1) });
    // …and then nothing: neither more bytes nor the end.
  });
}

test('a consumer past its streams is refused RESOURCE_EXHAUSTED with a retry hint while admins and agents are served; ending streams makes room', async (t) => {
  const { coordinator, admin, join } = await startLeader(t);
  const address = coordinator.address;
  const client = new CoordinatorClient([address], { token: admin });
  const raw = new grpc.Client(address, grpc.credentials.createInsecure());
  t.after(() => {
    client.close();
    raw.close();
  });
  const consumer = (await client.createToken({ tenant: 'default', role: 'consumer', description: 'flood' })).token;
  const limit = DEFAULT_ADMISSION_LIMITS.perRole.consumer.streams;

  const streams = Array.from({ length: limit + 8 }, () => watch(raw, consumer));
  const refusals: grpc.ServiceError[] = [];
  for (const s of streams) void s.failed.then((err) => refusals.push(err));
  await eventually('8 streams refused', 10_000, async () => (refusals.length >= 8 ? true : undefined));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(refusals.length, 8, `exactly the streams past ${limit} are refused`);
  for (const err of refusals) {
    assert.equal(statusName(err.code), 'RESOURCE_EXHAUSTED');
    assert.match(err.details, new RegExp(`already has ${limit} streams open, the most a consumer may; retry after 1000 ms`));
    assert.deepEqual(err.metadata.get(RETRY_AFTER_METADATA_KEY), ['1000']);
  }
  // Clients see the hint: an agent retries a shed upload, but not a quota's refusal (no hint).
  const typed = fromGrpcError(refusals[0]!);
  assert.ok(typed instanceof ResourceExhaustedError && typed.retryAfterMs === 1000);
  assert.equal(isTransient(typed), true);
  assert.equal(isTransient(new ResourceExhaustedError('storage quota of tenant default exceeded')), false);

  // Meanwhile: an admin's calls and streams, an agent's session, and the consumer's own unary calls.
  assert.equal((await callUnary(address, method('TokenService.ListTokens'), {}, admin)).answer, 'OK');
  assert.equal((await callServerStream(address, WATCH, { replay: 3, follow: false }, admin)).answer, 'OK');
  assert.equal((await openSession(address, join, 'node-during-flood')).answer, 'OK');
  assert.equal((await callUnary(address, method('ModelService.ListArtifacts'), {}, consumer)).answer, 'OK');
  assert.equal((await callServerStream(address, WATCH, { replay: 1, follow: false }, consumer)).answer, 'RESOURCE_EXHAUSTED');

  // Cancelled streams give their places back.
  for (const s of streams) s.call.cancel();
  await eventually('the consumer is admitted again', 10_000, async () => {
    const answer = (await callServerStream(address, WATCH, { replay: 1, follow: false }, consumer)).answer;
    return answer === 'OK' ? true : undefined;
  });
});

test('a stalled push is ended after the idle timeout and leaves no temporary file; a tenant’s uploads are bounded', async (t) => {
  const { coordinator, admin, dir } = await startLeader(t, { uploadIdleMs: 1_000 });
  const raw = new grpc.Client(coordinator.address, grpc.credentials.createInsecure());
  t.after(() => raw.close());
  const tmp = path.join(dir, 'blobs', 'tmp');
  const perTenant = DEFAULT_ADMISSION_LIMITS.uploadsPerTenant;

  const started = Date.now();
  const stalled = Array.from({ length: perTenant }, (_, i) => stalledPush(raw, admin, `stalled-${i}`));
  await eventually('every stalled push holds a temporary file', 5_000, async () => (readdirSync(tmp).length === perTenant ? true : undefined));
  const refused = await stalledPush(raw, admin, 'one-too-many');
  assert.equal(statusName(refused!.code), 'RESOURCE_EXHAUSTED');
  assert.match(refused!.details, new RegExp(`tenant default already has ${perTenant} uploads in flight, the most a tenant may; retry after`));
  assert.ok(refused!.metadata.get(RETRY_AFTER_METADATA_KEY).length === 1);

  const ended = await Promise.all(stalled);
  const elapsed = Date.now() - started;
  for (const err of ended) {
    assert.equal(statusName(err!.code), 'DEADLINE_EXCEEDED');
    assert.match(err!.details, /the push sent nothing for 1000 ms; it was ended/);
  }
  assert.ok(elapsed < 5_000, `cut after the idle timeout, not later: ${elapsed} ms`);
  await eventually('no temporary file is left', 5_000, async () => (readdirSync(tmp).length === 0 ? true : undefined));
  // The tenant's places came back with them.
  const after = await stalledPush(raw, admin, 'after');
  assert.equal(statusName(after!.code), 'DEADLINE_EXCEEDED');
  // The cut pushes are audited; the shed one, which did nothing, is not.
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const audited = (await client.listAuditEvents({ limit: 100 })).events.filter((e) => e.method === 'ModelService.Push');
  assert.equal(audited.filter((e) => e.result === 'DEADLINE_EXCEEDED').length, perTenant + 1);
  assert.equal(audited.filter((e) => e.result === 'RESOURCE_EXHAUSTED').length, 0);
});

test("a fleet joins with one join token: a joined session is held as its node, so the join token's share bounds joins in progress only", async (t) => {
  const { coordinator, join } = await startLeader(t);
  const share = DEFAULT_ADMISSION_LIMITS.perRole.join.streams;
  // Three times as many nodes as the join token has streams, each keeping its first session.
  const agents = [];
  for (let i = 0; i < share * 3; i++) agents.push(await FakeAgent.start(t, `joiner-${i}`, coordinator.address, join));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(agents.filter((a) => a.endedWith !== undefined).map((a) => a.name), [], 'every session is still open');
});
