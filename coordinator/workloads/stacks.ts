// Stacks: how an ML technology runs as a container — its image, the model formats it serves,
// where the model is mounted, its port, protocol and readiness check, whether it can use GPUs,
// and how it trains. The built-in table lives here in code; user stacks live in the store under
// /mlfleet/stacks/. The leader loads them when it wins leadership and keeps them in step with
// its own writes (only the leader writes, through its fenced writer), so a lookup on the
// deployment path is a map read.
import { ConflictError, FailedPreconditionError, NotFoundError } from '../../shared/errors.js';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { keys } from '../../shared/keys.js';
import type { Stack } from '../../shared/proto.js';
import type { Store } from '../../shared/store/store.js';
import type { FencedWriter } from '../node-registry.js';

export type { Stack };

/** How a stack's server speaks: what a gateway (or a person) uses to call it. */
export const STACK_PROTOCOLS = ['v2', 'tfserving-rest', 'http'] as const;

/** How long a server may take to become ready when its stack says 0: large models load slowly. */
// Longer than the onnx runtime's own load timeout (10 minutes), so that a model failing to load
// is reported by the server with its reason before the agent gives up waiting.
export const DEFAULT_STACK_READINESS_TIMEOUT_MS = 15 * 60_000;

type StackFields = Omit<Stack, 'builtin' | 'readinessTimeoutMs' | 'trainCommand' | 'command' | 'env' | 'gpus'> &
  Partial<Pick<Stack, 'command' | 'env' | 'gpus' | 'trainCommand'>>;

/** Where the onnx image carries the training runner (scripts/images/onnx.mjs). */
export const ONNX_TRAIN_RUNNER = '/opt/mlfleet/dist/agent/stacks/onnx/train.js';

function builtIn(fields: StackFields): Stack {
  return { command: [], env: {}, gpus: false, trainCommand: [], ...fields, readinessTimeoutMs: DEFAULT_STACK_READINESS_TIMEOUT_MS, builtin: true };
}

/**
 * The stacks mlfleet ships. Only onnx's image is built here (`npm run images`); the others are
 * the projects' public images, which hosts with registry access can run (mlfleet never pulls:
 * `docker pull` them on the hosts). Their mounts, ports, flags and readiness checks follow
 * each project's own documentation, cited on each entry.
 */
export const BUILT_IN_STACKS: readonly Stack[] = [
  builtIn({
    name: 'onnx',
    description: 'the reference ONNX runtime (Open Inference Protocol v2 over HTTP); trains by running a Node script that writes ONNX',
    image: 'mlfleet/onnx:0.1.0',
    formats: ['onnx'],
    modelMount: '/model',
    port: 8080,
    protocol: 'v2',
    readinessPath: '/v2/health/ready',
    // agent/stacks/onnx/train.ts: the job's command is the script (and its arguments) to run.
    trainCommand: ['node', ONNX_TRAIN_RUNNER],
  }),
  // TensorFlow Serving (https://www.tensorflow.org/tfx/serving/docker): the image serves REST
  // on 8501 (gRPC on 8500) and its entrypoint loads MODEL_BASE_PATH/MODEL_NAME, with
  // MODEL_BASE_PATH=/models (ENV in tensorflow_serving/tools/docker/Dockerfile). Under that
  // directory it wants numbered version directories holding a SavedModel, so the pushed
  // SavedModel is mounted as version 1 of "model". Readiness: GET /v1/models/model answers 200
  // while the version is still LOADING (kubeflow/kubeflow#2987), whereas the model metadata
  // (api_rest.md, "Model Metadata API") is only answered once the version is loaded.
  builtIn({
    name: 'tensorflow-serving',
    description:
      'TensorFlow Serving 2.16 (REST API on 8501, the model served as "model"). For GPUs, register a copy with the image tensorflow/serving:2.16.1-gpu',
    image: 'tensorflow/serving:2.16.1',
    formats: ['tensorflow-savedmodel'],
    modelMount: '/models/model/1',
    port: 8501,
    protocol: 'tfserving-rest',
    readinessPath: '/v1/models/model/metadata',
    env: { MODEL_NAME: 'model' },
    gpus: true,
  }),
  // NVIDIA Triton (docs.nvidia.com/deeplearning/triton-inference-server, quickstart): run as
  // `tritonserver --model-repository=/models`, HTTP on 8000 (--http-port), gRPC 8001, metrics
  // 8002; /v2/health/ready answers 200 once every model in the repository is ready. The pushed
  // directory must be a Triton model repository: <model>/config.pbtxt and <model>/<version>/….
  builtIn({
    name: 'triton',
    description: 'NVIDIA Triton Inference Server 24.08 (Open Inference Protocol v2); push a Triton model repository directory',
    image: 'nvcr.io/nvidia/tritonserver:24.08-py3',
    formats: ['onnx', 'torchscript', 'tensorflow-savedmodel', 'other'],
    modelMount: '/models',
    port: 8000,
    protocol: 'v2',
    readinessPath: '/v2/health/ready',
    command: ['tritonserver', '--model-repository=/models', '--http-port=8000'],
    gpus: true,
  }),
  // Seldon MLServer (docs.seldon.ai/mlserver; SeldonIO/MLServer Dockerfile and settings.py):
  // `mlserver start FOLDER` loads every model-settings.json under FOLDER; the image's own
  // folder is /mnt/models (MLSERVER_MODELS_DIR); HTTP on 8080 by default (http_port, env
  // MLSERVER_HTTP_PORT), gRPC 8081; the V2 protocol's /v2/health/ready.
  builtIn({
    name: 'mlserver',
    description: 'Seldon MLServer 1.6 (Open Inference Protocol v2); push a directory with a model-settings.json',
    image: 'seldonio/mlserver:1.6.1',
    formats: ['other', 'safetensors', 'onnx'],
    modelMount: '/mnt/models',
    port: 8080,
    protocol: 'v2',
    readinessPath: '/v2/health/ready',
    command: ['mlserver', 'start', '/mnt/models'],
    env: { MLSERVER_HTTP_PORT: '8080' },
  }),
];

