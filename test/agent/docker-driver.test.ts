// The docker driver against the real local engine, on the runtime image `npm run images`
// builds: what a task's container gets (port, env, limits, mounts, labels, bounded logs),
// idempotent starts, adoption by a restarted agent, exit codes, logs, stopping a container while
// keeping it with its logs, removal.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import Docker from 'dockerode';
import { containerName, containerSpec, DockerDriver, LABELS, LOG_MAX_FILES, LOG_MAX_SIZE, peersSeenFromContainer, tenantNetworkName } from '../../agent/drivers/docker-driver.js';
import type { Task } from '../../agent/drivers/driver.js';
import { MlfleetError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import type { RunSpec } from '../../shared/workloads.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { freePort } from '../helpers/net.js';
import { tempDir } from '../helpers/processes.js';
import { assertTailThenFollow, get, linesThenAfterTheCall, logs } from './driver-checks.js';

const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`;
const NODE = `test-node-${RUN}`;
const OTHER_NODE = `test-other-${RUN}`;
const MIB = 1024 * 1024;
let ids = 0;

const docker = new Docker();
let image: string;

before(async () => {
  image = await ensureRuntimeImage(docker);
});

// Whatever a failed test left behind on either node name goes too.
after(async () => {
  for (const node of [NODE, OTHER_NODE]) {
    const leftovers = await docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } });
    await Promise.all(leftovers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  }
});

function spec(overrides: Partial<RunSpec> = {}): RunSpec {
  return {
    image,
    command: [],
    env: {},
    port: 0,
    readinessPath: '',
    readinessTimeoutMs: 30_000,
    model: undefined,
    datasets: [],
    rank: 0,
    worldSize: 1,
    ...overrides,
  };
}

function task(overrides: Partial<Task> & { spec: RunSpec }): Task {
  return {
    allocationId: `alloc-${RUN}-${++ids}`,
    kind: 'deployment',
    workload: 'echo',
    tenant: 'acme',
    cpuMillis: 0,
    memoryBytes: 0,
    gpuIndexes: [],
    hostPort: 0,
    mounts: [],
    env: {},
    ...overrides,
  };
}

function node(script: string): string[] {
  return ['node', '-e', script];
}

async function driverFor(node = NODE): Promise<DockerDriver> {
  return DockerDriver.create({ node, log: silentLogger(), docker });
}

/** A directory a container's non-root user can read (mkdtemp makes them 0700). */
function sharedDir(t: TestContext, files: Record<string, string>, mode = 0o755): string {
  const dir = tempDir(t, 'mlfleet-docker-mount-');
  chmodSync(dir, mode);
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content, { mode: 0o644 });
  return dir;
}

async function containersOf(allocationId: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.allocation}=${allocationId}`] } });
}

const SERVER = `
const fs = require('fs');
let write = 'written';
try { fs.writeFileSync('/data/out.txt', 'x'); } catch (err) { write = err.code; }
require('http').createServer((req, res) => res.end(JSON.stringify({
  greeting: process.env.GREETING,
  read: fs.readFileSync('/data/in.txt', 'utf8'),
  write,
}))).listen(Number(process.env.PORT), () => console.log('listening'));
`;

