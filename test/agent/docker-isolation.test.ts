// Workloads stay in their box (issue 13), on the real local engine with the runtime image: what
// every container is created with (a PIDs limit, no new privileges, no capabilities, uid 1000,
// its tenant's network, ports on loopback), that a container of one tenant cannot connect to
// another tenant's replica or gang worker at any address the host or the container has, while
// its own tenant's worker reaches it by its peer alias, and that a setuid file a task leaves in /checkpoint or
// /output cannot be run by a host user and loses its bits.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import Docker from 'dockerode';
import { containerName, containerSpec, DockerDriver, LABELS, peerAlias, PIDS_LIMIT, tenantNetworkName } from '../../agent/drivers/docker-driver.js';
import type { Task } from '../../agent/drivers/driver.js';
import { makeTaskDir, stripSetIds } from '../../agent/task-dirs.js';
import { silentLogger } from '../../shared/log.js';
import type { RunSpec } from '../../shared/workloads.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { freePort } from '../helpers/net.js';
import { tempDir } from '../helpers/processes.js';
import { get, logs } from './driver-checks.js';

const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`;
const NODE = `test-box-${RUN}`;
// Tenant names are DNS labels; these are this run's own, and their networks go with it.
const TENANT_A = `ta-${randomBytes(3).toString('hex')}`;
const TENANT_B = `tb-${randomBytes(3).toString('hex')}`;
let ids = 0;

const docker = new Docker();
let image: string;

before(async () => {
  image = await ensureRuntimeImage(docker);
});

after(async () => {
  const leftovers = await docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${NODE}`] } });
  await Promise.all(leftovers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  for (const tenant of [TENANT_A, TENANT_B]) await docker.getNetwork(tenantNetworkName(tenant)).remove().catch(() => undefined);
});

function spec(overrides: Partial<RunSpec> = {}): RunSpec {
  return { image, command: [], env: {}, port: 0, readinessPath: '', readinessTimeoutMs: 30_000, model: undefined, datasets: [], rank: 0, worldSize: 1, ...overrides };
}

function task(overrides: Partial<Task> & { spec: RunSpec }): Task {
  return {
    allocationId: `box-${RUN}-${++ids}`,
    kind: 'deployment',
    workload: 'box',
    tenant: TENANT_A,
    cpuMillis: 0,
    memoryBytes: 0,
    gpuIndexes: [],
    hostPort: 0,
    mounts: [],
    env: {},
    ...overrides,
  };
}

describe('the container a task gets', () => {
  const network = { name: 'mlfleet-tenant-acme' };

  it('has a PIDs limit, no new privileges, no capabilities, uid 1000, its tenant network, and its port on loopback only', () => {
    const created = containerSpec(task({ tenant: 'acme', hostPort: 31000, spec: spec({ port: 8080 }) }), 'n1', network);
    assert.equal(created.HostConfig?.PidsLimit, PIDS_LIMIT);
    assert.deepEqual(created.HostConfig?.SecurityOpt, ['no-new-privileges:true']);
    assert.deepEqual(created.HostConfig?.CapDrop, ['ALL']);
    assert.equal(created.HostConfig?.Privileged, undefined);
    assert.equal(created.User, '1000:1000');
    assert.equal(created.HostConfig?.NetworkMode, 'mlfleet-tenant-acme');
    assert.equal(tenantNetworkName('acme'), 'mlfleet-tenant-acme');
    assert.deepEqual(created.HostConfig?.PortBindings, { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '31000' }] });
    assert.equal(created.HostConfig?.ExtraHosts, undefined);
  });

  it('names a gang worker on its tenant network by its host port, and publishes its peer port beyond loopback only on the address peers on other hosts dial', () => {
    const local = containerSpec(
      task({ kind: 'job', tenant: 'acme', hostPort: 31001, env: { MLFLEET_PEERS: '127.0.0.1:31000,127.0.0.1:31001', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '31000' }, spec: spec({ port: 29500, rank: 1 }) }),
      'n1',
      network,
    );
    assert.deepEqual(local.HostConfig?.PortBindings, { '29500/tcp': [{ HostIp: '127.0.0.1', HostPort: '31001' }] });
    assert.deepEqual(local.NetworkingConfig, { EndpointsConfig: { 'mlfleet-tenant-acme': { Aliases: ['mlfleet-peer-31001'] } } });
    assert.ok(local.Env?.includes('MLFLEET_PEERS=mlfleet-peer-31000:29500,mlfleet-peer-31001:29500'));
    assert.ok(local.Env?.includes('MASTER_ADDR=mlfleet-peer-31000') && local.Env?.includes('MASTER_PORT=29500'));
    const fleet = containerSpec(
      task({ kind: 'job', tenant: 'acme', hostPort: 31001, env: { MLFLEET_PEERS: '10.0.0.5:31000,10.0.0.6:31001', MASTER_ADDR: '10.0.0.5' }, spec: spec({ port: 29500, rank: 1 }) }),
      'n1',
      { ...network, peerHostIp: '10.0.0.6' },
    );
    assert.deepEqual(fleet.HostConfig?.PortBindings, { '29500/tcp': [{ HostIp: '127.0.0.1', HostPort: '31001' }, { HostIp: '10.0.0.6', HostPort: '31001' }] });
    // A replica never gets more than loopback, whatever it is told.
    const replica = containerSpec(task({ tenant: 'acme', hostPort: 31002, spec: spec({ port: 8080 }) }), 'n1', { ...network, peerHostIp: '10.0.0.6' });
    assert.deepEqual(replica.HostConfig?.PortBindings, { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '31002' }] });
    assert.equal(replica.NetworkingConfig, undefined);
  });
});

