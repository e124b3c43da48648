// The authorization matrix the gRPC test (test/coordinator/authorization.test.ts) and the REST
// test (test/coordinator/rest-api.test.ts) share: who may call each RPC, as the issue states it,
// written independently of coordinator/auth/rules.ts; and the cluster both run it against (a
// leader with tenants alpha (own) and beta (other), a token of each kind, seeded objects).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Coordinator } from '../../coordinator/coordinator.js';
import { setBearer } from '../../shared/auth.js';
import { CoordinatorClient } from '../../shared/client.js';
import { createLogger } from '../../shared/log.js';
import { mlfleetV1 } from '../../shared/proto.js';
import { startLeader } from './coordinator.js';
import { callClientStream, callUnary, methods, openSession, type Answer } from './raw-grpc.js';

export type Caller = 'none' | 'invalid' | 'revoked' | 'admin' | 'developer' | 'consumer' | 'join' | 'node';
export type Scope = 'own' | 'other';

export const CALLERS: Caller[] = ['none', 'invalid', 'revoked', 'admin', 'developer', 'consumer', 'join', 'node'];
export const USERS = new Set<Caller>(['admin', 'developer', 'consumer']);

/** Who may do what, as the issue states it (admin: everything; developer: its tenant's work; consumer: read). */
export const EXPECT: Record<string, (caller: Caller, scope: Scope) => Answer> = {
  'AgentService.Session': (c) => (c === 'join' || c === 'node' ? 'OK' : 'PERMISSION_DENIED'),
  // Coordinators only, with the cluster's peer secret: no token of any kind is one.
  'BlobPeerService.Fetch': () => 'UNAUTHENTICATED',
  'BlobPeerService.Store': () => 'UNAUTHENTICATED',
  'ClusterService.GetStatus': (c) => (USERS.has(c) ? 'OK' : 'PERMISSION_DENIED'),
  'NodeService.ListNodes': (c) => (c === 'admin' || c === 'developer' ? 'OK' : 'PERMISSION_DENIED'),
  'NodeService.GetNode': (c) => (c === 'admin' || c === 'developer' ? 'OK' : 'PERMISSION_DENIED'),
  'NodeService.CordonNode': adminOnly,
  'NodeService.UncordonNode': adminOnly,
  'NodeService.DrainNode': adminOnly,
  'NodeService.PrefetchModel': adminOnly,
  'NodeService.RemoveNode': adminOnly,
  'TenantService.CreateTenant': adminOnly,
  'TenantService.ListTenants': (c) => (USERS.has(c) ? 'OK' : 'PERMISSION_DENIED'),
  'TenantService.GetTenant': ownTenantRead,
  'TenantService.SetTenantQuota': adminOnly,
  'TokenService.CreateToken': adminOnly,
  'TokenService.ListTokens': adminOnly,
  'TokenService.RevokeToken': adminOnly,
  'EventService.ListAuditEvents': ownTenantRead,
  ...artifactExpectations('ModelService'),
  'ModelService.SetRetention': ownTenantWrite,
  ...artifactExpectations('DatasetService'),
  // Developers run their tenant's workloads; consumers may see deployments (to call them) and events.
  'EventService.WatchEvents': ownTenantRead,
  'DeploymentService.ApplyDeployment': ownTenantWrite,
  'DeploymentService.ListDeployments': ownTenantRead,
  'DeploymentService.GetDeployment': ownTenantRead,
  'DeploymentService.ScaleDeployment': ownTenantWrite,
  // Allowed exactly as ApplyDeployment; the seed deployment has no canary and no last good version yet.
  'DeploymentService.PromoteDeployment': (c, scope) => refusedWhenAllowed(ownTenantWrite(c, scope)),
  'DeploymentService.RollbackDeployment': (c, scope) => refusedWhenAllowed(ownTenantWrite(c, scope)),
  'DeploymentService.DeleteDeployment': ownTenantWrite,
  'JobService.RunJob': ownTenantWrite,
  'JobService.ListJobs': operatorRead,
  'JobService.GetJob': operatorRead,
  'JobService.CancelJob': ownTenantWrite,
  'AllocationService.ListAllocations': operatorRead,
  // No allocation has this id in any tenant: who may ask is all this shows.
  'AllocationService.GetLogs': (c) => (c === 'admin' || c === 'developer' ? 'NOT_FOUND' : 'PERMISSION_DENIED'),
  // Stacks belong to the cluster: every user reads them, only admins change them.
  'StackService.ListStacks': (c) => (USERS.has(c) ? 'OK' : 'PERMISSION_DENIED'),
  'StackService.GetStack': (c) => (USERS.has(c) ? 'OK' : 'PERMISSION_DENIED'),
  'StackService.RegisterStack': adminOnly,
  'StackService.DeleteStack': adminOnly,
  // Model sources: who may push a model may make it follow a bucket; consumers see them. No
  // source is named "missing" in any tenant: who may ask is all the last three show.
  'SourceService.CreateSource': ownTenantWrite,
  'SourceService.ListSources': ownTenantRead,
  'SourceService.GetSource': (c) => (USERS.has(c) ? 'NOT_FOUND' : 'PERMISSION_DENIED'),
  'SourceService.DeleteSource': (c) => (c === 'admin' || c === 'developer' ? 'NOT_FOUND' : 'PERMISSION_DENIED'),
  'SourceService.SyncSource': (c) => (c === 'admin' || c === 'developer' ? 'NOT_FOUND' : 'PERMISSION_DENIED'),
  // Users locate their tenant's versions; a node only blobs its allocations use (none of node-x's uses the payload).
  'DeliveryService.Locate': (c, scope) => (c === 'node' ? 'NOT_FOUND' : ownTenantRead(c, scope)),
  // A push goes to the caller's own tenant, as Push does; a node only for a job's output (refused here).
  'DeliveryService.BeginPush': (c) => (c === 'admin' || c === 'developer' ? 'OK' : 'PERMISSION_DENIED'),
  // No upload has this id for anyone: who may ask is all this shows.
  'DeliveryService.CommitPush': (c) => (c === 'admin' || c === 'developer' || c === 'node' ? 'NOT_FOUND' : 'PERMISSION_DENIED'),
  // No deployment is ready in any tenant: who may ask (and that another tenant is not found) is all this shows.
  'SelectionService.Select': (c) => (USERS.has(c) ? 'NOT_FOUND' : 'PERMISSION_DENIED'),
};

