// The coordinator's blob routes over real HTTP against an in-process coordinator (SQLite, the
// filesystem blob store): who may read a blob (the gRPC API's tokens, tenants and node
// credentials), ranges, TLS refusing plain text, and the resumable upload protocol: wrong
// offsets, bytes past the declared size, another caller's upload, an early commit and a wrong
// declared digest each change nothing; a cut PUT keeps what arrived and the push goes on.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { Agent, request } from 'undici';
import { CoordinatorClient, inChunks } from '../../shared/client.js';
import { readBlobRange } from '../../shared/blob-download.js';
import { pushResumable } from '../../shared/blob-upload.js';
import { NotFoundError } from '../../shared/errors.js';
import type { PushHeader } from '../../shared/proto.js';
import { UPLOAD_OFFSET_HEADER } from '../../shared/blob-http.js';
import { decodeManifest } from '../../shared/pieces.js';
import { channelCredentials, loadTls } from '../../shared/tls.js';
import { startLeader } from '../helpers/coordinator.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { REPO_ROOT } from '../helpers/processes.js';

const quota = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 };
const MiB = 1024 * 1024;

async function* chunksOf(bytes: Buffer): AsyncIterable<Buffer> {
  for (let at = 0; at < bytes.length; at += MiB) yield bytes.subarray(at, at + MiB);
}

/** Runs `check` until it stops throwing (10 s at most). */
async function retry(check: () => unknown): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

async function setUp(t: TestContext) {
  const leader = await startLeader(t, { electionTtlMs: 15_000 });
  const client = (token: string) => {
    const c = new CoordinatorClient([leader.coordinator.address], { token });
    t.after(() => c.close());
    return c;
  };
  const admin = client(leader.admin);
  await admin.createTenant({ name: 'alpha', description: '', quota });
  await admin.createTenant({ name: 'beta', description: '', quota });
  const token = async (role: string, tenant: string) => (await admin.createToken({ tenant, role, description: `${role} of ${tenant}`, ttlMs: 0 })).token;
  return { leader, admin, client, token, base: leader.coordinator.blobBaseUrl };
}

async function get(url: string, token: string | undefined, headers: Record<string, string> = {}, dispatcher?: Agent) {
  const answer = await request(url, { headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) }, ...(dispatcher ? { dispatcher } : {}) });
  const body = Buffer.from(await answer.body.arrayBuffer());
  return { status: answer.statusCode, headers: answer.headers, body };
}

async function put(url: string, token: string, offset: number, body: Buffer) {
  const answer = await request(url, { method: 'PUT', body, headers: { authorization: `Bearer ${token}`, [UPLOAD_OFFSET_HEADER]: String(offset) } });
  const text = await answer.body.text();
  return { status: answer.statusCode, offset: Number(answer.headers[UPLOAD_OFFSET_HEADER]), text };
}

