// Turns what a user asked for (a deployment or job spec: a stack or an image, model and
// dataset REFs) into what an agent runs (a RunSpec with concrete digests, mounts, ports), and
// checks on the way that every named thing exists and fits together.
import { checkName, parseRef, type ArtifactKind } from '../../shared/artifact-ref.js';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import type { DeploymentSpec, JobSpec, ResourceRequest } from '../../shared/proto.js';
import { DEFAULT_READINESS_PATH, MODEL_MOUNT, type RunBlob, type RunSpec } from '../../shared/workloads.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import type { Stack } from './stacks.js';

/** Where stacks are looked up (the leader's StackRegistry). */
export interface StackLookup {
  find(name: string): Promise<Stack | undefined>;
  names(): Promise<string[]>;
}

/** Port a custom serving image listens on when the spec names none. */
export const DEFAULT_SERVING_PORT = 8080;
/** How long a custom server may take to become ready: generous, large models load slowly. */
export const DEFAULT_READINESS_TIMEOUT_MS = 10 * 60_000;

export interface ResolvedDeployment {
  run: RunSpec;
  resolvedVersion: number;
  modelDigest: string;
}

export async function resolveDeployment(artifacts: ArtifactRegistry, stacks: StackLookup, tenant: string, spec: DeploymentSpec): Promise<ResolvedDeployment> {
  const stack = await findStack(stacks, spec.stack, spec.resources);
  const model = await resolveBlob(artifacts, 'model', tenant, spec.model, stack?.modelMount ?? MODEL_MOUNT);
  if (stack && !stack.formats.includes(model.format)) {
    throw new InvalidArgumentError(`stack "${stack.name}" serves ${stack.formats.join(', ')} models; ${model.blob.ref} is ${model.format}`);
  }
  const run: RunSpec = {
    image: stack?.image ?? spec.image,
    command: spec.command.length > 0 ? spec.command : (stack?.command ?? []),
    env: { ...(stack?.env ?? {}), ...spec.env },
    port: stack?.port ?? (spec.port || DEFAULT_SERVING_PORT),
    readinessPath: spec.readinessPath || stack?.readinessPath || DEFAULT_READINESS_PATH,
    readinessTimeoutMs: stack?.readinessTimeoutMs ?? DEFAULT_READINESS_TIMEOUT_MS,
    model: model.blob,
    datasets: [],
    rank: 0,
    worldSize: 1,
    peers: [],
    output: undefined,
  };
  return { run, resolvedVersion: model.blob.version, modelDigest: model.blob.digest };
}

const NO_METADATA = { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] };

export async function resolveJob(artifacts: ArtifactRegistry, stacks: StackLookup, tenant: string, spec: JobSpec): Promise<RunSpec> {
  const stack = await findStack(stacks, spec.stack, spec.resources);
  const datasets: RunBlob[] = [];
  const names = new Set<string>();
  for (const ref of spec.datasets) {
    const { blob } = await resolveBlob(artifacts, 'dataset', tenant, ref, undefined);
    if (names.has(blob.name)) throw new InvalidArgumentError(`dataset "${blob.name}" is named twice; a job mounts each dataset once at /data/${blob.name}`);
    names.add(blob.name);
    datasets.push(blob);
  }
  if (stack && stack.trainCommand.length === 0) {
    throw new InvalidArgumentError(`stack "${stack.name}" does not train (it has no train command); run the job with --image, or on a stack that trains`);
  }
  // On a stack, the job's command is the arguments of the stack's train command (for onnx: the
  // script and its arguments); with an image, the whole argv.
  const command = stack ? [...stack.trainCommand, ...spec.command] : spec.command;
  if (command.length === 0) throw new InvalidArgumentError('a job needs a command (after --, or `command:` in YAML)');
  if (spec.output) checkName(spec.output.model, 'output model');
  return {
    image: stack?.image ?? spec.image,
    command,
    env: { ...(stack?.env ?? {}), ...spec.env },
    port: 0,
    readinessPath: '',
    readinessTimeoutMs: 0,
    model: undefined,
    datasets,
    rank: 0,
    worldSize: Math.max(1, spec.workers),
    // Filled in per allocation once the whole gang is placed (the controller's commit).
    peers: [],
    output: spec.output
      ? {
          model: spec.output.model,
          format: spec.output.format,
          // Lineage is the coordinator's to say: it sets it when it takes the push.
          metadata: { ...(spec.output.metadata ?? NO_METADATA), sourceJob: '', sourceDatasets: [] },
        }
      : undefined,
  };
}

/**
 * The named stack; undefined for none (an image workload). INVALID_ARGUMENT for an unknown name,
 * or for GPUs (whole or a memory share) asked of a stack that cannot use them.
 */
async function findStack(stacks: StackLookup, name: string, resources: ResourceRequest | null): Promise<Stack | undefined> {
  if (!name) return undefined;
  const stack = await stacks.find(name);
  if (!stack) throw new InvalidArgumentError(`unknown stack "${name}"; stacks: ${(await stacks.names()).join(', ')}`);
  if (!stack.gpus && ((resources?.gpus ?? 0) > 0 || (resources?.gpuMemoryBytes ?? 0) > 0)) {
    throw new InvalidArgumentError(`stack "${name}" does not use GPUs; ask for none, or use a stack that does`);
  }
  return stack;
}

async function resolveBlob(
  artifacts: ArtifactRegistry,
  kind: ArtifactKind,
  tenant: string,
  text: string,
  mountPath: string | undefined,
): Promise<{ blob: RunBlob; format: string }> {
  const ref = parseRef(text);
  let resolved;
  try {
    resolved = await artifacts.resolve(kind, tenant, ref);
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(`${err.message} (in tenant "${tenant}"); \`mlfleetctl ${kind}s ls\` lists them`);
    throw err;
  }
  const { record, version } = resolved;
  return {
    format: version.format,
    blob: {
      kind,
      ref: `${tenant}/${record.name}:${version.version}`,
      name: record.name,
      version: version.version,
      digest: version.digest,
      sizeBytes: version.sizeBytes,
      directory: version.directory,
      mountPath: mountPath ?? `/data/${record.name}`,
    },
  };
}
