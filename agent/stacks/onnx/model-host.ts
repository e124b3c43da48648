// The one model this server serves: finds its file, loads it in a session worker under the load
// timeout, and runs inferences on it. Its life is a state union — loading, ready, failed,
// closed — that readiness reads; a failure (bad file, timeout, a crashed worker) is final and
// keeps its reason, so the process stays up to say why instead of restarting into the same
// failure.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { datatypeOf, type Datatype, type RawTensor } from './datatypes.js';
import type { Log } from './log.js';
import type { RunRequest, ValueInfo, WorkerMessage, WorkerStart } from './messages.js';

/** An input or output as the protocol describes it: dynamic dimensions are -1. */
export interface TensorMetadata {
  name: string;
  datatype: Datatype;
  shape: number[];
}

export interface ModelMetadata {
  file: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export type ModelState =
  | { status: 'loading'; since: number }
  | { status: 'ready'; model: ModelMetadata; loadMs: number }
  | { status: 'failed'; reason: string }
  | { status: 'closed' };

export interface ModelHostOptions {
  modelPath: string;
  loadTimeoutMs: number;
  intraOpThreads: number | undefined;
}

/** onnxruntime refused the inputs it was given (after the protocol's own checks): a 400. */
export class InferenceError extends Error {
  override readonly name = 'InferenceError';
}

/** The model cannot run now (loading, failed, closed): a 503. */
export class NotReadyError extends Error {
  override readonly name = 'NotReadyError';
}

const WORKER_URL = new URL('./session-worker.js', import.meta.url);

export class ModelHost {
  #state: ModelState;
  #worker: Worker | undefined;
  #timer: NodeJS.Timeout | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (outputs: Record<string, RawTensor>) => void; reject: (err: Error) => void }>();

  private constructor(
    private readonly options: ModelHostOptions,
    private readonly log: Log,
  ) {
    this.#state = { status: 'loading', since: Date.now() };
  }

  /** Starts loading in the background; the host answers `state` at once. */
  static start(options: ModelHostOptions, log: Log): ModelHost {
    const host = new ModelHost(options, log);
    host.#load();
    return host;
  }

  get state(): ModelState {
    return this.#state;
  }

  #load(): void {
    const { loadTimeoutMs } = this.options;
    if (loadTimeoutMs > 0) {
      this.#timer = setTimeout(
        () => this.#fail(`the model did not load within ${seconds(loadTimeoutMs)} (MLFLEET_LOAD_TIMEOUT_MS=${loadTimeoutMs}); raise it in the stack's env for models this large`),
        loadTimeoutMs,
      );
    }
    resolveModelFile(this.options.modelPath).then(
      (file) => {
        if (this.#state.status !== 'loading') return;
        this.log.info('loading model', { file, loadTimeoutMs });
        this.#spawn(file);
      },
      (err: Error) => this.#fail(err.message),
    );
  }

