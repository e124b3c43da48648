// The systemd units: systemd itself accepts them (systemd-analyze verify), they keep the
// properties the design depends on (restart on failure, state directories, an agent whose stop
// never stops workloads), and the example configs they point at are accepted by the daemons.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { compileAgentOptions } from '../../agent/options.js';
import { compileCoordinatorOptions } from '../../coordinator/options.js';
import { verifyUnit } from '../helpers/systemd-verify.js';

// The compiled test runs from dist/test/systemd/; the sources are three levels up.
const SYSTEMD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../systemd');

type Unit = Map<string, Map<string, string[]>>;

/** A unit file as systemd reads it: sections of keys, each with its assignments in order. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section && eq > 0, `not a key=value line inside a section: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** The effective value: the last assignment wins (an empty one resets, as in systemd). */
function value(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

/** Space-separated list settings accumulate over assignments (Wants=, StateDirectory=, …). */
function list(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section)?.get(key) ?? []).flatMap((v) => (v === '' ? [] : v.split(/\s+/)));
}

async function loadUnit(name: string): Promise<{ text: string; unit: Unit }> {
  const text = await readFile(path.join(SYSTEMD_DIR, name), 'utf8');
  return { text, unit: parseUnit(text) };
}

/** Verifies the unit with its Exec* binaries replaced by stub executables in a temp dir. */
async function verify(t: TestContext, name: string): Promise<{ status: number | null; output: string }> {
  const stubs = await mkdtemp(path.join(os.tmpdir(), 'mlfleet-stubs-'));
  t.after(() => rm(stubs, { recursive: true, force: true }));
  const { text } = await loadUnit(name);
  return verifyUnit(t, name, text, async (binary) => {
    const stub = path.join(stubs, path.basename(binary));
    await writeFile(stub, '#!/bin/sh\nexit 0\n');
    await chmod(stub, 0o755);
    return stub;
  });
}

describe('mlfleet-agent.service', () => {
  it('is accepted by systemd-analyze verify without a warning', async (t) => {
    const { status, output } = await verify(t, 'mlfleet-agent.service');
    assert.equal(output, '', 'systemd-analyze verify has something to say about the unit');
    assert.equal(status, 0);
  });

  it('starts the agent binary with its config file, as Type=exec', async () => {
    const { unit } = await loadUnit('mlfleet-agent.service');
    assert.equal(value(unit, 'Service', 'ExecStart'), '/usr/local/bin/mlfleet-agent --config /etc/mlfleet/agent.yaml');
    assert.equal(value(unit, 'Service', 'Type'), 'exec');
    assert.equal(value(unit, 'Install', 'WantedBy'), 'multi-user.target');
  });

  it('restarts on failure, after a pause, and never gives up', async () => {
    const { unit } = await loadUnit('mlfleet-agent.service');
    assert.equal(value(unit, 'Service', 'Restart'), 'on-failure');
    assert.match(value(unit, 'Service', 'RestartSec') ?? '', /^\d+(ms|s|min)?$/);
    assert.equal(value(unit, 'Unit', 'StartLimitIntervalSec'), '0');
    assert.match(value(unit, 'Service', 'TimeoutStopSec') ?? '', /^\d+s$/);
    assert.ok(Number(value(unit, 'Service', 'LimitNOFILE')) >= 65536);
  });

  it('stopping or restarting the agent signals only the agent, never its workloads', async () => {
    const { unit } = await loadUnit('mlfleet-agent.service');
    // Process-driver workloads are the agent's children, in this unit's cgroup.
    assert.equal(value(unit, 'Service', 'KillMode'), 'process');
    // Docker restarts must not take the agent down with them either.
    assert.ok(list(unit, 'Unit', 'Wants').includes('docker.service'));
    assert.ok(!list(unit, 'Unit', 'Requires').includes('docker.service'));
    assert.ok(!list(unit, 'Unit', 'BindsTo').includes('docker.service'));
    assert.ok(!list(unit, 'Unit', 'PartOf').includes('docker.service'));
  });

  it('keeps its state in /var/lib/mlfleet-agent', async () => {
    const { unit } = await loadUnit('mlfleet-agent.service');
    assert.ok(list(unit, 'Service', 'StateDirectory').includes('mlfleet-agent'));
  });

  it('runs as a dedicated user that can reach the Docker socket and the GPUs', async () => {
    const { unit } = await loadUnit('mlfleet-agent.service');
    assert.equal(value(unit, 'Service', 'User'), 'mlfleet');
    assert.ok(list(unit, 'Service', 'SupplementaryGroups').includes('docker'));
    // Each of these would cut the agent off from /dev/nvidia* (ProtectClock implies DeviceAllow=).
    assert.notEqual(value(unit, 'Service', 'PrivateDevices'), 'yes');
    assert.equal(value(unit, 'Service', 'ProtectClock'), undefined);
    assert.equal(value(unit, 'Service', 'DeviceAllow'), undefined);
    assert.equal(value(unit, 'Service', 'DevicePolicy'), undefined);
  });

  it('is hardened as far as a Node daemon that runs workloads allows', async () => {
    const { unit } = await loadUnit('mlfleet-agent.service');
    assert.equal(value(unit, 'Service', 'NoNewPrivileges'), 'yes');
    assert.equal(value(unit, 'Service', 'ProtectSystem'), 'strict');
    assert.equal(value(unit, 'Service', 'ProtectHome'), 'yes');
    assert.equal(value(unit, 'Service', 'PrivateTmp'), 'yes');
    assert.notEqual(value(unit, 'Service', 'MemoryDenyWriteExecute'), 'yes', "V8's JIT needs W+X memory");
  });
});