/** A call that passes authorization but has nothing to act on. */
export function refusedWhenAllowed(answer: Answer): Answer {
  return answer === 'OK' ? 'FAILED_PRECONDITION' : answer;
}

export function ownTenantWrite(c: Caller, scope: Scope): Answer {
  return c === 'admin' ? 'OK' : c === 'developer' ? (scope === 'own' ? 'OK' : 'NOT_FOUND') : 'PERMISSION_DENIED';
}

export function operatorRead(c: Caller, scope: Scope): Answer {
  return c === 'consumer' ? 'PERMISSION_DENIED' : ownTenantRead(c, scope);
}

/**
 * Developers push and change their tenant's artifacts, consumers read them, nodes fetch blobs by
 * digest (only those its allocations use). A node passes ModelService.Push's rule (an agent pushes a job's output model) but the
 * handler refuses it unless the header names a job allocation with an output model placed on
 * that node (test/coordinator/workloads.test.ts covers that one case): a plain push is refused.
 */
export function artifactExpectations(service: string): Record<string, (caller: Caller, scope: Scope) => Answer> {
  return {
    [`${service}.Push`]: (c) => (c === 'admin' || c === 'developer' ? 'OK' : 'PERMISSION_DENIED'),
    [`${service}.ListArtifacts`]: ownTenantRead,
    [`${service}.GetArtifact`]: ownTenantRead,
    [`${service}.Resolve`]: ownTenantRead,
    // A node downloads only what its allocations use (or it was told to prefetch): no
    // allocation of node-x uses the payload, so it is not found (node-identity.test.ts has the rest).
    [`${service}.Download`]: (c, scope) => (c === 'node' ? 'NOT_FOUND' : ownTenantRead(c, scope)),
    [`${service}.SetAlias`]: ownTenantWrite,
    [`${service}.DeleteVersion`]: ownTenantWrite,
  };
}

export function adminOnly(c: Caller): Answer {
  return c === 'admin' ? 'OK' : 'PERMISSION_DENIED';
}

export function ownTenantRead(c: Caller, scope: Scope): Answer {
  if (!USERS.has(c)) return 'PERMISSION_DENIED';
  return c === 'admin' || scope === 'own' ? 'OK' : 'NOT_FOUND';
}

export function expected(method: string, caller: Caller, scope: Scope): Answer {
  if (caller === 'none' || caller === 'invalid' || caller === 'revoked') return 'UNAUTHENTICATED';
  return EXPECT[method]!(caller, scope);
}



export interface Cluster {
  coordinator: Coordinator;
  admin: CoordinatorClient;
  /** Developer tokens of alpha (own) and beta (other), to put artifacts in each tenant. */
  developers: Record<Scope, string>;
  tokens: Record<Caller, string | undefined>;
  secrets: string[];
  logs: string[];
  fresh: () => string;
}