/** Tries each host:port for 2 s and prints one JSON line: target → "connected" or the error's code. */
const PROBE = `const net = require('net');
const targets = JSON.parse(process.env.TARGETS);
Promise.all(targets.map((t) => new Promise((resolve) => {
  const [host, port] = [t.slice(0, t.lastIndexOf(':')), Number(t.slice(t.lastIndexOf(':') + 1))];
  const s = net.connect(port, host);
  const done = (r) => { s.destroy(); resolve([t, r]); };
  s.setTimeout(2000, () => done('ETIMEDOUT'));
  s.on('connect', () => done('connected'));
  s.on('error', (e) => done(e.code));
}))).then((r) => console.log(JSON.stringify(Object.fromEntries(r))));`;

/** Runs the probe as a job of `tenant` and gives what it found. */
async function probe(t: TestContext, driver: DockerDriver, tenant: string, targets: string[], env: Record<string, string> = {}): Promise<Record<string, string>> {
  const job = task({ kind: 'job', tenant, env: { TARGETS: JSON.stringify(targets), ...env }, spec: spec({ command: ['node', '-e', PROBE] }) });
  t.after(() => driver.remove(job.allocationId, 0));
  await driver.start(job);
  await eventually(`${tenant}'s probe finishing`, 30_000, async () => (await driver.list()).find((s) => s.allocationId === job.allocationId && !s.running));
  return JSON.parse(await logs(driver, job.allocationId)) as Record<string, string>;
}

/** Every IPv4 address this host has, loopback aside: bridges, tenant network gateways, its NICs. */
function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a && a.family === 'IPv4' && !a.internal)
    .map((a) => a!.address);
}

describe("a container of another tenant cannot connect to a tenant's containers", () => {
  let driver: DockerDriver;
  let replica: Task;
  let worker: Task;
  let replicaIp: string;
  let workerIp: string;
  let gateways: string[];

  before(async () => {
    driver = await DockerDriver.create({ node: NODE, log: silentLogger(), docker });
    const server = `require('http').createServer((q, r) => r.end('secret of ' + process.env.WHO)).listen(Number(process.env.PORT))`;
    replica = task({ hostPort: await freePort(), env: { PORT: '8080', WHO: 'replica' }, spec: spec({ port: 8080, command: ['node', '-e', server] }) });
    // A gang worker on a single machine: its peers dial it by its alias on the tenant network.
    const peerPort = await freePort();
    worker = task({
      kind: 'job',
      hostPort: peerPort,
      env: { PORT: '29500', WHO: 'worker', MLFLEET_PEERS: `127.0.0.1:${peerPort}`, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(peerPort) },
      spec: spec({ port: 29500, command: ['node', '-e', server] }),
    });
    await driver.start(replica);
    await driver.start(worker);
    const ip = async (allocationId: string) =>
      (await docker.getContainer(containerName(allocationId)).inspect()).NetworkSettings.Networks[tenantNetworkName(TENANT_A)]?.IPAddress ?? '';
    [replicaIp, workerIp] = [await ip(replica.allocationId), await ip(worker.allocationId)];
    gateways = await Promise.all(
      [TENANT_A, TENANT_B].map(async (tenant) => {
        await DockerDriver.create({ node: NODE, log: silentLogger(), docker }).then((d) => d.start(task({ tenant, spec: spec({ command: ['node', '-e', ''] }) })));
        return ((await docker.getNetwork(tenantNetworkName(tenant)).inspect()) as Docker.NetworkInspectInfo).IPAM!.Config![0]!.Gateway!;
      }),
    );
    assert.ok(replicaIp && workerIp, 'the containers are on their tenant network');
    await eventually('the replica answering on 127.0.0.1', 15_000, async () => get(replica.hostPort), { retryErrors: true, intervalMs: 100 });
  });

  after(async () => {
    await driver.remove(replica.allocationId, 0);
    await driver.remove(worker.allocationId, 0);
  });

  it('puts each tenant on its own labelled bridge network', async () => {
    const info = (await docker.getNetwork(tenantNetworkName(TENANT_A)).inspect()) as Docker.NetworkInspectInfo;
    assert.equal(info.Driver, 'bridge');
    assert.deepEqual([info.Labels?.[LABELS.network], info.Labels?.[LABELS.tenant]], ['tenant', TENANT_A]);
    const published = (await docker.getContainer(containerName(replica.allocationId)).inspect()).HostConfig.PortBindings;
    assert.deepEqual(published, { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(replica.hostPort) }] });
  });

  it("tenant B reaches neither the replica nor the gang worker: not at their container addresses, not at any of the host's addresses", async (t) => {
    const targets = [
      `${replicaIp}:8080`,
      `${workerIp}:29500`,
      ...hostAddresses().flatMap((address) => [`${address}:${replica.hostPort}`, `${address}:${worker.hostPort}`]),
      `${peerAlias(worker.hostPort)}:29500`,
    ];
    for (const gateway of gateways) assert.ok(targets.includes(`${gateway}:${replica.hostPort}`), `the tenant networks' gateway ${gateway} is among the host addresses tried`);
    const found = await probe(t, driver, TENANT_B, targets);
    t.diagnostic(JSON.stringify(found));
    assert.deepEqual(Object.keys(found).sort(), [...new Set(targets)].sort());
    for (const [target, result] of Object.entries(found)) assert.notEqual(result, 'connected', `tenant B connected to ${target}`);
  });

  it("tenant A's own gang worker reaches its peer by its alias on the tenant network", async (t) => {
    const target = `${peerAlias(worker.hostPort)}:29500`;
    const found = await probe(t, driver, TENANT_A, [target]);
    assert.deepEqual(found, { [target]: 'connected' });
  });
});

