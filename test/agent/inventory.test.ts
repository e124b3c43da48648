// What the agent reports as its host's capacity: GPUs parsed from what nvidia-smi printed on a
// real H100 host (copied into test/fixtures/gpu), the rest from systeminformation, and the
// --inventory-file that replaces detection.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import {
  detectInventory,
  fakeGpuUuid,
  loadInventoryFile,
  type ExecFile,
  type NetworkInterface,
  type SystemInfo,
} from '../../agent/inventory.js';
import { GPU_QUERY_FIELDS, gpuQueryArgs, locateNvidiaSmi, parseGpuQuery } from '../../agent/nvidia-smi.js';
import { MlfleetError } from '../../shared/errors.js';
import type { GpuDevice } from '../../shared/proto.js';

// The compiled test runs from dist/test/agent/; the fixtures stay in the source tree.
const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/gpu');

async function fixture(name: string): Promise<string> {
  try {
    return await readFile(path.join(FIXTURES, name), 'utf8');
  } catch (err) {
    throw new Error(`fixture ${name} not found in ${FIXTURES}: ${(err as Error).message}`);
  }
}

const MIB = 1024 * 1024;

/** The H100 of the fixture host, as every nvidia-smi output there describes it. */
const H100 = {
  index: 0,
  uuid: 'GPU-8c5f22c6-4f32-0668-6925-14933110ea74',
  model: 'NVIDIA H100 80GB HBM3',
  memoryBytes: 81559 * MIB,
  computeCapability: '9.0',
  migEnabled: false,
};

// systeminformation's own query (lib/graphics.js), which printed nvidia-smi-query.csv.
const SYSTEMINFORMATION_FIELDS = [
  'driver_version', 'pci.sub_device_id', 'name', 'pci.bus_id', 'fan.speed', 'memory.total', 'memory.used',
  'memory.free', 'utilization.gpu', 'utilization.memory', 'temperature.gpu', 'temperature.memory', 'power.draw',
  'power.limit', 'clocks.gr', 'clocks.mem',
];

/** What the fixture host prints for the agent's own query (noheader, nounits, with driver_version). */
const H100_AGENT_QUERY = '0, GPU-8c5f22c6-4f32-0668-6925-14933110ea74, NVIDIA H100 80GB HBM3, 81559, Disabled, 9.0, 580.159.04\n';

const EIGHT_GPUS_MIG_ON_TWO = [
  '0, GPU-00000000-1111-2222-3333-444444444440, NVIDIA H100 80GB HBM3, 81559, Enabled, 9.0, 580.159.04',
  '1,GPU-00000000-1111-2222-3333-444444444441,NVIDIA H100 80GB HBM3,81559,Disabled,9.0,580.159.04',
  '2 ,  GPU-00000000-1111-2222-3333-444444444442 ,  NVIDIA H100 80GB HBM3 , 81559 , Enabled , 9.0 , 580.159.04  ',
  ...[3, 4, 5, 6, 7].map((i) => `${i}, GPU-00000000-1111-2222-3333-44444444444${i}, NVIDIA H100 80GB HBM3, 81559, Disabled, 9.0, 580.159.04`),
].join('\n');

function fakeSystemInfo(overrides: Partial<{ cores: number; total: number; nics: NetworkInterface[]; filesystems: Awaited<ReturnType<SystemInfo['fsSize']>> }> = {}): SystemInfo {
  return {
    cpu: async () => ({ cores: overrides.cores ?? 16 }),
    mem: async () => ({ total: overrides.total ?? 134_217_728_000 }),
    fsSize: async () => overrides.filesystems ?? [{ fs: '/dev/vda1', type: 'ext4', size: 500e9, available: 400e9, mount: '/' }],
    networkInterfaces: async () =>
      overrides.nics ?? [
        { iface: 'lo', ip4: '127.0.0.1', internal: true, speed: null },
        { iface: 'eth0', ip4: '10.0.0.7', internal: false, speed: 100000 },
      ],
  };
}

