// `npm run bench -- autoscale [--quick]`: serverless serving on Docker with the onnx stack, the
// model cached on the host. A real coordinator and a real agent (docker driver) as processes.
//   wake: a deployment at zero (min 0, max 4, scale to zero after 1 s) gets one request through
//         the gateway; time from the request to its answer, over ≥ 10 wake-ups (--quick: 5).
//   step: a deployment at one replica under light load (10 requests/s to a server that takes
//         100 ms each: 1 in flight) goes to 10× (100/s: 10 in flight); seconds from the step to
//         the autoscaler's decision (its event) and to the first added replica ready, and the
//         errors during the step. (This server is the runtime image's: the onnx stack answers in
//         a millisecond, so in-flight counts would say little.)
//   gateway CPU: the agent process's CPU per request under the same closed loop, for an
//         autoscaled deployment against a fixed-size one, in the same run.
// Goals (issue 16): wake p50 ≤ 1.5 s and p99 ≤ 3 s; decision ≤ 1 s; replica serving ≤ 3 s;
// 0 errors; gateway CPU per request within 10 %.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { CoordinatorClient } from '../../shared/client.js';
import { mlfleetV1, type WorkloadEvent } from '../../shared/proto.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { ensureOnnxImage, ensureRuntimeImage } from '../helpers/images.js';
import { infer, linear } from '../helpers/inference.js';
import { Daemons, line, percentile } from './lib/daemons.js';
import { cpuTimes } from './lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const quick = process.argv.includes('--quick');
const wakeRounds = quick ? 5 : 12;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-autoscale-bench-'));
const daemons = new Daemons();
// A replica gets a core: with 100m the onnx server's own start takes seconds of throttled CPU.
const resources = { cpuMillis: 1000, memoryBytes: 512 * 2 ** 20 };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU seconds the process `pid` has used (user + system). */
function cpuSeconds(pid: number): number {
  const { user, system } = cpuTimes(pid);
  return user + system;
}

const SLEEPY_SERVER = `require('http').createServer((q, s) => { q.resume(); setTimeout(() => s.end('{}'), 100); }).listen(Number(process.env.PORT))`;

/** Requests started at `perSecond` (open loop: not waiting for answers) until `stop`. */
function openLoop(gateway: string, model: string, token: string, perSecond: number, stop: { done: boolean }) {
  const tally = { ok: 0, errors: 0, statuses: new Map<number, number>() };
  const inFlight = new Set<Promise<void>>();
  const finished = (async () => {
    const started = performance.now();
    for (let n = 0; !stop.done; n++) {
      const due = started + (n * 1000) / perSecond;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const request: Promise<void> = infer(gateway, model, token)
        .catch(() => ({ status: 0 }))
        .then((a) => {
          if (a.status === 200) tally.ok++;
          else {
            tally.errors++;
            tally.statuses.set(a.status, (tally.statuses.get(a.status) ?? 0) + 1);
          }
          inFlight.delete(request);
        });
      inFlight.add(request);
    }
    await Promise.all(inFlight);
  })();
  return { tally, finished };
}

/** `workers` closed loops of requests until `stop`; counts answers and errors. */
function load(gateway: string, model: string, token: string, workers: number, stop: { done: boolean }) {
  const tally = { ok: 0, errors: 0, statuses: new Map<number, number>() };
  const loops = Array.from({ length: workers }, async () => {
    while (!stop.done) {
      const a = await infer(gateway, model, token).catch(() => ({ status: 0 }));
      if (a.status === 200) tally.ok++;
      else {
        tally.errors++;
        tally.statuses.set(a.status, (tally.statuses.get(a.status) ?? 0) + 1);
      }
    }
  });
  return { tally, finished: Promise.all(loops) };
}

