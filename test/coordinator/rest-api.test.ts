// The REST API (coordinator/rest/, docs/rest-api.md) against a real coordinator over real HTTP:
// every route × every kind of caller × own or other tenant answers as the gRPC authorization
// matrix (test/helpers/authorization-matrix.ts) says, in HTTP statuses; bad input is a 400 that
// names the field and changes nothing; every route answers as the OpenAPI document says; events
// arrive in order as Server-Sent Events and resume after Last-Event-ID.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { httpStatusOf } from '../../coordinator/rest/errors.js';
import { ROUTES, type Route } from '../../coordinator/rest/routes.js';
import { CALLERS, expected, seedCluster, seedWorkload, setUp, type Cluster, type Scope } from '../helpers/authorization-matrix.js';
import type { Answer } from '../helpers/raw-grpc.js';
import { rest, schemaProblems, type RestAnswer } from '../helpers/rest.js';

interface Case {
  method: string;
  path: string;
  body?: unknown;
}

const tenantOf = (scope: Scope) => (scope === 'own' ? 'alpha' : 'beta');

/** A request for each route acting on the caller's own tenant or another's, on fresh objects where it changes them. */
async function caseFor(cluster: Cluster, route: Route, scope: Scope): Promise<Case> {
  const tenant = tenantOf(scope);
  const q = `?tenant=${tenant}`;
  const key = `${route.method} ${route.path.replace('/api/v1', '')}`;
  const artifact = /^\w+ \/(models|datasets)(.*)$/.exec(key);
  if (artifact) {
    const [, plural, rest_] = artifact;
    const base = `/api/v1/${plural}`;
    const seeded = `seed-${tenant}`;
    switch (`${route.method} ${rest_}`) {
      case 'GET ':
        return { method: 'GET', path: `${base}${q}` };
      case 'GET /{name}':
        return { method: 'GET', path: `${base}/${seeded}${q}` };
      case 'GET /{name}/versions/{version}':
        return { method: 'GET', path: `${base}/${seeded}/versions/1${q}` };
      case 'GET /{name}/versions/{version}/content':
        return { method: 'GET', path: `${base}/${seeded}/versions/1/content${q}` };
      case 'PUT /{name}/aliases/{alias}':
        return { method: 'PUT', path: `${base}/${seeded}/aliases/production${q}`, body: { version: 1 } };
      case 'POST /{name}/uploads':
        return { method: 'POST', path: `${base}/up-${cluster.fresh()}/uploads`, body: { format: plural === 'models' ? 'onnx' : 'csv', sizeBytes: 3 } };
      case 'POST /{name}/versions':
        return { method: 'POST', path: `${base}/${seeded}/versions`, body: { upload: 'f'.repeat(32) } };
      default:
        break;
    }
  }
  switch (key) {
    case 'GET /cluster':
    case 'GET /nodes':
    case 'GET /tenants':
      return { method: 'GET', path: route.path };
    case 'GET /nodes/{name}':
      return { method: 'GET', path: '/api/v1/nodes/node-x' };
    case 'POST /nodes/{name}/cordon':
    case 'POST /nodes/{name}/uncordon':
    case 'POST /nodes/{name}/drain':
      return { method: 'POST', path: route.path.replace('{name}', 'node-x') };
    case 'POST /tenants':
      return { method: 'POST', path: route.path, body: { name: `${tenant}-${cluster.fresh()}` } };
    case 'GET /tenants/{name}':
      return { method: 'GET', path: `/api/v1/tenants/${tenant}` };
    case 'PUT /tenants/{name}/quota':
      return { method: 'PUT', path: `/api/v1/tenants/${tenant}/quota`, body: { quota: { gpus: 4 } } };
    case 'GET /deployments':
    case 'GET /jobs':
    case 'GET /allocations':
      return { method: 'GET', path: `${route.path}${q}` };
    case 'POST /deployments':
      return { method: 'POST', path: route.path, body: { name: `d-${cluster.fresh()}`, tenant, spec: { model: `seed-${tenant}:1`, image: 'mlfleet/runtime:0.1.0', replicas: 0 } } };
    case 'GET /deployments/{name}':
    case 'POST /deployments/{name}/promote':
    case 'POST /deployments/{name}/rollback':
    case 'GET /jobs/{name}':
    case 'GET /jobs/{name}/logs':
      return { method: route.method, path: `${route.path.replace('{name}', 'seed')}${q}` };
    case 'POST /deployments/{name}/scale':
      return { method: 'POST', path: `/api/v1/deployments/seed/scale${q}`, body: { replicas: 0 } };
    case 'DELETE /deployments/{name}':
      return { method: 'DELETE', path: `/api/v1/deployments/${await seedWorkload(cluster, 'DeploymentService.ApplyDeployment', scope, `d-${cluster.fresh()}`)}${q}` };
    case 'POST /jobs':
      return { method: 'POST', path: route.path, body: { name: `j-${cluster.fresh()}`, tenant, spec: { image: 'mlfleet/runtime:0.1.0', command: ['node', '-e', ''], resources: { cpu: 1000 } } } };
    case 'POST /jobs/{name}/cancel':
      return { method: 'POST', path: `/api/v1/jobs/${await seedWorkload(cluster, 'JobService.RunJob', scope, `j-${cluster.fresh()}`)}/cancel${q}` };
    case 'GET /allocations/{id}':
      return { method: 'GET', path: `/api/v1/allocations/${'f'.repeat(16)}${q}` };
    case 'GET /allocations/{id}/logs':
      return { method: 'GET', path: `/api/v1/allocations/${'f'.repeat(16)}/logs` };
    case 'GET /events':
      return { method: 'GET', path: `/api/v1/events${q}&replay=5&follow=0` };
    case 'POST /select':
      return { method: 'POST', path: `/api/v1/select${q}`, body: { type: 'classification' } };
    default:
      throw new Error(`no case for ${key}: add one`);
  }
}

