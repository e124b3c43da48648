// A node's identity is bound to its name: a join token admits a new node name only, never an
// existing one (connected or not) until an admin removes it with `nodes rm`; join tokens expire
// and can be single-use; revoking a node's credential, or the join token it came in with, ends
// its session at once; a node credential downloads only the blobs its own node needs. Real
// coordinator (SQLite store), scripted agents on real sessions.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { Deployment } from '../../shared/proto.js';
import { eventually, until } from '../helpers/eventually.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';
import { callServerStream, method, openSession } from '../helpers/raw-grpc.js';
import { workloadCluster, type WorkloadCluster } from '../helpers/workload-cluster.js';

async function pushModel(c: WorkloadCluster, name: string, content: string): Promise<string> {
  const body = Buffer.from(content);
  await c.client.push('model', { name, format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

const deployment = (name: string, replicas: number) => ({
  spec: { name, model: 'm', image: 'mlfleet/runtime:0.1.0', replicas, maxPerNode: 1, resources: { cpuMillis: 500, memoryBytes: 2 ** 28 } },
});

async function credentialsOf(c: WorkloadCluster, node: string) {
  return (await c.client.listTokens({ tenant: '', includeRevoked: true })).tokens.filter((tk) => tk.role === 'node' && tk.node === node);
}

async function joinToken(c: WorkloadCluster, extra: { ttlMs?: number; singleUse?: boolean } = {}): Promise<{ id: string; token: string }> {
  const created = await c.client.createToken({ tenant: '', role: 'join', description: 'test join', ttlMs: extra.ttlMs ?? 0, singleUse: extra.singleUse ?? false });
  return { id: created.info!.id, token: created.token };
}

/** Ms until the agent's session is ended by the leader (fails after `limitMs`). */
async function endedWithin(agent: FakeAgent, limitMs: number): Promise<number> {
  const start = Date.now();
  await until(`${agent.name}'s session ended`, () => agent.endedWith !== undefined, limitMs);
  return Date.now() - start;
}

function download(c: WorkloadCluster, token: string | undefined, digest: string) {
  return callServerStream(c.address, method('ModelService.Download'), { digest }, token);
}

test("a join token under a connected node's name is refused and changes nothing: the real node keeps its credential, session and work", async (t) => {
  const c = await workloadCluster(t);
  await pushModel(c, 'm', 'model one');
  const real = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', deployment('web', 1));
  await until('placed on node-a', () => real.desired.length === 1);
  const credentialBefore = await credentialsOf(c, 'node-a');

  const impostor = await openSession(c.address, c.join, 'node-a');
  assert.equal(impostor.answer, 'ALREADY_EXISTS');
  assert.equal(impostor.credential, undefined);
  assert.match(impostor.details ?? '', /node "node-a" already exists and a join token admits new nodes only/);
  assert.match(impostor.details ?? '', /mlfleetctl nodes rm node-a/);

  // Nothing changed: the credential stands, the session was not replaced, the work stays put.
  assert.deepEqual(await credentialsOf(c, 'node-a'), credentialBefore);
  assert.equal(credentialBefore.length, 1);
  assert.equal(credentialBefore[0]!.revokedAtMs, 0);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(real.endedWith, undefined, 'the real node keeps its session');
  real.reportAll('ready');
  await eventually('the real replica serves', 5_000, async () => ((await c.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' })).readyReplicas === 1 ? true : undefined));
  const endpoint = (await c.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' })).allocations[0]!.endpoint;
  assert.match(endpoint, /^node-a:/);
  // Its session still carries new work: a scale-up lands on it (one per node, and it is the only one).
  const b = await c.agent('node-b');
  await c.call('DeploymentService', 'ScaleDeployment', { name: 'web', replicas: 2 });
  await until('the second replica on node-b', () => b.desired.length === 1);
  assert.equal(real.desired.length, 1);
  assert.equal((await c.client.getNode('node-a')).status, 'ready');
});

test("a join under an existing, disconnected node's name is refused until nodes rm; rm revokes its credential, replaces its work and frees the name", async (t) => {
  const c = await workloadCluster(t);
  await pushModel(c, 'm', 'model one');
  const a = await c.agent('node-a');
  const b = await c.agent('node-b');
  await c.call('DeploymentService', 'ApplyDeployment', deployment('web', 1));
  await until('placed', () => a.desired.length + b.desired.length === 1);
  const [holder, other] = a.desired.length === 1 ? [a, b] : [b, a];
  holder.reportAll('ready');
  holder.disconnect();

  const refused = await openSession(c.address, c.join, holder.name);
  assert.equal(refused.answer, 'ALREADY_EXISTS');
  assert.match(refused.details ?? '', new RegExp(`mlfleetctl nodes rm ${holder.name}`));

  const removed = await c.client.removeNode(holder.name);
  assert.equal(removed.name, holder.name);
  await assert.rejects(c.client.getNode(holder.name), { code: 'NOT_FOUND' });
  const credentials = await credentialsOf(c, holder.name);
  assert.equal(credentials.length, 1);
  assert.ok(credentials[0]!.revokedAtMs > 0, 'the credential is revoked');
  assert.equal((await openSession(c.address, holder.credential, holder.name)).answer, 'UNAUTHENTICATED');
  // Its replica is replaced on the other node, as for a node that went down.
  await until('replaced on the other node', () => other.desired.length === 1, 10_000);
  await assert.rejects(c.client.removeNode(holder.name), { code: 'NOT_FOUND' });

  // The name can join again, and gets a new credential.
  const again = await openSession(c.address, c.join, holder.name);
  assert.equal(again.answer, 'OK', again.details);
  assert.ok(again.credential && again.credential !== holder.credential);
});

test('nodes rm of a connected node ends its session at once', async (t) => {
  const c = await workloadCluster(t);
  const a = await c.agent('node-a');
  await c.client.removeNode('node-a');
  assert.ok((await endedWithin(a, 2_000)) < 2_000);
  assert.match(a.endedWith!.details, /token [0-9a-f]+ was revoked/);
  assert.equal((await openSession(c.address, a.credential, 'node-a')).answer, 'UNAUTHENTICATED');
});

test('mlfleetctl nodes rm removes a node as an admin; a developer is refused and nothing changes', async (t) => {
  const c = await workloadCluster(t);
  const a = await c.agent('node-a');
  const developer = (await c.client.createToken({ tenant: 'default', role: 'developer', description: '', ttlMs: 0, singleUse: false })).token;

  const refused = await mlfleetctl(t, ['--coordinator', c.address, '--token', developer, 'nodes', 'rm', 'node-a']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /PERMISSION_DENIED|not allowed|may not/i);
  assert.equal((await c.client.getNode('node-a')).status, 'ready');
  assert.equal(a.endedWith, undefined);

  const run = await mlfleetctl(t, ['--coordinator', c.address, '--token', c.admin, 'nodes', 'rm', 'node-a']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'node node-a removed: its credentials are revoked and its work is being moved elsewhere\n');
  await endedWithin(a, 2_000);
  const show = await mlfleetctl(t, ['--coordinator', c.address, '--token', c.admin, 'nodes', 'show', 'node-a']);
  assert.equal(show.code, 1);
  assert.match(show.stderr, /node "node-a" not found/);
  const again = await mlfleetctl(t, ['--coordinator', c.address, '--token', c.admin, 'nodes', 'rm', 'node-a', '-o', 'json']);
  assert.equal(again.code, 1);
  const usage = await mlfleetctl(t, ['--coordinator', c.address, '--token', c.admin, 'nodes', 'rm']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /missing required argument 'name'/);
  const audit = (await c.client.listAuditEvents({ tenant: '', limit: 50, beforeId: 0 })).events.filter((e) => e.method === 'NodeService.RemoveNode');
  assert.deepEqual(audit.map((e) => [e.role, e.target, e.result]).sort(), [
    ['admin', 'node/node-a', 'NOT_FOUND'],
    ['admin', 'node/node-a', 'OK'],
    ['developer', 'node/node-a', 'PERMISSION_DENIED'],
  ]);
});

test("revoking a node's credential ends its session within 2 s, even the first one (opened with the join token), and it cannot come back", async (t) => {
  const c = await workloadCluster(t);
  const a = await c.agent('node-a');
  const [credential] = await credentialsOf(c, 'node-a');
  assert.equal(credential!.createdBy.length > 0, true, 'the credential records the join token that admitted it');
  await c.client.revokeToken(credential!.id);
  assert.ok((await endedWithin(a, 2_000)) < 2_000);
  assert.match(a.endedWith!.details, /revoked/);
  assert.equal((await openSession(c.address, a.credential, 'node-a')).answer, 'UNAUTHENTICATED');
  assert.equal((await openSession(c.address, c.join, 'node-a')).answer, 'ALREADY_EXISTS');
  // The join token itself is still good for new nodes.
  assert.equal((await openSession(c.address, c.join, 'node-new')).answer, 'OK');
});

test('revoking the join token a node came in with ends its session within 2 s and revokes the credentials it admitted', async (t) => {
  const c = await workloadCluster(t);
  const join = await joinToken(c);
  // node-a is still on its first session (authenticated by the join token); node-b reconnected with its credential.
  const a = await FakeAgent.start(t, 'node-a', c.address, join.token);
  const b = await FakeAgent.start(t, 'node-b', c.address, join.token);
  b.disconnect();
  await b.connect();
  const bystander = await c.agent('node-c');
  const [credentialA] = await credentialsOf(c, 'node-a');
  assert.equal(credentialA!.createdBy, join.id, 'the credential records the join token that admitted it');

  await c.client.revokeToken(join.id);
  const [tookA, tookB] = await Promise.all([endedWithin(a, 2_000), endedWithin(b, 2_000)]);
  assert.ok(tookA < 2_000 && tookB < 2_000);
  for (const node of ['node-a', 'node-b']) {
    const [credential] = await credentialsOf(c, node);
    assert.ok(credential!.revokedAtMs > 0, `${node}'s credential is revoked with its join token`);
  }
  assert.equal((await openSession(c.address, a.credential, 'node-a')).answer, 'UNAUTHENTICATED');
  assert.equal((await openSession(c.address, b.credential, 'node-b')).answer, 'UNAUTHENTICATED');
  assert.equal((await openSession(c.address, join.token, 'node-d')).answer, 'UNAUTHENTICATED');
  // A node admitted by another join token is untouched.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(bystander.endedWith, undefined);
  assert.equal((await credentialsOf(c, 'node-c'))[0]!.revokedAtMs, 0);
});

test('an expired join token admits nobody and revokes nothing; a single-use one admits exactly one node, even when two race', async (t) => {
  const c = await workloadCluster(t);
  const expiring = await joinToken(c, { ttlMs: 300 });
  const early = await FakeAgent.start(t, 'node-early', c.address, expiring.token);
  await new Promise((resolve) => setTimeout(resolve, 400));
  const late = await openSession(c.address, expiring.token, 'node-late');
  assert.equal(late.answer, 'UNAUTHENTICATED');
  assert.match(late.details ?? '', /has expired/);
  // Expiry is rotation: the node it admitted keeps its credential and can reconnect.
  assert.equal((await credentialsOf(c, 'node-early'))[0]!.revokedAtMs, 0);
  early.disconnect();
  await early.connect();

  const once = await joinToken(c, { singleUse: true });
  const raced = await Promise.all([openSession(c.address, once.token, 'node-x'), openSession(c.address, once.token, 'node-y')]);
  assert.deepEqual(raced.map((r) => r.answer).sort(), ['OK', 'UNAUTHENTICATED']);
  const winner = raced[0]!.answer === 'OK' ? 'node-x' : 'node-y';
  assert.match(raced.find((r) => r.answer !== 'OK')!.details ?? '', /single-use/);
  const used = (await c.client.listTokens({ tenant: '', includeRevoked: true })).tokens.find((tk) => tk.id === once.id)!;
  assert.equal(used.singleUse, true);
  assert.ok(used.usedAtMs > 0);
  assert.equal(used.usedBy, winner);
  assert.equal((await openSession(c.address, once.token, 'node-z')).answer, 'UNAUTHENTICATED');
  assert.deepEqual((await c.client.listNodes({})).nodes.map((n) => n.name).filter((n) => n !== 'node-early'), [winner]);

  // A single-use token refused for a taken name is not used up.
  const spare = await joinToken(c, { singleUse: true });
  assert.equal((await openSession(c.address, spare.token, winner)).answer, 'ALREADY_EXISTS');
  assert.equal((await openSession(c.address, spare.token, 'node-w')).answer, 'OK');
  await assert.rejects(c.client.createToken({ tenant: 'default', role: 'developer', description: '', ttlMs: 0, singleUse: true }), { code: 'INVALID_ARGUMENT', message: /singleUse: applies to join tokens only/ });
});

test("a node credential downloads only the blobs its node's allocations use or it was told to prefetch; anything else is NOT_FOUND", async (t) => {
  const c = await workloadCluster(t);
  const served = await pushModel(c, 'm', 'model one');
  const other = await pushModel(c, 'other', 'another model');
  const a = await c.agent('node-a');
  const b = await c.agent('node-b', { cpuMillis: 100 }); // too small for the replica
  await c.call('DeploymentService', 'ApplyDeployment', deployment('web', 1));
  await until('placed on node-a', () => a.desired.length === 1);

  const own = await download(c, a.credential, served);
  assert.equal(own.answer, 'OK', own.details);
  const notUsed = await download(c, a.credential, other);
  assert.equal(notUsed.answer, 'NOT_FOUND');
  assert.equal(notUsed.details, `no model version has content ${other}`);
  const missing = await download(c, a.credential, `sha256:${'0'.repeat(64)}`);
  assert.equal(missing.details, `no model version has content sha256:${'0'.repeat(64)}`, 'exactly like a blob no version has');
  assert.equal((await download(c, b.credential, served)).answer, 'NOT_FOUND', "another node's blob");

  await c.client.prefetchModel('node-b', 'other');
  assert.equal((await download(c, b.credential, other)).answer, 'OK');
  assert.equal((await download(c, a.credential, other)).answer, 'NOT_FOUND');
});