describe('a serving container', () => {
  let driver: DockerDriver;
  let served: Task;

  before(async () => {
    driver = await driverFor();
  });

  it('answers on 127.0.0.1:<hostPort> with its env, and reads (but cannot write) its read-only mount', async (t) => {
    // Everyone may write the directory: only the read-only mount stops the container.
    const data = sharedDir(t, { 'in.txt': 'model bytes' }, 0o777);
    served = task({
      spec: spec({ command: node(SERVER), port: 8080 }),
      cpuMillis: 500,
      memoryBytes: 256 * MIB,
      hostPort: await freePort(),
      mounts: [{ hostPath: data, containerPath: '/data', readOnly: true }],
      env: { PORT: '8080', GREETING: 'hello from the container' },
    });
    await driver.start(served);
    const body = await eventually(
      'the server answering on its host port',
      15_000,
      async () => JSON.parse(await get(served.hostPort)) as Record<string, string>,
      { retryErrors: true, intervalMs: 100 },
    );
    assert.deepEqual(body, { greeting: 'hello from the container', read: 'model bytes', write: 'EROFS' });
  });

  it('carries its labels, CPU and memory limits, bounded json-file logs and no restart policy', async () => {
    const info = await docker.getContainer(containerName(served.allocationId)).inspect();
    const own = Object.fromEntries(Object.entries(info.Config.Labels).filter(([name]) => name.startsWith('mlfleet.')));
    assert.deepEqual(own, {
      [LABELS.allocation]: served.allocationId,
      [LABELS.workload]: 'echo',
      [LABELS.kind]: 'deployment',
      [LABELS.tenant]: 'acme',
      [LABELS.node]: NODE,
    });
    assert.equal(info.HostConfig.NanoCpus, 500_000_000);
    assert.equal(info.HostConfig.Memory, 256 * MIB);
    assert.deepEqual(info.HostConfig.LogConfig, { Type: 'json-file', Config: { 'max-size': LOG_MAX_SIZE, 'max-file': String(LOG_MAX_FILES) } });
    assert.equal(info.HostConfig.RestartPolicy?.Name, 'no');
    assert.deepEqual(info.HostConfig.PortBindings, { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(served.hostPort) }] });
  });

  it('is one container however often start() is called', async () => {
    await driver.start(served);
    await driver.start(served);
    assert.equal((await containersOf(served.allocationId)).length, 1);
  });

  it("is adopted by a new driver on the same node, and ignored by another node's driver", async () => {
    const restarted = await driverFor();
    const status = (await restarted.list()).find((s) => s.allocationId === served.allocationId);
    assert.ok(status, 'a new driver lists the running container');
    assert.equal(status.running, true);
    assert.equal(status.exitCode, undefined);
    assert.ok(status.startedAtMs > Date.now() - 60_000 && status.startedAtMs <= Date.now());
    const stranger = await driverFor(OTHER_NODE);
    assert.equal((await stranger.list()).some((s) => s.allocationId === served.allocationId), false);
  });

  it('follows its log until the signal aborts', async () => {
    const controller = new AbortController();
    const seen: string[] = [];
    for await (const chunk of driver.logs(served.allocationId, { tailBytes: 0, follow: true, signal: controller.signal })) {
      seen.push(chunk.toString());
      // Abort while the follow waits for output that will not come.
      setTimeout(() => controller.abort(), 200);
    }
    assert.equal(seen.join(''), 'listening\n');
  });

  it('is stopped and removed, and removing it again is harmless', async () => {
    await driver.remove(served.allocationId, 1_000);
    assert.deepEqual(await containersOf(served.allocationId), []);
    assert.equal((await driver.list()).some((s) => s.allocationId === served.allocationId), false);
    await driver.remove(served.allocationId, 1_000);
    await assert.rejects(get(served.hostPort));
  });
});

it("is stopped and kept: listed as exited with its kind and when, its logs readable, its host port free for another container; stopping again is harmless", async (t) => {
  const driver = await driverFor();
  const hostPort = await freePort();
  const worker = (rank: string) =>
    task({
      kind: 'job',
      hostPort,
      env: { PORT: '8080', MLFLEET_RANK: rank },
      spec: spec({
        port: 8080,
        command: node(`require('http').createServer((q, r) => r.end(process.env.MLFLEET_RANK)).listen(8080, () => console.log('rank', process.env.MLFLEET_RANK, 'listening'));
          process.on('SIGTERM', () => { console.log('rank', process.env.MLFLEET_RANK, 'got SIGTERM'); process.exit(143); });`),
      }),
    });
  const first = worker('1');
  t.after(() => driver.remove(first.allocationId, 0));
  await driver.start(first);
  await eventually('rank 1 answering', 15_000, async () => ((await get(hostPort)) === '1' ? true : undefined), { retryErrors: true, intervalMs: 100 });

  const before = Date.now();
  await driver.stop(first.allocationId, 5_000);
  const after = Date.now();
  assert.deepEqual((await containersOf(first.allocationId)).map((c) => c.State), ['exited']);
  const status = (await driver.list()).find((s) => s.allocationId === first.allocationId)!;
  assert.deepEqual([status.kind, status.running, status.exitCode], ['job', false, 143]);
  assert.ok(status.finishedAtMs >= before - 1_000 && status.finishedAtMs <= after + 1_000, 'it says when it ended');
  assert.equal(await logs(driver, first.allocationId), 'rank 1 listening\nrank 1 got SIGTERM\n');
  await driver.stop(first.allocationId, 5_000);
  await driver.start(first);
  assert.deepEqual((await containersOf(first.allocationId)).map((c) => c.State), ['exited'], 'stopping or starting again changes nothing');

  // A stopped container binds no port: the next one publishes it.
  const second = worker('2');
  t.after(() => driver.remove(second.allocationId, 0));
  await driver.start(second);
  await eventually('rank 2 answering on the same host port', 15_000, async () => ((await get(hostPort)) === '2' ? true : undefined), { retryErrors: true, intervalMs: 100 });
});

