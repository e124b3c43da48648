// The REST API's pure parts: the route table (every route on a gRPC method with a rule, paths
// matched with their parameters), paging, requests shaped as the proto decodes them with bad
// fields named, errors mapped as grpc-gateway maps them, and the SSE and log framing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { RULES } from '../../coordinator/auth/rules.js';
import { errorAnswer, httpStatusOf } from '../../coordinator/rest/errors.js';
import { openApiDocument, operationId } from '../../coordinator/rest/openapi.js';
import { protoRequest } from '../../coordinator/rest/proto-request.js';
import { prefixer, resumeAfter, sseEvent } from '../../coordinator/rest/router.js';
import { labelSelector, matchRoute, nodeCursor, queryFlag, ROUTES, versionRef, workloadFromBody } from '../../coordinator/rest/routes.js';
import { pageByName } from '../../coordinator/api/node-service.js';
import type { NodeView } from '../../coordinator/node-record.js';
import { ResourceExhaustedError, toGrpcError } from '../../shared/errors.js';
import { mlfleetV1 } from '../../shared/proto.js';

test('every route runs a gRPC method that has an authorization rule; no two routes share a method and path', () => {
  const seen = new Set<string>();
  for (const route of ROUTES) {
    if (route.rpc) assert.ok(RULES[route.rpc], `${route.rpc} has a rule`);
    const key = `${route.method} ${route.path}`;
    assert.equal(seen.has(key), false, key);
    seen.add(key);
    assert.ok(route.kind === 'openapi' || route.kind === 'whoami' || route.rpc, `${key} names its gRPC method`);
  }
  const ids = ROUTES.map(operationId);
  assert.equal(new Set(ids).size, ids.length, 'operation ids are unique');
});

test('paths match with their parameters decoded; a known path with another method lists the allowed ones', () => {
  const m = matchRoute('GET', '/api/v1/models/sent%20iment/versions/3');
  assert.ok(m && 'route' in m);
  assert.equal(m.route.rpc, 'ModelService.Resolve');
  assert.deepEqual(m.params, { name: 'sent iment', version: '3' });
  const trailing = matchRoute('GET', '/api/v1/nodes/');
  assert.ok(trailing && 'route' in trailing && trailing.route.rpc === 'NodeService.ListNodes');
  assert.deepEqual(matchRoute('PATCH', '/api/v1/deployments/web'), { allowed: ['GET', 'DELETE'] });
  assert.equal(matchRoute('GET', '/api/v1/nodes/a/b/c'), undefined);
  assert.equal(matchRoute('GET', '/api/v1/nodes/%E0%A4%A'), undefined, 'a bad escape matches nothing');
  const head = matchRoute('HEAD', '/api/v1/cluster');
  assert.ok(head && 'route' in head && head.route.method === 'GET');
});

test('node pages follow the cursor in byte order of the names and say whether more follow', () => {
  const views = ['c', 'a', 'e', 'b', 'd'].map((name) => ({ record: { name } }) as unknown as NodeView);
  const names = (r: { page: NodeView[]; more: boolean }) => ({ names: r.page.map((v) => v.record.name), more: r.more });
  assert.deepEqual(names(pageByName(views, 2, '')), { names: ['a', 'b'], more: true });
  assert.deepEqual(names(pageByName(views, 2, 'b')), { names: ['c', 'd'], more: true });
  assert.deepEqual(names(pageByName(views, 2, 'd')), { names: ['e'], more: false });
  assert.deepEqual(names(pageByName(views, 5, '')), { names: ['a', 'b', 'c', 'd', 'e'], more: false });
  assert.deepEqual(names(pageByName(views, 0, 'bb')), { names: ['c', 'd', 'e'], more: false }, 'no limit: all after the cursor');
  assert.equal(nodeCursor(new URLSearchParams('cursor=sim0-00199')), 'sim0-00199');
  assert.throws(() => nodeCursor(new URLSearchParams(`cursor=${'x'.repeat(300)}`)), /query cursor: expected the nextCursor/);
});

test('a request is the message as the proto decodes it, every field defaulted; what the encoding would change silently is refused by name', () => {
  const scale = mlfleetV1().DeploymentService.service.ScaleDeployment;
  assert.deepEqual(protoRequest(scale, { name: 'web', replicas: 3 }), { name: 'web', replicas: 3, tenant: '' });
  assert.throws(() => protoRequest(scale, { name: 'web', replicas: 'three' }), /replicas: expected a number, got "three"/);
  assert.throws(() => protoRequest(scale, { name: 'web', replicas: -1 }), /replicas: -1 is out of range/);
  assert.throws(() => protoRequest(scale, { name: 'web', color: 'red' }), /color: no such field/);
  const quota = mlfleetV1().TenantService.service.SetTenantQuota;
  const decoded = protoRequest(quota, { name: 'alpha', quota: { gpus: 4 } }) as { quota: Record<string, number>; clear: string[] };
  assert.equal(decoded.quota.gpus, 4);
  assert.equal(decoded.quota.cpuMillis, 0);
  assert.deepEqual(decoded.clear, []);
  assert.throws(() => protoRequest(quota, { name: 'alpha', quota: { gpus: 1.5 } }), /quota\.gpus: 1\.5 is out of range \(or not a whole number\)/);
});