  #spawn(file: string): void {
    const start: WorkerStart = { modelFile: file, intraOpThreads: this.options.intraOpThreads };
    const worker = new Worker(WORKER_URL, { workerData: start });
    this.#worker = worker;
    worker.on('message', (message: WorkerMessage) => this.#onMessage(file, message));
    worker.on('error', (err) => this.#fail(`the onnxruntime session worker failed: ${err.message}`));
    worker.on('exit', (code) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      if (this.#state.status === 'loading' || this.#state.status === 'ready') this.#fail(`the onnxruntime session worker exited (code ${code})`);
    });
  }

  #onMessage(file: string, message: WorkerMessage): void {
    switch (message.kind) {
      case 'loaded': {
        if (this.#state.status !== 'loading') return;
        let model: ModelMetadata;
        try {
          model = { file, inputs: message.inputs.map((v) => tensorMetadata(v, 'input')), outputs: servableOutputs(message.outputs, this.log) };
        } catch (err) {
          return this.#fail((err as Error).message);
        }
        const loadMs = Date.now() - this.#state.since;
        clearTimeout(this.#timer);
        this.#state = { status: 'ready', model, loadMs };
        this.log.info('model ready', { file, loadMs, inputs: model.inputs, outputs: model.outputs });
        return;
      }
      case 'load-failed':
        return this.#fail(`onnxruntime could not load ${file}: ${message.error}`);
      case 'result':
      case 'run-failed': {
        const pending = this.#pending.get(message.id);
        if (!pending) return;
        this.#pending.delete(message.id);
        if (message.kind === 'result') pending.resolve(message.outputs);
        else pending.reject(new InferenceError(message.error));
      }
    }
  }

  #fail(reason: string): void {
    if (this.#state.status === 'failed' || this.#state.status === 'closed') return;
    clearTimeout(this.#timer);
    this.#state = { status: 'failed', reason };
    this.log.error('model failed', { reason });
    this.#stopWorker(new NotReadyError(`the model failed: ${reason}`));
  }

  #stopWorker(reason: Error): Promise<void> {
    for (const pending of this.#pending.values()) pending.reject(reason);
    this.#pending.clear();
    const worker = this.#worker;
    this.#worker = undefined;
    if (!worker) return Promise.resolve();
    // A worker inside a long native load stops when the load returns; nothing waits for that
    // except close(), which the process bounds.
    return worker.terminate().then(() => undefined, () => undefined);
  }

  /** Runs the model; `feeds` are already checked against its inputs. */
  run(feeds: Record<string, RawTensor>, fetches: string[]): Promise<Record<string, RawTensor>> {
    const worker = this.#worker;
    if (this.#state.status !== 'ready' || !worker) return Promise.reject(new NotReadyError(notReadyReason(this.#state)));
    const id = this.#nextId++;
    const request: RunRequest = { kind: 'run', id, feeds, fetches };
    const transfer = Object.values(feeds).flatMap((t) => (Array.isArray(t.data) ? [] : [t.data.buffer as ArrayBuffer]));
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage(request, transfer);
    });
  }

  async close(): Promise<void> {
    if (this.#state.status === 'closed') return;
    clearTimeout(this.#timer);
    this.#state = { status: 'closed' };
    await this.#stopWorker(new NotReadyError('the server is shutting down'));
  }
}

/** Why the model cannot answer, for 503 bodies. */
export function notReadyReason(state: ModelState): string {
  switch (state.status) {
    case 'loading':
      return `the model is still loading (${seconds(Date.now() - state.since)} so far)`;
    case 'failed':
      return `the model failed to load: ${state.reason}`;
    case 'closed':
      return 'the server is shutting down';
    case 'ready':
      return 'the model is ready';
  }
}

/** The .onnx file MLFLEET_MODEL_PATH names: the file itself, or the one in its directory. */
export async function resolveModelFile(modelPath: string): Promise<string> {
  let info;
  try {
    info = await stat(modelPath);
  } catch (err) {
    throw new Error(`MLFLEET_MODEL_PATH ${modelPath} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!info.isDirectory()) return modelPath;
  const names = (await readdir(modelPath)).sort();
  if (names.includes('model.onnx')) return path.join(modelPath, 'model.onnx');
  const models = names.filter((name) => name.toLowerCase().endsWith('.onnx'));
  if (models.length === 1) return path.join(modelPath, models[0]!);
  if (models.length === 0) throw new Error(`MLFLEET_MODEL_PATH ${modelPath} is a directory with no .onnx file in it`);
  throw new Error(`MLFLEET_MODEL_PATH ${modelPath} holds several .onnx files (${models.join(', ')}): name the one to serve model.onnx, or point MLFLEET_MODEL_PATH at it`);
}

function tensorMetadata(value: ValueInfo, role: 'input' | 'output'): TensorMetadata {
  if (!value.isTensor) throw new Error(`${role} '${value.name}' is not a tensor (a sequence or map): the Open Inference Protocol carries tensors only`);
  const datatype = value.type === undefined ? undefined : datatypeOf(value.type);
  if (!datatype) throw new Error(`${role} '${value.name}' has element type ${value.type}, which has no Open Inference Protocol datatype`);
  return { name: value.name, datatype, shape: value.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)) };
}

/** Outputs the protocol can carry; the rest (ZipMap's sequences of maps, say) are left out, said once. */
function servableOutputs(outputs: ValueInfo[], log: Log): TensorMetadata[] {
  const servable: TensorMetadata[] = [];
  for (const output of outputs) {
    try {
      servable.push(tensorMetadata(output, 'output'));
    } catch (err) {
      log.warn('output not served', { output: output.name, reason: (err as Error).message });
    }
  }
  if (servable.length === 0) throw new Error('none of the model\'s outputs is a tensor the Open Inference Protocol can carry');
  return servable;
}

function seconds(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