it('reports a task that exits 3 as exited with code 3', async (t) => {
  const driver = await driverFor();
  const job = task({ kind: 'job', spec: spec({ command: node('process.exit(3)') }) });
  t.after(() => driver.remove(job.allocationId, 0));
  await driver.start(job);
  const status = await eventually('the task exiting', 15_000, async () => (await driver.list()).find((s) => s.allocationId === job.allocationId && !s.running));
  assert.equal(status.exitCode, 3);
  assert.equal(status.reason, '');
  assert.ok(status.finishedAtMs >= status.startedAtMs && status.startedAtMs > 0);
});

it('says "OOM killed" for a task that ran out of memory', async (t) => {
  const driver = await driverFor();
  const job = task({
    kind: 'job',
    memoryBytes: 64 * MIB,
    spec: spec({ command: node('const kept = []; for (;;) kept.push(Buffer.alloc(16 << 20, 1));') }),
  });
  t.after(() => driver.remove(job.allocationId, 0));
  await driver.start(job);
  const status = await eventually('the task being killed', 15_000, async () => (await driver.list()).find((s) => s.allocationId === job.allocationId && !s.running));
  assert.equal(status.reason, 'OOM killed');
  assert.equal(status.exitCode, 137);
});

it('gives the last bytes of the log, and a followed log goes on with lines written after the call', async (t) => {
  const driver = await driverFor();
  const trigger = sharedDir(t, {});
  const job = task({
    kind: 'job',
    mounts: [{ hostPath: trigger, containerPath: '/trigger', readOnly: true }],
    spec: spec({ command: node(linesThenAfterTheCall('/trigger/go', 50)) }),
  });
  t.after(() => driver.remove(job.allocationId, 0));
  await driver.start(job);
  await eventually('the first hundred lines', 15_000, async () => ((await logs(driver, job.allocationId)).includes('line-099\n') ? true : undefined), { intervalMs: 100 });

  assert.equal(await logs(driver, job.allocationId, 5), '-099\n');
  await assertTailThenFollow(driver, job.allocationId, () => writeFileSync(path.join(trigger, 'go'), ''));
});

const NETWORK = { name: 'mlfleet-tenant-acme' };

it('asks the nvidia driver for exactly the assigned GPUs', () => {
  const created = containerSpec(task({ gpuIndexes: [1, 3], spec: spec({ image: 'example/trainer:1' }) }), 'gpu-host', NETWORK);
  assert.deepEqual(created.HostConfig?.DeviceRequests, [{ Driver: 'nvidia', DeviceIDs: ['1', '3'], Capabilities: [['gpu']] }]);
  assert.equal(created.Labels?.[LABELS.node], 'gpu-host');
  const cpuOnly = containerSpec(task({ spec: spec({ image: 'example/trainer:1', command: ['train'] }) }), 'gpu-host', NETWORK);
  assert.equal(cpuOnly.HostConfig?.DeviceRequests, undefined);
  assert.deepEqual(cpuOnly.Cmd, ['train']);
  // No command: the image's own; no limits: 0, which docker reads as unlimited.
  const defaults = containerSpec(task({ spec: spec({ image: 'example/server:1' }) }), 'gpu-host', NETWORK);
  assert.equal(defaults.Cmd, undefined);
  assert.equal(defaults.HostConfig?.NanoCpus, 0);
  assert.equal(defaults.HostConfig?.Memory, 0);
  assert.equal(defaults.HostConfig?.PortBindings, undefined);
});

