// DeliveryService.Locate over gRPC against a real in-process coordinator (SQLite store) with
// scripted agents on real sessions: the manifest, sources, grant and shares a node gets; who is
// not found; what a user gets; and a new leader's grants verifying with the key agents hold.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { blobUrl, verifyGrant } from '../../shared/blob-http.js';
import { CoordinatorClient } from '../../shared/client.js';
import { PIECE_BYTES } from '../../shared/pieces.js';
import type { BlobLocation } from '../../shared/proto.js';
import { coordinatorOptions, createCoordinator, startLeader } from '../helpers/coordinator.js';
import { eventually, until } from '../helpers/eventually.js';
import { FakeAgent, type FakeAgentOptions } from '../helpers/fake-agent.js';
import { callUnary, method } from '../helpers/raw-grpc.js';
import { WorkloadApi } from '../helpers/workload-api.js';

const quota = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 };
const NOBODY = `sha256:${'0'.repeat(64)}`;

async function setUp(t: TestContext) {
  const leader = await startLeader(t, { electionTtlMs: 3_000, workloads: { tickMs: 100 } });
  const address = leader.coordinator.address;
  const client = new CoordinatorClient([address], { token: leader.admin });
  const api = new WorkloadApi(address, leader.admin);
  t.after(() => {
    client.close();
    api.close();
  });
  // 2 pieces and a short third: the manifest is checked against these bytes.
  const bytes = Buffer.alloc(2 * PIECE_BYTES + 12345);
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i / 4096) & 0xff;
  const version = await client.push('model', { name: 'm', format: 'onnx', sizeBytes: bytes.length }, Readable.from([bytes]));
  const locate = (token: string | undefined, request: Record<string, unknown>, at = address) =>
    callUnary(at, method('DeliveryService.Locate'), request, token) as Promise<{ answer: string; details: string; response?: BlobLocation }>;
  const agent = (name: string, options: FakeAgentOptions = {}) => FakeAgent.start(t, name, address, leader.join, options);
  return { ...leader, address, client, api, bytes, digest: version.digest, locate, agent };
}

function pieceHashes(bytes: Buffer): Buffer {
  const hashes: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += PIECE_BYTES) hashes.push(createHash('sha256').update(bytes.subarray(at, at + PIECE_BYTES)).digest());
  return Buffer.concat(hashes);
}

const deployment = { spec: { name: 'web', model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 1, maxPerNode: 1, resources: { cpuMillis: 500, memoryBytes: 2 ** 28 } } };

