// The dashboard's files on the coordinator's HTTP listener: which path gets which answer
// (asset-path.ts, pure), then over real HTTP against an in-process coordinator serving the
// dist/dashboard/ that npm run build wrote: content types, the CSP, caching, client routes
// answered with index.html, no way out of the fixed file set, GET/HEAD only, and the other
// routes (/healthz, /metrics, /v1/blobs, /api) untouched.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { assetFor, cacheControl, contentType } from '../../coordinator/dashboard/asset-path.js';
import { DASHBOARD_CSP, DEFAULT_DASHBOARD_DIR, dashboardRoutes } from '../../coordinator/dashboard/static.js';
import { startLeader } from '../helpers/coordinator.js';

const files = new Set(['index.html', 'main-ABCDEFGH.js', 'style-ABCDEFGH.css']);

test('assetFor: built files by exact name, client routes to index.html, other routes not the dashboard’s', () => {
  assert.deepEqual(assetFor('/', files), { kind: 'index' });
  assert.deepEqual(assetFor('/index.html', files), { kind: 'index' });
  assert.deepEqual(assetFor('/main-ABCDEFGH.js', files), { kind: 'file', name: 'main-ABCDEFGH.js' });
  assert.deepEqual(assetFor('/nodes/gpu-7', files), { kind: 'index' });
  assert.deepEqual(assetFor('/jobs', files), { kind: 'index' });
  assert.deepEqual(assetFor('/main-OLDHASH1.js', files), { kind: 'missing' });
  assert.deepEqual(assetFor('/../package.json', files), { kind: 'missing' });
  assert.deepEqual(assetFor('/%2e%2e/%2e%2e/etc/passwd', files), { kind: 'index' });
  assert.deepEqual(assetFor('/assets/../main-ABCDEFGH.js', files), { kind: 'missing' });
  for (const other of ['/api', '/api/v1/nodes', '/v1/blobs/sha256:00', '/v1/uploads/x', '/metrics', '/healthz']) {
    assert.deepEqual(assetFor(other, files), { kind: 'not-mine' }, other);
  }
  assert.deepEqual(assetFor('/apiary', files), { kind: 'index' });
  assert.deepEqual(assetFor('*', files), { kind: 'not-mine' });
});

test('content types and caching by name', () => {
  assert.equal(contentType('main-ABCDEFGH.js'), 'text/javascript; charset=utf-8');
  assert.equal(contentType('style-ABCDEFGH.css'), 'text/css; charset=utf-8');
  assert.equal(contentType('index.html'), 'text/html; charset=utf-8');
  assert.equal(contentType('blob'), 'application/octet-stream');
  assert.equal(cacheControl('main-ABCDEFGH.js'), 'public, max-age=31536000, immutable');
  assert.equal(cacheControl('index.html'), 'no-cache');
});

/** A raw request: the path goes on the wire exactly as given (no URL normalization). */
function raw(address: string, method: string, pathname: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method, path: pathname }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the coordinator serves the built dashboard at / with a self-only CSP', async (t) => {
  const { coordinator } = await startLeader(t);
  const http = coordinator.httpAddress;
  const index = await raw(http, 'GET', '/');
  assert.equal(index.status, 200);
  assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(index.headers['content-security-policy'], DASHBOARD_CSP);
  assert.match(DASHBOARD_CSP, /^default-src 'self'/);
  assert.equal(index.headers['cache-control'], 'no-cache');
  assert.equal(index.headers['x-content-type-options'], 'nosniff');
  const script = /src="\/(main-[A-Z0-9]{8}\.js)"/.exec(index.body)?.[1];
  const style = /href="\/(style-[A-Z0-9]{8}\.css)"/.exec(index.body)?.[1];
  assert.ok(script && style, `index.html names its hashed files: ${index.body}`);
  assert.doesNotMatch(index.body, /https?:\/\//, 'nothing from another origin');

  const js = await raw(http, 'GET', `/${script}`);
  assert.equal(js.status, 200);
  assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable');
  assert.ok(js.body.length > 1000);
  const css = await raw(http, 'GET', `/${style}`);
  assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');

  // Client routes get the page; a HEAD gets its head and no body.
  const route = await raw(http, 'GET', '/nodes/gpu-7');
  assert.equal(route.status, 200);
  assert.equal(route.body, index.body);
  const head = await raw(http, 'HEAD', '/deployments');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.equal(head.headers['content-length'], String(Buffer.byteLength(index.body)));

  // Nothing outside the file set, however the path is spelled.
  for (const escape of ['/../package.json', '/..%2f..%2fpackage.json', '/%2e%2e/%2e%2e/package.json', '/main-OLDHASH1.js', `/x/../${script}x`]) {
    const res = await raw(http, 'GET', escape);
    assert.ok(res.status === 404 || res.body === index.body, `${escape}: ${res.status}`);
    assert.doesNotMatch(res.body, /"name": "mlfleet"/, escape);
  }
  assert.equal((await raw(http, 'GET', '/style-OLDHASH1.css')).status, 404);

  // GET and HEAD only.
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const res = await raw(http, method, '/');
    assert.equal(res.status, 405, method);
    assert.equal(res.headers.allow, 'GET, HEAD');
  }

  // The other routes are still theirs.
  assert.equal((await raw(http, 'GET', '/healthz')).status, 200);
  assert.match((await raw(http, 'GET', '/metrics')).body, /mlfleet_/);
  const blob = await raw(http, 'GET', `/v1/blobs/sha256:${'0'.repeat(64)}`);
  assert.notEqual(blob.headers['content-type'], 'text/html; charset=utf-8');
  assert.ok(blob.status === 401 || blob.status === 404, `blob route: ${blob.status}`);
  const api = await raw(http, 'GET', '/api/v1/no-such-route');
  assert.notEqual(api.headers['content-type'], 'text/html; charset=utf-8', 'the API never answers with the page');
});

test('a coordinator without a built dashboard says how to build it', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-dash-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const empty = dashboardRoutes(path.join(dir, 'missing'));
  const server = http.createServer((req, res) => void empty(req, res, false).then((mine) => mine || res.writeHead(404).end()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const address = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const res = await raw(address, 'GET', '/');
  assert.equal(res.status, 404);
  assert.match(res.body, /npm run build/);

  // Files added after start are not served: the set is read once.
  writeFileSync(path.join(dir, 'index.html'), '<p>one</p>');
  const fixed = dashboardRoutes(dir);
  writeFileSync(path.join(dir, 'late.js'), 'alert(1)');
  const server2 = http.createServer((req, res) => void fixed(req, res, false).then((mine) => mine || res.writeHead(404).end()));
  await new Promise<void>((resolve) => server2.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server2.close(resolve)));
  const address2 = `127.0.0.1:${(server2.address() as { port: number }).port}`;
  assert.equal((await raw(address2, 'GET', '/')).body, '<p>one</p>');
  assert.equal((await raw(address2, 'GET', '/late.js')).status, 404);
  assert.ok(DEFAULT_DASHBOARD_DIR.endsWith(path.join('dist', 'dashboard')));
});
