// Copies of blobs between coordinators (coordinator/blobs/blob-peers.ts), in process: two
// filesystem blob stores, a real gRPC server for one of them and a SQLite store where they
// register. What a peer fetches is verified; a wrong secret or a token is refused; bytes sent
// under another digest are refused and leave nothing.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { BlobPeers, loadPeerSecret } from '../../coordinator/blobs/blob-peers.js';
import { FsBlobStore } from '../../coordinator/blobs/fs-blob-store.js';
import { withMalformedRequests } from '../../coordinator/api/rpc.js';
import { keys } from '../../shared/keys.js';
import { silentLogger } from '../../shared/log.js';
import { mlfleetV1 } from '../../shared/proto.js';
import { openStore } from '../../shared/store/open-store.js';
import type { Store } from '../../shared/store/store.js';
import { tempDir } from '../helpers/processes.js';

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

async function peer(t: TestContext, store: Store, id: string, secret: string, dir: string, serve: boolean) {
  const blobs = await FsBlobStore.create({ root: `${dir}/${id}` });
  t.after(() => blobs.close());
  const peers = new BlobPeers({ store, blobs, selfId: id, secret, tls: undefined, log: silentLogger(), intervalMs: 60_000 });
  t.after(() => peers.close());
  let address = '';
  if (serve) {
    const server = new grpc.Server();
    server.addService(withMalformedRequests(mlfleetV1().BlobPeerService.service), peers.service());
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    t.after(() => server.forceShutdown());
    address = `127.0.0.1:${port}`;
    await store.put(keys.coordinator(id), JSON.stringify({ id, address }));
  }
  return { blobs, peers, address };
}

async function put(blobs: FsBlobStore, bytes: Buffer): Promise<string> {
  const writer = await blobs.create();
  await writer.write(bytes);
  return (await writer.commit()).digest;
}

function fetchRaw(address: string, digest: string, authorization: string): Promise<grpc.ServiceError | null> {
  const client = new (mlfleetV1().BlobPeerService)(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('authorization', authorization);
  return new Promise((resolve) => {
    const call = client.fetch({ digest }, metadata);
    call.on('data', () => undefined);
    call.on('error', (err: grpc.ServiceError) => (client.close(), resolve(err)));
    call.on('end', () => (client.close(), resolve(null)));
  });
}

test('a coordinator fetches what it lacks from a peer, verified; other callers and other bytes are refused', async (t) => {
  const dir = tempDir(t);
  const store = await openStore(`sqlite:${dir}/store.db`);
  t.after(() => store.close());
  const secret = await loadPeerSecret(store);
  assert.equal(await loadPeerSecret(store), secret, 'one secret per store');
  assert.ok(secret.length >= 40);

  const a = await peer(t, store, 'a', secret, dir, true);
  const b = await peer(t, store, 'b', secret, dir, false);
  const body = randomBytes(700_000);
  const digest = await put(a.blobs, body);
  await store.put(keys.artifact('model', 't', 'm'), JSON.stringify({ kind: 'model', tenant: 't', name: 'm', versions: [{ version: 1, digest, sizeBytes: body.length }], aliases: {}, lastVersion: 1, updatedAtMs: 0 }));

  // b converges: one pass fetches the one blob it lacks, byte for byte; a second finds nothing to do.
  assert.equal(await b.peers.pass(), 1);
  const chunks: Buffer[] = [];
  for await (const chunk of await b.blobs.read(digest)) chunks.push(chunk as Buffer);
  assert.equal(sha256(Buffer.concat(chunks)), digest);
  assert.equal(await b.peers.pass(), 0);

  // A blob no peer has is unavailable, and nothing is left behind.
  const absent = sha256(Buffer.from('nobody has this'));
  await assert.rejects(b.peers.ensureLocal(absent, 15), (err: Error & { code?: string }) => err.code === 'UNAVAILABLE');
  assert.equal(await b.blobs.stat(absent), undefined);

  // Another secret, a user's token, or none: UNAUTHENTICATED.
  for (const authorization of ['Bearer not-the-secret', 'Bearer mlf_0123456789abcdef', '']) {
    assert.equal((await fetchRaw(a.address, digest, authorization))?.code, grpc.status.UNAUTHENTICATED, authorization);
  }
  assert.equal(await fetchRaw(a.address, digest, `Bearer ${secret}`), null);

  // A peer that sends other bytes than the digest it names: refused by a, which keeps nothing.
  const other = randomBytes(1_000);
  const otherDigest = await put(b.blobs, other);
  const claimed = sha256(Buffer.from('what it claims to be'));
  // The forger reads `otherDigest`'s bytes but names `claimed`: the copy is refused.
  const sneaky = Object.create(b.blobs) as FsBlobStore;
  sneaky.read = (d: string, offset?: number) => b.blobs.read(d === claimed ? otherDigest : d, offset);
  const forging = new BlobPeers({ store, blobs: sneaky, selfId: 'b', secret, tls: undefined, log: silentLogger(), intervalMs: 60_000 });
  t.after(() => forging.close());
  await assert.rejects(forging.replicate(claimed, other.length), (err: Error & { code?: string }) => err.code === 'UNAVAILABLE');
  assert.equal(await a.blobs.stat(claimed), undefined);
  assert.deepEqual(readdirSync(`${dir}/a/tmp`), [], 'no temporary file is left');

  // An honest copy goes through, and a copy of what a peer already holds is answered at once.
  await b.peers.replicate(otherDigest, other.length);
  assert.deepEqual(await a.blobs.stat(otherDigest), { sizeBytes: other.length });
  await b.peers.replicate(digest, body.length);
});