it('fails clearly, naming the image and `npm run images`, when the image is not on the host', async () => {
  const driver = await driverFor();
  const missing = `mlfleet/not-built-${RUN}:0.0.1`;
  const job = task({ spec: spec({ image: missing, command: ['node'] }) });
  await assert.rejects(driver.start(job), (err: Error) => {
    assert.ok(MlfleetError.is(err));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.match(err.message, new RegExp(missing.replace(/[.]/g, '\\.')));
    assert.match(err.message, /npm run images/);
    return true;
  });
  assert.deepEqual(await containersOf(job.allocationId), []);
});

describe('gang peers seen from a container', () => {
  it('names loopback peers by their alias on the tenant network, at the port they listen on in their container, and leaves others alone', () => {
    const local = { MLFLEET_PEERS: '127.0.0.1:31000,127.0.0.1:31001,[::1]:31002', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '31000', OTHER: 'x' };
    assert.deepEqual(peersSeenFromContainer(local), {
      MLFLEET_PEERS: 'mlfleet-peer-31000:29500,mlfleet-peer-31001:29500,mlfleet-peer-31002:29500',
      MASTER_ADDR: 'mlfleet-peer-31000',
      MASTER_PORT: '29500',
      OTHER: 'x',
    });
    const fleet = { MLFLEET_PEERS: '10.0.0.5:31000,10.0.0.6:31001', MASTER_ADDR: '10.0.0.5', MASTER_PORT: '31000' };
    assert.equal(peersSeenFromContainer(fleet), fleet);
    const alone = { MLFLEET_RANK: '0' };
    assert.equal(peersSeenFromContainer(alone), alone);
  });
});

