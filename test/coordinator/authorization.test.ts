// The authorization matrix (test/helpers/authorization-matrix.ts): every RPC of the proto's service list × every kind of caller (no,
// invalid or revoked token; admin, developer, consumer; agent join token and node credential)
// × the caller's own tenant or another's. Each answer must be exactly the expected one. The
// expectations below are written independently of coordinator/auth/rules.ts, and an RPC with
// no expectation fails the test, so a new RPC cannot ship without deciding who may call it.
// The same run's logs are then searched for every secret it used.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { CoordinatorClient } from '../../shared/client.js';
import { mlfleetV1 } from '../../shared/proto.js';
import { callClientStream, callServerStream, callUnary, methods, openSession, type Answer } from '../helpers/raw-grpc.js';
import { CALLERS, deploymentSpec, EXPECT, expected, jobSpec, PAYLOAD_DIGEST, pushAs, pushMessages, seedCluster, seedWorkload, setUp, stackSpec, type Cluster, type Scope } from '../helpers/authorization-matrix.js';

async function artifactRequest(cluster: Cluster, method: string, scope: Scope): Promise<unknown> {
  const [service, rpc] = method.split('.') as [string, string];
  if (service !== 'ModelService' && service !== 'DatasetService') return undefined;
  const tenant = scope === 'own' ? 'alpha' : 'beta';
  const seeded = `seed-${tenant}`;
  switch (rpc) {
    case 'Push':
      return pushMessages(`pushed-${cluster.fresh()}`, service);
    case 'ListArtifacts':
      return { tenant };
    case 'GetArtifact':
      return { name: seeded, tenant };
    case 'Resolve':
      return { ref: `${seeded}:1`, tenant };
    case 'Download':
      return { ref: `${seeded}:1`, tenant };
    case 'SetAlias':
      return { name: seeded, alias: 'production', version: 1, tenant };
    case 'SetRetention':
      // Keeps more versions than the seed has: allowed or not, nothing is removed.
      return { name: seeded, keep: 10_000, tenant };
    case 'DeleteVersion': {
      const name = `doomed-${cluster.fresh()}`;
      return { name, version: await pushAs(cluster, service, scope, name), tenant };
    }
    default:
      return undefined;
  }
}

