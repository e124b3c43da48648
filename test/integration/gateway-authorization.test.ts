// The gateway's authorization matrix, with real processes: two agent processes on real Docker,
// each with its gateway, and real onnx replicas of two tenants. Every cell — route × caller
// (role and tenant) × own/other tenant × public/private × local/remote replica — is asked of
// both gateways and must answer exactly as the table says, down to which tenant's model answered.
//   host-a runs ta/linear (private);  host-b runs ta/open (public) and tb/linear (private).
// So from host-a's gateway ta/linear is local and the others remote; from host-b's, the reverse.
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { linearModel } from '../../scripts/onnx/example-models.js';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment } from '../../shared/proto.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { startAgent, tempDir } from '../helpers/processes.js';

const INPUT = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 1, 1] }] });

/** A linear model whose output for [1, 1, 1] is `out`: so an answer says whose model it came from. */
function linear(out: number): Uint8Array {
  const spec = linearModel();
  return encodeModel({ ...spec, initializers: [{ name: 'W', type: 'FLOAT', dims: [3, 1], data: [0, 0, 0] }, { name: 'b', type: 'FLOAT', dims: [1], data: [out] }] });
}
/** Which model answered, by its output. */
const WHOSE: Record<number, string> = { 1: 'ta/linear', 2: 'ta/open', 3: 'tb/linear' };

interface Answer {
  status: number;
  whose?: string;
  selected?: string;
}

function ask(gateway: string, method: 'GET' | 'POST', path: string, headers: Record<string, string>): Promise<Answer> {
  const [host, port] = gateway.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path, method, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        const body = JSON.parse(text || '{}') as { outputs?: Array<{ data?: number[] }> };
        const out = body.outputs?.[0]?.data?.[0];
        resolve({ status: res.statusCode ?? 0, whose: out === undefined ? undefined : WHOSE[Math.round(out)], selected: res.headers['mlfleet-selected'] as string | undefined });
      });
    });
    req.on('error', reject);
    req.end(method === 'POST' ? INPUT : undefined);
  });
}