describe('a setuid file a task leaves in /checkpoint or /output', () => {
  it("cannot be run by a host user (its directories are unreachable), and loses its setuid and setgid bits", async (t) => {
    const driver = await DockerDriver.create({ node: NODE, log: silentLogger(), docker });
    // Laid out as the agent does: a 0700 data dir, task dirs made by makeTaskDir for uid 1000.
    const base = tempDir(t, 'mlfleet-setuid-');
    chmodSync(base, 0o755);
    const dataDir = path.join(base, 'agent');
    mkdirSync(dataDir, { mode: 0o700 });
    const output = path.join(dataDir, 'outputs', `alloc-${RUN}`);
    const checkpoint = path.join(dataDir, 'checkpoints', TENANT_A, 'job', 'rank-0');
    for (const dir of [output, checkpoint]) await makeTaskDir(dataDir, dir, driver.taskOwner);
    for (const dir of [output, checkpoint]) {
      const info = statSync(dir);
      assert.deepEqual([info.uid, info.gid, info.mode & 0o7777], [1000, 1000, 0o700], `${dir} is the task user's, 0700`);
    }
    for (const dir of [path.join(dataDir, 'outputs'), path.join(dataDir, 'checkpoints'), path.join(dataDir, 'checkpoints', TENANT_A)]) {
      assert.equal(statSync(dir).mode & 0o777, 0o700, `${dir} is 0700`);
    }
    // The task copies a real program (the host's `id`) into both and makes it setuid and setgid.
    const plant = `const fs = require('fs');
      for (const d of ['/output', '/checkpoint']) { fs.copyFileSync('/tools/id', d + '/id'); fs.chmodSync(d + '/id', 0o6755); }
      console.log('planted');`;
    const job = task({
      kind: 'job',
      mounts: [
        { hostPath: '/usr/bin/id', containerPath: '/tools/id', readOnly: true },
        { hostPath: output, containerPath: '/output', readOnly: false },
        { hostPath: checkpoint, containerPath: '/checkpoint', readOnly: false },
      ],
      spec: spec({ command: ['node', '-e', plant] }),
    });
    t.after(() => driver.remove(job.allocationId, 0));
    await driver.start(job);
    const status = await eventually('the task exiting', 30_000, async () => (await driver.list()).find((s) => s.allocationId === job.allocationId && !s.running));
    assert.equal(status.exitCode, 0, await logs(driver, job.allocationId));
    for (const dir of [output, checkpoint]) {
      const planted = path.join(dir, 'id');
      const info = statSync(planted);
      assert.deepEqual([info.uid, info.mode & 0o6000], [1000, 0o6000], 'the task did plant a setuid file');
      // A host user (nobody) cannot reach it: the data dir and the parents are 0700.
      const ran = spawnSync('runuser', ['-u', 'nobody', '--', planted, '-u'], { encoding: 'utf8' });
      assert.notEqual(ran.status, 0, `nobody ran ${planted}: ${ran.stdout}`);
      assert.match(ran.stderr, /Permission denied/);
    }
    // Once it ended, the bits go (the reconciler does this before anything is kept or pushed).
    for (const dir of [output, checkpoint]) assert.deepEqual(await stripSetIds(dir), [path.join(dir, 'id')]);
    for (const dir of [output, checkpoint]) assert.equal(statSync(path.join(dir, 'id')).mode & 0o7777, 0o755);
    // Even were it reachable, it would run as nobody now, not as the task's uid.
    chmodSync(dataDir, 0o755);
    for (const d of [path.join(dataDir, 'outputs'), output]) chmodSync(d, 0o755);
    const uid = execFileSync('runuser', ['-u', 'nobody', '--', path.join(output, 'id'), '-u'], { encoding: 'utf8' }).trim();
    assert.equal(uid, '65534');
  });
});
