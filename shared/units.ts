// Human units in flags, config files and CLI output: durations ("15s", "500ms", "2m", "30d"),
// byte sizes ("512Mi", "20Gi", "1.5GB", plain numbers), CPU ("500m", "2", "1.5").
import { InvalidArgumentError } from './errors.js';
import { quoted } from './truncate.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "1h2m3s", "15s", "250ms", "30d" (days of 24h) or a plain number of milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== trimmed) {
    throw new InvalidArgumentError(`${what} ${quoted(text)} is not a duration; use forms like 500ms, 15s, 2m, 1h or 30d`);
  }
  return Math.round(parts.reduce((total, p) => total + Number(p[1]) * DURATION_UNITS[p[2]!]!, 0));
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15,
  KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, PB: 1e15,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50,
  KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40, PiB: 2 ** 50,
};

/** Parses "512Mi", "20Gi", "1.5GB", "1000" (bytes). */
export function parseBytes(text: string, what = 'size'): number {
  const match = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(text.trim());
  const factor = match ? BYTE_UNITS[match[2]!] : undefined;
  if (!match || factor === undefined) {
    throw new InvalidArgumentError(`${what} ${quoted(text)} is not a size; use forms like 1000, 512Mi, 20Gi or 1.5GB`);
  }
  return Math.round(Number(match[1]) * factor);
}

/** Parses CPU as cores ("2", "1.5") or millicores ("500m") into millicores. */
export function parseCpuMillis(text: string, what = 'cpu'): number {
  const match = /^(\d+(?:\.\d+)?)(m?)$/.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`${what} ${quoted(text)} is not a CPU amount; use cores (2, 0.5) or millicores (500m)`);
  return match[2] === 'm' ? Math.round(Number(match[1])) : Math.round(Number(match[1]) * 1000);
}

/** 85899345920 → "80Gi"; binary units, at most one decimal. */
export function formatBytes(bytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = unit === 0 || Number.isInteger(value) ? String(value) : value.toFixed(1).replace(/\.0$/, '');
  return `${text}${units[unit]}`;
}

/** 2500 → "2.5", 500 → "500m". */
export function formatCpuMillis(millis: number): string {
  return millis % 1000 === 0 ? String(millis / 1000) : millis > 1000 ? (millis / 1000).toFixed(2).replace(/0+$/, '') : `${millis}m`;
}

/** 15000 → "15s", 1500 → "1.5s", 250 → "250ms". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
  return `${Math.floor(ms / 3_600_000)}h${Math.floor((ms % 3_600_000) / 60_000)}m`;
}