try {
  await ensureOnnxImage();
  const coordinator = daemons.start(path.join(root, 'dist/coordinator/main.js'), ['--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/coordinator`]);
  const started = JSON.parse(await line(coordinator, (l) => l.includes('coordinator started'))) as { grpc: string };
  await sleep(2_500);
  const admin = readFileSync(`${dir}/coordinator/admin-token`, 'utf8').trim();
  const client = new CoordinatorClient([started.grpc], { token: admin });
  const model = linear(3);
  await client.push('model', { name: 'linear', format: 'onnx', sizeBytes: model.length }, Readable.from([model]));

  const inventory = path.join(dir, 'inventory.json');
  writeFileSync(inventory, JSON.stringify({ cpu: '8', memory: '32Gi' }));
  const agent = daemons.start(path.join(root, 'dist/agent/main.js'), [
    '--name', 'bench-node', '--coordinator', started.grpc, '--data-dir', `${dir}/agent`, '--http-listen', '127.0.0.1:0', '--gateway-listen', '127.0.0.1:0',
    '--join-token-file', `${dir}/coordinator/join-token`, '--inventory-file', inventory, '--driver', 'docker',
  ]);
  const gateway = (JSON.parse(await line(agent, (l) => l.includes('agent started'))) as { gateway: string }).gateway;
  await sleep(1_000);
  await client.prefetchModel('bench-node', 'linear:1');
  await sleep(1_000);

  const eventsClient = new (mlfleetV1().EventService)(started.grpc, grpc.credentials.createInsecure());
  const stream = eventsClient.WatchEvents({ replay: 0, follow: true }, setBearer(new grpc.Metadata(), admin));
  const seen: Array<WorkloadEvent & { at: number }> = [];
  stream.on('data', (e: WorkloadEvent) => seen.push({ ...e, at: performance.now() }));
  stream.on('error', () => undefined);

  // ---- wake from zero --------------------------------------------------------------------
  await client.applyDeployment(compileDeploymentSpec({ name: 'wake', model: 'linear', stack: 'onnx', minReplicas: 0, maxReplicas: 4, scaleToZeroAfterMs: 1_000, resources }));
  const wakes: number[] = [];
  let wakeErrors = 0;
  for (let round = 0; round < wakeRounds + 1; round++) {
    const t0 = performance.now();
    for (;;) {
      const d = await client.getDeployment('wake');
      if (d.spec?.replicas === 0 && d.allocations.every((a) => a.desired !== 'run')) break;
      if (performance.now() - t0 > 60_000) throw new Error('wake: not at zero within 60 s');
      await sleep(100);
    }
    await sleep(300);
    const asked = performance.now();
    const answer = await infer(gateway, 'linear', admin);
    if (round === 0) continue; // the first start also pulls the image layers into the page cache
    if (answer.status !== 200) wakeErrors++;
    wakes.push(answer.ms);
    await sleep(200);
    const after = (type: string) => seen.find((e) => e.object === 'deployment/wake' && e.type === type && e.at >= asked);
    const woke = after('Autoscaled');
    const ready = after('Ready');
    const ms = (e: { at: number } | undefined) => (e ? `${(e.at - asked).toFixed(0)} ms` : '-');
    console.log(`wake ${round}: ${answer.status} in ${answer.ms} ms (decision at ${ms(woke)}, scheduled at ${ms(after('Scheduled'))}, ready at ${ms(ready)}; ${after('ColdStart')?.message ?? 'no cold-start event'})`);
  }
  await client.deleteDeployment('wake');

  // ---- a step to 10× -----------------------------------------------------------------------
  // A replica that takes 100 ms per request (the runtime image with a small server), driven by
  // an open-loop generator at a bounded rate: 10 requests/s (1 in flight) and then 100/s (10 in
  // flight), so the step is a true 10× and the generator does not take the machine's cores
  // from the replicas being started.
  const runtimeImage = await ensureRuntimeImage();
  const sleepy = Buffer.from('a stand-in model: the server below answers every request after 100 ms');
  await client.push('model', { name: 'sleepy', format: 'other', sizeBytes: sleepy.length }, Readable.from([sleepy]));
  await client.prefetchModel('bench-node', 'sleepy:1');
  await client.applyDeployment(
    compileDeploymentSpec({ name: 'step', model: 'sleepy', image: runtimeImage, command: ['node', '-e', SLEEPY_SERVER], port: 8080, readinessPath: '/', minReplicas: 1, maxReplicas: 8, targetConcurrency: 2, resources }),
  );
  for (const t0 = performance.now(); ; await sleep(100)) {
    if ((await client.getDeployment('step')).readyReplicas >= 1 && (await infer(gateway, 'sleepy', admin)).status === 200) break;
    if (performance.now() - t0 > 60_000) throw new Error('step: not ready within 60 s');
  }
  const stopLight = { done: false };
  const light = openLoop(gateway, 'sleepy', admin, 10, stopLight);
  await sleep(8_000);
  const stepAt = performance.now();
  const stopHeavy = { done: false };
  const heavy = openLoop(gateway, 'sleepy', admin, 90, stopHeavy);
  const onStep = (e: WorkloadEvent & { at: number }) => e.object === 'deployment/step' && e.at >= stepAt;
  let decisionS: number | undefined;
  let servingS: number | undefined;
  for (;;) {
    const decision = seen.find((e) => onStep(e) && /scaled 1 → \d/.test(e.message));
    if (decision) decisionS ??= (decision.at - stepAt) / 1000;
    const ready = seen.filter((e) => onStep(e) && e.type === 'Ready');
    if (ready.length > 0) servingS = (ready[0]!.at - stepAt) / 1000;
    if (servingS !== undefined || performance.now() - stepAt > 30_000) break;
    await sleep(20);
  }
  await sleep(5_000);
  stopLight.done = stopHeavy.done = true;
  await Promise.all([light.finished, heavy.finished]);
  const stepErrors = light.tally.errors + heavy.tally.errors;
  const view = (await client.getDeployment('step')).autoscaler;
  console.log(`step: decision after ${decisionS?.toFixed(2)} s, first added replica ready after ${servingS?.toFixed(2)} s; ${light.tally.ok + heavy.tally.ok} answered, ${stepErrors} errors ${JSON.stringify([...heavy.tally.statuses])}; view ${JSON.stringify(view)}`);
  await client.deleteDeployment('step');

  // ---- the gateway's CPU per request: autoscaled against fixed ------------------------------
  // Both deployments at once (two models of the same bytes), measured in alternating rounds
  // so that drift of the machine falls on both alike.
  const agentPid = agent.pid!;
  await client.push('model', { name: 'linear-auto', format: 'onnx', sizeBytes: model.length }, Readable.from([model]));
  await client.prefetchModel('bench-node', 'linear-auto:1');
  await client.applyDeployment(compileDeploymentSpec({ name: 'fixed', model: 'linear', stack: 'onnx', replicas: 1, resources }));
  await client.applyDeployment(compileDeploymentSpec({ name: 'auto', model: 'linear-auto', stack: 'onnx', minReplicas: 1, maxReplicas: 1, resources }));
  for (const modelName of ['linear', 'linear-auto']) {
    for (const t0 = performance.now(); (await infer(gateway, modelName, admin)).status !== 200; await sleep(100)) {
      if (performance.now() - t0 > 60_000) throw new Error(`${modelName}: not answering within 60 s`);
    }
  }
  const totals = { linear: { cpu: 0, requests: 0 }, 'linear-auto': { cpu: 0, requests: 0 } };
  for (let round = 0; round < (quick ? 2 : 5); round++) {
    for (const modelName of ['linear', 'linear-auto'] as const) {
      const stop = { done: false };
      const before = cpuSeconds(agentPid);
      const run = load(gateway, modelName, admin, 4, stop);
      await sleep(3_000);
      stop.done = true;
      await run.finished;
      totals[modelName].cpu += cpuSeconds(agentPid) - before;
      totals[modelName].requests += run.tally.ok;
    }
  }
  const fixed = { microsPerRequest: (totals.linear.cpu / totals.linear.requests) * 1e6, requests: totals.linear.requests };
  const auto = { microsPerRequest: (totals['linear-auto'].cpu / totals['linear-auto'].requests) * 1e6, requests: totals['linear-auto'].requests };
  console.log(`agent CPU per request: fixed ${fixed.microsPerRequest.toFixed(0)} µs (${fixed.requests} requests), autoscaled ${auto.microsPerRequest.toFixed(0)} µs (${auto.requests})`);

  stream.cancel();
  eventsClient.close();
  client.close();
  const s = (v: number) => Number((v / 1000).toFixed(3));
  const result = {
    bench: 'autoscale',
    wakeUps: wakes.length,
    wakeP50S: s(percentile(wakes, 50)),
    wakeP99S: s(percentile(wakes, 99)),
    wakeErrors,
    stepToDecisionS: decisionS === undefined ? null : Number(decisionS.toFixed(3)),
    stepToServingS: servingS === undefined ? null : Number(servingS.toFixed(3)),
    stepErrors,
    gatewayCpuRatio: Number((auto.microsPerRequest / fixed.microsPerRequest).toFixed(3)),
  };
  const goalMet = result.wakeP50S <= 1.5 && result.wakeP99S <= 3 && wakeErrors === 0 && (decisionS ?? 99) <= 1 && (servingS ?? 99) <= 3 && stepErrors === 0 && result.gatewayCpuRatio <= 1.1;
  console.log(JSON.stringify({ ...result, goalMet }));
} finally {
  await daemons.stop();
  rmSync(dir, { recursive: true, force: true });
}
