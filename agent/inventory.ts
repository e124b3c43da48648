// The host's inventory: what capacity the agent reports to the coordinator in Hello. Either
// detected (systeminformation for CPU, memory, disks and NICs; nvidia-smi for GPUs) or read
// from an `--inventory-file`, which replaces detection for simulated fleets and for testing
// GPU placement on machines without GPUs.
//
// Inventory file format (JSON; documented with an example in docs/inventory-file.md):
//
//   {
//     "cpu": 64,                     // cores (number or "64", "0.5", "500m"); or "cpuMillis": 64000
//     "memory": "512Gi",             // a size (see shared/units.ts) or bytes; or "memoryBytes": N
//     "gpus": [                      // optional; a list, one entry per device …
//       { "model": "NVIDIA H100 80GB HBM3", "memory": "80Gi",
//         "uuid": "GPU-…", "computeCapability": "9.0", "migEnabled": false, "driverVersion": "580.159.04" }
//     ],
//     "gpus": { "count": 8, "model": "…", "memory": "80Gi", … },   // … or N identical devices
//     "nics": [{ "name": "eth0", "speedMbps": 100000, "ipv4": "10.0.0.7" }],
//     "disks": [{ "mount": "/", "fsType": "ext4", "size": "2Ti", "available": "1.5Ti" }],
//     "labels": { "zone": "eu-1" }
//   }
//
// Only "cpu"/"cpuMillis" and "memory"/"memoryBytes" are required. GPUs are numbered in list
// order from 0. A GPU without "uuid" gets a fake but stable one derived from the node name and
// its index, so a simulated node keeps its device ids across agent restarts and two simulated
// nodes never share one. Unknown keys are errors: a typo must not silently drop capacity.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import si from 'systeminformation';
import { z } from 'zod';
import { InvalidArgumentError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import type { Capacity, Disk, GpuDevice, Nic } from '../shared/proto.js';
import { parseBytes, parseCpuMillis } from '../shared/units.js';
import { GPU_QUERY_FIELDS, LEGACY_GPU_QUERY_FIELDS, gpuQueryArgs, locateNvidiaSmi, parseGpuQuery } from './nvidia-smi.js';

export interface Inventory {
  hostname: string;
  capacity: Capacity;
  /** The NVIDIA driver version, when the host has NVIDIA GPUs. */
  driverVersion?: string;
}

/** Runs a program and resolves with its stdout; rejects when it cannot start or exits non-zero. */
export type ExecFile = (file: string, args: readonly string[], options: { timeoutMs: number }) => Promise<string>;

/** The part of systeminformation the inventory reads; tests pass a fake. */
export interface SystemInfo {
  cpu(): Promise<{ cores: number }>;
  mem(): Promise<{ total: number }>;
  fsSize(): Promise<Array<{ fs: string; type: string; size: number; available: number; mount: string }>>;
  networkInterfaces(): Promise<NetworkInterface[] | NetworkInterface>;
}

export interface NetworkInterface {
  iface: string;
  ip4: string;
  internal: boolean;
  /** Mbit/s; systeminformation gives null (or -1 from sysfs) when the link speed is unknown. */
  speed: number | null;
}

export interface DetectOptions {
  exec?: ExecFile;
  log?: Logger;
  si?: SystemInfo;
  /** The nvidia-smi to run; by default found the way systeminformation finds it. */
  nvidiaSmi?: string;
}

// A wedged driver makes nvidia-smi hang; the agent must still come up and report a host
// without GPUs rather than never say Hello.
const NVIDIA_SMI_TIMEOUT_MS = 15_000;

export const execFileText: ExecFile = (file, args, { timeoutMs }) =>
  new Promise((resolve, reject) => {
    execFile(file, [...args], { timeout: timeoutMs, windowsHide: true, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const detail = String(stderr || stdout).trim();
        reject(Object.assign(err, { message: detail ? `${err.message.trim()}: ${detail}` : err.message }));
      } else {
        resolve(String(stdout));
      }
    });
  });