/** A valid request for each RPC, acting on the caller's own tenant or another's, on fresh objects. */
async function requestFor(cluster: Cluster, method: string, scope: Scope): Promise<unknown> {
  const tenant = scope === 'own' ? 'alpha' : 'beta';
  switch (method) {
    case 'ClusterService.GetStatus':
    case 'NodeService.ListNodes':
    case 'TenantService.ListTenants':
    case 'TokenService.ListTokens':
      return {};
    case 'NodeService.GetNode':
    case 'NodeService.CordonNode':
    case 'NodeService.UncordonNode':
    case 'NodeService.DrainNode':
      return { name: 'node-x' };
    case 'NodeService.RemoveNode': {
      // A node of its own to remove, so each allowed call succeeds and nothing else is disturbed.
      const name = `gone-${cluster.fresh()}`;
      assert.equal((await openSession(cluster.coordinator.address, cluster.tokens.join, name)).answer, 'OK');
      return { name };
    }
    case 'NodeService.PrefetchModel':
      return { node: 'node-p', ref: `seed-${tenant}:1`, tenant };
    case 'TenantService.CreateTenant':
      return { name: `${tenant}-${cluster.fresh()}` };
    case 'TenantService.GetTenant':
      return { name: tenant };
    case 'TenantService.SetTenantQuota':
      return { name: tenant, quota: { gpus: 4 } };
    case 'TokenService.CreateToken':
      return { tenant, role: 'consumer' };
    case 'TokenService.RevokeToken': {
      const { info } = await cluster.admin.createToken({ tenant, role: 'consumer', description: 'to revoke', ttlMs: 0 });
      return { id: info!.id };
    }
    case 'EventService.ListAuditEvents':
    case 'DeploymentService.ListDeployments':
    case 'JobService.ListJobs':
    case 'AllocationService.ListAllocations':
      return { tenant };
    case 'EventService.WatchEvents':
      return { tenant, replay: 5 };
    case 'DeploymentService.ApplyDeployment':
      return { spec: deploymentSpec(`d-${cluster.fresh()}`, tenant), tenant };
    case 'DeploymentService.GetDeployment':
    case 'DeploymentService.PromoteDeployment':
    case 'DeploymentService.RollbackDeployment':
      return { name: 'seed', tenant };
    case 'DeploymentService.ScaleDeployment':
      return { name: 'seed', replicas: 0, tenant };
    case 'DeploymentService.DeleteDeployment':
      return { name: await seedWorkload(cluster, 'DeploymentService.ApplyDeployment', scope, `d-${cluster.fresh()}`), tenant };
    case 'JobService.RunJob':
      return { spec: jobSpec(`j-${cluster.fresh()}`), tenant };
    case 'JobService.GetJob':
      return { name: 'seed', tenant };
    case 'JobService.CancelJob':
      return { name: await seedWorkload(cluster, 'JobService.RunJob', scope, `j-${cluster.fresh()}`), tenant };
    case 'AllocationService.GetLogs':
      return { allocation: 'ffffffffffffffff' };
    case 'StackService.ListStacks':
      return {};
    case 'StackService.GetStack':
      return { name: 'onnx' };
    case 'StackService.RegisterStack':
      return { stack: stackSpec(`s-${cluster.fresh()}`) };
    case 'StackService.DeleteStack': {
      const name = `s-${cluster.fresh()}`;
      await cluster.admin.registerStack(stackSpec(name));
      return { name };
    }
    case 'SourceService.CreateSource':
      return { spec: { name: `src-${cluster.fresh()}`, model: 'm', url: 's3://bucket-x/p/?endpoint=http%3A%2F%2F127.0.0.1%3A9', alias: '', everyMs: 600_000, layout: 'files', credentials: '' }, tenant };
    case 'SourceService.ListSources':
      return { tenant };
    case 'SourceService.GetSource':
    case 'SourceService.DeleteSource':
    case 'SourceService.SyncSource':
      return { name: 'missing', tenant };
    case 'SelectionService.Select':
      return { type: 'classification', tenant };
    case 'DeliveryService.Locate':
      return { kind: 'model', ref: `seed-${tenant}:1`, tenant };
    case 'DeliveryService.BeginPush':
      return { kind: 'model', header: { name: `up-${cluster.fresh()}`, format: 'onnx', sizeBytes: 3 }, uploadKey: '' };
    case 'DeliveryService.CommitPush':
      return { uploadId: 'f'.repeat(32) };
    case 'BlobPeerService.Fetch':
      return { digest: PAYLOAD_DIGEST };
    case 'BlobPeerService.Store':
      return [{ header: { digest: PAYLOAD_DIGEST, sizeBytes: 1 } }, { chunk: Buffer.from('x') }];
    default:
      return artifactRequest(cluster, method, scope);
  }
}

test('every RPC answers every kind of caller exactly as the authorization rules say', async (t) => {
  const cluster = await setUp(t);
  await seedCluster(cluster);
  const all = methods();
  const missing = all.filter((m) => !EXPECT[m.name]).map((m) => m.name);
  assert.deepEqual(missing, [], 'every RPC has an expectation (add a rule in coordinator/auth/rules.ts and one here)');
  const mismatches: string[] = [];
  let cases = 0;
  for (const method of all) {
    for (const caller of CALLERS) {
      for (const scope of ['own', 'other'] as const) {
        const want = expected(method.name, caller, scope);
        let got: { answer: Answer; details?: string };
        if (method.name === 'AgentService.Session') {
          got = await openSession(cluster.coordinator.address, cluster.tokens[caller], caller === 'join' ? `joined-${cluster.fresh()}` : 'node-x');
        } else {
          let request = await requestFor(cluster, method.name, scope);
          assert.ok(request !== undefined, `no request built for ${method.name}`);
          // Nodes fetch by digest, the way an agent's cache does.
          if ((method.name.endsWith('.Download') || method.name === 'DeliveryService.Locate') && caller === 'node') request = { digest: PAYLOAD_DIGEST };
          const token = cluster.tokens[caller];
          const address = cluster.coordinator.address;
          if (method.def.requestStream) got = await callClientStream(address, method, request as unknown[], token);
          else if (method.def.responseStream) got = await callServerStream(address, method, request, token);
          else got = await callUnary(address, method, request, token);
        }
        cases += 1;
        if (got.answer !== want) mismatches.push(`${method.name} as ${caller} (${scope} tenant): want ${want}, got ${got.answer} ${got.details ?? ''}`);
      }
    }
  }
  t.diagnostic(`${cases} cases over ${all.length} RPCs`);
  assert.deepEqual(mismatches, []);

  // Nothing the run used as a secret was ever logged, although every call was (trace level).
  const text = cluster.logs.join('');
  assert.ok(text.length > 1000, 'the run logged');
  for (const secret of cluster.secrets) {
    assert.equal(text.includes(secret), false, 'a token appears in the logs');
    assert.equal(text.includes(secret.slice(-43)), false, "a token's secret part appears in the logs");
  }
});

