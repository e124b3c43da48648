// The web dashboard in a real headless Chromium against a real coordinator and agents, through
// the REST API it reads: sign-in (typed, and by the `#token=…` link, which never reaches the
// server but as the Authorization header), the overview listing the cluster's real nodes, a
// deployment made with the CLI appearing and becoming ready without a reload, a job's logs
// following live, cordon from the page seen by `mlfleetctl nodes ls`, a consumer seeing no
// admin actions (5,000 nodes painting in under 1 s: dashboard-fleet.test.ts).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { confirmAction, newPage, openBrowser, signIn } from '../helpers/browser.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { homeWithToken, mlfleetctl, type Run } from '../helpers/mlfleetctl.js';
import { startAgent, tempDir } from '../helpers/processes.js';

/** What the log panel shows, as a browser expression. */
const LOG_TEXT = "(document.querySelector('[data-testid=logs]')?.textContent ?? '')";
/** The mark the overview sets once its node list has painted (pages/overview.tsx). */
const PAINTED = 'mlfleet:nodes-painted';

/** A model server for the process driver: ready at once, answers with its model's bytes. */
const SERVER = `require('http').createServer((req, res) => res.end(req.url === '/v2/health/ready' ? 'ready' : 'hello')).listen(Number(process.env.PORT));`;
/** A job that prints a numbered line every 300 ms for a while. */
const TICKER = `let i = 0; const t = setInterval(() => { console.log('tick ' + i++); if (i > 60) { clearInterval(t); } }, 300);`;

function ok(run: Run, what: string): string {
  assert.equal(run.code, 0, `${what}: ${run.stderr}`);
  return run.stdout;
}

async function cluster(t: TestContext) {
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const agent = await startAgent(t, 'dash-node', [coordinator.address], dir, ['--join-token', join]);
  const gateway = (await agent.waitForMessage('agent started')).gateway as string;
  const env = { MLFLEET_COORDINATOR: coordinator.address, HOME: await homeWithToken(t, admin) };
  const ctl = async (...args: string[]) => ok(await mlfleetctl(t, args, env), args.slice(0, 2).join(' '));
  await eventually('the agent is a ready node', 20_000, async () => (JSON.parse(await ctl('nodes', 'ls', '-o', 'json')) as Array<{ status: string }>).some((n) => n.status === 'ready') || undefined);
  const browser = await openBrowser(t);
  return { dir, coordinator, admin, join, env, ctl, browser, gateway, base: `http://${coordinator.httpAddress}` };
}