describe('mlfleet-coordinator.service', () => {
  it('is accepted by systemd-analyze verify without a warning', async (t) => {
    const { status, output } = await verify(t, 'mlfleet-coordinator.service');
    assert.equal(output, '', 'systemd-analyze verify has something to say about the unit');
    assert.equal(status, 0);
  });

  it('starts the coordinator binary with its config file, as Type=exec', async () => {
    const { unit } = await loadUnit('mlfleet-coordinator.service');
    assert.equal(value(unit, 'Service', 'ExecStart'), '/usr/local/bin/mlfleet-coordinator --config /etc/mlfleet/coordinator.yaml');
    assert.equal(value(unit, 'Service', 'Type'), 'exec');
    assert.equal(value(unit, 'Install', 'WantedBy'), 'multi-user.target');
  });

  it('restarts on failure, keeps its state in /var/lib/mlfleet-coordinator, as its own user', async () => {
    const { unit } = await loadUnit('mlfleet-coordinator.service');
    assert.equal(value(unit, 'Service', 'Restart'), 'on-failure');
    assert.match(value(unit, 'Service', 'RestartSec') ?? '', /^\d+(ms|s|min)?$/);
    assert.ok(list(unit, 'Service', 'StateDirectory').includes('mlfleet-coordinator'));
    assert.ok(value(unit, 'Service', 'User') === 'mlfleet' || value(unit, 'Service', 'DynamicUser') === 'yes');
    assert.ok(Number(value(unit, 'Service', 'LimitNOFILE')) >= 65536, 'one stream per agent');
  });

  it('stops its whole cgroup and is locked down fully', async () => {
    const { unit } = await loadUnit('mlfleet-coordinator.service');
    assert.ok([undefined, 'control-group'].includes(value(unit, 'Service', 'KillMode')));
    for (const key of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices']) {
      assert.equal(value(unit, 'Service', key), 'yes', key);
    }
    assert.equal(value(unit, 'Service', 'ProtectSystem'), 'strict');
    assert.notEqual(value(unit, 'Service', 'MemoryDenyWriteExecute'), 'yes', "V8's JIT needs W+X memory");
  });
});

describe('the example configs', () => {
  it("agent.yaml.example is accepted by mlfleet-agent and keeps dataDir in the unit's StateDirectory", async () => {
    const options = await compileAgentOptions(['--config', path.join(SYSTEMD_DIR, 'agent.yaml.example'), '--driver', 'process', '--name', 'example-host']);
    const { unit } = await loadUnit('mlfleet-agent.service');
    assert.ok(list(unit, 'Service', 'StateDirectory').map((dir) => `/var/lib/${dir}`).includes(options.dataDir));
    assert.ok(options.coordinators.length > 0);
    assert.deepEqual(options.labels, { zone: 'eu-1', rack: 'r12' });
  });

  it("coordinator.yaml.example is accepted by mlfleet-coordinator and keeps its files in the unit's StateDirectory", async () => {
    const options = compileCoordinatorOptions(['--config', path.join(SYSTEMD_DIR, 'coordinator.yaml.example')]);
    const { unit } = await loadUnit('mlfleet-coordinator.service');
    const stateDir = `/var/lib/${list(unit, 'Service', 'StateDirectory')[0]}`;
    assert.equal(options.dataDir, stateDir);
    assert.ok(options.store.startsWith(`sqlite:${stateDir}/`), options.store);
    assert.equal(options.nodeTtlMs, 15_000);
  });
});