test('the gateway authorization matrix: route × role × own/other tenant × public/private × local/remote replica, every cell exact', async (t) => {
  await ensureOnnxImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const root = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => root.close());
  for (const name of ['ta', 'tb']) await root.createTenant({ name, description: '' });
  const tokens: Record<string, string> = {};
  for (const [key, tenant, role] of [['ta-admin', 'ta', 'admin'], ['ta-developer', 'ta', 'developer'], ['ta-consumer', 'ta', 'consumer'], ['tb-developer', 'tb', 'developer'], ['tb-consumer', 'tb', 'consumer']] as const) {
    tokens[key] = (await root.createToken({ tenant, role, description: key })).token;
  }
  const hostA = await startAgent(t, 'host-a', [coordinator.address], dir, ['--driver', 'docker', '--join-token', join, '--labels', 'host=a']);
  const hostB = await startAgent(t, 'host-b', [coordinator.address], dir, ['--driver', 'docker', '--join-token', join, '--labels', 'host=b']);
  removeContainersAfter(t, 'host-a');
  removeContainersAfter(t, 'host-b');
  const gateways = { a: (await hostA.waitForMessage('agent started')).gateway as string, b: (await hostB.waitForMessage('agent started')).gateway as string };
  // A node credential, as an agent holds it.
  const credential = await eventually('host-a holds its credential', 10_000, async () => {
    const db = new Database(path.join(dir, 'host-a', 'agent.db'), { readonly: true });
    try {
      return (db.prepare("SELECT value FROM meta WHERE key = 'nodeCredential'").get() as { value: string } | undefined)?.value;
    } finally {
      db.close();
    }
  });

  const metadata = { type: 'regression', inputFormat: 'tensor', outputFormat: 'tensor', accuracy: 0.9, labels: {}, sourceJob: '', sourceDatasets: [] };
  const deploy = async (token: string, model: string, out: number, host: string, isPublic: boolean) => {
    const client = new CoordinatorClient([coordinator.address], { token });
    t.after(() => client.close());
    const bytes = Buffer.from(linear(out));
    await client.push('model', { name: model, format: 'onnx', sizeBytes: bytes.length, metadata }, Readable.from([bytes]));
    await client.applyDeployment(compileDeploymentSpec({ name: model, model, stack: 'onnx', replicas: 1, constraints: { host }, resources: { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 }, public: isPublic }));
    return client;
  };
  const ta = await deploy(tokens['ta-developer']!, 'linear', 1, 'a', false);
  await deploy(tokens['ta-developer']!, 'open', 2, 'b', true);
  const tb = await deploy(tokens['tb-developer']!, 'linear', 3, 'b', false);
  assert.equal((await ta.getDeployment('open')).spec?.public, true, 'deployments show says it is public');
  for (const [client, name] of [[ta, 'linear'], [ta, 'open'], [tb, 'linear']] as const) {
    await eventually(`${name} available`, 90_000, async () => ((await client.getDeployment(name)) as Deployment).status === 'available' || undefined);
  }
  // Every gateway has every route (and the tokens) once the public model answers through both.
  for (const g of Object.values(gateways)) {
    await eventually('routes reached the gateway', 20_000, async () => (await ask(g, 'POST', '/v2/models/linear/infer', { authorization: `Bearer ${tokens['tb-consumer']}` })).status === 200 || undefined);
    await eventually('routes reached the gateway', 20_000, async () => (await ask(g, 'POST', '/v2/models/open/infer', {})).status === 200 || undefined);
  }

  const callers: Record<string, Record<string, string>> = {
    none: {},
    invalid: { authorization: `Bearer mlf_0123456789abcdef_${'x'.repeat(43)}` },
    join: { authorization: `Bearer ${join}` },
    node: { authorization: `Bearer ${credential}` },
    ...Object.fromEntries(Object.entries(tokens).map(([key, token]) => [key, { authorization: `Bearer ${token}` }])),
  };
  const tenantOf = (caller: string) => (caller.startsWith('ta-') ? 'ta' : caller.startsWith('tb-') ? 'tb' : undefined);
  // What a caller is answered for model `name` (optionally naming `tenant`): status and whose model.
  const expected = (caller: string, name: string, named: string | undefined, select: boolean): Answer => {
    if (caller === 'invalid' || caller === 'join') return { status: 401 };
    if (caller === 'node') return { status: 403 };
    const own = tenantOf(caller);
    if (select) {
      if (!own) return { status: 401 };
      const home = caller === 'ta-admin' ? (named ?? own) : own;
      // Both tenants serve a regressor: each caller's selection stays in its (named, for admins) tenant.
      return { status: 200, selected: home === 'ta' ? 'ta/' : 'tb/linear' };
    }
    const home = own === undefined ? undefined : caller === 'ta-admin' ? (named ?? own) : own;
    const served = ['ta/linear', 'ta/open', 'tb/linear'].filter((m) => m.endsWith(`/${name}`) && (named === undefined || m.startsWith(`${named}/`)));
    const full = served.find((m) => m.startsWith(`${home}/`));
    if (full) return { status: 200, whose: full };
    const open = served.filter((m) => m === 'ta/open');
    if (open.length === 1) return { status: 200, whose: open[0] };
    return { status: own === undefined ? 401 : 404 };
  };

  const routes: Array<{ route: string; method: 'GET' | 'POST'; path: (name: string) => string; infers: boolean }> = [
    { route: 'infer', method: 'POST', path: (n) => `/v2/models/${n}/infer`, infers: true },
    { route: 'versions', method: 'POST', path: (n) => `/v2/models/${n}/versions/1/infer`, infers: true },
    { route: 'metadata', method: 'GET', path: (n) => `/v2/models/${n}`, infers: false },
    { route: 'ready', method: 'GET', path: (n) => `/v2/models/${n}/ready`, infers: false },
  ];
  const failures: string[] = [];
  let cells = 0;
  for (const [where, gateway] of Object.entries(gateways)) {
    for (const [caller, headers] of Object.entries(callers)) {
      for (const named of [undefined, 'ta', 'tb']) {
        const tenantHeader: Record<string, string> = named ? { 'mlfleet-tenant': named } : {};
        for (const name of ['linear', 'open', 'missing']) {
          for (const r of routes) {
            const want = expected(caller, name, named, false);
            const got = await ask(gateway, r.method, r.path(name), { ...headers, ...tenantHeader });
            cells += 1;
            const whoseMatters = r.infers && want.status === 200;
            if (got.status !== want.status || (whoseMatters && got.whose !== want.whose)) {
              failures.push(`gateway ${where}, ${caller}${named ? ` naming ${named}` : ''}, ${r.route} ${name}: want ${want.status} ${whoseMatters ? want.whose : ''}, got ${got.status} ${got.whose ?? ''}`);
            }
          }
        }
        const want = expected(caller, '', named, true);
        const got = await ask(gateway, 'POST', '/v2/select/infer?type=regression', { ...headers, ...tenantHeader });
        cells += 1;
        if (got.status !== want.status || (want.selected && !got.selected?.startsWith(want.selected))) {
          failures.push(`gateway ${where}, ${caller}${named ? ` naming ${named}` : ''}, select: want ${want.status} ${want.selected ?? ''}, got ${got.status} ${got.selected ?? ''}`);
        }
      }
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${cells} cells differ`);
  assert.ok(cells > 400, `${cells} cells asked`);

  // A revocation reaches every gateway within 2 s.
  const victim = (await root.listTokens({ tenant: 'ta' })).tokens.find((tk) => tk.description === 'ta-consumer')!;
  await root.revokeToken(victim.id);
  const revokedAt = Date.now();
  for (const g of Object.values(gateways)) {
    await eventually('the revoked token is refused', 2_000, async () => (await ask(g, 'POST', '/v2/models/linear/infer', callers['ta-consumer']!)).status === 401 || undefined, { intervalMs: 20 });
  }
  assert.ok(Date.now() - revokedAt < 2_000, `revocation took ${Date.now() - revokedAt} ms to reach both gateways`);
});