test('errors answer with the HTTP status grpc-gateway gives their gRPC code, and a retry hint in whole seconds', () => {
  const statuses = Object.fromEntries(['INVALID_ARGUMENT', 'FAILED_PRECONDITION', 'OUT_OF_RANGE', 'UNAUTHENTICATED', 'PERMISSION_DENIED', 'NOT_FOUND', 'ALREADY_EXISTS', 'ABORTED', 'RESOURCE_EXHAUSTED', 'UNIMPLEMENTED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'INTERNAL'].map((c) => [c, httpStatusOf(c)]));
  assert.deepEqual(statuses, { INVALID_ARGUMENT: 400, FAILED_PRECONDITION: 400, OUT_OF_RANGE: 400, UNAUTHENTICATED: 401, PERMISSION_DENIED: 403, NOT_FOUND: 404, ALREADY_EXISTS: 409, ABORTED: 409, RESOURCE_EXHAUSTED: 429, UNIMPLEMENTED: 501, UNAVAILABLE: 503, DEADLINE_EXCEEDED: 504, INTERNAL: 500 });
  const shed = errorAnswer(toGrpcError(new ResourceExhaustedError('too many open calls', 2500)));
  assert.deepEqual(shed, { status: 429, headers: { 'retry-after': '3' }, body: { error: { code: 'RESOURCE_EXHAUSTED', message: 'too many open calls' } } });
  assert.equal(errorAnswer({ code: grpc.status.NOT_FOUND, details: 'no such node' }).status, 404);
  assert.equal(errorAnswer(new Error('boom')).status, 500);
});

test('query flags, versions, selectors and workload bodies are read strictly', () => {
  assert.equal(queryFlag(new URLSearchParams('follow=1'), 'follow'), true);
  assert.equal(queryFlag(new URLSearchParams(''), 'follow', true), true);
  assert.throws(() => queryFlag(new URLSearchParams('follow=sure'), 'follow'), /query follow: expected 1 or 0/);
  assert.equal(versionRef('m', '3'), 'm:3');
  assert.equal(versionRef('m', 'production'), 'm@production');
  assert.deepEqual(labelSelector('zone=a,gpu=h100'), { zone: 'a', gpu: 'h100' });
  assert.throws(() => labelSelector('zone'), /query selector/);
  const { spec, tenant } = workloadFromBody('Deployment', { name: 'web', spec: { model: 'm:1', image: 'mlfleet/runtime:0.1.0' } }, 'alpha');
  assert.equal(tenant, 'alpha');
  assert.equal((spec as { name: string; replicas: number }).name, 'web');
  assert.throws(() => workloadFromBody('Deployment', { kind: 'Job', name: 'web', spec: {} }), /kind: must be Deployment/);
  assert.throws(() => workloadFromBody('Job', { name: 'j', spec: { image: 'x', workers: 0 } }), /^InvalidArgumentError|spec\.workers: /);
  assert.throws(() => workloadFromBody('Job', [1]), /expected a Job object/);
});

test('SSE frames carry the id; a resume id is a number; log lines of several workers are prefixed whole', () => {
  assert.equal(sseEvent(7, { a: 'x\ny' }), 'id: 7\ndata: {"a":"x\\ny"}\n\n');
  assert.equal(resumeAfter('12', null), 12);
  assert.equal(resumeAfter(undefined, '5'), 5);
  assert.equal(resumeAfter(undefined, null), undefined);
  assert.throws(() => resumeAfter('x1', null), /Last-Event-ID/);
  const lines = prefixer('[rank 1] ');
  assert.equal(lines.push(Buffer.from('one\ntw')).toString(), '[rank 1] one\n');
  assert.equal(lines.push(Buffer.from('o\n\nthree')).toString(), '[rank 1] two\n\n');
  assert.equal(lines.flush().toString(), '[rank 1] three\n');
  assert.equal(prefixer('').push(Buffer.from('raw')).toString(), 'raw');
});

test('the OpenAPI document is 3.1, lists every route, and documents each body from its zod schema', () => {
  const doc = openApiDocument() as { openapi: string; paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> } }>> };
  assert.equal(doc.openapi, '3.1.0');
  for (const route of ROUTES) assert.ok(doc.paths[route.path]?.[route.method.toLowerCase()], `${route.method} ${route.path}`);
  const scale = doc.paths['/api/v1/deployments/{name}/scale']!.post!.requestBody!.content['application/json']!.schema;
  assert.deepEqual(scale.properties, { replicas: { type: 'integer', minimum: 0 } });
});
