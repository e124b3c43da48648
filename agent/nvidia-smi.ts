// nvidia-smi: where it lives, what the agent asks it, and how its CSV answer becomes GpuDevice
// records. Parsing is pure (text in, devices out) so every output shape nvidia-smi is known to
// print can be tested from fixtures on machines without a GPU.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { GpuDevice } from '../shared/proto.js';

/** The fields the agent queries, in the order a header-less answer lists them. */
export const GPU_QUERY_FIELDS = [
  'index',
  'uuid',
  'name',
  'memory.total',
  'mig.mode.current',
  'compute_cap',
  'driver_version',
] as const;

/** For drivers that predate compute_cap: they reject the whole query ("not a valid field to query"). */
export const LEGACY_GPU_QUERY_FIELDS = GPU_QUERY_FIELDS.filter((field) => field !== 'compute_cap');

export function gpuQueryArgs(fields: readonly string[] = GPU_QUERY_FIELDS): string[] {
  return [`--query-gpu=${fields.join(',')}`, '--format=csv,noheader,nounits'];
}

export interface LocateOptions {
  platform?: NodeJS.Platform;
  /** %WINDIR%; systeminformation defaults it the same way. */
  windir?: string;
}

/**
 * Finds nvidia-smi the way systeminformation's graphics.js does, so the agent and that library
 * never disagree about whether a host has NVIDIA GPUs: on Linux the `nvidia-smi` on PATH; on
 * Windows System32\nvidia-smi.exe, else the most recently installed copy in the driver store;
 * elsewhere none (undefined).
 */
export function locateNvidiaSmi(options: LocateOptions = {}): string | undefined {
  const platform = options.platform ?? process.platform;
  if (platform === 'linux') return 'nvidia-smi';
  if (platform !== 'win32') return undefined;
  const windir = options.windir ?? process.env.WINDIR ?? 'C:\\Windows';
  const system32 = path.join(windir, 'System32', 'nvidia-smi.exe');
  if (existsSync(system32)) return system32;
  // Since the DCH drivers, nvidia-smi.exe only lives in a versioned driver-store folder; after
  // driver upgrades several remain and the newest one matches the loaded driver.
  const store = path.join(windir, 'System32', 'DriverStore', 'FileRepository');
  let newest: { file: string; ctimeMs: number } | undefined;
  try {
    for (const entry of readdirSync(store, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const file = path.join(store, entry.name, 'nvidia-smi.exe');
      try {
        const { ctimeMs } = statSync(file);
        if (!newest || ctimeMs > newest.ctimeMs) newest = { file, ctimeMs };
      } catch {
        // this driver package ships no nvidia-smi
      }
    }
  } catch {
    return undefined;
  }
  return newest?.file;
}

export interface GpuQueryResult {
  gpus: GpuDevice[];
  /** Lines that were not GPU rows, such as the "WARNING: infoROM is corrupted" notices. */
  ignoredLines: string[];
}

const MIB = 1024 * 1024;

/**
 * Parses `nvidia-smi --query-gpu=… --format=csv[,noheader][,nounits]`. `fields` names the
 * columns of a header-less answer; a header line, when present, takes precedence, so the
 * `--format=csv` form (with " [MiB]" in the header and " MiB" after numbers) parses too.
 */
export function parseGpuQuery(text: string, fields: readonly string[] = GPU_QUERY_FIELDS): GpuQueryResult {
  const lines = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line.length > 0);
  let columns = fields.map(normalizeField);
  const first = lines[0] === undefined ? [] : splitRow(lines[0]).map(normalizeField);
  if (first.length > 0 && first.every(isFieldName)) {
    columns = first;
    lines.shift();
  }
  const gpus: GpuDevice[] = [];
  const ignoredLines: string[] = [];
  for (const line of lines) {
    const cells = splitRow(line);
    const gpu = cells.length === columns.length ? toGpu(columns, cells, gpus.length) : undefined;
    if (gpu) gpus.push(gpu);
    else ignoredLines.push(line);
  }
  return { gpus, ignoredLines };
}

function splitRow(line: string): string[] {
  // nvidia-smi never quotes; no queried value (model names included) contains a comma.
  return line.split(',').map((cell) => cell.trim());
}

/** "memory.total [MiB]" → "memory.total"; nvidia-smi also accepts "compute_cap" as given. */
function normalizeField(field: string): string {
  return field.replace(/\s*\[[^\]]*\]\s*$/, '').trim().toLowerCase();
}

function isFieldName(cell: string): boolean {
  return /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/.test(cell);
}

/** "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]" and empty cells carry no value. */
function value(cell: string | undefined): string | undefined {
  if (cell === undefined) return undefined;
  const text = cell.trim();
  if (text === '' || /^\[.*\]$/.test(text) || /^n\/a$/i.test(text)) return undefined;
  return text;
}

function toGpu(columns: string[], cells: string[], position: number): GpuDevice | undefined {
  const get = (field: string): string | undefined => {
    const at = columns.indexOf(field);
    return at < 0 ? undefined : value(cells[at]);
  };
  const index = get('index');
  const memory = get('memory.total');
  const uuid = get('uuid');
  if ((index !== undefined && !/^\d+$/.test(index)) || (uuid !== undefined && !/^(GPU|MIG)-/i.test(uuid))) {
    return undefined;
  }
  const memoryBytes = memory === undefined ? 0 : mebibytesToBytes(memory);
  if (memoryBytes === undefined) return undefined;
  return {
    index: index === undefined ? position : Number(index),
    uuid: uuid ?? '',
    model: get('name') ?? '',
    memoryBytes,
    computeCapability: get('compute_cap') ?? '',
    migEnabled: (get('mig.mode.current') ?? '').toLowerCase() === 'enabled',
    driverVersion: get('driver_version') ?? '',
  };
}

/** nvidia-smi reports memory in MiB: "81559" with nounits, "81559 MiB" without. */
function mebibytesToBytes(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(MiB)?$/i.exec(text);
  return match ? Math.round(Number(match[1]) * MIB) : undefined;
}
