// The LoadBook (the gateways' latest reports: staleness, sums, forget) and the Autoscaler runner
// on a fake clock with a fake AutoscaleTarget: it resizes with the reason, wakes at once, never
// runs two ticks at once, survives a throwing target, and drops deployments that are gone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Autoscaler, type AutoscaleDecisionEvent } from '../../coordinator/autoscale/autoscaler.js';
import { LoadBook } from '../../coordinator/autoscale/load-book.js';
import type { AutoscaledDeployment, AutoscaleTarget } from '../../coordinator/autoscale/target.js';
import { createLogger } from '../../shared/log.js';
import type { DeploymentLoad, GatewayLoad } from '../../shared/proto.js';
import { FakeClock } from '../helpers/fake-clock.js';

function dl(tenant: string, deployment: string, d: Partial<DeploymentLoad> = {}): DeploymentLoad {
  return { tenant, deployment, concurrency: 0, inFlight: 0, waiting: 0, requests: 0, wake: false, ...d };
}

function report(...deployments: DeploymentLoad[]): GatewayLoad {
  return { sentAtMs: 0, intervalMs: 1000, deployments };
}

test('the load book sums the nodes, counts a stale report as zero, and forgets a node', () => {
  const book = new LoadBook();
  book.record('n1', report(dl('acme', 'a', { concurrency: 2.5, inFlight: 3, requests: 4 }), dl('acme', 'b', { concurrency: 1 })), 1_000);
  book.record('n2', report(dl('acme', 'a', { concurrency: 1.5, inFlight: 1, waiting: 1, requests: 2, wake: true })), 2_000);
  // A newer report from a node replaces its older one (requests add up until taken).
  book.record('n1', report(dl('acme', 'a', { concurrency: 3, inFlight: 2, requests: 1 })), 2_500);
  assert.deepEqual(book.fleet('acme', 'a', 3_000), { concurrency: 4.5, inFlight: 3, waiting: 1, requests: 7, wake: true });
  // Requests and wake are taken once.
  assert.deepEqual(book.fleet('acme', 'a', 3_000), { concurrency: 4.5, inFlight: 3, waiting: 1, requests: 0, wake: false });
  // Other tenants' deployments of the same name are apart.
  assert.deepEqual(book.fleet('other', 'a', 3_000), { concurrency: 0, inFlight: 0, waiting: 0, requests: 0, wake: false });
  // n2's report (at 2 000) is stale after 5 000; n1's (2 500) after 5 500.
  assert.equal(book.fleet('acme', 'a', 5_000).concurrency, 4.5);
  assert.deepEqual(book.fleet('acme', 'a', 5_001), { concurrency: 3, inFlight: 2, waiting: 0, requests: 0, wake: false });
  book.record('n2', report(dl('acme', 'a', { concurrency: 1 })), 5_000);
  book.forget('n1');
  assert.equal(book.fleet('acme', 'a', 5_100).concurrency, 1);
  // retain drops what is not autoscaled any more.
  book.record('n3', report(dl('acme', 'b', { concurrency: 1, requests: 3 })), 5_100);
  book.retain(new Set(['acme/a']), 5_200);
  assert.equal(book.size, 1);
  assert.deepEqual(book.fleet('acme', 'b', 5_200), { concurrency: 0, inFlight: 0, waiting: 0, requests: 0, wake: false });
});

class FakeTarget implements AutoscaleTarget {
  deployments = new Map<string, AutoscaledDeployment>();
  resizes: Array<{ tenant: string; name: string; replicas: number; reason: string }> = [];
  inFlight = 0;
  maxInFlight = 0;
  throwList = false;
  throwResize = false;
  /** Resolves each resize when released (undefined: at once). */
  gate: Promise<void> | undefined;

  add(d: Partial<AutoscaledDeployment> & { name: string }): void {
    this.deployments.set(d.name, {
      tenant: 'acme', minReplicas: 0, maxReplicas: 10, targetConcurrency: 4, scaleToZeroAfterMs: 30_000, replicas: 1, readyReplicas: 1,
      quotaHeadroom: undefined, ...d,
    });
  }

  lists = 0;

  autoscaled(): AutoscaledDeployment[] {
    this.lists++;
    if (this.throwList) throw new Error('store unavailable');
    return [...this.deployments.values()].map((d) => ({ ...d }));
  }

  async resizeDeployment(tenant: string, name: string, replicas: number, reason: string): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.gate) await this.gate;
      if (this.throwResize) throw new Error('conflict');
      this.resizes.push({ tenant, name, replicas, reason });
      const d = this.deployments.get(name);
      if (d) d.replicas = replicas;
    } finally {
      this.inFlight--;
    }
  }
}