test('sign in by form and by link; the overview lists the real nodes; cordon from the page shows in mlfleetctl nodes ls', async (t) => {
  const { admin, ctl, browser, base } = await cluster(t);

  // The form.
  const typed = await newPage(browser);
  await typed.page.goto(`${base}/`);
  await typed.page.waitForSelector('form.signin input[name=token]');
  await typed.page.type('form.signin input[name=token]', 'not-a-token');
  await typed.page.click('form.signin button[type=submit]');
  await typed.page.waitForSelector('form.signin .error');
  await typed.page.$eval('form.signin input[name=token]', (el) => ((el as unknown as { value: string }).value = ''));
  await typed.page.type('form.signin input[name=token]', admin);
  await typed.page.click('form.signin button[type=submit]');
  await typed.page.waitForSelector('[data-testid=node-row][data-node=dash-node]', { timeout: 15_000 });
  assert.equal(await typed.page.$eval('header .who', (el) => el.getAttribute('data-role')), 'admin');

  // The link: the token leaves the address bar, stays in the tab, goes only in Authorization.
  const link = (JSON.parse(ok(await mlfleetctl(t, ['dashboard', '-o', 'json', '--url', base, '--token', admin]), 'dashboard')) as { url: string }).url;
  const linked = await newPage(browser);
  await linked.page.goto(link);
  await linked.page.waitForSelector('[data-testid=node-row][data-node=dash-node]', { timeout: 15_000 });
  assert.equal(await linked.page.evaluate('location.hash'), '');
  assert.equal(await linked.page.evaluate("sessionStorage.getItem('mlfleet.token')"), admin);
  // The fragment never goes on the wire (the browser keeps it); nothing else may carry the token.
  const onTheWire = (url: string) => url.replace(/#.*$/, '');
  assert.ok(!linked.requests.some((r) => onTheWire(r.url).includes(encodeURIComponent(admin)) || onTheWire(r.url).includes(admin)), 'no request URL carries the token');
  const apiCalls = linked.requests.filter((r) => new URL(r.url).pathname.startsWith('/api/v1/'));
  assert.ok(apiCalls.length > 0);
  for (const call of apiCalls) assert.equal(call.authorization, `Bearer ${admin}`, call.url);
  assert.ok(linked.requests.every((r) => r.url.startsWith(base)), 'nothing from another origin');
  assert.deepEqual(linked.errors.filter((e) => /Content Security Policy/i.test(e)), []);

  // The row shows the agent's capacity: 16 CPUs, 2 GPUs.
  const row = '[data-testid=node-row][data-node=dash-node]';
  assert.match(await linked.page.$eval(row, (el) => el.textContent ?? ''), /CPU \S+\/16/);
  assert.equal((await linked.page.$$(`${row} .gpus .bar`)).length, 2);
  assert.equal(await linked.page.$eval(`${row} .cache`, (el) => el.getAttribute('data-cache')), '0', 'nothing cached yet');

  // Cordon from the page.
  await confirmAction(linked.page, `${row} button[data-action=cordon]`);
  const nodes = JSON.parse(await ctl('nodes', 'ls', '-o', 'json')) as Array<{ name: string; cordoned: boolean }>;
  assert.equal(nodes.find((n) => n.name === 'dash-node')?.cordoned, true);
  await linked.page.waitForSelector(`${row} [data-cordoned=yes]`, { timeout: 10_000 });
  await confirmAction(linked.page, `${row} button[data-action=uncordon]`);
  assert.equal((JSON.parse(await ctl('nodes', 'ls', '-o', 'json')) as Array<{ name: string; cordoned: boolean }>).find((n) => n.name === 'dash-node')?.cordoned, false);

  // The node's page.
  await linked.page.click(`${row} a.name`);
  await linked.page.waitForSelector('[data-testid=node-detail][data-node=dash-node]');
  assert.equal(await linked.page.evaluate('location.pathname'), '/nodes/dash-node');
});

test('a CLI deployment appears and becomes ready on the page without a reload; a job’s logs follow live', async (t) => {
  const { dir, ctl, admin, browser, base, gateway } = await cluster(t);
  const { page } = await signIn(browser, base, admin, '/deployments');
  await page.waitForSelector('main h2');
  await page.evaluate('window.marker = 42');

  const model = path.join(dir, 'model.bin');
  writeFileSync(model, 'weights');
  await ctl('models', 'push', 'm', model);
  await ctl('deploy', 'web', '--model', 'm', '--image', 'unused', '--cpu', '500m', '--memory', '128Mi', '--', process.execPath, '-e', SERVER);
  await page.waitForSelector('tr[data-deployment=web]', { timeout: 15_000 });
  await page.waitForSelector('tr[data-deployment=web][data-status=available] [data-ready="1/1"]', { timeout: 60_000 });
  assert.match(await page.$eval('tr[data-deployment=web]', (el) => el.textContent ?? ''), /dash-node · ready/);
  assert.equal(await page.evaluate('window.marker'), 42, 'the page was not reloaded');

  // Requests through the agent's gateway: the row shows the rate and p50 the gateway measured,
  // and so does deployments show.
  let sending = true;
  const load = (async () => {
    while (sending) {
      const res = await fetch(`http://${gateway}/v2/models/m/infer`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{"inputs":[]}' });
      await res.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  t.after(() => (sending = false));
  await page.waitForSelector('tr[data-deployment=web] td[data-p50]:not([data-p50=""])', { timeout: 30_000 });
  await page.waitForFunction(`Number(document.querySelector('tr[data-deployment=web] td[data-rate]')?.getAttribute('data-rate')) > 0`, { timeout: 30_000 });
  assert.match(await ctl('deployments', 'show', 'web'), /Traffic:?\s+[\d.]+ req\/s, p50 [\d.]+ ms, p99 [\d.]+ ms, 0% errors/);
  sending = false;
  await load;

  await ctl('jobs', 'run', 'ticker', '--image', 'unused', '--cpu', '500m', '--memory', '128Mi', '--', process.execPath, '-e', TICKER);
  await page.click('header nav a[href="/jobs"]');
  await page.waitForSelector('tr[data-job=ticker] a');
  await page.click('tr[data-job=ticker] a');
  await page.waitForFunction(`/tick 2\\b/.test(${LOG_TEXT})`, { timeout: 60_000 });
  const early = await page.$eval('[data-testid=logs]', (el) => (el.textContent ?? '').split('\n').filter(Boolean).length);
  await page.waitForFunction(`${LOG_TEXT}.split('\\n').filter(Boolean).length >= ${early + 5}`, { timeout: 30_000 });
  assert.equal(await page.evaluate('window.marker'), 42, 'the logs grew without a reload');
});

test('a consumer token sees no admin actions', async (t) => {
  const { ctl, env, dir, browser, base, admin } = await cluster(t);
  await ctl('tenants', 'create', 'acme');
  const token = async (role: string) => (JSON.parse(await ctl('tokens', 'create', '--tenant', 'acme', '--role', role, '-o', 'json')) as { token: string }).token;
  const consumer = await token('consumer');
  const developer = { ...env, MLFLEET_TOKEN: await token('developer') };
  const dev = async (...args: string[]) => ok(await mlfleetctl(t, args, developer), args.slice(0, 2).join(' '));
  const model = path.join(dir, 'model.bin');
  writeFileSync(model, 'weights');
  await dev('models', 'push', 'm', model);
  await dev('deploy', 'web', '--model', 'm', '--image', 'unused', '--cpu', '500m', '--memory', '128Mi', '--', process.execPath, '-e', SERVER);
  await dev('jobs', 'run', 'sleeper', '--image', 'unused', '--cpu', '500m', '--memory', '128Mi', '--', process.execPath, '-e', 'setTimeout(() => {}, 60000)');

  // The admin sees the actions on these pages (so their absence below means something)…
  const boss = await signIn(browser, base, admin, '/deployments');
  await boss.page.waitForSelector('tr[data-deployment=web] button[data-action=scale]', { timeout: 15_000 });
  await boss.page.goto(`${base}/jobs`);
  await boss.page.waitForSelector('tr[data-job=sleeper] button[data-action=cancel]', { timeout: 15_000 });

  // …the consumer sees the workloads and none of the actions.
  const { page } = await signIn(browser, base, consumer, '/deployments');
  assert.equal(await page.$eval('header .who', (el) => el.getAttribute('data-role')), 'consumer');
  await page.waitForSelector('tr[data-deployment=web]', { timeout: 15_000 });
  assert.equal((await page.$$('button[data-action]')).length, 0);
  for (const where of ['/', '/jobs', '/models', '/events', '/nodes/dash-node']) {
    await page.goto(`${base}${where}`);
    await page.waitForSelector('main h2, main .error', { timeout: 15_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal((await page.$$('button[data-action]')).length, 0, where);
  }
});