/** An exec that answers nvidia-smi with `stdout` and records what it was asked. */
function nvidiaSmiAnswering(stdout: string): ExecFile & { calls: Array<{ file: string; args: readonly string[] }> } {
  const calls: Array<{ file: string; args: readonly string[] }> = [];
  const exec: ExecFile = async (file, args) => {
    calls.push({ file, args });
    return stdout;
  };
  return Object.assign(exec, { calls });
}

function failingExec(error: Error & { code?: string | number }): ExecFile & { calls: number } {
  const exec = Object.assign(
    async (): Promise<string> => {
      exec.calls += 1;
      throw error;
    },
    { calls: 0 },
  );
  return exec;
}

/** A debug-level logger whose records the test can inspect. */
function recordingLogger() {
  const records: Array<{ level: number; msg: string }> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line)) });
  return { log, records, above: (level: number) => records.filter((r) => r.level > level) };
}
const PINO_DEBUG = 20;

function pick(gpu: GpuDevice | undefined) {
  assert.ok(gpu, 'expected a GPU');
  const { index, uuid, model, memoryBytes, computeCapability, migEnabled } = gpu;
  return { index, uuid, model, memoryBytes, computeCapability, migEnabled };
}

describe('nvidia-smi output from a real H100 host', () => {
  it('reads the inventory query printed with a header and " MiB" units', async () => {
    const { gpus, ignoredLines } = parseGpuQuery(await fixture('nvidia-smi-inventory.csv'));
    assert.equal(gpus.length, 1);
    assert.deepEqual(pick(gpus[0]), H100);
    assert.deepEqual(ignoredLines, []);
  });

  it("reads the agent's own query (noheader, nounits) including the driver version", () => {
    const { gpus } = parseGpuQuery(H100_AGENT_QUERY, GPU_QUERY_FIELDS);
    assert.deepEqual(pick(gpus[0]), H100);
    assert.equal(gpus[0]!.driverVersion, '580.159.04');
  });

  it("reads systeminformation's query by its columns: model, memory and driver, [N/A] fan included", async () => {
    const { gpus } = parseGpuQuery(await fixture('nvidia-smi-query.csv'), SYSTEMINFORMATION_FIELDS);
    assert.equal(gpus.length, 1);
    assert.equal(gpus[0]!.model, H100.model);
    assert.equal(gpus[0]!.memoryBytes, H100.memoryBytes);
    assert.equal(gpus[0]!.driverVersion, '580.159.04');
    assert.equal(gpus[0]!.index, 0, 'without an index column, GPUs are numbered in order');
  });

  it('agrees with nvidia-smi -L, the -q -x report and the status table from the same host', async () => {
    const [gpu] = parseGpuQuery(await fixture('nvidia-smi-inventory.csv')).gpus;
    const list = /^GPU (\d+): (.+) \(UUID: (GPU-[0-9a-f-]+)\)$/m.exec(await fixture('nvidia-smi-L.txt'));
    assert.ok(list, 'nvidia-smi -L names the GPU');
    assert.deepEqual([Number(list[1]), list[2], list[3]], [gpu!.index, gpu!.model, gpu!.uuid]);

    const xml = await fixture('nvidia-smi-q.xml');
    const tag = (name: string, within = xml) => new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`).exec(within)?.[1];
    assert.equal(tag('product_name'), gpu!.model);
    assert.equal(tag('uuid'), gpu!.uuid);
    assert.equal(tag('minor_number'), String(gpu!.index));
    assert.equal(tag('current_mig'), 'Disabled');
    const framebuffer = /<fb_memory_usage>([\s\S]*?)<\/fb_memory_usage>/.exec(xml)?.[1];
    assert.equal(tag('total', framebuffer), '81559 MiB');
    const driverVersion = tag('driver_version');
    assert.equal(driverVersion, '580.159.04');
    assert.equal(parseGpuQuery(H100_AGENT_QUERY).gpus[0]!.driverVersion, driverVersion);

    const table = await fixture('nvidia-smi.txt');
    assert.match(table, new RegExp(`Driver Version: ${driverVersion!.replace(/\./g, '\\.')}`));
    assert.match(table, /\/\s+81559MiB/);
  });

  it('reads several GPUs, MIG "Enabled", and cells padded with extra spaces', () => {
    const { gpus, ignoredLines } = parseGpuQuery(EIGHT_GPUS_MIG_ON_TWO);
    assert.deepEqual(ignoredLines, []);
    assert.deepEqual(gpus.map((g) => g.index), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(gpus.filter((g) => g.migEnabled).map((g) => g.index), [0, 2]);
    assert.equal(gpus[2]!.uuid, 'GPU-00000000-1111-2222-3333-444444444442');
    assert.equal(gpus[2]!.model, 'NVIDIA H100 80GB HBM3');
    assert.ok(gpus.every((g) => g.memoryBytes === 81559 * MIB && g.computeCapability === '9.0'));
  });

  it('treats [N/A] and [Not Supported] as unknown rather than as values', () => {
    const { gpus } = parseGpuQuery('0, GPU-aaaaaaaa-1111-2222-3333-444444444444, Tesla T4, 15360, [N/A], [Not Supported], 535.54.03\n');
    assert.equal(gpus.length, 1);
    assert.equal(gpus[0]!.migEnabled, false, 'GPUs without MIG report the mode as [N/A]');
    assert.equal(gpus[0]!.computeCapability, '');
    assert.equal(gpus[0]!.memoryBytes, 15360 * MIB);
  });

  it('skips warnings nvidia-smi mixes into its output, and reads Windows line endings', () => {
    const text = `WARNING: infoROM is corrupted at gpu 0000:00:06.0\r\n${H100_AGENT_QUERY.replace('\n', '\r\n')}`;
    const { gpus, ignoredLines } = parseGpuQuery(text);
    assert.deepEqual(pick(gpus[0]), H100);
    assert.deepEqual(ignoredLines, ['WARNING: infoROM is corrupted at gpu 0000:00:06.0']);
  });
});

describe('locating nvidia-smi like systeminformation does', () => {
  it('uses nvidia-smi from PATH on Linux and none on other Unixes', () => {
    assert.equal(locateNvidiaSmi({ platform: 'linux' }), 'nvidia-smi');
    assert.equal(locateNvidiaSmi({ platform: 'darwin' }), undefined);
  });

  it('on Windows prefers System32, else the newest copy in the driver store', async (t: TestContext) => {
    const windir = await mkdtemp(path.join(os.tmpdir(), 'mlfleet-windir-'));
    t.after(() => rm(windir, { recursive: true, force: true }));
    const store = path.join(windir, 'System32', 'DriverStore', 'FileRepository');
    assert.equal(locateNvidiaSmi({ platform: 'win32', windir }), undefined, 'no driver installed');

    for (const driver of ['nv_dispi.inf_old', 'nv_dispi.inf_new']) {
      await mkdir(path.join(store, driver), { recursive: true });
      await writeFile(path.join(store, driver, 'nvidia-smi.exe'), '');
      await new Promise((resolve) => setTimeout(resolve, 20)); // distinct ctimes
    }
    await mkdir(path.join(store, 'other.inf'), { recursive: true });
    assert.equal(locateNvidiaSmi({ platform: 'win32', windir }), path.join(store, 'nv_dispi.inf_new', 'nvidia-smi.exe'));

    await writeFile(path.join(windir, 'System32', 'nvidia-smi.exe'), '');
    assert.equal(locateNvidiaSmi({ platform: 'win32', windir }), path.join(windir, 'System32', 'nvidia-smi.exe'));
  });
});

describe('detectInventory', () => {
  it('asks nvidia-smi for index, uuid, name, memory, MIG mode, compute capability and driver, without header or units', async () => {
    const exec = nvidiaSmiAnswering(H100_AGENT_QUERY);
    const inventory = await detectInventory({ exec, si: fakeSystemInfo(), nvidiaSmi: 'nvidia-smi' });
    assert.deepEqual(exec.calls, [
      {
        file: 'nvidia-smi',
        args: ['--query-gpu=index,uuid,name,memory.total,mig.mode.current,compute_cap,driver_version', '--format=csv,noheader,nounits'],
      },
    ]);
    assert.deepEqual(exec.calls[0]!.args, gpuQueryArgs());
    assert.deepEqual(inventory.capacity.gpus, [{ ...H100, driverVersion: '580.159.04' }]);
    assert.equal(inventory.driverVersion, '580.159.04');
  });

  it('reports the H100 when nvidia-smi answers in the with-header, with-units form', async () => {
    const exec = nvidiaSmiAnswering(await fixture('nvidia-smi-inventory.csv'));
    const inventory = await detectInventory({ exec, si: fakeSystemInfo(), nvidiaSmi: 'nvidia-smi' });
    assert.deepEqual(inventory.capacity.gpus.map(pick), [H100]);
    assert.equal(inventory.driverVersion, undefined, 'that query has no driver_version column');
  });

  it('reports every GPU of a multi-GPU host, with MIG where enabled', async () => {
    const inventory = await detectInventory({ exec: nvidiaSmiAnswering(EIGHT_GPUS_MIG_ON_TWO), si: fakeSystemInfo(), nvidiaSmi: 'nvidia-smi' });
    assert.equal(inventory.capacity.gpus.length, 8);
    assert.deepEqual(inventory.capacity.gpus.map((g) => g.migEnabled), [true, false, true, false, false, false, false, false]);
  });

  it('a host without nvidia-smi has no GPUs, and says so only at debug level', async () => {
    const exec = failingExec(Object.assign(new Error('spawn nvidia-smi ENOENT'), { code: 'ENOENT' }));
    const { log, above } = recordingLogger();
    const inventory = await detectInventory({ exec, log, si: fakeSystemInfo(), nvidiaSmi: 'nvidia-smi' });
    assert.deepEqual(inventory.capacity.gpus, []);
    assert.equal(inventory.driverVersion, undefined);
    assert.equal(exec.calls, 1, 'a missing binary is not retried');
    assert.deepEqual(above(PINO_DEBUG), []);
  });

  it('a failing nvidia-smi (driver not loaded) means no GPUs, not an error', async () => {
    const exec = failingExec(
      Object.assign(new Error("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."), { code: 9 }),
    );
    const { log, records, above } = recordingLogger();
    const inventory = await detectInventory({ exec, log, si: fakeSystemInfo(), nvidiaSmi: 'nvidia-smi' });
    assert.deepEqual(inventory.capacity.gpus, []);
    assert.equal(exec.calls, 1, 'only an unknown-field answer is worth asking again');
    assert.deepEqual(above(PINO_DEBUG), []);
    assert.ok(records.some((r) => r.msg.includes('nvidia-smi failed')));
  });

  it('a driver too old for compute_cap still reports its GPUs, asked again without that field', async () => {
    const calls: string[][] = [];
    const exec: ExecFile = async (_file, args) => {
      calls.push([...args]);
      if (args[0]!.includes('compute_cap')) throw Object.assign(new Error('Field "compute_cap" is not a valid field to query.'), { code: 2 });
      return '0, GPU-aaaaaaaa-1111-2222-3333-444444444444, Tesla V100-SXM2-16GB, 16160, [N/A], 470.57.02\n';
    };
    const inventory = await detectInventory({ exec, si: fakeSystemInfo(), nvidiaSmi: 'nvidia-smi' });
    assert.equal(calls.length, 2);
    assert.ok(!calls[1]![0]!.includes('compute_cap'));
    assert.deepEqual(inventory.capacity.gpus, [
      {
        index: 0,
        uuid: 'GPU-aaaaaaaa-1111-2222-3333-444444444444',
        model: 'Tesla V100-SXM2-16GB',
        memoryBytes: 16160 * MIB,
        computeCapability: '',
        migEnabled: false,
        driverVersion: '470.57.02',
      },
    ]);
  });

  it('counts logical cores as millicores and total memory in bytes', async () => {
    const inventory = await detectInventory({ exec: nvidiaSmiAnswering(''), si: fakeSystemInfo({ cores: 16, total: 134_217_728_000 }), nvidiaSmi: 'nvidia-smi' });
    assert.equal(inventory.capacity.cpuMillis, 16_000);
    assert.equal(inventory.capacity.memoryBytes, 134_217_728_000);
    assert.equal(inventory.hostname, os.hostname());
  });

  it('reports real NICs only, with speed 0 when the link speed is unknown', async () => {
    const si = fakeSystemInfo({
      nics: [
        { iface: 'lo', ip4: '127.0.0.1', internal: true, speed: null },
        { iface: 'eth0', ip4: '10.0.0.7', internal: false, speed: 25000 },
        { iface: 'eth1', ip4: '', internal: false, speed: null },
        { iface: 'ens5', ip4: '10.1.0.7', internal: false, speed: -1 },
      ],
    });
    const inventory = await detectInventory({ exec: nvidiaSmiAnswering(''), si, nvidiaSmi: 'nvidia-smi' });
    assert.deepEqual(inventory.capacity.nics, [
      { name: 'eth0', speedMbps: 25000, ipv4: '10.0.0.7' },
      { name: 'eth1', speedMbps: 0, ipv4: '' },
      { name: 'ens5', speedMbps: 0, ipv4: '10.1.0.7' },
    ]);
  });

  it('reports real filesystems once each, not pseudo filesystems or container layers', async () => {
    const disk = (fs: string, type: string, mount: string) => ({ fs, type, size: 1e12, available: 5e11, mount });
    const si = fakeSystemInfo({
      filesystems: [
        disk('/dev/nvme0n1p2', 'ext4', '/'),
        disk('/dev/nvme1n1', 'xfs', '/data'),
        disk('/dev/nvme1n1', 'xfs', '/var/lib/mlfleet-agent'),
        disk('tmpfs', 'tmpfs', '/run'),
        disk('devtmpfs', 'devtmpfs', '/dev'),
        disk('overlay', 'overlay', '/var/lib/docker/overlay2/abc/merged'),
        disk('/dev/nvme0n1p2', 'ext4', '/var/lib/docker/containers/abc/hostname'),
        disk('/dev/loop3', 'squashfs', '/snap/core22/1033'),
      ],
    });
    const inventory = await detectInventory({ exec: nvidiaSmiAnswering(''), si, nvidiaSmi: 'nvidia-smi' });
    assert.deepEqual(
      inventory.capacity.disks.map((d) => [d.mount, d.fsType]),
      [['/', 'ext4'], ['/data', 'xfs']],
    );
    assert.deepEqual(inventory.capacity.disks[0], { mount: '/', fsType: 'ext4', sizeBytes: 1e12, availableBytes: 5e11 });
  });

  it("counts an agent's own overlay root when the agent itself runs in a container", async () => {
    const si = fakeSystemInfo({ filesystems: [{ fs: 'overlay', type: 'overlay', size: 1e11, available: 5e10, mount: '/' }] });
    const inventory = await detectInventory({ exec: nvidiaSmiAnswering(''), si, nvidiaSmi: 'nvidia-smi' });
    assert.deepEqual(inventory.capacity.disks.map((d) => d.mount), ['/']);
  });

  it('on this machine: finds cores and memory, and GPUs exactly when a working nvidia-smi is installed', async () => {
    const inventory = await detectInventory();
    assert.ok(inventory.capacity.cpuMillis >= 1000 && inventory.capacity.cpuMillis % 1000 === 0, `cpuMillis ${inventory.capacity.cpuMillis}`);
    assert.equal(inventory.capacity.cpuMillis, os.cpus().length * 1000);
    assert.ok(inventory.capacity.memoryBytes > 0);
    assert.equal(inventory.capacity.memoryBytes, os.totalmem());
    assert.ok(inventory.capacity.disks.every((disk) => disk.mount.startsWith('/') && disk.sizeBytes > 0));
    assert.ok(inventory.capacity.nics.every((nic) => nic.name !== 'lo'));
    const nvidiaSmi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
    if (nvidiaSmi.error || nvidiaSmi.status !== 0) {
      assert.deepEqual(inventory.capacity.gpus, [], 'no (working) nvidia-smi here, so no GPUs');
    } else {
      const listed = nvidiaSmi.stdout.split('\n').filter((line) => line.startsWith('GPU ')).length;
      assert.equal(inventory.capacity.gpus.length, listed);
      assert.ok(inventory.capacity.gpus.every((gpu) => gpu.uuid.startsWith('GPU-') && gpu.memoryBytes > 0));
    }
  });
});

describe('loadInventoryFile', () => {
  async function inventoryFile(t: TestContext, content: unknown): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'mlfleet-inventory-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'inventory.json');
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  }

  async function rejects(file: string, ...fragments: string[]): Promise<void> {
    await assert.rejects(loadInventoryFile(file), (err: unknown) => {
      assert.ok(MlfleetError.is(err), `expected an MlfleetError, got ${String(err)}`);
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.ok(err.message.includes(file), `"${err.message}" names the file`);
      for (const fragment of fragments) assert.ok(err.message.includes(fragment), `"${err.message}" mentions ${fragment}`);
      return true;
    });
  }

  it('reads capacity in human units, GPUs listed one by one, NICs, disks and labels', async (t) => {
    const file = await inventoryFile(t, {
      cpu: '64',
      memory: '512Gi',
      gpus: [
        { model: 'NVIDIA H100 80GB HBM3', memory: '80Gi', uuid: H100.uuid, computeCapability: '9.0', driverVersion: '580.159.04' },
        { model: 'NVIDIA H100 80GB HBM3', memory: 85_520_809_984, migEnabled: true },
      ],
      nics: [{ name: 'eth0', speedMbps: 100000, ipv4: '10.0.0.21' }, { name: 'ib0' }],
      disks: [{ mount: '/', fsType: 'ext4', size: '2Ti', available: '1.5Ti' }, { mount: '/scratch', size: '7.68TB' }],
      labels: { zone: 'eu-1', simulated: 'true' },
    });
    const inventory = await loadInventoryFile(file, { hostname: 'sim-7' });
    assert.equal(inventory.hostname, 'sim-7');
    assert.equal(inventory.capacity.cpuMillis, 64_000);
    assert.equal(inventory.capacity.memoryBytes, 512 * 2 ** 30);
    assert.deepEqual(inventory.capacity.gpus, [
      { index: 0, uuid: H100.uuid, model: H100.model, memoryBytes: 80 * 2 ** 30, computeCapability: '9.0', migEnabled: false, driverVersion: '580.159.04' },
      { index: 1, uuid: fakeGpuUuid('sim-7', 1), model: H100.model, memoryBytes: 85_520_809_984, computeCapability: '', migEnabled: true, driverVersion: '' },
    ]);
    assert.equal(inventory.driverVersion, '580.159.04');
    assert.deepEqual(inventory.capacity.nics, [
      { name: 'eth0', speedMbps: 100000, ipv4: '10.0.0.21' },
      { name: 'ib0', speedMbps: 0, ipv4: '' },
    ]);
    assert.deepEqual(inventory.capacity.disks, [
      { mount: '/', fsType: 'ext4', sizeBytes: 2 * 2 ** 40, availableBytes: 1.5 * 2 ** 40 },
      { mount: '/scratch', fsType: '', sizeBytes: 7.68e12, availableBytes: 7.68e12 },
    ]);
    assert.deepEqual(inventory.labels, { zone: 'eu-1', simulated: 'true' });
  });

  it('expands {"count": N} into N identical GPUs with stable fake uuids that differ between nodes', async (t) => {
    const file = await inventoryFile(t, { cpuMillis: 500, memoryBytes: 1_073_741_824, gpus: { count: 8, model: 'NVIDIA H100 80GB HBM3', memory: '80Gi' } });
    const first = await loadInventoryFile(file, { hostname: 'sim-1' });
    const again = await loadInventoryFile(file, { hostname: 'sim-1' });
    const other = await loadInventoryFile(file, { hostname: 'sim-2' });
    assert.equal(first.capacity.cpuMillis, 500);
    assert.equal(first.capacity.memoryBytes, 1_073_741_824);
    assert.deepEqual(first.capacity.gpus.map((g) => g.index), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.ok(first.capacity.gpus.every((g) => /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(g.uuid)));
    assert.equal(new Set(first.capacity.gpus.map((g) => g.uuid)).size, 8);
    assert.deepEqual(again.capacity.gpus, first.capacity.gpus, 'stable across restarts');
    assert.ok(other.capacity.gpus.every((g, i) => g.uuid !== first.capacity.gpus[i]!.uuid), 'distinct per node');
    assert.deepEqual(first.capacity.nics, []);
    assert.deepEqual(first.capacity.disks, []);
    assert.equal(first.labels, undefined);
  });

  it('accepts CPU as a number of cores or millicores, and memory as plain bytes', async (t) => {
    for (const [cpu, millis] of [[0.5, 500], ['250m', 250], ['1.5', 1500]] as const) {
      const inventory = await loadInventoryFile(await inventoryFile(t, { cpu, memory: 1000 }));
      assert.equal(inventory.capacity.cpuMillis, millis, `cpu ${cpu}`);
      assert.equal(inventory.capacity.memoryBytes, 1000);
    }
  });

  it('rejects a size it cannot read, naming the field', async (t) => {
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', gpus: [{ model: 'A100', memory: '80Gx' }] }), 'gpus[0].memory', '80Gx');
  });

  it('rejects missing CPU and memory', async (t) => {
    await rejects(await inventoryFile(t, { gpus: [] }), 'cpu: is required', 'memory: is required');
  });

  it('rejects both forms of the same quantity', async (t) => {
    await rejects(await inventoryFile(t, { cpu: 8, cpuMillis: 8000, memory: '1Gi' }), 'cpuMillis', 'not both');
  });

  it('rejects unknown keys, so a typo cannot drop capacity silently', async (t) => {
    await rejects(await inventoryFile(t, { cpu: 8, memroy: '64Gi' }), 'memroy: unknown key');
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', gpus: { count: 2, model: 'L4', memory: '24Gi', uuid: 'GPU-1' } }), 'uuid');
  });

  it('rejects GPUs that are neither a list nor a group, and GPU fields of the wrong type', async (t) => {
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', gpus: 8 }), 'gpus', 'list of GPUs');
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', gpus: { count: 0, model: 'L4', memory: '24Gi' } }), 'gpus.count');
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', gpus: [{ model: 'L4', memory: '24Gi' }, { memory: '24Gi' }] }), 'gpus[1].model');
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', gpus: [{ model: 'L4', memory: '24Gi', computeCapability: 8.9 }] }), 'gpus[0].computeCapability');
  });

  it('rejects two GPUs with the same uuid', async (t) => {
    const gpu = { model: 'L4', memory: '24Gi', uuid: 'GPU-aaaaaaaa-1111-2222-3333-444444444444' };
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', gpus: [gpu, gpu] }), 'same uuid');
  });

  it('rejects labels that are not strings, negative or fractional numbers, and zero CPU', async (t) => {
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', labels: { zone: 1 } }), 'labels.zone');
    await rejects(await inventoryFile(t, { cpu: 8, memory: -1 }), 'memory');
    await rejects(await inventoryFile(t, { cpu: 8, memory: '64Gi', nics: [{ name: 'eth0', speedMbps: 2.5 }] }), 'nics[0].speedMbps');
    await rejects(await inventoryFile(t, { cpu: 0, memory: '64Gi' }), 'cpu', 'more than zero');
  });

  it('rejects a file that is not JSON, or not a JSON object', async (t) => {
    await rejects(await inventoryFile(t, '{"cpu": 8,'), 'not valid JSON');
    await rejects(await inventoryFile(t, '[1, 2]'), 'expected a JSON object');
  });

  it('rejects a file that does not exist', async () => {
    await rejects(path.join(os.tmpdir(), 'mlfleet-no-such-inventory.json'), 'cannot be read');
  });
});
