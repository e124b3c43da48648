// Daemon configuration: every option is a flag, an MLFLEET_* environment variable and a key
// of the YAML file given with --config, in that order of precedence over the default. Each
// binary declares its options once (a table of OptionSpec); values are parsed into typed,
// validated form at start (Temporal's compileWorkerOptions), so a bad value stops the
// daemon before it touches anything, with a message naming the option.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError, MlfleetError } from './errors.js';
import { parseBytes, parseDuration } from './units.js';
import { LIMITS } from './limits.js';

export interface OptionSpec {
  /** camelCase key: the YAML key and the compiled option's name. */
  key: string;
  /** Flag as commander writes it, e.g. '--node-ttl <duration>'. */
  flag: string;
  description: string;
  default?: string;
}

export interface ParsedArgs {
  /** Raw text values after precedence (flag > env > config file > default). */
  values: Record<string, string | undefined>;
  /** Where each value came from, for error messages. */
  sources: Record<string, string>;
}

function envName(key: string): string {
  return `MLFLEET_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/**
 * Parses argv against the option table. Throws CommanderError for bad usage (the caller exits
 * 2) and InvalidArgumentError for a bad config file.
 */
export function parseArgs(
  name: string,
  description: string,
  specs: OptionSpec[],
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): ParsedArgs {
  const program = new Command(name).description(description).exitOverride().allowExcessArguments(false);
  program.configureOutput({ writeErr: (text) => process.stderr.write(text), writeOut: (text) => process.stdout.write(text) });
  program.addOption(new Option('--config <file>', 'YAML file with any of these options (flags and env win over it)').env('MLFLEET_CONFIG'));
  for (const spec of specs) {
    const option = new Option(spec.flag, spec.description).env(envName(spec.key));
    if (spec.default !== undefined) option.default(spec.default);
    program.addOption(option);
  }
  program.parse(argv, { from: 'user' });
  const opts = program.opts<Record<string, string | boolean | undefined>>();
  const values: Record<string, string | undefined> = {};
  const sources: Record<string, string> = {};
  for (const spec of specs) {
    const value = opts[spec.key];
    values[spec.key] = value === undefined ? undefined : String(value);
    const source = program.getOptionValueSource(spec.key);
    sources[spec.key] = source === 'env' ? envName(spec.key) : source === 'cli' ? spec.flag.split(' ')[0]! : 'default';
  }

  const configFile = opts.config as string | undefined;
  if (configFile) {
    const fromFile = readConfigFile(configFile, specs);
    for (const [key, value] of Object.entries(fromFile)) {
      const source = program.getOptionValueSource(key);
      if (source === 'cli' || source === 'env') continue;
      values[key] = value;
      sources[key] = `${configFile}: ${key}`;
    }
  }
  return { values, sources };
}

function readConfigFile(file: string, specs: OptionSpec[]): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new InvalidArgumentError(`config file ${file} is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InvalidArgumentError(`config file ${file} must be a mapping of option names to values`);
  }
  const known = new Set(specs.map((s) => s.key));
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!known.has(key)) {
      throw new InvalidArgumentError(`config file ${file}: unknown option "${key}" (known: ${[...known].join(', ')})`);
    }
    if (value === null || value === undefined) continue;
    if (typeof value === 'object') {
      // labels may be written as a mapping in YAML; flatten to the flag's k=v,k=v form
      if (!Array.isArray(value)) {
        out[key] = Object.entries(value as Record<string, unknown>).map(([k, v]) => `${k}=${String(v)}`).join(',');
        continue;
      }
      out[key] = value.map(String).join(',');
      continue;
    }
    out[key] = String(value);
  }
  return out;
}

/** Parses a value with `parse`, re-throwing its error prefixed with where the value came from. */
export function compile<T>(args: ParsedArgs, key: string, parse: (text: string) => T): T {
  const text = args.values[key];
  if (text === undefined) throw new InvalidArgumentError(`${args.sources[key] ?? key}: a value is required`);
  try {
    return parse(text);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new InvalidArgumentError(`${args.sources[key] ?? key}: ${message}`);
  }
}

export function compileOptional<T>(args: ParsedArgs, key: string, parse: (text: string) => T): T | undefined {
  return args.values[key] === undefined || args.values[key] === '' ? undefined : compile(args, key, parse);
}

/** "host:port" with a port in 0..65535; host may be a name, IPv4 or [IPv6]. */
export function parseHostPort(text: string): { host: string; port: number } {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) throw new InvalidArgumentError(`"${text}" is not host:port (for example 127.0.0.1:7700)`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/** parseHostPort's inverse: "host:port", or "[host]:port" for an IPv6 host. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function parseAddressList(text: string): string[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new InvalidArgumentError('at least one address is required');
  for (const address of list) parseHostPort(address);
  return list;
}

const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^[A-Za-z0-9._:/-]{0,128}$/;

/** "k=v,k2=v2" → {k: 'v', k2: 'v2'}. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? '' : pair.slice(0, eq);
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    if (!LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) {
      throw new InvalidArgumentError(`label "${pair}" must be key=value (key: letters, digits, . _ - /; value up to 128 of letters, digits, . _ : / -)`);
    }
    labels[key] = value;
  }
  // The coordinator refuses a hello with more: say so at start, not on every reconnect.
  const count = Object.keys(labels).length;
  if (count > LIMITS.labels) throw new InvalidArgumentError(`${count} labels, over the limit of ${LIMITS.labels}`);
  return labels;
}

export { parseBytes, parseDuration };

/**
 * Runs a daemon's start: bad usage exits 2, an invalid option exits 2 with one line, any
 * other failure at start exits 1.
 */
export async function runMain(name: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`${name}: ${message}\n`);
    process.exitCode = MlfleetError.is(err) && err.code === 'INVALID_ARGUMENT' ? 2 : 1;
  }
}