test('a node locates the blob its allocation uses: manifest, peers holding it (not once cordoned), the coordinator, a grant for it alone; others get NOT_FOUND', async (t) => {
  const c = await setUp(t);
  const a = await c.agent('node-a', { peerUploadMbps: 100, address: '127.0.0.1:17780' });
  // Too small for the replica; holds the blob already and shares it.
  const b = await c.agent('node-b', { cpuMillis: 100, peerUploadMbps: 100, address: '127.0.0.1:17781', cache: [c.digest] });
  const stranger = await c.agent('node-c', { cpuMillis: 100, peerUploadMbps: 100 });
  await c.api.call('DeploymentService', 'ApplyDeployment', deployment);
  await until('placed on node-a', () => a.desired.length === 1);

  const got = await c.locate(a.credential, { digest: c.digest });
  assert.equal(got.answer, 'OK', got.details);
  const location = got.response!;
  assert.equal(location.digest, c.digest);
  assert.equal(Number(location.sizeBytes), c.bytes.length);
  assert.equal(location.version?.name, 'm');
  assert.equal(location.pieceBytes, PIECE_BYTES);
  assert.ok(Buffer.from(location.pieceHashes).equals(pieceHashes(c.bytes)), 'the piece hashes are those of the pushed bytes');
  assert.deepEqual(
    location.sources.map((s) => ({ kind: s.kind, url: s.url, node: s.node, complete: s.complete })),
    [
      { kind: 'peer', url: blobUrl('http://127.0.0.1:17781', c.digest), node: 'node-b', complete: true },
      { kind: 'coordinator', url: blobUrl(c.coordinator.blobBaseUrl, c.digest), node: '', complete: true },
    ],
  );
  assert.deepEqual([location.rank, location.fetchers], [0, 1]);
  const now = Date.now();
  assert.ok(Number(location.refreshAtMs) > now && Number(location.refreshAtMs) <= now + 3_000, 'asks again soon while a peer has it');
  assert.ok(Number(location.grantExpiresAtMs) > now + 9 * 60_000);
  // Expiries are whole minutes: Locates within one minute hand out the same grant (peers check it once).
  assert.equal(Number(location.grantExpiresAtMs) % 60_000, 0);
  const again = (await c.locate(a.credential, { digest: c.digest })).response!;
  if (again.grantExpiresAtMs === location.grantExpiresAtMs) assert.equal(again.grant, location.grant);

  // The grant verifies with the Welcome's key, for node-a and this digest only.
  assert.ok(a.grantPublicKey && a.grantPublicKey.length > 0, 'the welcome carries the grant key');
  const grant = verifyGrant(a.grantPublicKey, location.grant, { node: 'node-a', digest: c.digest, nowMs: Date.now() });
  assert.equal(grant.node, 'node-a');
  assert.throws(() => verifyGrant(a.grantPublicKey!, location.grant, { node: 'node-b', digest: c.digest, nowMs: Date.now() }), /for node node-a, not node-b/);
  assert.throws(() => verifyGrant(a.grantPublicKey!, location.grant, { node: 'node-a', digest: NOBODY, nowMs: Date.now() }), /not sha256:0+/);

  // A cordoned holder is never listed.
  await c.client.cordonNode('node-b');
  const afterCordon = (await c.locate(a.credential, { digest: c.digest })).response!;
  assert.deepEqual(afterCordon.sources.map((s) => s.kind), ['coordinator']);
  assert.deepEqual([afterCordon.rank, afterCordon.fetchers], [0, 1], 'asking again keeps its place');

  // A node without any use of the digest: NOT_FOUND, in the same words as a digest nobody has.
  const refused = await c.locate(stranger.credential, { digest: c.digest });
  assert.equal(refused.answer, 'NOT_FOUND');
  assert.equal(refused.details, `no model or dataset version has content ${c.digest}`);
  const nobody = await c.locate(a.credential, { digest: NOBODY });
  assert.equal(nobody.details, `no model or dataset version has content ${NOBODY}`);
  // A holder that is not using it either.
  assert.equal((await c.locate(b.credential, { digest: c.digest })).answer, 'NOT_FOUND');
  // Nodes locate by digest; a bad one is a clear error.
  assert.match((await c.locate(a.credential, { kind: 'model', ref: 'm' })).details, /agents locate blobs by digest/);
  assert.match((await c.locate(a.credential, { digest: 'sha256:xyz' })).details, /digest: must be sha256:<64 hex digits>/);

  const metrics = await (await fetch(`http://${c.coordinator.httpAddress}/metrics`)).text();
  assert.match(metrics, /mlfleet_coordinator_locates_total\{caller="node"\} [1-9]/);
});

test('a second node fetching the same blob is listed to the first and ranked after it; a node whose session ends is forgotten', async (t) => {
  const c = await setUp(t);
  const a = await c.agent('node-a', { peerUploadMbps: 100, address: '127.0.0.1:17780' });
  const b = await c.agent('node-b', { peerUploadMbps: 100, address: '127.0.0.1:17781' });
  await c.api.call('DeploymentService', 'ApplyDeployment', { spec: { ...deployment.spec, replicas: 2 } });
  await until('placed on both', () => a.desired.length === 1 && b.desired.length === 1);
  const first = (await c.locate(a.credential, { digest: c.digest })).response!;
  assert.deepEqual([first.rank, first.fetchers, first.sources.length], [0, 1, 1]);
  const second = (await c.locate(b.credential, { digest: c.digest })).response!;
  assert.deepEqual([second.rank, second.fetchers], [1, 2]);
  assert.deepEqual(second.sources.map((s) => [s.kind, s.node, s.complete]), [['peer', 'node-a', false], ['coordinator', '', true]]);
  const again = (await c.locate(a.credential, { digest: c.digest })).response!;
  assert.deepEqual(again.sources.map((s) => [s.kind, s.node, s.complete]), [['peer', 'node-b', false], ['coordinator', '', true]]);

  // A figure, not a bound: Locates answered per second on one connection, 8 at a time.
  const client = new grpc.Client(c.address, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const def = method('DeliveryService.Locate').def;
  const one = () => new Promise<void>((resolve, reject) =>
    client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, { digest: c.digest }, setBearer(new grpc.Metadata(), b.credential), (err) => (err ? reject(err) : resolve())));
  const started = performance.now();
  const CALLS = 400;
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let i = 0; i < CALLS / 8; i++) await one();
  }));
  t.diagnostic(`${Math.round(CALLS / ((performance.now() - started) / 1000))} node Locates/s (${CALLS} calls, 8 at a time)`);

  // node-a finishes: its cache lists the blob, so it is a holder and no longer a fetcher.
  a.reportCache([{ digest: c.digest, sizeBytes: c.bytes.length }]);
  await eventually('node-b sees node-a complete', 10_000, async () => {
    const now = (await c.locate(b.credential, { digest: c.digest })).response!;
    return now.sources[0]?.complete === true && now.rank === 0 && now.fetchers === 1 ? true : undefined;
  });

  // node-b's session ends: it is no longer a fetcher (node-a, done, has nothing to take from it).
  a.reportCache([]);
  b.disconnect();
  await eventually('node-b forgotten (well before its TTL)', 2_000, async () => {
    const now = (await c.locate(a.credential, { digest: c.digest })).response!;
    return now.sources.length === 1 && now.fetchers === 1 ? true : undefined;
  });
});