export async function detectInventory(options: DetectOptions = {}): Promise<Inventory> {
  const log = options.log ?? silentLogger();
  const info = options.si ?? (si as SystemInfo);
  const [cpu, mem, filesystems, interfaces, gpus] = await Promise.all([
    info.cpu(),
    info.mem(),
    info.fsSize(),
    info.networkInterfaces(),
    detectGpus(options.exec ?? execFileText, options.nvidiaSmi ?? locateNvidiaSmi(), log),
  ]);
  const driverVersion = gpus.find((gpu) => gpu.driverVersion)?.driverVersion;
  return {
    hostname: os.hostname(),
    capacity: {
      // Logical cores: that is what containers' CPU quotas and the scheduler's millicores count.
      cpuMillis: cpu.cores * 1000,
      memoryBytes: mem.total,
      gpus,
      nics: toNics(Array.isArray(interfaces) ? interfaces : [interfaces]),
      disks: toDisks(filesystems),
    },
    ...(driverVersion ? { driverVersion } : {}),
  };
}

/** GPUs from nvidia-smi; a host without it, or where it fails, has none (not an error). */
async function detectGpus(exec: ExecFile, nvidiaSmi: string | undefined, log: Logger): Promise<GpuDevice[]> {
  if (!nvidiaSmi) {
    log.debug({ platform: process.platform }, 'no nvidia-smi on this platform; reporting no GPUs');
    return [];
  }
  let fields: readonly string[] = GPU_QUERY_FIELDS;
  let stdout: string;
  try {
    stdout = await exec(nvidiaSmi, gpuQueryArgs(fields), { timeoutMs: NVIDIA_SMI_TIMEOUT_MS });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      log.debug({ nvidiaSmi }, 'nvidia-smi not found; reporting no GPUs');
      return [];
    }
    if (!/not a valid field/i.test((err as Error).message)) {
      log.debug({ nvidiaSmi, err: (err as Error).message }, 'nvidia-smi failed; reporting no GPUs');
      return [];
    }
    // Older drivers reject compute_cap; ask again without it rather than lose every GPU.
    fields = LEGACY_GPU_QUERY_FIELDS;
    try {
      stdout = await exec(nvidiaSmi, gpuQueryArgs(fields), { timeoutMs: NVIDIA_SMI_TIMEOUT_MS });
    } catch (retryErr) {
      log.debug({ nvidiaSmi, err: (retryErr as Error).message }, 'nvidia-smi failed; reporting no GPUs');
      return [];
    }
  }
  const { gpus, ignoredLines } = parseGpuQuery(stdout, fields);
  if (ignoredLines.length > 0) log.warn({ ignoredLines }, 'nvidia-smi printed lines that are not GPUs; ignoring them');
  return gpus;
}

function toNics(interfaces: NetworkInterface[]): Nic[] {
  return interfaces
    .filter((nic) => !nic.internal)
    .map((nic) => ({
      name: nic.iface,
      speedMbps: typeof nic.speed === 'number' && Number.isFinite(nic.speed) && nic.speed > 0 ? Math.round(nic.speed) : 0,
      ipv4: nic.ip4 ?? '',
    }));
}

// Filesystems that hold no data of their own: kernel interfaces, memory-backed mounts, read-only
// images (snaps), and container layers that come and go with containers.
const PSEUDO_FS_TYPES = new Set([
  'autofs', 'binfmt_misc', 'bpf', 'cgroup', 'cgroup2', 'configfs', 'debugfs', 'devpts', 'devtmpfs',
  'efivarfs', 'fusectl', 'fuse.lxcfs', 'fuse.portal', 'hugetlbfs', 'mqueue', 'nsfs', 'overlay', 'proc', 'pstore',
  'ramfs', 'rpc_pipefs', 'securityfs', 'squashfs', 'sysfs', 'tmpfs', 'tracefs', 'devfs', 'udev',
]);
const CONTAINER_STATE_DIRS = ['/var/lib/docker/', '/var/lib/containerd/', '/run/containerd/', '/var/lib/containers/', '/var/lib/kubelet/', '/snap/'];