/** The HTTP status a route answers where the gRPC method answers `answer`. */
function wantStatus(route: Route, answer: Answer): number {
  if (answer !== 'OK') return httpStatusOf(answer);
  switch (route.kind) {
    case 'content':
      return 307;
    case 'allocation':
      return 404; // no allocation has the id asked for: the list is allowed, the id not found
    case 'job-logs':
      return 400; // the seed job asks for more than any node has: no worker is placed
    default:
      return route.created ? 201 : (route.status ?? 200); // fresh deployments: created
  }
}

test('every REST route answers every kind of caller, own tenant or another, as the gRPC authorization matrix says', async (t) => {
  const cluster = await setUp(t);
  await seedCluster(cluster);
  const base = `http://${cluster.coordinator.httpAddress}`;
  const mismatches: string[] = [];
  let cases = 0;
  for (const route of ROUTES.filter((r) => r.rpc)) {
    for (const caller of CALLERS) {
      for (const scope of ['own', 'other'] as const) {
        const c = await caseFor(cluster, route, scope);
        const want = wantStatus(route, expected(route.rpc!, caller, scope));
        const got = await rest(base, c.method, c.path, { token: cluster.tokens[caller], body: c.body });
        cases += 1;
        if (got.status !== want) mismatches.push(`${c.method} ${c.path} as ${caller} (${scope}): want ${want}, got ${got.status} ${got.text.slice(0, 200)}`);
        if (got.status >= 400) {
          const error = (got.json as { error?: { code?: string; message?: string } } | undefined)?.error;
          if (!error?.code || !error.message) mismatches.push(`${c.method} ${c.path} as ${caller}: error body ${got.text.slice(0, 200)}`);
        }
      }
    }
  }
  t.diagnostic(`${cases} cases over ${ROUTES.length} routes`);
  assert.deepEqual(mismatches, []);

  // whoami: each token's own role and tenant; no token is 401.
  for (const caller of ['admin', 'developer', 'consumer'] as const) {
    const me = await rest(base, 'GET', '/api/v1/whoami', { token: cluster.tokens[caller] });
    assert.equal(me.status, 200);
    assert.deepEqual({ ...(me.json as object), tokenId: undefined }, { role: caller, tenant: 'alpha', tokenId: undefined });
  }
  assert.equal((await rest(base, 'GET', '/api/v1/whoami')).status, 401);
  // No token appears in the logs, though every call was logged at trace level.
  const text = cluster.logs.join('');
  for (const secret of cluster.secrets) assert.equal(text.includes(secret.slice(-43)), false, "a token's secret part appears in the logs");
});