describe('two clusters on one engine', () => {
  const clusters = [randomBytes(8).toString('hex'), randomBytes(8).toString('hex')] as const;

  after(async () => {
    for (const cluster of clusters) await docker.getNetwork(tenantNetworkName('acme', cluster)).remove().catch(() => undefined);
  });

  it("lists and removes its own cluster's containers only, adopts the unlabelled ones it started, and starts nothing before it knows its cluster", async () => {
    const legacy = await driverFor();
    const old = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    await legacy.start(old);
    const [a, b] = clusters;
    const driverA = await DockerDriver.create({ node: NODE, log: silentLogger(), docker, cluster: () => a, ownsUnlabelled: (id) => id === old.allocationId });
    const driverB = await DockerDriver.create({ node: NODE, log: silentLogger(), docker, cluster: () => b, ownsUnlabelled: () => false });
    const ofA = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    const ofB = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    await driverA.start(ofA);
    await driverB.start(ofB);

    const [containerA] = await containersOf(ofA.allocationId);
    assert.equal(containerA?.Labels[LABELS.cluster], a);
    const networkA = (await docker.getNetwork(tenantNetworkName('acme', a)).inspect()) as Docker.NetworkInspectInfo;
    assert.equal((await docker.getContainer(containerA.Id).inspect()).HostConfig.NetworkMode, networkA.Id, "on its cluster's own tenant network");
    assert.equal(networkA.Labels?.[LABELS.cluster], a);
    assert.deepEqual((await driverA.list()).map((s) => s.allocationId).sort(), [ofA.allocationId, old.allocationId].sort());
    assert.deepEqual((await driverB.list()).map((s) => s.allocationId), [ofB.allocationId]);

    // B's agent removing what it does not know (its reconciler's strays) never reaches A's.
    await driverB.remove(ofA.allocationId, 0);
    await driverB.remove(old.allocationId, 0);
    assert.equal((await containersOf(ofA.allocationId))[0]?.State, 'running');
    assert.equal((await containersOf(old.allocationId))[0]?.State, 'running');

    const unwelcomed = await DockerDriver.create({ node: NODE, log: silentLogger(), docker, cluster: () => undefined, ownsUnlabelled: () => false });
    assert.deepEqual(await unwelcomed.list(), []);
    await assert.rejects(unwelcomed.start(task({ spec: spec() })), /does not know its cluster's id yet/);

    for (const [driver, t] of [[driverA, ofA], [driverA, old], [driverB, ofB]] as const) await driver.remove(t.allocationId, 0);
    assert.deepEqual([...(await containersOf(ofA.allocationId)), ...(await containersOf(old.allocationId)), ...(await containersOf(ofB.allocationId))], []);
  });

  it("removes a tenant's network with its last container, keeps it while another uses it, and makes it again when needed", async () => {
    const [a] = clusters;
    const network = tenantNetworkName('acme', a);
    const exists = async () => (await docker.listNetworks({ filters: { name: [network] } })).some((n) => n.Name === network);
    const driver = await DockerDriver.create({ node: NODE, log: silentLogger(), docker, cluster: () => a, ownsUnlabelled: () => false, networkGraceMs: 0 });
    // Another agent of the cluster on the same engine (another node name) shares the network.
    const neighbour = await DockerDriver.create({ node: OTHER_NODE, log: silentLogger(), docker, cluster: () => a, ownsUnlabelled: () => false, networkGraceMs: 0 });
    const first = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    const second = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    await driver.start(first);
    await neighbour.start(second);
    await driver.remove(first.allocationId, 0);
    assert.ok(await exists(), "kept: the neighbour's container still uses it");
    await neighbour.remove(second.allocationId, 0);
    assert.equal(await exists(), false, 'gone with the last container: Docker has address pools for a few dozen networks only');
    // A driver that still remembers the network's id makes it again.
    const third = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    await driver.start(third);
    assert.equal((await containersOf(third.allocationId))[0]?.State, 'running');
    assert.ok(await exists());
    await driver.remove(third.allocationId, 0);
  });

  it("starts the task when another agent removes the tenant's network before the list, the create or the start", async () => {
    const [a] = clusters;
    const network = tenantNetworkName('acme', a);
    const named = async () => (await docker.listNetworks({ filters: { name: [network] } })).filter((n) => n.Name === network);
    const removeIt = async () => {
      for (const n of await named()) await docker.getNetwork(n.Id).remove();
    };
    // The same engine, but the network is removed once at one step, as a neighbour's release
    // (or its keeping of an older copy) does when it lands between this agent's calls.
    const racing = (step: 'createNetwork' | 'createContainer' | 'start'): Docker => {
      const engine = Object.create(docker) as Docker;
      let raced = false;
      const once = async () => {
        if (raced) return;
        raced = true;
        await removeIt();
      };
      if (step === 'createNetwork') engine.createNetwork = async (options) => docker.createNetwork(options).then(async (made) => (await once(), made));
      if (step === 'createContainer') engine.createContainer = async (options) => (await once(), docker.createContainer(options));
      if (step === 'start') engine.createContainer = async (options) => docker.createContainer(options).then(async (made) => (await once(), made));
      return engine;
    };
    for (const step of ['createNetwork', 'createContainer', 'start'] as const) {
      await removeIt();
      const driver = await DockerDriver.create({ node: NODE, log: silentLogger(), docker: racing(step), cluster: () => a, ownsUnlabelled: () => false, networkGraceMs: 0 });
      const started = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
      await driver.start(started);
      const [container] = await containersOf(started.allocationId);
      assert.equal(container?.State, 'running', `removed before ${step}: the task runs`);
      const networks = await named();
      assert.equal(networks.length, 1, `removed before ${step}: one network again`);
      assert.deepEqual(Object.values((await docker.getContainer(container.Id).inspect()).NetworkSettings.Networks).map((n) => n.NetworkID), [networks[0]!.Id]);
      await driver.remove(started.allocationId, 0);
      assert.deepEqual(await containersOf(started.allocationId), [], 'nothing left behind');
    }
  });

  it("keeps a tenant's network for its grace after the last container, so a replica back at once reuses it; then releases it", async () => {
    const [a] = clusters;
    const network = tenantNetworkName('acme', a);
    const ids = async () => (await docker.listNetworks({ filters: { name: [network] } })).filter((n) => n.Name === network).map((n) => n.Id);
    const driver = await DockerDriver.create({ node: NODE, log: silentLogger(), docker, cluster: () => a, ownsUnlabelled: () => false, networkGraceMs: 1_500 });
    const first = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    await driver.start(first);
    const made = await ids();
    await driver.remove(first.allocationId, 0);
    assert.deepEqual(await ids(), made, 'kept through its grace');
    const back = task({ spec: spec({ command: node('setInterval(() => {}, 1000)') }) });
    await driver.start(back);
    assert.deepEqual(await ids(), made, 'the same network, not a new one');
    await driver.remove(back.allocationId, 0);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    assert.deepEqual(await ids(), [], 'released once the grace has passed with no container');
    await driver.close();
  });
});