test('GET /v1/blobs/<digest>: tenants, roles, node credentials, revoked tokens and ranges', async (t) => {
  const { admin, client, token, base, leader } = await setUp(t);
  const bytes = randomBytes(3 * MiB + 12345);
  const developer = await token('developer', 'alpha');
  const version = await client(developer).push('model', { name: 'm', format: 'onnx', sizeBytes: bytes.length, digest: '' }, inChunks(chunksOf(bytes), 256 << 10));
  const url = `${base}/v1/blobs/${version.digest}`;

  const none = await get(url, undefined);
  assert.equal(none.status, 401);
  assert.equal((await get(url, 'mlf_not_a_token')).status, 401);

  // Another tenant's token, with the right digest: exactly what a digest nobody has gets.
  const stranger = await get(url, await token('consumer', 'beta'));
  const nobody = await get(`${base}/v1/blobs/sha256:${'0'.repeat(64)}`, await token('consumer', 'beta'));
  assert.equal(stranger.status, 404);
  assert.equal(nobody.status, 404);
  assert.equal(stranger.body.toString().replace(version.digest, 'D'), nobody.body.toString().replace(`sha256:${'0'.repeat(64)}`, 'D'));

  const consumer = await token('consumer', 'alpha');
  const whole = await get(url, consumer);
  assert.equal(whole.status, 200);
  assert.equal(sha256(whole.body), version.digest);
  const byDeveloper = await get(url, developer);
  assert.equal(byDeveloper.status, 200);
  assert.equal(byDeveloper.body.length, bytes.length);
  assert.equal((await get(url, leader.admin)).status, 200);

  const ranged = await get(url, consumer, { range: 'bytes=1048570-2097160' });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers['content-range'], `bytes 1048570-2097160/${bytes.length}`);
  assert.deepEqual(ranged.body, bytes.subarray(1048570, 2097161));
  const tail = await get(url, consumer, { range: 'bytes=-10' });
  assert.deepEqual(tail.body, bytes.subarray(bytes.length - 10));
  assert.equal((await get(url, consumer, { range: `bytes=${bytes.length}-` })).status, 416);
  assert.equal((await get(url, consumer, { range: 'bytes=5-2' })).status, 416);
  assert.equal((await get(url, consumer, { range: 'lines=1-2' })).status, 416);
  // More GETs at once than the coordinator has buffers for: each waits its turn, all complete.
  const many = await Promise.all(Array.from({ length: 40 }, () => get(url, consumer)));
  for (const one of many) assert.equal(sha256(one.body), version.digest);

  // The client side mlfleetctl pull uses: from an offset, streamed.
  const parts: Buffer[] = [];
  for await (const chunk of await readBlobRange({ url, token: consumer, offset: 1_000_001, sizeBytes: bytes.length })) parts.push(chunk);
  assert.deepEqual(Buffer.concat(parts), bytes.subarray(1_000_001));
  await assert.rejects(readBlobRange({ url, token: await token('consumer', 'beta'), offset: 0, sizeBytes: bytes.length }), { code: 'NOT_FOUND' });
  const head = await request(url, { method: 'HEAD', headers: { authorization: `Bearer ${consumer}` } });
  await head.body.dump();
  assert.equal(head.statusCode, 200);
  assert.equal(Number(head.headers['content-length']), bytes.length);

  // A node credential reads only what the leader lets its node fetch.
  const agent = await FakeAgent.start(t, 'n1', leader.coordinator.address, leader.join);
  await retry(() => assert.ok(agent.credential));
  assert.equal((await get(url, agent.credential)).status, 404);
  await admin.prefetchModel('n1', 'm', 'alpha');
  await retry(async () => assert.equal((await get(url, agent.credential)).status, 200));

  // A revoked token no longer reads anything.
  const list = await admin.listTokens({ tenant: 'alpha' });
  const consumerRecord = list.tokens.find((t2) => consumer.includes(t2.id));
  assert.ok(consumerRecord);
  await admin.revokeToken(consumerRecord.id);
  await retry(async () => assert.equal((await get(url, consumer)).status, 401));

  const metrics = await (await request(`http://${leader.coordinator.httpAddress}/metrics`)).body.text();
  const sent = Number(/^mlfleet_coordinator_blob_sent_bytes_total (\d+)/m.exec(metrics)?.[1]);
  assert.ok(sent >= 43 * bytes.length, `sent ${sent}`);
});

