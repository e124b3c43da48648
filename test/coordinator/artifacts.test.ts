// The model and dataset registry through the real coordinator and blob store: versions,
// digests, aliases, refs and downloads; and every kind of bad push is a clear error that
// stores nothing.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CHUNK_HEADROOM, chunkMessage, withEncodedChunks } from '../../coordinator/api/artifact-service.js';
import { setBearer } from '../../shared/auth.js';
import { mlfleetV1, type Artifact } from '../../shared/proto.js';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from '../helpers/coordinator.js';
import { callClientStream, callServerStream, callUnary, method } from '../helpers/raw-grpc.js';

const sha = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

async function setUp(t: TestContext) {
  const leader = await startLeader(t);
  const admin = new CoordinatorClient([leader.coordinator.address], { token: leader.admin });
  t.after(() => admin.close());
  const address = leader.coordinator.address;
  const push = (messages: unknown[], service = 'ModelService') => callClientStream(address, method(`${service}.Push`), messages, leader.admin);
  const pushBytes = (name: string, bytes: Buffer, extra: Record<string, unknown> = {}) =>
    push([{ header: { name, format: 'onnx', sizeBytes: bytes.length, ...extra } }, ...chunks(bytes)]);
  const download = async (request: unknown) => {
    const result = await callServerStream(address, method('ModelService.Download'), request, leader.admin);
    const [first, ...rest] = result.messages as { version?: { digest: string; version: number }; chunk?: Buffer }[];
    return { ...result, version: first?.version, bytes: Buffer.concat(rest.map((m) => m.chunk!)) };
  };
  const unary = (name: string, request: unknown) => callUnary(address, method(name), request, leader.admin);
  /** Everything the blob store holds: published blobs and temporary uploads. */
  const stored = () => {
    const root = path.join(leader.dir, 'blobs');
    const list = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? list(path.join(dir, e.name)) : [path.join(dir, e.name)]));
    return list(root).map((f) => path.relative(root, f));
  };
  return { ...leader, adminToken: leader.admin, admin, push, pushBytes, download, unary, stored };
}

