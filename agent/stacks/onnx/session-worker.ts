// The thread that owns the onnxruntime session. onnxruntime-node loads a model and runs it
// synchronously on the calling thread; here that thread is not the one answering HTTP, so a
// model that takes minutes to load, or a slow inference, never stops /v2/health/live from
// answering. Requests are served one at a time, in the order they arrive.
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { RawTensor, TensorData } from './datatypes.js';
import type { RunRequest, ValueInfo, WorkerMessage, WorkerStart } from './messages.js';

const port = parentPort!;
const start = workerData as WorkerStart;

function post(message: WorkerMessage, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

function describe(metadata: readonly ort.InferenceSession.ValueMetadata[]): ValueInfo[] {
  return metadata.map((m) =>
    m.isTensor ? { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] } : { name: m.name, isTensor: false, type: undefined, shape: [] },
  );
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function load(): Promise<ort.InferenceSession | undefined> {
  try {
    const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
    if (start.intraOpThreads !== undefined) options.intraOpNumThreads = start.intraOpThreads;
    const session = await ort.InferenceSession.create(start.modelFile, options);
    post({ kind: 'loaded', inputs: describe(session.inputMetadata), outputs: describe(session.outputMetadata) });
    return session;
  } catch (err) {
    // The main thread ends this worker when it hears; exiting here could outrun the message.
    post({ kind: 'load-failed', error: message(err) });
    return undefined;
  }
}

const session = await load();
if (session) port.on('message', (request: RunRequest) => void run(session, request));

async function run(session: ort.InferenceSession, { id, feeds, fetches }: RunRequest): Promise<void> {
  try {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, raw] of Object.entries(feeds)) {
      tensors[name] = new ort.Tensor(raw.type, raw.data as ort.Tensor.DataType, raw.dims);
    }
    const results = await session.run(tensors, fetches);
    const outputs: Record<string, RawTensor> = {};
    for (const name of fetches) {
      const tensor = results[name]!;
      outputs[name] = { type: tensor.type as RawTensor['type'], data: tensor.data as TensorData, dims: [...tensor.dims] };
    }
    post({ kind: 'result', id, outputs });
  } catch (err) {
    post({ kind: 'run-failed', id, error: message(err) });
  }
}
