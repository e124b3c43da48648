// Fault: a deployment whose replicas cannot start (issue 14, item 8). With dockerd shutting
// down, 24 replacements were created and failed within 0.3 s and one left a dead container
// behind. Here the only host port the cluster may hand out is held by someone else, so every
// replica's container fails at `docker start` on a real Docker agent: replacements back off (the
// gaps between attempts grow), `deployments show` says why, and no container of a failed start
// is left.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import Docker from 'dockerode';
import { LABELS } from '../../agent/drivers/docker-driver.js';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { freePort } from '../helpers/net.js';
import { startAgent, tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

test('replicas that fail to start are replaced with growing gaps, the reason is shown, and no dead container is left', { timeout: 60_000 }, async (t) => {
  const image = await ensureRuntimeImage();
  const docker = new Docker();
  const node = `crash-${randomBytes(3).toString('hex')}`;
  const port = await freePort();
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => squatter.close(resolve)));
  const portRange: [number, number] = [port, port];
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200, portRange, crashBackoff: { initialMs: 500, maxMs: 4_000, resetAfterMs: 30_000 } } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => {
    api.close();
    client.close();
  });
  await startAgent(t, node, [coordinator.address], tempDir(t), ['--driver', 'docker', '--join-token', join]);
  removeContainersAfter(t, node, docker);
  await eventually(`node ${node} ready`, 15_000, async () => ((await client.getNode(node).catch(() => undefined))?.status === 'ready' ? true : undefined));
  const body = Buffer.from('weights');
  await client.push('model', { name: 'm', format: 'other', sizeBytes: body.length }, Readable.from([body]));

  const started = Date.now();
  await api.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'broken', model: 'm', image, command: ['node', '-e', 'require("http").createServer((q, s) => s.end()).listen(8080)'], port: 8080, readinessPath: '/', replicas: 1 } });
  const get = () => api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'broken' });
  const shown = await eventually('the back-off shown by deployments show', 20_000, async () => {
    const d = await get();
    return /^crash loop back-off: /.test(d.message) ? d : undefined;
  });
  assert.equal(shown.status, 'degraded');
  assert.match(shown.message, /did not start/, `the reason is the failed start: ${shown.message}`);

  await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + 14_000 - Date.now())));
  // Failed replicas are forgotten once stopped; the events keep each one's first moment.
  const events = await api.events('deployment/broken');
  const firstSeen = new Map<string, number>();
  for (const e of events) if (e.allocation && !firstSeen.has(e.allocation)) firstSeen.set(e.allocation, Number(e.timeMs));
  const attempts = [...firstSeen.values()].sort((a, b) => a - b);
  assert.ok(events.filter((e) => e.type === 'BackOff').length >= attempts.length - 1, 'a BackOff event for each failure');
  const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
  t.diagnostic(`${attempts.length} replicas in 14 s; gaps between them (ms): ${gaps.join(', ')}`);
  // Without back-off, a replacement as soon as the last one failed (a second or so each). With
  // it: waits of 0.5, 1, 2, 4 s.
  assert.ok(attempts.length >= 4 && attempts.length <= 9, `${attempts.length} replicas`);
  // Each gap is the wait plus a second or so of placing, pulling and starting.
  // (the first also the model's first fetch).
  assert.ok(gaps.length >= 3 && gaps.at(-1)! > Math.min(...gaps) * 2, `the gaps grow: ${gaps.join(', ')}`);
  assert.ok(Math.max(...gaps) >= 3_000, `the later gaps are seconds long: ${gaps.join(', ')}`);

  // The newest replica may be starting at this very moment (and one newer than the events read
  // may have begun since): every earlier one failed seconds ago and must be gone.
  const newest = [...firstSeen.entries()].sort((a, b) => a[1] - b[1]).at(-1)?.[0];
  const failedEarlier = new Set([...firstSeen.keys()].filter((id) => id !== newest));
  const left = await docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } });
  assert.deepEqual(
    left.filter((c) => failedEarlier.has(c.Labels[LABELS.allocation] ?? '')).map((c) => [c.Labels[LABELS.allocation], c.State]),
    [],
    'every failed start removed its container',
  );
});