function setup(t: import('node:test').TestContext) {
  const clock = new FakeClock();
  const target = new FakeTarget();
  const decisions: AutoscaleDecisionEvent[] = [];
  const scaler = new Autoscaler({ target, clock, log: createLogger({ level: 'silent' }), onDecision: (e) => decisions.push(e) });
  t.after(() => scaler.close());
  return { clock, target, scaler, decisions };
}

/** Lets the runner's promises settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

test('the runner resizes with the reason, wakes at once on a request at zero, and shows its view', async (t) => {
  const { clock, target, scaler, decisions } = setup(t);
  target.add({ name: 'resnet', replicas: 0 });
  scaler.start();
  clock.advance(500);
  await settle();
  assert.equal(target.resizes.length, 0);
  assert.equal(scaler.view('acme', 'resnet')?.desiredReplicas, 0);
  assert.equal(scaler.view('acme', 'nope'), undefined);

  // A wake runs a tick at once, without waiting for the timer.
  scaler.record('n1', report(dl('acme', 'resnet', { inFlight: 1, waiting: 1, requests: 1, wake: true })));
  await settle();
  assert.deepEqual(target.resizes, [{ tenant: 'acme', name: 'resnet', replicas: 1, reason: 'woke 0 → 1: a request is waiting' }]);
  assert.equal(decisions.length, 1);
  assert.equal(decisions[0]!.atMs, clock.now());
  assert.equal(scaler.view('acme', 'resnet')?.lastDecision, 'woke 0 → 1: a request is waiting');
  // More wakes while it is already asked to grow cost no pass each (the timer's tick takes them).
  const lists = target.lists;
  for (let i = 0; i < 5; i++) scaler.record('n2', report(dl('acme', 'resnet', { inFlight: 1, waiting: 1, requests: 1, wake: true })));
  await settle();
  assert.equal(target.lists, lists);

  // Load: 23.4 in flight at target 4 from one replica → panic → 6.
  for (let i = 0; i < 16; i++) {
    scaler.record('n1', report(dl('acme', 'resnet', { concurrency: 23.4, inFlight: 23, requests: 40 })));
    clock.advance(500);
    await settle();
  }
  assert.equal(target.resizes.at(-1)!.replicas, 6);
  assert.match(target.resizes.at(-1)!.reason, /^scaled \d → 6: [\d.]+ in flight \/ target 4/);

  // The node leaves: its load no longer counts; the deployment going drops its view.
  scaler.forget('n1');
  target.deployments.delete('resnet');
  clock.advance(500);
  await settle();
  assert.equal(scaler.view('acme', 'resnet'), undefined);
});

test('ticks never overlap, and a throwing target does not stop the runner', async (t) => {
  const { clock, target, scaler } = setup(t);
  target.add({ name: 'a', replicas: 0 });
  target.add({ name: 'b', replicas: 0 });
  let release!: () => void;
  target.gate = new Promise<void>((r) => (release = r));
  scaler.start();
  scaler.record('n1', report(dl('acme', 'a', { wake: true, waiting: 1 }), dl('acme', 'b', { wake: true, waiting: 1 })));
  await settle();
  // Timer ticks and wakes pile up while the resize hangs: none run alongside.
  for (let i = 0; i < 6; i++) {
    clock.advance(500);
    scaler.wake();
    await settle();
  }
  assert.equal(target.maxInFlight, 1);
  assert.equal(target.resizes.length, 0);
  release();
  target.gate = undefined;
  await settle();
  assert.deepEqual(target.resizes.map((r) => [r.name, r.replicas]), [['a', 1], ['b', 1]]);
  assert.equal(target.maxInFlight, 1);

  // Listing and resizing fail: logged, and the next tick goes on.
  target.throwList = true;
  clock.advance(500);
  await settle();
  target.throwList = false;
  target.throwResize = true;
  target.deployments.get('a')!.replicas = 0;
  scaler.record('n1', report(dl('acme', 'a', { wake: true, waiting: 1 })));
  clock.advance(500);
  await settle();
  assert.equal(target.resizes.length, 2);
  target.throwResize = false;
  // The failed resize is tried again on the next tick (the request is still held).
  scaler.record('n1', report(dl('acme', 'a', { waiting: 1 })));
  clock.advance(500);
  await settle();
  assert.deepEqual(target.resizes.at(-1), { tenant: 'acme', name: 'a', replicas: 1, reason: 'woke 0 → 1: a request is waiting' });

  // Closed: no more ticks.
  await scaler.close();
  target.deployments.get('a')!.replicas = 0;
  scaler.record('n1', report(dl('acme', 'a', { wake: true, waiting: 1 })));
  clock.advance(5_000);
  await settle();
  assert.equal(target.resizes.length, 3);
});
