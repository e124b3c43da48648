// The ONNX server's settings, from the environment the agent gives every task
// (shared/workloads.ts taskEnvironment) plus the stack's own env, compiled once at start into a
// validated, fully defaulted form.
import path from 'node:path';

export interface ServerOptions {
  /** A .onnx file, or a directory holding model.onnx or exactly one *.onnx file. */
  modelPath: string;
  /** The name and version the protocol serves the model under. */
  modelName: string;
  modelVersion: string;
  port: number;
  /** undefined: every address (what a container needs). */
  host: string | undefined;
  /** How long loading may take before the model is declared failed; 0: no limit. */
  loadTimeoutMs: number;
  /** Largest request body read (bytes). */
  maxRequestBytes: number;
  /** onnxruntime's intra-op threads; undefined: its default (one per core). */
  intraOpThreads: number | undefined;
}

export const DEFAULT_PORT = 8080;
/** Generous: a model of many GiB on a slow disk still loads; the agent's readiness waits as long. */
export const DEFAULT_LOAD_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024;

/** A setting the server cannot start with. */
export class OptionsError extends Error {
  override readonly name = 'OptionsError';
}

export function compileOptions(env: NodeJS.ProcessEnv): ServerOptions {
  const modelPath = env.MLFLEET_MODEL_PATH;
  if (!modelPath) throw new OptionsError('MLFLEET_MODEL_PATH is not set: point it at a .onnx file or a directory holding one');
  const modelName = env.MLFLEET_MODEL_NAME || defaultName(modelPath);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(modelName)) {
    throw new OptionsError(`MLFLEET_MODEL_NAME '${modelName}' must be letters, digits, '.', '_' or '-' (it is part of the URL path)`);
  }
  const modelVersion = env.MLFLEET_MODEL_VERSION || '1';
  if (!/^[A-Za-z0-9._-]+$/.test(modelVersion)) throw new OptionsError(`MLFLEET_MODEL_VERSION '${modelVersion}' must be letters, digits, '.', '_' or '-'`);
  return {
    modelPath: path.resolve(modelPath),
    modelName,
    modelVersion,
    port: integer(env, 'PORT', DEFAULT_PORT, 0, 65_535),
    host: env.HOST || undefined,
    loadTimeoutMs: integer(env, 'MLFLEET_LOAD_TIMEOUT_MS', DEFAULT_LOAD_TIMEOUT_MS, 0, 2 ** 31 - 1),
    maxRequestBytes: integer(env, 'MLFLEET_MAX_REQUEST_BYTES', DEFAULT_MAX_REQUEST_BYTES, 1, 2 ** 31 - 1),
    intraOpThreads: env.MLFLEET_ONNX_THREADS ? integer(env, 'MLFLEET_ONNX_THREADS', 0, 1, 1024) : undefined,
  };
}

/** linear.onnx → linear; a directory (the container's /model) → its name. */
function defaultName(modelPath: string): string {
  const base = path.basename(path.resolve(modelPath));
  return base.toLowerCase().endsWith('.onnx') ? base.slice(0, -'.onnx'.length) : base;
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new OptionsError(`${name}=${text} must be a whole number from ${min} to ${max}`);
  return value;
}
