// Coordinator processes on a real etcd with the default filesystem blob store: a version is
// recorded only once a second coordinator holds its bytes, a coordinator started on an empty
// data dir fills itself from its peers, a download of a blob the leader lost fetches it from a
// peer, a push that no registered peer takes is refused and records nothing, and a coordinator
// alone records with its one copy. (kill -9 of the leader under pushes: test/faults/blob-replication.test.ts.)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { keys } from '../../shared/keys.js';
import { openStore } from '../../shared/store/open-store.js';
import { blobFile, holds, pulledDigest, pushRandom, sha256, type Pushed } from '../helpers/blob-copies.js';
import { startEtcd } from '../helpers/etcd.js';
import { eventually } from '../helpers/eventually.js';
import { bootstrapTokens, startCoordinator, tempDir, type StartedCoordinator } from '../helpers/processes.js';

test('every acknowledged push is on two coordinators, and every coordinator converges to every blob', async (t) => {
  const etcd = await startEtcd(t, { dedicated: true });
  const dir = tempDir(t);
  const storeSpec = `etcd:${etcd.endpoints.join(',')}`;
  const dataDir = (name: string) => `${dir}/${name}`;
  const start = (name: string) => startCoordinator(t, name, ['--store', storeSpec, '--data-dir', dataDir(name), '--election-ttl', '1s']);
  const coordinators: StartedCoordinator[] = [await start('c1'), await start('c2')];
  const tokens = await bootstrapTokens(['c1', 'c2'].map(dataDir));
  const client = new CoordinatorClient(coordinators.map((c) => c.grpc), { deadlineMs: 10_000, token: tokens.admin });
  t.after(() => client.close());
  const store = await openStore(storeSpec);
  t.after(() => store.close());

  // Each push, when acknowledged, is already on both coordinators (the sync loop runs every 5 s:
  // a copy there at once is the push's own).
  const pushed: Pushed[] = [];
  for (let i = 0; i < 6; i++) {
    const one = await pushRandom(client, `m${i % 3}`, 1_000 + i * 7_919);
    assert.ok(holds(dataDir('c1'), one.digest) && holds(dataDir('c2'), one.digest), `version ${one.name}:${one.version} is on both coordinators when acknowledged`);
    pushed.push(one);
  }

  // A third coordinator on an empty data dir fills itself from its peers.
  const startedAt = Date.now();
  coordinators.push(await start('c3'));
  await eventually('c3 holds every blob', 15_000, async () => (pushed.every((p) => holds(dataDir('c3'), p.digest)) ? true : undefined));
  t.diagnostic(`an empty coordinator held all ${pushed.length} blobs ${Date.now() - startedAt} ms after it was started`);

  // The leader loses a blob file: the download fetches it from a peer instead of failing.
  const leaderAddress = (await client.clusterStatus()).leader;
  const leader = coordinators.find((c) => c.grpc === leaderAddress)!;
  assert.ok(leader, 'the leader is one of ours');
  const lost = pushed[0]!;
  rmSync(blobFile(dataDir(leader.name), lost.digest));
  assert.equal(await pulledDigest(client, lost.name, lost.version), lost.digest);
  assert.ok(holds(dataDir(leader.name), lost.digest), 'the leader keeps the copy it fetched');

  // A peer registered but unreachable, and the live ones gone: the push is refused and leaves nothing.
  await store.put(keys.coordinator('ghost'), JSON.stringify({ id: 'ghost', address: '127.0.0.1:1' }));
  for (const follower of coordinators.filter((c) => c !== leader)) await follower.kill('SIGTERM');
  await eventually('only the leader and the ghost are registered', 10_000, async () => ((await store.range(keys.coordinatorsPrefix)).kvs.length === 2 ? true : undefined));
  const refusedBody = randomBytes(4_096);
  await assert.rejects(
    client.push('model', { name: 'refused', format: 'onnx', sizeBytes: refusedBody.length }, Readable.from([refusedBody])),
    (err: Error & { code?: string }) => err.code === 'UNAVAILABLE' && /could not be copied to a second coordinator/.test(err.message),
  );
  await assert.rejects(client.getArtifact('model', 'refused'), (err: Error & { code?: string }) => err.code === 'NOT_FOUND');
  assert.equal(holds(dataDir(leader.name), sha256(refusedBody)), false, 'the refused bytes are not kept');

  // Alone (the ghost gone): recorded with its one copy.
  await store.delete(keys.coordinator('ghost'));
  const alone = await pushRandom(client, 'refused', 0, refusedBody);
  assert.equal(alone.version, 1);
  assert.equal(await pulledDigest(client, 'refused', 1), sha256(refusedBody));
});
