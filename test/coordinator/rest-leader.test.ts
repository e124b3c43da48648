// The REST API with real coordinator processes: a follower answers what any coordinator may
// (cluster status) and redirects the rest to the leader's HTTP address (307, same path), which
// then answers it; and a model goes up and comes back down through the REST routes and the
// store's byte paths (BeginPush, PUT /v1/uploads/<id>, CommitPush, /v1/blobs/<digest>).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { startCoordinatorPair } from '../helpers/coordinator-pair.js';
import { startLeader } from '../helpers/coordinator.js';
import { rest } from '../helpers/rest.js';

test('a follower redirects writes and leader-only reads to the leader (307 + Location), and answers cluster status itself', async (t) => {
  const pair = await startCoordinatorPair(t);
  const { leader, follower } = await pair.roles();
  const token = pair.tokens.admin;
  const followerBase = `http://${follower.http}`;
  // The follower learns the leader's HTTP address from the election.
  let moved = await rest(followerBase, 'POST', '/api/v1/tenants?x=1', { token, body: { name: 'redirected' } });
  for (let i = 0; i < 50 && moved.status === 503; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    moved = await rest(followerBase, 'POST', '/api/v1/tenants?x=1', { token, body: { name: 'redirected' } });
  }
  assert.equal(moved.status, 307, moved.text);
  assert.equal(moved.headers.get('location'), `http://${leader.http}/api/v1/tenants?x=1`);
  // Nothing was done by the follower; the leader does it when asked at the Location.
  const created = await rest('', 'POST', moved.headers.get('location')!, { token, body: { name: 'redirected' } });
  assert.equal(created.status, 201, created.text);
  assert.equal((created.json as { name: string }).name, 'redirected');
  // Reads that need the leader's state are redirected too; cluster status is answered here.
  const nodes = await rest(followerBase, 'GET', '/api/v1/nodes', { token });
  assert.equal(nodes.status, 307);
  assert.equal(nodes.headers.get('location'), `http://${leader.http}/api/v1/nodes`);
  // A caller without a valid token is refused, not told where the leader is.
  const anonymous = await rest(followerBase, 'POST', '/api/v1/tenants', { body: { name: 'nobody' } });
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.headers.get('location'), null);
  const status = await rest(followerBase, 'GET', '/api/v1/cluster', { token });
  assert.equal(status.status, 200);
  assert.equal((status.json as { leader: string }).leader, leader.grpc);
});

test('a model version goes up and comes back through the REST routes and the blob byte paths', async (t) => {
  const { coordinator, admin } = await startLeader(t);
  const base = `http://${coordinator.httpAddress}`;
  const bytes = Buffer.from('onnx bytes pushed over REST');
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const begun = await rest(base, 'POST', '/api/v1/models/sentiment/uploads', { token: admin, body: { format: 'onnx', sizeBytes: bytes.length, digest, metadata: { type: 'classification', labels: { team: 'nlp' } } } });
  assert.equal(begun.status, 201, begun.text);
  const ticket = begun.json as { uploadId: string; uploadUrl: string; offset: number };
  assert.equal(ticket.offset, 0);
  const put = await fetch(ticket.uploadUrl, { method: 'PUT', headers: { authorization: `Bearer ${admin}`, 'upload-offset': '0', 'content-type': 'application/octet-stream' }, body: bytes });
  assert.ok(put.ok, await put.text());
  const committed = await rest(base, 'POST', '/api/v1/models/sentiment/versions', { token: admin, body: { upload: ticket.uploadId } });
  assert.equal(committed.status, 201, committed.text);
  assert.deepEqual((({ name, version, digest: d, sizeBytes }) => ({ name, version, digest: d, sizeBytes }))(committed.json as { name: string; version: number; digest: string; sizeBytes: number }), { name: 'sentiment', version: 1, digest, sizeBytes: bytes.length });
  assert.equal((committed.json as { metadata: { type: string } }).metadata.type, 'classification');

  const aliased = await rest(base, 'PUT', '/api/v1/models/sentiment/aliases/production', { token: admin, body: { version: 1 } });
  assert.equal(aliased.status, 200, aliased.text);
  assert.deepEqual((aliased.json as { aliases: Record<string, number> }).aliases, { production: 1 });
  const byAlias = await rest(base, 'GET', '/api/v1/models/sentiment/versions/production', { token: admin });
  assert.equal((byAlias.json as { digest: string }).digest, digest);
  const listed = await rest(base, 'GET', '/api/v1/models', { token: admin });
  assert.deepEqual((listed.json as { items: Array<{ name: string; latestVersion: number }> }).items.map((a) => [a.name, a.latestVersion]), [['sentiment', 1]]);

  const content = await rest(base, 'GET', '/api/v1/models/sentiment/versions/1/content', { token: admin });
  assert.equal(content.status, 307);
  assert.equal(content.headers.get('location'), `/v1/blobs/${digest}`);
  const blob = await fetch(`${base}${content.headers.get('location')}`, { headers: { authorization: `Bearer ${admin}` } });
  assert.equal(blob.status, 200);
  assert.deepEqual(Buffer.from(await blob.arrayBuffer()), bytes);
  // A version that is not there.
  assert.equal((await rest(base, 'GET', '/api/v1/models/sentiment/versions/9/content', { token: admin })).status, 404);
});
