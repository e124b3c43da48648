// The gateway's load meter on a fake clock: what it reports per deployment (in flight, the
// time-weighted mean, held, arrived), when (every second while busy, a last zero, at once on a
// wake, coalesced), and again after a reconnect.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoadMeter } from '../../agent/gateway/load-meter.js';
import type { GatewayLoad__Output as GatewayLoad } from '../../shared/gen/mlfleet/v1/GatewayLoad.js';
import { FakeClock } from '../helpers/fake-clock.js';

function setup() {
  const clock = new FakeClock();
  const sent: GatewayLoad[] = [];
  const meter = new LoadMeter({ clock, send: (load) => sent.push(load) });
  return { clock, sent, meter };
}

test('in flight and the time-weighted mean concurrency over each one-second interval', () => {
  const { clock, sent, meter } = setup();
  const web = meter.meter('acme', 'web');
  // 0–1000 ms: one request the whole second, a second one for its last 500 ms → mean 1.5.
  meter.arrive(web);
  clock.advance(500);
  meter.arrive(web);
  clock.advance(500);
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]!.deployments, [{ tenant: 'acme', deployment: 'web', concurrency: 1.5, inFlight: 2, waiting: 0, requests: 2, wake: false }]);
  assert.equal(sent[0]!.intervalMs, 1_000);
  // 1000–2000: both end at 1250 → mean 0.5; no arrivals.
  clock.advance(250);
  meter.depart(web);
  meter.depart(web);
  clock.advance(750);
  assert.equal(sent.length, 2);
  assert.equal(sent[1]!.deployments[0]!.concurrency, 0.5);
  assert.equal(sent[1]!.deployments[0]!.inFlight, 0);
  assert.equal(sent[1]!.deployments[0]!.requests, 0);
});

test('after traffic stops one report of zero goes, then nothing', () => {
  const { clock, sent, meter } = setup();
  const web = meter.meter('acme', 'web');
  meter.arrive(web);
  clock.advance(300);
  meter.depart(web);
  clock.advance(700);
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.deployments[0]!.concurrency, 0.3);
  clock.advance(1_000);
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1]!.deployments, [{ tenant: 'acme', deployment: 'web', concurrency: 0, inFlight: 0, waiting: 0, requests: 0, wake: false }]);
  clock.advance(10_000);
  assert.equal(sent.length, 2, 'quiet: nothing more to say');
  // A new burst after a long quiet spell: the mean covers the interval since it began, not the quiet.
  const again = meter.meter('acme', 'web');
  meter.arrive(again);
  clock.advance(1_000);
  assert.equal(sent.length, 3);
  assert.equal(sent[2]!.deployments[0]!.concurrency, 1);
});

test('deployments are reported apart, per tenant', () => {
  const { clock, sent, meter } = setup();
  meter.arrive(meter.meter('acme', 'web'));
  meter.arrive(meter.meter('globex', 'web'));
  meter.arrive(meter.meter('globex', 'web'));
  clock.advance(1_000);
  const byKey = Object.fromEntries(sent[0]!.deployments.map((d) => [`${d.tenant}/${d.deployment}`, d.inFlight]));
  assert.deepEqual(byKey, { 'acme/web': 1, 'globex/web': 2 });
});

test('a held request is reported at once with wake; further wakes within 100 ms are coalesced into one', () => {
  const { clock, sent, meter } = setup();
  const web = meter.meter('acme', 'web');
  meter.arrive(web);
  meter.hold(web);
  assert.equal(sent.length, 1, 'at once, not at the next second');
  assert.deepEqual(sent[0]!.deployments, [{ tenant: 'acme', deployment: 'web', concurrency: 1, inFlight: 1, waiting: 1, requests: 1, wake: true }]);
  for (let i = 0; i < 20; i++) {
    meter.arrive(web);
    meter.hold(web);
  }
  assert.equal(sent.length, 1, 'coalesced');
  clock.advance(100);
  assert.equal(sent.length, 2, 'one more once 100 ms have passed');
  assert.equal(sent[1]!.deployments[0]!.waiting, 21);
  assert.equal(sent[1]!.deployments[0]!.wake, true);
  // The periodic report says wake too while requests are held.
  clock.advance(900);
  assert.equal(sent.length, 3);
  assert.equal(sent[2]!.deployments[0]!.wake, true);
  assert.equal(sent[2]!.deployments[0]!.inFlight, 21);
});

test('after a reconnect the deployments with held requests are reported again at once', () => {
  const { clock, sent, meter } = setup();
  const web = meter.meter('acme', 'web');
  const api = meter.meter('acme', 'api');
  meter.arrive(web);
  meter.hold(web);
  meter.arrive(api);
  clock.advance(10);
  const before = sent.length;
  meter.rewake();
  const resent = sent.slice(before);
  assert.equal(resent.length, 1, 'only the deployment that holds requests');
  assert.equal(resent[0]!.deployments[0]!.deployment, 'web');
  assert.equal(resent[0]!.deployments[0]!.wake, true);
  meter.unhold(web);
  meter.depart(web);
  meter.depart(api);
  meter.close();
});

test('the meter costs no timer while quiet and stops its timers when closed', () => {
  const { clock, sent, meter } = setup();
  const web = meter.meter('acme', 'web');
  meter.arrive(web);
  meter.hold(web);
  meter.arrive(web);
  meter.hold(web);
  meter.close();
  clock.advance(5_000);
  assert.equal(sent.length, 1, 'nothing after close');
});

test('a surge (the running mean twice the last report, over a quarter second) is reported at once; steady load is not', () => {
  const { clock, sent, meter } = setup();
  const web = meter.meter('acme', 'web');
  // Two seconds of one request in flight, renewed every 100 ms: the periodic reports only.
  meter.arrive(web);
  for (let t = 0; t < 2_000; t += 100) {
    clock.advance(100);
    meter.depart(web);
    meter.arrive(web);
  }
  assert.deepEqual(sent.map((l) => l.intervalMs), [1_000, 1_000]);
  // Then five more at once, each renewed every 50 ms: reported within the next quarter second
  // and a little, not at the next second.
  for (let i = 0; i < 5; i++) meter.arrive(web);
  const stepAt = clock.now();
  while (sent.length === 2 && clock.now() - stepAt < 1_000) {
    clock.advance(50);
    meter.depart(web);
    meter.arrive(web);
  }
  const surge = sent[2]!;
  assert.ok(clock.now() - stepAt <= 300, `reported ${clock.now() - stepAt} ms after the step`);
  assert.ok(surge.intervalMs > 0 && surge.intervalMs < 1_000);
  assert.ok(surge.deployments[0]!.concurrency >= 2, JSON.stringify(surge));
  assert.equal(surge.deployments[0]!.inFlight, 6);
});
