// `mlfleetctl deploy NAME …`: serve a model. The flags, in human units, become a DeploymentSpec
// through shared/workload-spec.ts — the compile step `apply -f` uses too, so a flag and its YAML
// field mean the same and default the same. A bad value is bad usage (exit 2), found before any
// request is made. The flags `jobs run` shares with deploy (runtime, resources, placement,
// environment, the command after --) are defined here.
import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import { formatRef, parseRef } from '../../../shared/artifact-ref.js';
import {
  checkImage,
  checkStack,
  checkWorkloadName,
  compileDeploymentSpec,
  ENV_KEY_HINT,
  ENV_NAME,
  LABEL_KEY,
  LABEL_KEY_HINT,
  parseAssignment,
  type ResourceInput,
} from '../../../shared/workload-spec.js';
import { AUTOSCALE_FLAG_NAMES, AUTOSCALE_LIMITS, autoscaleProblems, DEFAULT_TARGET_CONCURRENCY } from '../../../shared/autoscale-spec.js';
import { ROLLOUT_DEFAULTS, ROLLOUT_LIMITS, rolloutProblem } from '../../../shared/rollout-spec.js';
import { withContext } from '../context.js';
import { bytesLimit, countFlag, cpuLimit, durationFlag, usageParser } from '../flags.js';
import { deploymentAppliedView } from '../views/deployments.js';

// ---- flag parsers ------------------------------------------------------------------------------

/** A whole number within [min, max]; negative numbers allowed where min is (priorities). */
export function wholeFlag(what: string, min: number, max: number): (text: string) => number {
  return (text) => {
    const trimmed = text.trim();
    if (!/^-?\d+$/.test(trimmed)) throw new InvalidArgumentError(`${what} "${text}" is not a whole number`);
    const value = Number(trimmed);
    if (value < min || value > max) throw new InvalidArgumentError(`${what} must be between ${min} and ${max}, got ${trimmed}`);
    return value;
  };
}

/** A number above 0 and at most `max`, fractions allowed (--target-concurrency 0.5). */
export function positiveNumberFlag(what: string, max: number): (text: string) => number {
  return (text) => {
    const trimmed = text.trim();
    if (!/^(\d+\.?\d*|\.\d+)$/.test(trimmed)) throw new InvalidArgumentError(`${what} "${text}" is not a number (like 4 or 0.5)`);
    const value = Number(trimmed);
    if (value <= 0 || value > max) throw new InvalidArgumentError(`${what} must be more than 0 and at most ${max}, got ${trimmed}`);
    return value;
  };
}

/**
 * A percentage, "10%" or "10", between `min` and `max`: whole (--canary 10%) as a number of
 * percent, or (whole false, --max-error-rate 5%) as a fraction (0.05).
 */
function percentFlag(what: string, min: number, max: number, whole: boolean): (text: string) => number {
  return (text) => {
    const trimmed = text.trim().replace(/%$/, '');
    if (!(whole ? /^\d+$/ : /^(\d+\.?\d*|\.\d+)$/).test(trimmed)) throw new InvalidArgumentError(`${what} "${text}" is not a ${whole ? 'whole ' : ''}percentage (like ${whole ? '10%' : '5%'})`);
    const value = Number(trimmed);
    if (value < min || value > max) throw new InvalidArgumentError(`${what} must be from ${min}% to ${max}%, got ${trimmed}%`);
    return whole ? value : value / 100;
  };
}

/** A ratio of at least 1 (--max-p99-ratio 2). */
function ratioFlag(what: string): (text: string) => number {
  return (text) => {
    const value = Number(text.trim());
    const problem = Number.isNaN(value) || text.trim() === '' ? `is not a number (like 2 or 1.5)` : rolloutProblem('maxP99Ratio', value);
    if (problem) throw new InvalidArgumentError(`${what} "${text}" ${problem}`);
    return value;
  };
}

/** A duration above 0 and at most `maxMs` (shown as `maxText`). */
function boundedDurationFlag(what: string, maxMs: number, maxText: string, zeroHint: string): (text: string) => number {
  const parse = durationFlag(what, zeroHint);
  return (text) => {
    const ms = parse(text);
    if (ms > maxMs) throw new InvalidArgumentError(`${what} must be at most ${maxText}, got ${text.trim()}`);
    return ms;
  };
}

