// Fault: a bounded flood of gateway load reports on the real clock, while the controller's
// resize is slow and sometimes fails. The autoscaler keeps one pass at a time, keeps only the
// autoscaled deployments' reports (a gateway naming thousands of others grows nothing), keeps
// the event loop responsive, and still wakes the sleeping deployment and sizes the busy one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Autoscaler } from '../../coordinator/autoscale/autoscaler.js';
import type { AutoscaledDeployment, AutoscaleTarget } from '../../coordinator/autoscale/target.js';
import { gatewayLoadSchema } from '../../coordinator/api/schemas.js';
import { systemClock } from '../../shared/clock.js';
import { createLogger } from '../../shared/log.js';
import type { DeploymentLoad, GatewayLoad } from '../../shared/proto.js';
import { until } from '../helpers/eventually.js';

const NODES = 20;
const OTHERS = 500; // deployments the gateways name that are not autoscaled
const FLOOD_MS = 4_000;

test('a flood of load reports with a slow, failing controller: one pass at a time, bounded book, correct sizes', async (t) => {
  const deployments = new Map<string, AutoscaledDeployment>([
    ['sleepy', { tenant: 'acme', name: 'sleepy', minReplicas: 0, maxReplicas: 4, targetConcurrency: 4, scaleToZeroAfterMs: 60_000, replicas: 0, readyReplicas: 0, quotaHeadroom: undefined }],
    ['busy', { tenant: 'acme', name: 'busy', minReplicas: 1, maxReplicas: 8, targetConcurrency: 4, scaleToZeroAfterMs: 0, replicas: 1, readyReplicas: 1, quotaHeadroom: undefined }],
  ]);
  let inFlight = 0;
  let maxInFlight = 0;
  let calls = 0;
  const target: AutoscaleTarget = {
    autoscaled: () => [...deployments.values()].map((d) => ({ ...d })),
    async resizeDeployment(_tenant, name, replicas) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await new Promise((r) => setTimeout(r, 150));
        if (++calls % 3 === 1) throw new Error('revision conflict');
        deployments.get(name)!.replicas = replicas;
      } finally {
        inFlight--;
      }
    },
  };
  const scaler = new Autoscaler({ target, clock: systemClock, log: createLogger({ level: 'silent' }), tickMs: 100 });
  t.after(() => scaler.close());
  scaler.start();
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  t.after(() => lag.disable());

  const others: DeploymentLoad[] = Array.from({ length: OTHERS }, (_, i) => ({
    tenant: `t${i % 50}`, deployment: `d${i}`, concurrency: 1, inFlight: 1, waiting: 1, requests: 1, wake: true,
  }));
  const started = Date.now();
  let reports = 0;
  while (Date.now() - started < FLOOD_MS) {
    for (let n = 0; n < NODES; n++) {
      const load: GatewayLoad = {
        sentAtMs: Date.now(),
        intervalMs: 1000,
        deployments: [
          { tenant: 'acme', deployment: 'busy', concurrency: 24 / NODES, inFlight: 1, waiting: 0, requests: 5, wake: false },
          { tenant: 'acme', deployment: 'sleepy', concurrency: 0, inFlight: 1, waiting: 1, requests: 1, wake: true },
          ...others,
        ],
      };
      // As the agent session does: validated first.
      scaler.record(`node-${n}`, gatewayLoadSchema.parse(load) as GatewayLoad);
      reports++;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  lag.disable();

  await until('the sleeping deployment woke and the busy one grew', () => deployments.get('sleepy')!.replicas >= 1 && deployments.get('busy')!.replicas === 6, 10_000);
  assert.equal(maxInFlight, 1, 'one resize at a time');
  assert.ok(calls >= 3, `resizes tried (some failed): ${calls}`);
  // Only the two autoscaled deployments' reports are kept, one per node.
  assert.ok(reports > NODES * 10, `reports sent: ${reports}`);
  assert.equal(scaler.view('t1', 'd1'), undefined);
  await scaler.tick();
  assert.ok(scaler.reports <= NODES * 2, `reports held: ${scaler.reports}`);
  assert.equal(scaler.view('acme', 'busy')?.desiredReplicas, 6);
  const p99 = lag.percentile(99) / 1e6;
  t.diagnostic(`${reports} reports of ${OTHERS + 2} deployments from ${NODES} nodes in ${FLOOD_MS} ms; event loop delay p99 ${p99.toFixed(1)} ms; ${calls} resizes tried`);
  assert.ok(p99 < 2_000, `event loop delay p99 ${p99.toFixed(1)} ms`);
});