function toDisks(filesystems: Awaited<ReturnType<SystemInfo['fsSize']>>): Disk[] {
  const kept = filesystems.filter((fs) => {
    const type = fs.type.toLowerCase();
    // An agent that itself runs in a container has an overlay root; that root is where its
    // data dir (and so its model cache) lives, so it is real capacity there.
    if (type === 'overlay' && fs.mount === '/') return true;
    if (PSEUDO_FS_TYPES.has(type)) return false;
    return !CONTAINER_STATE_DIRS.some((dir) => `${fs.mount}/`.startsWith(dir));
  });
  // Bind mounts (and a container's /etc/hosts) show one filesystem several times; count it once,
  // under its shortest mount point.
  const byDevice = new Map<string, (typeof kept)[number]>();
  for (const fs of [...kept].sort((a, b) => a.mount.length - b.mount.length)) {
    if (!byDevice.has(fs.fs)) byDevice.set(fs.fs, fs);
  }
  return [...byDevice.values()].map((fs) => ({
    mount: fs.mount,
    fsType: fs.type,
    sizeBytes: fs.size,
    availableBytes: fs.available,
  }));
}

// ---------------------------------------------------------------------------------------------
// --inventory-file

/** An inventory read from a file: interchangeable with a detected one, plus node labels. */
export type InventoryFile = Inventory & { labels?: Record<string, string> };

export interface LoadInventoryFileOptions {
  /** The node name (the agent's --name); fake GPU uuids derive from it. Default: os.hostname(). */
  hostname?: string;
}

/**
 * Reads and validates an inventory file (format in this module's header). Bad input throws an
 * InvalidArgumentError naming the file and the field.
 */
export async function loadInventoryFile(file: string, options: LoadInventoryFileOptions = {}): Promise<InventoryFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`inventory file ${file} cannot be read: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`inventory file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = inventoryFileSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.flatMap(explain).map((problem) => `${fieldPath(problem.path)}: ${problem.message}`);
    throw new InvalidArgumentError(`inventory file ${file} is invalid: ${problems.join('; ')}`);
  }
  const spec = parsed.data;
  const hostname = options.hostname ?? os.hostname();
  const gpus: GpuDevice[] = spec.gpus.map((gpu, index) => ({
    index,
    uuid: gpu.uuid ?? fakeGpuUuid(hostname, index),
    model: gpu.model,
    memoryBytes: gpu.memory,
    computeCapability: gpu.computeCapability ?? '',
    migEnabled: gpu.migEnabled ?? false,
    driverVersion: gpu.driverVersion ?? '',
  }));
  const uuids = new Set(gpus.map((gpu) => gpu.uuid));
  if (uuids.size !== gpus.length) {
    throw new InvalidArgumentError(`inventory file ${file} is invalid: gpus: two GPUs have the same uuid`);
  }
  const driverVersion = gpus.find((gpu) => gpu.driverVersion)?.driverVersion;
  return {
    hostname,
    capacity: {
      cpuMillis: spec.cpu,
      memoryBytes: spec.memory,
      gpus,
      nics: (spec.nics ?? []).map((nic) => ({ name: nic.name, speedMbps: nic.speedMbps ?? 0, ipv4: nic.ipv4 ?? '' })),
      disks: (spec.disks ?? []).map((disk) => ({
        mount: disk.mount,
        fsType: disk.fsType ?? '',
        sizeBytes: disk.size,
        availableBytes: disk.available ?? disk.size,
      })),
    },
    ...(driverVersion ? { driverVersion } : {}),
    ...(spec.labels ? { labels: spec.labels } : {}),
  };
}