test('bad JSON and bad fields are a 400 naming what is wrong, and change nothing; a body over 1 MiB is a 413', async (t) => {
  const cluster = await setUp(t);
  await seedCluster(cluster);
  const base = `http://${cluster.coordinator.httpAddress}`;
  const token = cluster.developers.own;
  const bad = async (method: string, path: string, options: { body?: unknown; raw?: string; token?: string }, pattern: RegExp, status = 400) => {
    const got = await rest(base, method, path, { token, ...options });
    assert.equal(got.status, status, `${method} ${path}: ${got.text}`);
    const error = (got.json as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, pattern);
  };
  await bad('POST', '/api/v1/deployments/seed/scale', { raw: '{"replicas": ' }, /not valid JSON/);
  await bad('POST', '/api/v1/deployments/seed/scale', { body: { replicas: 'two' } }, /^replicas: Expected number, received string/);
  await bad('POST', '/api/v1/deployments/seed/scale', { body: { replicas: -1 } }, /^replicas: /);
  await bad('POST', '/api/v1/deployments/seed/scale', { body: { replicas: 1, extra: true } }, /Unrecognized key\(s\) in object: 'extra'/);
  await bad('POST', '/api/v1/deployments', { body: { name: 'seed', spec: { model: 'seed-alpha:1', image: 'mlfleet/runtime:0.1.0', replicas: 'x' } } }, /^spec\.replicas: expected a whole number, got "x"/);
  await bad('POST', '/api/v1/jobs', { body: { name: 'Bad Name', spec: { image: 'x' } } }, /^name: /);
  await bad('PUT', '/api/v1/tenants/alpha/quota', { body: { quota: { gpus: '4' } }, token: cluster.tokens.admin }, /quota\.gpus: Expected number/);
  await bad('GET', '/api/v1/allocations/x/logs?follow=maybe', {}, /query follow: expected 1 or 0/);
  await bad('POST', '/api/v1/deployments/seed/scale', { raw: `{"replicas": 1, "pad": "${'x'.repeat(1 << 20)}"}` }, /over the limit/, 413);
  // Nothing changed: the seed deployment still has 0 replicas, and no job "Bad Name" was made.
  const seed = await rest(base, 'GET', '/api/v1/deployments/seed', { token });
  assert.equal((seed.json as { replicas: number }).replicas, 0);
  assert.equal(((await rest(base, 'GET', '/api/v1/jobs', { token })).json as { items: unknown[] }).items.length, 1);
  // Unknown routes and methods.
  assert.equal((await rest(base, 'GET', '/api/v1/nope', { token })).status, 404);
  const wrong = await rest(base, 'PATCH', '/api/v1/nodes', { token });
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get('allow'), 'GET');
});

test('every route answers as the OpenAPI document says: its status is documented, and its JSON has the documented shape', async (t) => {
  const cluster = await setUp(t);
  await seedCluster(cluster);
  const base = `http://${cluster.coordinator.httpAddress}`;
  const doc = (await rest(base, 'GET', '/api/v1/openapi.json')).json as { openapi: string; paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }> }>>; components: { schemas: Record<string, Record<string, unknown>> } };
  assert.equal(doc.openapi, '3.1.0');
  assert.deepEqual(Object.keys(doc.paths).sort(), [...new Set(ROUTES.map((r) => r.path))].sort());
  const problems: string[] = [];
  const check = (route: Route, c: Case, got: RestAnswer) => {
    const documented = doc.paths[route.path]![route.method.toLowerCase()]!.responses;
    const response = documented[String(got.status)];
    if (!response) return void problems.push(`${c.method} ${c.path}: ${got.status} is not documented (${Object.keys(documented).join(', ')}): ${got.text.slice(0, 200)}`);
    const content = response.content?.['application/json'];
    if (!content) return;
    const schema = content.schema.$ref === '#/components/schemas/Error' ? doc.components.schemas.Error! : content.schema;
    for (const p of schemaProblems(schema, got.json)) problems.push(`${c.method} ${c.path} ${got.status}: ${p}`);
  };
  for (const route of ROUTES) {
    if (!route.rpc) {
      check(route, { method: route.method, path: route.path }, await rest(base, route.method, route.path, { token: cluster.tokens.admin }));
      continue;
    }
    // Success (as the admin), and refusals: no token, a consumer, another tenant's developer.
    for (const token of [cluster.tokens.admin, undefined, cluster.tokens.consumer, cluster.developers.own]) {
      const c = await caseFor(cluster, route, token === cluster.developers.own ? 'other' : 'own');
      check(route, c, await rest(base, c.method, c.path, { token, body: c.body }));
    }
  }
  // Bad input, and a success that pages.
  for (const [method, path, body] of [['POST', '/api/v1/deployments/seed/scale', { replicas: 'x' }], ['POST', '/api/v1/tenants', { name: 7 }]] as const) {
    const route = ROUTES.find((r) => r.method === method && r.path === (path.includes('scale') ? '/api/v1/deployments/{name}/scale' : '/api/v1/tenants'))!;
    check(route, { method, path }, await rest(base, method, path, { token: cluster.tokens.admin, body }));
  }
  assert.deepEqual(problems, []);
});

