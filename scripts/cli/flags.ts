// Flag value parsers for mlfleetctl: human units (shared/units.ts) and counts turned into the
// numbers a request carries. A bad value is bad usage — commander's InvalidArgumentError,
// which mlfleetctl turns into exit 2 — never a failed request (exit 1).
import { CommanderError, InvalidArgumentError } from 'commander';
import { MlfleetError } from '../../shared/errors.js';
import { parseBytes, parseCpuMillis, parseDuration } from '../../shared/units.js';

/** Wraps a shared/units.ts parser so its InvalidArgumentError becomes a usage error. */
export function usageParser<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      if (MlfleetError.is(err)) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

/**
 * A file named by -f that cannot be read or is not what it must be: bad usage too (exit 2), with
 * `message` on stderr and without the usage hint a flag error gets.
 */
export function badFile(message: string): never {
  process.stderr.write(`mlfleetctl: ${message}\n`);
  throw new CommanderError(2, 'mlfleetctl.invalidFile', message);
}

/**
 * The amount must be a whole number above 0 that a double holds exactly (uint64 on the wire).
 * `zeroHint` tells the user what to do instead of 0 (a 0 on the wire means "none" or "unset").
 */
function positive(value: number, text: string, what: string, zeroHint?: string): number {
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`${what} "${text}" is too large`);
  if (value <= 0) throw new InvalidArgumentError(`${what} must be more than 0${zeroHint ? `; ${zeroHint}` : ''}`);
  return value;
}

/** "64" cores or "500m" → millicores, above 0. */
export function cpuLimit(what: string, zeroHint?: string): (text: string) => number {
  return usageParser((text) => positive(parseCpuMillis(text, what), text, what, zeroHint));
}

/** "512Gi", "2Ti", "1.5GB" → bytes, above 0. */
export function bytesLimit(what: string, zeroHint?: string): (text: string) => number {
  return usageParser((text) => positive(parseBytes(text, what), text, what, zeroHint));
}

/** A whole count above 0 and at most `max` (uint32 fields: gpus, deployments, a page size). */
export function countFlag(what: string, max = 2 ** 32 - 1, zeroHint?: string): (text: string) => number {
  return (text) => {
    const trimmed = text.trim();
    if (!/^\d+$/.test(trimmed)) throw new InvalidArgumentError(`${what} "${text}" is not a whole number`);
    const value = Number(trimmed);
    if (value > max) throw new InvalidArgumentError(`${what} must be at most ${max}, got ${trimmed}`);
    return positive(value, text, what, zeroHint);
  };
}

/** "30d", "12h", "90m" → milliseconds, above 0. */
export function durationFlag(what: string, zeroHint?: string): (text: string) => number {
  return usageParser((text) => positive(parseDuration(text, what), text, what, zeroHint));
}

/** "a,b , c" → ['a', 'b', 'c'], each one of `allowed` (or an alias of one); repeats merge. */
export function listFlag(
  what: string,
  allowed: readonly string[],
  aliases: Record<string, string> = {},
): (text: string, previous?: string[]) => string[] {
  return (text, previous = []) => {
    const items = text.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
    if (items.length === 0) throw new InvalidArgumentError(`${what} needs at least one of ${allowed.join(', ')}`);
    const result = [...previous];
    for (const item of items) {
      const name = aliases[item] ?? item;
      if (!allowed.includes(name)) throw new InvalidArgumentError(`"${item}" is not one of ${allowed.join(', ')}`);
      if (!result.includes(name)) result.push(name);
    }
    return result;
  };
}