test('with TLS, the blob routes refuse plain text on the same port; https with the CA reads', async (t) => {
  const certs = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-blob-tls-'));
  t.after(() => rmSync(certs, { recursive: true, force: true }));
  const made = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'make-certs.sh'), certs, 'coordinator', 'cli'], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const tls = loadTls({ cert: path.join(certs, 'coordinator.pem'), key: path.join(certs, 'coordinator-key.pem') }, 'server');
  const leader = await startLeader(t, { id: 'tls', tls, electionTtlMs: 15_000 });
  const cli = loadTls({ ca: path.join(certs, 'ca.pem') }, 'client');
  const admin = new CoordinatorClient([leader.coordinator.address], { token: leader.admin, credentials: channelCredentials(cli) });
  t.after(() => admin.close());
  const bytes = randomBytes(100_000);
  const version = await admin.push('model', { name: 'm', format: 'onnx', sizeBytes: bytes.length, digest: '' }, inChunks(chunksOf(bytes), 65536));
  const port = leader.coordinator.httpAddress.split(':').at(-1);
  assert.match(leader.coordinator.blobBaseUrl, /^https:\/\//);

  const plain = await get(`http://127.0.0.1:${port}/v1/blobs/${version.digest}`, leader.admin);
  assert.equal(plain.status, 403);
  assert.match(plain.body.toString(), /use https/);
  assert.equal((await get(`http://127.0.0.1:${port}/healthz`, undefined)).status, 200);

  const dispatcher = new Agent({ connect: { ca: cli?.ca, servername: 'localhost' } });
  t.after(() => dispatcher.close());
  const secure = await get(`https://127.0.0.1:${port}/v1/blobs/${version.digest}`, leader.admin, {}, dispatcher);
  assert.equal(secure.status, 200);
  assert.equal(sha256(secure.body), version.digest);
  assert.equal((await get(`https://127.0.0.1:${port}/metrics`, undefined, {}, dispatcher)).status, 200);
});