/** "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", shaped like nvidia-smi's, from node name and index. */
export function fakeGpuUuid(hostname: string, index: number): string {
  const hex = createHash('sha256').update(`mlfleet-fake-gpu\0${hostname}\0${index}`).digest('hex');
  return `GPU-${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Zod's issues in the words of this file format: "memroy: unknown key", "gpus[1].model: is required". */
function explain(problem: z.ZodIssue): Array<{ path: Array<string | number>; message: string }> {
  if (problem.code === z.ZodIssueCode.unrecognized_keys) {
    return problem.keys.map((key) => ({ path: [...problem.path, key], message: 'unknown key' }));
  }
  if (problem.code === z.ZodIssueCode.invalid_type && problem.received === 'undefined') {
    return [{ path: problem.path, message: 'is required' }];
  }
  if (problem.code === z.ZodIssueCode.invalid_type && problem.path.length === 0) {
    return [{ path: [], message: `expected a JSON object, got ${problem.received}` }];
  }
  return [{ path: problem.path, message: problem.message }];
}

function fieldPath(path: Array<string | number>): string {
  if (path.length === 0) return '(top level)';
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

/** A human size ("80Gi", "1.5TB") or a whole number of bytes. */
const size = z.unknown().transform((input, ctx) => {
  if (typeof input === 'number' && Number.isSafeInteger(input) && input >= 0) return input;
  if (typeof input === 'string') {
    try {
      return parseBytes(input);
    } catch (err) {
      return issue(ctx, (err as Error).message);
    }
  }
  return issue(ctx, input === undefined ? 'is required' : `expected a size such as "80Gi" or a whole number of bytes, got ${JSON.stringify(input)}`);
});

/** Cores as a number or a string ("64", "0.5", "500m"), into millicores. */
const cores = z.unknown().transform((input, ctx) => {
  let millis: number;
  try {
    if (typeof input === 'number') millis = Math.round(input * 1000);
    else if (typeof input === 'string') millis = parseCpuMillis(input);
    else return issue(ctx, `expected a number of cores such as 64 or "500m", got ${JSON.stringify(input)}`);
  } catch (err) {
    return issue(ctx, (err as Error).message);
  }
  return Number.isSafeInteger(millis) && millis > 0 ? millis : issue(ctx, 'must be more than zero');
});

/** Records a problem at the current field (plus `path`); the transform's result is discarded. */
function issue(ctx: z.RefinementCtx, message: string, path: Array<string | number> = []): typeof z.NEVER {
  ctx.addIssue({ code: z.ZodIssueCode.custom, message, path });
  return z.NEVER;
}

const positiveInt = z.number().int().positive().refine(Number.isSafeInteger, 'is too large');
const nonEmpty = z.string().trim().min(1, 'must not be empty');

const gpuFields = {
  model: nonEmpty,
  memory: size,
  computeCapability: z.string().regex(/^\d+\.\d+$/, 'expected major.minor such as "9.0"').optional(),
  migEnabled: z.boolean().optional(),
  driverVersion: z.string().optional(),
};
const gpuList = z.array(
  z.object({ ...gpuFields, uuid: z.string().regex(/^GPU-[0-9a-fA-F-]+$/, 'expected a GPU uuid such as "GPU-8c5f22c6-…"').optional() }).strict(),
);
const gpuGroup = z.object({ ...gpuFields, count: positiveInt }).strict();

/**
 * A list of GPUs or one group of identical ones. Chosen by shape rather than with z.union, whose
 * "invalid input" would hide which field of which GPU is wrong.
 */
const gpus = z.unknown().transform((input, ctx) => {
  if (input === undefined) return [];
  const result = Array.isArray(input)
    ? gpuList.safeParse(input)
    : typeof input === 'object' && input !== null
      ? gpuGroup.safeParse(input)
      : undefined;
  if (!result) return issue(ctx, 'expected a list of GPUs or {"count": N, "model": …, "memory": …}');
  if (!result.success) {
    for (const { path, message } of result.error.issues.flatMap(explain)) ctx.addIssue({ code: z.ZodIssueCode.custom, message, path });
    return z.NEVER;
  }
  return Array.isArray(result.data)
    ? result.data
    : Array.from({ length: result.data.count }, () => ({ ...(result.data as z.infer<typeof gpuGroup>), uuid: undefined }));
});

const inventoryFileSchema = z
  .object({
    cpu: cores.optional(),
    cpuMillis: positiveInt.optional(),
    memory: size.optional(),
    memoryBytes: positiveInt.optional(),
    gpus,
    nics: z
      .array(z.object({ name: nonEmpty, speedMbps: z.number().int().nonnegative().optional(), ipv4: z.string().ip({ version: 'v4' }).optional() }).strict())
      .optional(),
    disks: z
      .array(
        z
          .object({
            mount: z.string().startsWith('/', 'must be an absolute path'),
            fsType: z.string().optional(),
            size,
            available: size.optional(),
          })
          .strict(),
      )
      .optional(),
    labels: z.record(z.string()).optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    for (const [human, exact] of [['cpu', 'cpuMillis'], ['memory', 'memoryBytes']] as const) {
      const given = (spec[human] !== undefined ? 1 : 0) + (spec[exact] !== undefined ? 1 : 0);
      if (given === 0) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [human], message: `is required (or give "${exact}")` });
      if (given === 2) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [exact], message: `give "${human}" or "${exact}", not both` });
    }
  })
  .transform((spec) => ({ ...spec, cpu: (spec.cpu ?? spec.cpuMillis)!, memory: (spec.memory ?? spec.memoryBytes)! }));