/** A repeatable KEY=VALUE flag (--env, --constraint), collected into a map. */
function assignmentFlag(what: string, keyRule: RegExp, keyHint: string): (text: string, previous?: Record<string, string>) => Record<string, string> {
  const parse = usageParser((text: string) => parseAssignment(text, what, keyRule, keyHint));
  return (text, previous = {}) => {
    const [key, value] = parse(text);
    return { ...previous, [key]: value };
  };
}

/** A repeatable flag collected into a list. */
export function repeatable<T>(parse: (text: string) => T): (text: string, previous?: T[]) => T[] {
  return (text, previous = []) => [...previous, parse(text)];
}

export const workloadNameArgument = (what: string) =>
  new Argument('<name>', `${what} name: lowercase letters, digits and "-"`).argParser(usageParser((text: string) => checkWorkloadName(text)));

/** A model or dataset REF, normalized: name, name:3 or name@alias. */
export const refFlag = usageParser((text: string) => formatRef(parseRef(text)));

// ---- the flags deploy and jobs run share ------------------------------------------------------

export interface WorkloadOptions {
  stack?: string;
  image?: string;
  cpu?: number;
  memory?: number;
  gpus?: number;
  gpuMemory?: number;
  gpuModel?: string;
  nicMbps?: number;
  env?: Record<string, string>;
  constraint?: Record<string, string>;
  priority?: number;
  tenant?: string;
}

/** --stack | --image, resources, placement, environment and --tenant. `unit`: "replica" or "worker". */
export function addWorkloadOptions(command: Command, unit: 'replica' | 'worker'): Command {
  return command
    .addOption(
      new Option('--stack <stack>', unit === 'replica' ? 'a built-in runtime that serves the model (onnx)' : 'a built-in runtime whose image runs the command').argParser(usageParser(checkStack)).conflicts('image'),
    )
    .addOption(new Option('--image <image>', 'your own container image instead of a stack').argParser(usageParser(checkImage)))
    .addOption(new Option('--cpu <cpu>', `CPU per ${unit}: cores (2) or millicores (500m)`).argParser(cpuLimit('--cpu', 'leave it out for the default')))
    .addOption(new Option('--memory <size>', `memory per ${unit} (512Mi, 4Gi)`).argParser(bytesLimit('--memory', 'leave it out for the default')))
    .addOption(new Option('--gpus <n>', `whole GPUs per ${unit}, never shared`).argParser(wholeFlag('--gpus', 0, 64)))
    .addOption(new Option('--gpu-memory <size>', `with --gpus: the least memory each GPU must have; without: a share of one GPU's memory (20Gi)`).argParser(bytesLimit('--gpu-memory')))
    .addOption(new Option('--gpu-model <model>', 'the GPU model must contain this (H100)'))
    .addOption(new Option('--nic-mbps <n>', `network bandwidth per ${unit}, in Mbps`).argParser(countFlag('--nic-mbps')))
    .addOption(new Option('--constraint <key=value>', 'a node label the node must carry (repeat for more)').argParser(assignmentFlag('--constraint', LABEL_KEY, LABEL_KEY_HINT)))
    .addOption(new Option('--priority <p>', 'higher preempts lower, -1000000 to 1000000 (default: 0)').argParser(wholeFlag('--priority', -1_000_000, 1_000_000)))
    .addOption(new Option('--env <KEY=VALUE>', 'an environment variable (repeat for more)').argParser(assignmentFlag('--env', ENV_NAME, ENV_KEY_HINT)))
    .option('--tenant <tenant>', "another tenant's (admins)");
}

/** The one runtime given; a usage error when neither is. */
export function runtimeFrom(options: WorkloadOptions, command: Command): { stack?: string; image?: string } {
  if (options.stack === undefined && options.image === undefined) {
    command.error('give --stack STACK (a built-in runtime such as onnx) or --image IMAGE (your own container)');
  }
  return { stack: options.stack, image: options.image };
}