function chunks(bytes: Buffer, size = 64 * 1024): { chunk: Buffer }[] {
  const out: { chunk: Buffer }[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push({ chunk: bytes.subarray(i, i + size) });
  return out;
}

test('each push is a new numbered version with its digest; refs resolve by number, alias and latest', async (t) => {
  const c = await setUp(t);
  const v1 = Buffer.from('first model');
  const v2 = Buffer.alloc(300 * 1024, 7);
  const first = await c.pushBytes('resnet', v1, { metadata: { type: 'classification', inputFormat: 'image', outputFormat: 'tensor', accuracy: 0.91 } });
  assert.equal(first.answer, 'OK', first.details);
  assert.deepEqual([(first.response as { version: number }).version, (first.response as { digest: string }).digest], [1, sha(v1)]);
  assert.equal((await c.pushBytes('resnet', v2)).answer, 'OK');

  assert.equal((await c.unary('ModelService.SetAlias', { name: 'resnet', alias: 'production', version: 1 })).answer, 'OK');
  const artifact = (await c.unary('ModelService.GetArtifact', { name: 'resnet' })).response as Artifact;
  assert.deepEqual(artifact.versions.map((v) => [v.version, v.digest, v.sizeBytes]), [[1, sha(v1), v1.length], [2, sha(v2), v2.length]]);
  assert.deepEqual(artifact.aliases, { production: 1 });
  assert.equal(artifact.versions[0]!.metadata!.type, 'classification');

  for (const [ref, want] of [['resnet', v2], ['resnet:1', v1], ['resnet@production', v1]] as const) {
    const got = await c.download({ ref });
    assert.equal(got.answer, 'OK', `${ref}: ${got.details}`);
    assert.ok(got.bytes.equals(want), `${ref} downloads its version's bytes`);
  }
  // The alias moves.
  assert.equal((await c.unary('ModelService.SetAlias', { name: 'resnet', alias: 'production', version: 2 })).answer, 'OK');
  assert.ok((await c.download({ ref: 'resnet@production' })).bytes.equals(v2));
  // Resume from an offset.
  assert.ok((await c.download({ ref: 'resnet:2', offset: 1000 })).bytes.equals(v2.subarray(1000)));
  for (const ref of ['resnet:9', 'resnet@staging', 'nothing']) assert.equal((await c.download({ ref })).answer, 'NOT_FOUND', ref);
});

test('a download of many chunks, from the start or from an odd offset, sends every byte once and in order', async (t) => {
  const c = await setUp(t);
  // Several times the chunks one download keeps in flight, so each buffer carries many chunks.
  const bytes = randomBytes(5 * 1024 * 1024 + 12_345);
  assert.equal((await c.pushBytes('llm', bytes)).answer, 'OK');
  const whole = await c.download({ ref: 'llm' });
  assert.equal(whole.answer, 'OK', whole.details);
  assert.equal(whole.version?.digest, sha(bytes));
  assert.ok(whole.bytes.equals(bytes), 'the whole content');
  const tail = await c.download({ digest: sha(bytes), offset: 777_777 });
  assert.equal(tail.answer, 'OK', tail.details);
  assert.ok(tail.bytes.equals(bytes.subarray(777_777)), 'the content from the offset');
  const none = await c.download({ digest: sha(bytes), offset: bytes.length });
  assert.deepEqual([none.answer, none.bytes.length], ['OK', 0], 'from the end: the version and no bytes');
});

test('a chunk encoded in place is byte for byte what protobufjs encodes, whatever its length', () => {
  const generated = mlfleetV1().ModelService.service;
  const encoded = withEncodedChunks(generated);
  for (const length of [0, 1, 127, 128, 16_383, 16_384, 256 * 1024, 2 ** 21 - 1, 2 ** 21]) {
    const buffer = randomBytes(CHUNK_HEADROOM + length);
    const message = chunkMessage(buffer, length);
    assert.ok(message.chunk.equals(buffer.subarray(CHUNK_HEADROOM)), `${length}: the chunk is the bytes after the headroom`);
    assert.ok(encoded.Download.responseSerialize(message).equals(generated.Download.responseSerialize({ chunk: message.chunk })), `${length} bytes`);
  }
  const version = { version: { name: 'resnet', version: 3 } };
  assert.ok(encoded.Download.responseSerialize(version).equals(generated.Download.responseSerialize(version)), 'other messages are left to protobufjs');
});

test('identical content is stored once, and its blob goes with the last version that uses it', async (t) => {
  const c = await setUp(t);
  const bytes = Buffer.from('shared weights');
  await c.pushBytes('a', bytes);
  await c.pushBytes('b', bytes);
  assert.equal(c.stored().filter((f) => f.startsWith('sha256')).length, 1);
  assert.equal((await c.unary('ModelService.DeleteVersion', { name: 'a', version: 1 })).answer, 'OK');
  assert.equal(c.stored().filter((f) => f.startsWith('sha256')).length, 1, 'still used by b:1');
  assert.equal((await c.unary('ModelService.DeleteVersion', { name: 'b', version: 1 })).answer, 'OK');
  assert.deepEqual(c.stored(), []);
  // Numbers are not given out again.
  assert.equal(((await c.pushBytes('a', Buffer.from('again'))).response as { version: number }).version, 2);
});

test('a version an alias points at cannot be deleted until the alias moves', async (t) => {
  const c = await setUp(t);
  await c.pushBytes('m', Buffer.from('x'));
  await c.unary('ModelService.SetAlias', { name: 'm', alias: 'production', version: 1 });
  const refused = await c.unary('ModelService.DeleteVersion', { name: 'm', version: 1 });
  assert.equal(refused.answer, 'FAILED_PRECONDITION');
  assert.match(refused.details, /aliased as production/);
});

test('bad pushes are clear errors and store nothing', async (t) => {
  const c = await setUp(t);
  const bytes = Buffer.from('some model bytes');
  const header = { name: 'm', format: 'onnx', sizeBytes: bytes.length };
  const cases: [string, unknown[], RegExp][] = [
    ['a name with /', [{ header: { ...header, name: 'a/b' } }, { chunk: bytes }], /name: must be lowercase/],
    ['a name with ..', [{ header: { ...header, name: 'a..b' } }, { chunk: bytes }], /name: must be lowercase/],
    ['an empty file', [{ header: { ...header, sizeBytes: 0 } }], /an empty file cannot be pushed/],
    ['a 0-byte chunk stream', [{ header }], /declared 16 bytes but sent 0/],
    ['an empty chunk', [{ header }, { chunk: Buffer.alloc(0) }, { chunk: bytes }], /must not be empty/],
    ['a wrong declared digest', [{ header: { ...header, digest: sha(Buffer.from('other')) } }, { chunk: bytes }], /digest is sha256:[0-9a-f]+ but the push declared/],
    ['more bytes than declared', [{ header: { ...header, sizeBytes: 4 } }, { chunk: bytes }], /declared 4 bytes but sent more/],
    ['chunks before the header', [{ chunk: bytes }], /first message of a push must be its header/],
    ['a second header', [{ header }, { header }], /only the first message/],
    ['an unknown format', [{ header: { ...header, format: 'pickle' } }, { chunk: bytes }], /format: must be one of onnx/],
  ];
  for (const [what, messages, message] of cases) {
    const answer = await c.push(messages);
    assert.equal(answer.answer, 'INVALID_ARGUMENT', `${what}: ${answer.details}`);
    assert.match(answer.details, message, what);
  }
  // Malformed chunk bytes: a raw stream whose second message is not a PushRequest.
  const pushDef = method('ModelService.Push').def;
  const client = new grpc.Client(c.coordinator.address, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const malformed = await new Promise<grpc.ServiceError | null>((resolve) => {
    const call = client.makeClientStreamRequest(pushDef.path, (b: Buffer) => b, pushDef.responseDeserialize, setBearer(new grpc.Metadata(), c.adminToken), (err) => resolve(err));
    call.write(pushDef.requestSerialize({ header }));
    call.write(Buffer.from([0x12, 0xff, 0xff, 0x01]));
    call.end();
  });
  assert.equal(malformed?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(malformed!.details, /not a valid protobuf message/);

  assert.deepEqual(c.stored(), [], 'no blob and no temporary data');
  assert.equal(((await c.unary('ModelService.ListArtifacts', {})).response as { artifacts: unknown[] }).artifacts.length, 0, 'no version');
});

test('an upload cut off midway leaves no version and no temporary data', async (t) => {
  const c = await setUp(t);
  const pushDef = method('ModelService.Push').def;
  const client = new grpc.Client(c.coordinator.address, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const call = client.makeClientStreamRequest(pushDef.path, pushDef.requestSerialize, pushDef.responseDeserialize, setBearer(new grpc.Metadata(), c.adminToken), () => undefined);
  call.write({ header: { name: 'big', format: 'onnx', sizeBytes: 10 * 2 ** 20 } });
  for (const chunk of chunks(Buffer.alloc(2 * 2 ** 20, 1))) call.write(chunk);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(c.stored().some((f) => f.startsWith('tmp')), 'the upload was in progress');
  call.cancel();
  for (let i = 0; i < 50 && c.stored().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(c.stored(), []);
  assert.equal(((await c.unary('ModelService.ListArtifacts', {})).response as { artifacts: unknown[] }).artifacts.length, 0);
});

test("a push beyond the tenant's storage quota is RESOURCE_EXHAUSTED naming the limit, and stores nothing", async (t) => {
  const c = await setUp(t);
  await c.admin.setTenantQuota({ name: 'default', quota: { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 1024, maxDeployments: 0 }, clear: [] });
  assert.equal((await c.pushBytes('small', Buffer.alloc(600))).answer, 'OK');
  const refused = await c.pushBytes('large', Buffer.alloc(600));
  assert.equal(refused.answer, 'RESOURCE_EXHAUSTED');
  assert.match(refused.details, /storage quota is 1Ki; it uses 600 and this push needs 600 more/);
  assert.equal((await c.admin.getTenant('default')).usage!.storageBytes, 600);
  assert.equal(c.stored().filter((f) => f.startsWith('sha256')).length, 1);
});