const BUILT_IN_NAMES = new Set(BUILT_IN_STACKS.map((s) => s.name));

interface StoredStack {
  stack: Stack;
  modRevision: number;
}

const MAX_CAS_ATTEMPTS = 5;

/** Built-in and user stacks, as the leader knows them. */
export class StackRegistry {
  private readonly user = new Map<string, StoredStack>();
  private readonly writes = new KeyedMutex();

  private constructor(
    private readonly store: Store,
    private readonly writer: FencedWriter,
  ) {}

  static async load(store: Store, writer: FencedWriter): Promise<StackRegistry> {
    const registry = new StackRegistry(store, writer);
    const { kvs } = await store.range(keys.stacksPrefix);
    for (const kv of kvs) {
      const stack = JSON.parse(kv.value) as Stack;
      registry.user.set(stack.name, { stack, modRevision: kv.modRevision });
    }
    return registry;
  }

  /** The stack of that name, or undefined. Async: callers need not know where stacks live. */
  async find(name: string): Promise<Stack | undefined> {
    return BUILT_IN_STACKS.find((s) => s.name === name) ?? this.user.get(name)?.stack;
  }

  async names(): Promise<string[]> {
    return this.list().map((s) => s.name);
  }

  /** Built-ins first (in their order), then user stacks by name. */
  list(): Stack[] {
    const user = [...this.user.values()].map((s) => s.stack).sort((a, b) => a.name.localeCompare(b.name));
    return [...BUILT_IN_STACKS, ...user];
  }

  get(name: string): Stack {
    const stack = BUILT_IN_STACKS.find((s) => s.name === name) ?? this.user.get(name)?.stack;
    if (!stack) throw new NotFoundError(`stack "${name}" not found; stacks: ${this.list().map((s) => s.name).join(', ')}`);
    return stack;
  }

  /** Creates or replaces a user stack; a built-in's name is refused. */
  register(stack: Stack): Promise<{ stack: Stack; created: boolean }> {
    if (BUILT_IN_NAMES.has(stack.name)) {
      return Promise.reject(new FailedPreconditionError(`stack "${stack.name}" is built in and cannot be replaced; register yours under another name`));
    }
    const record: Stack = { ...stack, builtin: false };
    return this.writes.run(stack.name, () =>
      this.compareAndWrite(stack.name, async (current) => {
        const result = await this.writer.txn(
          [{ key: keys.stack(stack.name), target: 'modRevision', op: '=', value: current?.modRevision ?? 0 }],
          [{ type: 'put', key: keys.stack(stack.name), value: JSON.stringify(record) }],
        );
        if (result.succeeded) this.user.set(stack.name, { stack: record, modRevision: result.revision });
        return result.succeeded ? { stack: record, created: current === undefined } : undefined;
      }),
    );
  }

  /**
   * Forgets a user stack. `userOf` names what still uses it (a deployment, an unfinished job),
   * which refuses the delete.
   */
  delete(name: string, userOf: (stack: string) => string | undefined): Promise<void> {
    if (BUILT_IN_NAMES.has(name)) return Promise.reject(new FailedPreconditionError(`stack "${name}" is built in and cannot be deleted`));
    return this.writes.run(name, () =>
      this.compareAndWrite(name, async (current) => {
        if (!current) throw new NotFoundError(`stack "${name}" not found; \`mlfleetctl stacks ls\` lists them`);
        const user = userOf(name);
        if (user) throw new FailedPreconditionError(`stack "${name}" is used by ${user}; delete or change that first`);
        const result = await this.writer.txn(
          [{ key: keys.stack(name), target: 'modRevision', op: '=', value: current.modRevision }],
          [{ type: 'delete', key: keys.stack(name) }],
        );
        if (result.succeeded) this.user.delete(name);
        return result.succeeded ? true : undefined;
      }),
    ).then(() => undefined);
  }

  /**
   * Runs `attempt` with what this registry holds for the name; a lost compare (a write this
   * leader did not make, such as a predecessor's late one) re-reads the key and tries again.
   */
  private async compareAndWrite<T>(name: string, attempt: (current: StoredStack | undefined) => Promise<T | undefined>): Promise<T> {
    for (let i = 0; i < MAX_CAS_ATTEMPTS; i++) {
      const done = await attempt(this.user.get(name));
      if (done !== undefined) return done;
      const kv = await this.store.get(keys.stack(name));
      if (kv) this.user.set(name, { stack: JSON.parse(kv.value) as Stack, modRevision: kv.modRevision });
      else this.user.delete(name);
    }
    throw new ConflictError(`stack "${name}" kept changing while it was written; try again`);
  }
}