export function resourcesFrom(options: WorkloadOptions): ResourceInput {
  return {
    cpuMillis: options.cpu,
    memoryBytes: options.memory,
    gpus: options.gpus,
    gpuMemoryBytes: options.gpuMemory,
    gpuModel: options.gpuModel,
    nicMbps: options.nicMbps,
  };
}

/**
 * The container's command: the operands after `--`. Commander takes operands anywhere, so
 * without this check `deploy web --model m python serve.py --port 80` would give `--port` to
 * deploy; the `--` keeps the two apart.
 */
export function commandAfterDashes(command: Command, operands: string[]): string[] | undefined {
  if (operands.length === 0) return undefined;
  if (!process.argv.slice(2).includes('--')) {
    const words: string[] = [];
    for (let c: Command | null = command; c; c = c.parent) words.unshift(c.name());
    command.error(`unexpected argument "${operands[0]}"; the command goes after --, as in: ${words.join(' ')} NAME … -- python main.py`);
  }
  return operands;
}

// ---- deploy ------------------------------------------------------------------------------------

interface DeployOptions extends WorkloadOptions {
  model: string;
  public?: boolean;
  maxRequestSize?: number;
  replicas?: number;
  maxPerNode?: number;
  port?: number;
  readinessPath?: string;
  maxSurge?: number;
  maxUnavailable?: number;
  minReplicas?: number;
  maxReplicas?: number;
  targetConcurrency?: number;
  scaleToZeroAfter?: number;
  canary?: number;
  maxErrorRate?: number;
  maxP99Ratio?: number;
  watch?: number;
  minRequests?: number;
  autoRollback?: boolean;
}

function readinessPathFlag(text: string): string {
  if (!/^\/\S*$/.test(text)) throw new InvalidArgumentError(`--readiness-path "${text}" must be a path starting with /`);
  return text;
}