test("a user locates a version of their tenant (coordinator source, no grant) and gets NOT_FOUND for another tenant's digest", async (t) => {
  const c = await setUp(t);
  await c.client.createTenant({ name: 'beta', description: '', quota });
  const beta = (await c.client.createToken({ tenant: 'beta', role: 'developer', description: 'beta dev', ttlMs: 0 })).token;

  const byRef = await c.locate(c.admin, { kind: 'model', ref: 'm:1' });
  assert.equal(byRef.answer, 'OK', byRef.details);
  assert.equal(byRef.response!.version?.name, 'm');
  assert.ok(Buffer.from(byRef.response!.pieceHashes).equals(pieceHashes(c.bytes)));
  assert.deepEqual(byRef.response!.sources.map((s) => [s.kind, s.url]), [['coordinator', blobUrl(c.coordinator.blobBaseUrl, c.digest)]]);
  assert.equal(byRef.response!.grant, '');
  const byDigest = await c.locate(c.admin, { digest: c.digest });
  assert.equal(byDigest.response?.version?.name, 'm');

  const other = await c.locate(beta, { digest: c.digest });
  assert.equal(other.answer, 'NOT_FOUND');
  assert.equal(other.details, `no model or dataset version has content ${c.digest}`);
  assert.equal((await c.locate(beta, { kind: 'model', ref: 'm' })).answer, 'NOT_FOUND');
  // The admin may name the tenant; a developer may not name another.
  assert.equal((await c.locate(c.admin, { kind: 'model', ref: 'm', tenant: 'default' })).answer, 'OK');
  assert.equal((await c.locate(beta, { kind: 'model', ref: 'm', tenant: 'default' })).answer, 'NOT_FOUND');
  // Bad requests are clear errors.
  assert.match((await c.locate(c.admin, { ref: 'm' })).details, /give the kind \(model or dataset\)/);
  assert.match((await c.locate(c.admin, { kind: 'model', ref: 'm', digest: c.digest })).details, /give exactly one of ref and digest/);
  assert.match((await c.locate(c.admin, { kind: 'weights', digest: c.digest })).details, /kind/);

  const metrics = await (await fetch(`http://${c.coordinator.httpAddress}/metrics`)).text();
  assert.match(metrics, /mlfleet_coordinator_locates_total\{caller="user"\} [1-9]/);
});

test('a new leader on the same store signs grants with the same key: the old key verifies them', async (t) => {
  const c = await setUp(t);
  const a = await c.agent('node-a', { peerUploadMbps: 100 });
  await c.api.call('DeploymentService', 'ApplyDeployment', deployment);
  await until('placed on node-a', () => a.desired.length === 1);
  const oldKey = a.grantPublicKey!;
  const second = await createCoordinator(t, coordinatorOptions(c.dir, { id: 'second', electionTtlMs: 3_000, workloads: { tickMs: 100 } }));
  a.close();
  await c.coordinator.close();
  await until('the second coordinator leads', () => second.isLeader, 20_000);

  const again = new FakeAgent('node-a', second.address, c.join);
  again.credential = a.credential;
  t.after(() => again.close());
  await again.connect();
  assert.ok(again.grantPublicKey!.equals(oldKey), "the new leader's Welcome carries the same key");
  const got = await c.locate(a.credential, { digest: c.digest }, second.address);
  assert.equal(got.answer, 'OK', got.details);
  assert.equal(verifyGrant(oldKey, got.response!.grant, { node: 'node-a', digest: c.digest, nowMs: Date.now() }).digest, c.digest);
  assert.deepEqual(got.response!.sources.map((s) => [s.kind, s.url]), [['coordinator', blobUrl(second.blobBaseUrl, c.digest)]]);
});
