// What the server's main thread and its session worker say to each other.
import type { RawTensor } from './datatypes.js';

/** workerData: the model file (already resolved) and session settings. */
export interface WorkerStart {
  modelFile: string;
  intraOpThreads: number | undefined;
}

/** An input or output as onnxruntime describes it; a string dimension is symbolic (dynamic). */
export interface ValueInfo {
  name: string;
  isTensor: boolean;
  type: string | undefined;
  shape: (number | string)[];
}

export interface RunRequest {
  kind: 'run';
  id: number;
  feeds: Record<string, RawTensor>;
  fetches: string[];
}

export type WorkerMessage =
  | { kind: 'loaded'; inputs: ValueInfo[]; outputs: ValueInfo[] }
  | { kind: 'load-failed'; error: string }
  | { kind: 'result'; id: number; outputs: Record<string, RawTensor> }
  | { kind: 'run-failed'; id: number; error: string };