test('events arrive in order as Server-Sent Events, each with its id, and a stream resumes after Last-Event-ID', async (t) => {
  const cluster = await setUp(t);
  const base = `http://${cluster.coordinator.httpAddress}`;
  const developer = new CoordinatorClient([cluster.coordinator.address], { token: cluster.developers.own });
  t.after(() => developer.close());
  const controller = new AbortController();
  t.after(() => controller.abort());
  const res = await fetch(`${base}/api/v1/events?follow=1`, { headers: { authorization: `Bearer ${cluster.developers.own}` }, signal: controller.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const events: Array<{ id: number; data: { id: number; object: string; type: string } }> = [];
  const readUntil = async (count: number) => {
    while (events.length < count) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended');
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const id = /^id: (\d+)$/m.exec(block);
        const data = /^data: (.*)$/m.exec(block);
        if (id && data) events.push({ id: Number(id[1]), data: JSON.parse(data[1]!) });
      }
    }
  };
  // Three jobs, each making events while the stream is open.
  for (const name of ['e1', 'e2', 'e3']) await developer.runJob({ name, image: 'mlfleet/runtime:0.1.0', command: ['true'], workers: 1, resources: { cpuMillis: 1_000_000 } } as never, 'alpha');
  await readUntil(3);
  const ids = events.map((e) => e.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in order');
  assert.ok(events.every((e) => e.id === e.data.id), 'id: is the event id');
  assert.deepEqual(events.slice(0, 1).map((e) => [e.data.object, e.data.type]), [['job/e1', 'Created']]);
  controller.abort();

  // Resuming after the first event: the ones after it, not it, and nothing of another tenant.
  const other = new CoordinatorClient([cluster.coordinator.address], { token: cluster.developers.other });
  t.after(() => other.close());
  await other.runJob({ name: 'hidden', image: 'mlfleet/runtime:0.1.0', command: ['true'], workers: 1, resources: { cpuMillis: 1_000_000 } } as never, 'beta');
  const resumed = await rest(base, 'GET', '/api/v1/events?follow=0', { token: cluster.developers.own, headers: { 'last-event-id': String(events[0]!.id) } });
  assert.equal(resumed.status, 200);
  const resumedIds = [...resumed.text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  assert.ok(resumedIds.length >= 2, resumed.text);
  assert.equal(resumedIds[0], events[1]!.id);
  assert.ok(resumedIds.every((id) => id > events[0]!.id));
  assert.equal(resumed.text.includes('job/hidden'), false);
  // ?since= does the same for a browser's EventSource; a bad id is a 400.
  const since = await rest(base, 'GET', `/api/v1/events?follow=0&since=${events[0]!.id}`, { token: cluster.developers.own });
  assert.equal([...since.text.matchAll(/^id: (\d+)$/gm)][0]?.[1], String(events[1]!.id));
  assert.equal((await rest(base, 'GET', '/api/v1/events', { token: cluster.developers.own, headers: { 'last-event-id': 'abc' } })).status, 400);
});