export function registerDeployCommand(program: Command): void {
  const deploy = program
    .command('deploy')
    .description('serve a model: create the deployment, or update it (a changed spec rolls out replica by replica)')
    .addArgument(workloadNameArgument('deployment'))
    .argument('[command...]', "after --: the container's command (overrides the stack's)")
    .addOption(new Option('--model <ref>', 'the model: NAME (latest version), NAME:VERSION or NAME@ALIAS').argParser(refFlag).makeOptionMandatory())
    .addOption(new Option('--replicas <n>', 'how many replicas to run (default: 1); or autoscale with --max-replicas').argParser(wholeFlag('--replicas', 0, 2 ** 32 - 1)));
  addWorkloadOptions(deploy, 'replica')
    .addOption(new Option('--max-per-node <n>', 'at most this many replicas on one node (default: no limit)').argParser(wholeFlag('--max-per-node', 0, 2 ** 32 - 1)))
    .addOption(new Option('--port <port>', 'the port the server listens on in the container (--image; default 8080)').argParser(wholeFlag('--port', 1, 65_535)))
    .addOption(new Option('--readiness-path <path>', 'HTTP GET path answering 200 when ready (default: /v2/health/ready)').argParser(readinessPathFlag))
    .addOption(new Option('--max-surge <n>', 'extra replicas allowed during a rollout (default: 1)').argParser(wholeFlag('--max-surge', 0, 2 ** 32 - 1)))
    .addOption(new Option('--max-unavailable <n>', 'replicas allowed to be not ready during a rollout (default: 0)').argParser(wholeFlag('--max-unavailable', 0, 2 ** 32 - 1)))
    .addOption(new Option('--canary <percent>', 'roll out as a canary: this share of replicas (rounded up, at least 1) and of requests runs the new version until `deployments promote` (1%-99%)').argParser(percentFlag('--canary', 1, ROLLOUT_LIMITS.canaryPercent, true)))
    .addOption(new Option('--max-error-rate <percent>', `roll back by itself when the new version's error rate exceeds the previous version's by more than this (default: ${ROLLOUT_DEFAULTS.maxErrorRate * 100}%)`).argParser(percentFlag('--max-error-rate', 0.1, 100, false)))
    .addOption(new Option('--max-p99-ratio <x>', `roll back by itself when the new version's p99 exceeds this many times the previous version's (default: ${ROLLOUT_DEFAULTS.maxP99Ratio})`).argParser(ratioFlag('--max-p99-ratio')))
    .addOption(new Option('--watch <duration>', `how long a rollout's new replicas are watched once all are ready (default: ${ROLLOUT_DEFAULTS.watchMs / 1000}s)`).argParser(boundedDurationFlag('--watch', ROLLOUT_LIMITS.watchMs, '24h', 'leave it out for the default 60s')))
    .addOption(new Option('--min-requests <n>', `requests to the new version before its error rate and p99 count (default: ${ROLLOUT_DEFAULTS.minRequests})`).argParser(wholeFlag('--min-requests', 1, ROLLOUT_LIMITS.minRequests)))
    .option('--no-auto-rollback', 'never roll back by itself (promote and rollback by hand still work)')
    .option('--public', 'anyone may infer through the gateways, with no token (default: a token of the tenant)')
    .addOption(new Option('--max-request-size <size>', 'the largest request body the gateways pass on, up to 1Gi (default: 8Mi)').argParser(bytesLimit('--max-request-size')))
    .addOption(new Option('--max-replicas <n>', `autoscale by requests in flight, up to this many replicas (1-${AUTOSCALE_LIMITS.replicas}); instead of --replicas`).argParser(wholeFlag('--max-replicas', 1, AUTOSCALE_LIMITS.replicas)))
    .addOption(new Option('--min-replicas <n>', 'with --max-replicas: never fewer (default: 0, which keeps 1 unless --scale-to-zero-after)').argParser(wholeFlag('--min-replicas', 0, AUTOSCALE_LIMITS.replicas)))
    .addOption(
      new Option('--target-concurrency <x>', `with --max-replicas: in-flight requests per replica to aim at (default: ${DEFAULT_TARGET_CONCURRENCY})`).argParser(
        positiveNumberFlag('--target-concurrency', AUTOSCALE_LIMITS.targetConcurrency),
      ),
    )
    .addOption(
      new Option('--scale-to-zero-after <duration>', 'with --max-replicas and min 0: remove the last replica after this long with no request (5m); requests then wait while one starts').argParser(
        boundedDurationFlag('--scale-to-zero-after', AUTOSCALE_LIMITS.scaleToZeroAfterMs, '30d', 'leave it out to keep the last replica'),
      ),
    )
    .action((name: string, operands: string[], options: DeployOptions, command: Command) => {
      const autoscale = {
        replicas: options.replicas !== undefined,
        minReplicas: options.minReplicas,
        maxReplicas: options.maxReplicas,
        targetConcurrency: options.targetConcurrency,
        scaleToZeroAfterMs: options.scaleToZeroAfter,
      };
      const [problem] = autoscaleProblems(autoscale, AUTOSCALE_FLAG_NAMES);
      if (problem) command.error(problem.message);
      const spec = compileDeploymentSpec({
        name,
        model: options.model,
        ...runtimeFrom(options, command),
        command: commandAfterDashes(command, operands),
        env: options.env,
        port: options.port,
        readinessPath: options.readinessPath,
        replicas: options.replicas,
        resources: resourcesFrom(options),
        constraints: options.constraint,
        maxPerNode: options.maxPerNode,
        priority: options.priority,
        rollout: {
          maxSurge: options.maxSurge,
          maxUnavailable: options.maxUnavailable,
          canaryPercent: options.canary,
          maxErrorRate: options.maxErrorRate,
          maxP99Ratio: options.maxP99Ratio,
          watchMs: options.watch,
          minRequests: options.minRequests,
          autoRollback: options.autoRollback,
        },
        public: options.public,
        maxRequestBytes: options.maxRequestSize,
        minReplicas: options.minReplicas,
        maxReplicas: options.maxReplicas,
        targetConcurrency: options.targetConcurrency,
        scaleToZeroAfterMs: options.scaleToZeroAfter,
      });
      return withContext(command, async (ctx) => ctx.print(deploymentAppliedView(await ctx.client().applyDeployment(spec, options.tenant))));
    });
}