test('resumable uploads: protocol errors change nothing, a cut PUT keeps its bytes, the commit verifies', async (t) => {
  const { leader, client, token } = await setUp(t);
  const developer = await token('developer', 'alpha');
  const other = await token('developer', 'alpha');
  const dev = client(developer);
  const bytes = randomBytes(9 * MiB + 77);
  const header = { name: 'up', format: 'onnx', directory: false, sizeBytes: bytes.length, digest: '' };

  const ticket = await dev.beginPush('model', header, 'key-1');
  assert.equal(Number(ticket.offset), 0);
  const url = ticket.url;
  assert.match(url, /\/v1\/uploads\/[0-9a-f]{32}$/);

  // Early commit: FAILED_PRECONDITION, the upload stays.
  await assert.rejects(dev.commitPush(ticket.uploadId), { code: 'FAILED_PRECONDITION' });
  let first = await put(url, developer, 0, bytes.subarray(0, 4 * MiB));
  assert.equal(first.status, 204);
  assert.equal(first.offset, 4 * MiB);

  // The wrong offset: 409 with where it stands; nothing is written.
  const wrong = await put(url, developer, 1000, bytes.subarray(1000, 2000));
  assert.equal(wrong.status, 409);
  assert.equal(wrong.offset, 4 * MiB);
  // Past the declared size: 413; nothing is written.
  const tooMuch = await put(url, developer, 4 * MiB, Buffer.concat([bytes.subarray(4 * MiB), Buffer.alloc(10)]));
  assert.equal(tooMuch.status, 413);
  // Another caller's upload is not there; neither is a made-up one; no token is 401.
  assert.equal((await put(url, other, 4 * MiB, bytes.subarray(4 * MiB, 5 * MiB))).status, 404);
  assert.equal((await put(url.replace(/[0-9a-f]{32}$/, '0'.repeat(32)), developer, 0, bytes.subarray(0, 10))).status, 404);
  assert.equal((await request(url, { method: 'HEAD' })).statusCode, 401);
  await assert.rejects(client(other).commitPush(ticket.uploadId), { code: 'NOT_FOUND' });
  const head = await request(url, { method: 'HEAD', headers: { authorization: `Bearer ${developer}` } });
  await head.body.dump();
  assert.equal(Number(head.headers[UPLOAD_OFFSET_HEADER]), 4 * MiB);

  // The same key finds the same upload and its offset.
  const again = await dev.beginPush('model', header, 'key-1');
  assert.equal(again.uploadId, ticket.uploadId);
  assert.equal(Number(again.offset), 4 * MiB);

  // A PUT cut mid-body: what arrived is kept.
  await new Promise<void>((resolve, reject) => {
    const u = new URL(url);
    const socket = net.connect(Number(u.port), u.hostname, () => {
      socket.write(`PUT ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${developer}\r\n${UPLOAD_OFFSET_HEADER}: ${4 * MiB}\r\ncontent-length: ${bytes.length - 4 * MiB}\r\n\r\n`);
      socket.write(bytes.subarray(4 * MiB, 6 * MiB), () => setTimeout(() => { socket.destroy(); resolve(); }, 200));
    });
    socket.on('error', reject);
  });
  let held = 0;
  await retry(async () => {
    const h = await request(url, { method: 'HEAD', headers: { authorization: `Bearer ${developer}` } });
    await h.body.dump();
    held = Number(h.headers[UPLOAD_OFFSET_HEADER]);
    assert.equal(held, 6 * MiB);
  });
  first = await put(url, developer, held, bytes.subarray(held));
  assert.equal(first.status, 204);
  assert.equal(first.offset, bytes.length);
  const version = await dev.commitPush(ticket.uploadId);
  assert.equal(version.digest, sha256(bytes));
  assert.equal(version.version, 1);
  // Its piece manifest was saved at the commit.
  const manifest = await leader.coordinator.manifests.get(version.digest, bytes.length);
  assert.equal(manifest.hashes.length, 32 * 2);
  assert.equal(decodeManifest((await leader.coordinator['artifacts'].blobs.readPieces(version.digest))!).digest, version.digest);

  // A declared digest the bytes do not match: nothing is stored, no version, no temporary data.
  const lie = randomBytes(1000);
  const liar = await dev.beginPush('model', { ...header, name: 'liar', sizeBytes: lie.length, digest: `sha256:${'1'.repeat(64)}` }, '');
  assert.equal((await put(liar.url, developer, 0, lie)).status, 204);
  await assert.rejects(dev.commitPush(liar.uploadId), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(dev.getArtifact('model', 'liar'), { code: 'NOT_FOUND' });
  await assert.rejects(dev.commitPush(liar.uploadId), { code: 'NOT_FOUND' });
  const blobs = leader.coordinator['artifacts'].blobs;
  assert.equal(await blobs.stat(sha256(lie)), undefined);
  assert.deepEqual(await readdir(path.join(leader.dir, 'blobs', 'tmp')).catch(() => []), []);

  // A bounded number of unfinished uploads per caller.
  const tickets = [];
  for (let i = 0; i < 8; i++) tickets.push(await dev.beginPush('model', { ...header, name: `n${i}` }, ''));
  await assert.rejects(dev.beginPush('model', { ...header, name: 'n9' }, ''), { code: 'RESOURCE_EXHAUSTED' });
  // A consumer may not push at all.
  await assert.rejects(client(await token('consumer', 'alpha')).beginPush('model', header, ''), { code: 'PERMISSION_DENIED' });
});

test('a PUT refused before its body is read: the pushing client gets the answer, not a reset, and the connection closes', async (t) => {
  // The coordinator answers at once and reads nothing of the body; the client is still sending
  // its 48 MiB. Closing at once would reset the connection under the answer (Node 22 lost it
  // that way): the coordinator drops what arrives for a moment first.
  const { client, token } = await setUp(t);
  const developer = await token('developer', 'alpha');
  const stranger = await token('developer', 'beta');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-refused-put-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'model.bin');
  writeFileSync(file, randomBytes(48 * MiB));
  const header: PushHeader = { name: 'refused', format: 'onnx', directory: false, sizeBytes: 48 * MiB, digest: '', metadata: { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {} } };
  for (let round = 0; round < 5; round += 1) {
    let sent = 0;
    const started = Date.now();
    // BeginPush as the developer; the PUT with another tenant's token: that upload is not theirs (404).
    const push = pushResumable({
      client: client(developer),
      kind: 'model',
      header,
      uploadKey: `refused-${round}`,
      open: () => {
        throw new Error('the file is read by the PUT');
      },
      file,
      token: stranger,
      onProgress: (bytes) => (sent = bytes),
    });
    await assert.rejects(push, (err: unknown) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.match(err.message, /upload [0-9a-f]+ not found; begin the push again/);
      return true;
    });
    assert.ok(Date.now() - started < 5_000, `round ${round}: ${Date.now() - started} ms`);
    assert.ok(sent < 48 * MiB, `round ${round}: the whole file went after the refusal`);
  }
});