export async function setUp(t: TestContext): Promise<Cluster> {
  const logs: string[] = [];
  const sink = new Writable({ write(chunk, _encoding, done) { logs.push(String(chunk)); done(); } });
  const { coordinator, admin: bootAdmin, join: bootJoin } = await startLeader(t, { id: 'authz', nodeTtlMs: 10_000 }, { log: createLogger({ level: 'trace', destination: sink }) });
  const boot = { admin: bootAdmin, join: bootJoin };
  const admin = new CoordinatorClient([coordinator.address], { token: boot.admin });
  t.after(() => admin.close());
  const quota = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 };
  await admin.createTenant({ name: 'alpha', description: 'own', quota });
  await admin.createTenant({ name: 'beta', description: 'other', quota });
  const create = async (role: string, tenant: string) => (await admin.createToken({ tenant, role, description: `${role} of ${tenant}`, ttlMs: 0 })).token;
  const revoked = await create('developer', 'alpha');
  const revokedId = revoked.split('_')[1]!;
  await admin.revokeToken(revokedId);
  const tokens: Record<Caller, string | undefined> = {
    none: undefined,
    invalid: `mlf_0123456789abcdef_${'A'.repeat(43)}`,
    revoked,
    admin: await create('admin', 'alpha'),
    developer: await create('developer', 'alpha'),
    consumer: await create('consumer', 'alpha'),
    join: boot.join,
    node: undefined,
  };
  // A node credential: what node-x is issued when it joins.
  const joined = await openSession(coordinator.address, boot.join, 'node-x');
  assert.equal(joined.answer, 'OK');
  tokens.node = joined.credential;
  const developers = { own: tokens.developer!, other: await create('developer', 'beta') };
  // node-p stays connected for the whole test, to take prefetch commands.
  const client = new grpc.Client(coordinator.address, grpc.credentials.createInsecure());
  const def = mlfleetV1().AgentService.service.Session;
  const kept = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, setBearer(new grpc.Metadata(), boot.join));
  kept.on('data', () => undefined);
  kept.on('error', () => undefined);
  t.after(() => {
    kept.cancel();
    client.close();
  });
  const welcomed = new Promise((resolve) => kept.once('data', resolve));
  kept.write({ hello: { nodeName: 'node-p', agentVersion: 'test', address: '127.0.0.1:7780', capacity: { cpuMillis: 1000, memoryBytes: 2 ** 30 } } });
  await welcomed;
  let counter = 0;
  return {
    coordinator,
    admin,
    developers,
    tokens,
    secrets: [boot.admin, boot.join, ...Object.values(tokens).filter((v): v is string => Boolean(v) && v !== tokens.invalid)],
    logs,
    fresh: () => `t${++counter}`,
  };
}






export const PAYLOAD = Buffer.from('model bytes for the authorization matrix');
export const PAYLOAD_DIGEST = `sha256:${createHash('sha256').update(PAYLOAD).digest('hex')}`;

/** Pushes PAYLOAD as a new version of `name` in a tenant, as that tenant's developer; returns the version. */
export async function pushAs(cluster: Cluster, service: string, scope: Scope, name: string): Promise<number> {
  const method = methods().find((m) => m.name === `${service}.Push`)!;
  const result = await callClientStream(cluster.coordinator.address, method, pushMessages(name, service), cluster.developers[scope]);
  assert.equal(result.answer, 'OK', `seeding push: ${result.details}`);
  return (result.response as { version: number }).version;
}

export function pushMessages(name: string, service: string): unknown[] {
  const format = service === 'ModelService' ? 'onnx' : 'csv';
  return [{ header: { name, format, sizeBytes: PAYLOAD.length } }, { chunk: PAYLOAD }];
}

export function deploymentSpec(name: string, tenant: string) {
  return { name, model: `seed-${tenant}:1`, image: 'mlfleet/runtime:0.1.0', replicas: 0 };
}

export function jobSpec(name: string) {
  // Asks for more than any node has: it stays pending, holding nothing.
  return { name, image: 'mlfleet/runtime:0.1.0', command: ['node', '-e', ''], workers: 1, resources: { cpuMillis: 1_000_000 } };
}

export function stackSpec(name: string) {
  return { name, image: 'example/server:1.0', formats: ['onnx'], modelMount: '/model', port: 8080, protocol: 'v2', readinessPath: '/ready' };
}

/** Creates a deployment or job in a tenant as that tenant's developer; returns its name. */
export async function seedWorkload(cluster: Cluster, methodName: string, scope: Scope, name: string): Promise<string> {
  const method = methods().find((m) => m.name === methodName)!;
  const tenant = scope === 'own' ? 'alpha' : 'beta';
  const spec = methodName.startsWith('Job') ? jobSpec(name) : deploymentSpec(name, tenant);
  const result = await callUnary(cluster.coordinator.address, method, { spec }, cluster.developers[scope]);
  assert.equal(result.answer, 'OK', `seeding ${methodName}: ${result.details}`);
  return name;
}

/** The objects every case acts on: seed-alpha and seed-beta (a model and a dataset, version 1 each), a deployment and a job "seed" in each tenant. */
export async function seedCluster(cluster: Cluster): Promise<void> {
  for (const service of ['ModelService', 'DatasetService']) {
    for (const scope of ['own', 'other'] as const) await pushAs(cluster, service, scope, `seed-${scope === 'own' ? 'alpha' : 'beta'}`);
  }
  for (const scope of ['own', 'other'] as const) {
    await seedWorkload(cluster, 'DeploymentService.ApplyDeployment', scope, 'seed');
    await seedWorkload(cluster, 'JobService.RunJob', scope, 'seed');
  }
}
