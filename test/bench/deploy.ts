// `npm run bench -- deploy [--quick]`: time from `deploy` of an already-cached model to its
// allocation `ready` on Docker, and its parts: schedule (deploy → Scheduled), start (Scheduled →
// Started: the agent creates and starts the container), first health check (Started → Ready).
// A real coordinator and a real agent (docker driver) as processes; each round deploys a new
// one-replica deployment of the same model and removes it afterwards. The event times are the
// coordinator's, taken as each state reaches it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { CoordinatorClient } from '../../shared/client.js';
import { mlfleetV1, type WorkloadEvent } from '../../shared/proto.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { Daemons, line, percentile } from './lib/daemons.js';
import { WorkloadApi } from '../helpers/workload-api.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const quick = process.argv.includes('--quick');
const rounds = quick ? 5 : 20;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-deploy-bench-'));
const daemons = new Daemons();

const SERVER = `require('http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT))`;

try {
  const image = await ensureRuntimeImage();
  const coordinator = daemons.start(path.join(root, 'dist/coordinator/main.js'), [
    '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/coordinator`,
  ]);
  const started = JSON.parse(await line(coordinator, (l) => l.includes('coordinator started'))) as { grpc: string };
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  const admin = readFileSync(`${dir}/coordinator/admin-token`, 'utf8').trim();
  const client = new CoordinatorClient([started.grpc], { token: admin });
  const api = new WorkloadApi(started.grpc, admin);
  const model = Buffer.from('a small model: the benchmark measures the path, not the bytes');
  await client.push('model', { name: 'bench', format: 'other', sizeBytes: model.length }, Readable.from([model]));

  const inventory = path.join(dir, 'inventory.json');
  writeFileSync(inventory, JSON.stringify({ cpu: '8', memory: '32Gi' }));
  const agent = daemons.start(path.join(root, 'dist/agent/main.js'), [
    '--name', 'bench-node', '--coordinator', started.grpc, '--data-dir', `${dir}/agent`, '--http-listen', '127.0.0.1:0',
    '--join-token-file', `${dir}/coordinator/join-token`, '--inventory-file', inventory, '--driver', 'docker',
  ]);
  await line(agent, (l) => l.includes('connected to the leader'));
  await client.prefetchModel('bench-node', 'bench:1');
  await new Promise((resolve) => setTimeout(resolve, 1_000));

  // Every event, timestamped as it arrives.
  const eventsClient = new (mlfleetV1().EventService)(started.grpc, grpc.credentials.createInsecure());
  const stream = eventsClient.WatchEvents({ replay: 0, follow: true }, setBearer(new grpc.Metadata(), admin));
  const seen: Array<WorkloadEvent & { at: number }> = [];
  stream.on('data', (e: WorkloadEvent) => seen.push({ ...e, at: performance.now() }));
  stream.on('error', () => undefined);

  const totals: number[] = [];
  const parts = { schedule: [] as number[], start: [] as number[], firstHealthCheck: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    const name = `bench-${round}`;
    const t0 = performance.now();
    await api.call('DeploymentService', 'ApplyDeployment', { spec: { name, model: 'bench:1', image, command: ['node', '-e', SERVER], port: 8080, replicas: 1, readinessPath: '/' } });
    const at = (type: string) => seen.find((e) => e.object === `deployment/${name}` && e.type === type)?.at;
    while (at('Ready') === undefined) {
      if (performance.now() - t0 > 60_000) throw new Error(`${name} not ready within 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const scheduled = at('Scheduled')!;
    const running = at('Started') ?? scheduled;
    const ready = at('Ready')!;
    totals.push(ready - t0);
    parts.schedule.push(scheduled - t0);
    parts.start.push(running - scheduled);
    parts.firstHealthCheck.push(ready - running);
    console.log(`${name}: ready in ${(ready - t0).toFixed(0)} ms (schedule ${(scheduled - t0).toFixed(0)}, start ${(running - scheduled).toFixed(0)}, first health check ${(ready - running).toFixed(0)})`);
    await api.call('DeploymentService', 'DeleteDeployment', { name });
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  stream.cancel();
  eventsClient.close();
  api.close();
  client.close();
  const ms = (v: number) => Number(v.toFixed(1));
  const result = {
    bench: 'deploy',
    rounds,
    p50Ms: ms(percentile(totals, 50)),
    p95Ms: ms(percentile(totals, 95)),
    scheduleP50Ms: ms(percentile(parts.schedule, 50)),
    startP50Ms: ms(percentile(parts.start, 50)),
    firstHealthCheckP50Ms: ms(percentile(parts.firstHealthCheck, 50)),
  };
  console.log(JSON.stringify({ ...result, goalMet: result.p50Ms < 1500 }));
} finally {
  await daemons.stop();
  rmSync(dir, { recursive: true, force: true });
}