test("a node's credential cannot report for another node, and revoking it ends the node's session", async (t) => {
  const cluster = await setUp(t);
  const address = cluster.coordinator.address;
  const impostor = await openSession(address, cluster.tokens.node, 'node-y');
  assert.equal(impostor.answer, 'PERMISSION_DENIED');
  assert.match(impostor.details ?? '', /belongs to node "node-x"; it cannot report for node "node-y"/);

  // A live session of node-x, then its credential is revoked.
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const def = mlfleetV1().AgentService.service.Session;
  const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, setBearer(new grpc.Metadata(), cluster.tokens.node));
  const ended = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
  const welcomed = new Promise<void>((resolve) => call.on('data', () => resolve()));
  call.write({ hello: { nodeName: 'node-x', agentVersion: 'test', address: '127.0.0.1:7780', capacity: { cpuMillis: 1000, memoryBytes: 2 ** 30 } } });
  await welcomed;
  const credentialId = (await cluster.admin.listTokens({ tenant: '', includeRevoked: false })).tokens.find((tk) => tk.role === 'node' && tk.node === 'node-x')!.id;
  await cluster.admin.revokeToken(credentialId);
  const err = await ended;
  assert.match(err.details, /revoked/);
  const again = await openSession(address, cluster.tokens.node, 'node-x');
  assert.equal(again.answer, 'UNAUTHENTICATED');
});

test('state-changing calls are audited with who, tenant, what and result; a tenant sees only its own entries', async (t) => {
  const cluster = await setUp(t);
  const developer = new CoordinatorClient([cluster.coordinator.address], { token: cluster.tokens.developer });
  t.after(() => developer.close());
  await cluster.admin.cordonNode('node-x');
  await assert.rejects(developer.cordonNode('node-x'), { code: 'PERMISSION_DENIED' });
  await new Promise((resolve) => setTimeout(resolve, 100)); // audit entries are stored asynchronously

  const all = (await cluster.admin.listAuditEvents({ tenant: '', limit: 100, beforeId: 0 })).events;
  const cordons = all.filter((e) => e.method === 'NodeService.CordonNode');
  assert.deepEqual(cordons.map((e) => [e.role, e.tenant, e.target, e.result]), [
    ['developer', 'alpha', 'node/node-x', 'PERMISSION_DENIED'],
    ['admin', 'default', 'node/node-x', 'OK'],
  ]);
  assert.ok(cordons.every((e) => /^[0-9a-f]{16}$/.test(e.tokenId)), 'who: the token id, not the secret');
  assert.ok(all.some((e) => e.method === 'TenantService.CreateTenant' && e.target === 'tenant/alpha'));

  const own = (await developer.listAuditEvents({ tenant: '', limit: 100, beforeId: 0 })).events;
  assert.ok(own.length > 0 && own.every((e) => e.tenant === 'alpha'), 'a developer sees only its tenant');
  await assert.rejects(developer.listAuditEvents({ tenant: 'default', limit: 10, beforeId: 0 }), { code: 'NOT_FOUND' });
});

test('tenant quotas are stored and shown with usage; set-quota sets and clears limits', async (t) => {
  const cluster = await setUp(t);
  const quota = { cpuMillis: 64_000, memoryBytes: 512 * 2 ** 30, gpus: 8, gpuMemoryBytes: 0, storageBytes: 2 ** 40, maxDeployments: 20 };
  await cluster.admin.setTenantQuota({ name: 'alpha', quota, clear: [] });
  const set = await cluster.admin.getTenant('alpha');
  assert.deepEqual(set.quota, quota);
  assert.deepEqual(set.usage, { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, deployments: 0 });
  await cluster.admin.setTenantQuota({ name: 'alpha', quota: { cpuMillis: 0, memoryBytes: 0, gpus: 16, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 }, clear: ['storage'] });
  const changed = await cluster.admin.getTenant('alpha');
  assert.deepEqual([changed.quota!.gpus, changed.quota!.storageBytes, changed.quota!.cpuMillis], [16, 0, 64_000]);
  await assert.rejects(cluster.admin.setTenantQuota({ name: 'alpha', quota: null, clear: [] }), { code: 'INVALID_ARGUMENT', message: /nothing to change/ });
  await assert.rejects(cluster.admin.createTenant({ name: 'alpha', description: '', quota: null }), { code: 'ALREADY_EXISTS' });
  await assert.rejects(cluster.admin.getTenant('gamma'), { code: 'NOT_FOUND' });
});
