// The Open Inference Protocol v2 over HTTP/REST for the one model a ModelHost serves: server
// metadata and health, model metadata and readiness, and inference with JSON tensors, on both
// the plain and the versioned (`/versions/{version}`) model paths. Every error answers with the
// protocol's body, `{"error": "…"}`: 400 for a request that does not fit the model, 404 for a
// model or version not served here, 503 while the model is not ready.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { checkDatatype, dataToJson, elementCount, tensorFromJson, TensorError, type RawTensor } from './datatypes.js';
import { InferenceError, NotReadyError, notReadyReason, type ModelHost, type ModelMetadata, type TensorMetadata } from './model-host.js';
import type { Log } from './log.js';

export interface ApiOptions {
  modelName: string;
  modelVersion: string;
  serverName: string;
  serverVersion: string;
  maxRequestBytes: number;
}

/** A request the protocol answers with an error status and `{"error": message}`. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const JSON_TYPE = { 'content-type': 'application/json' };

export function createHandler(host: ModelHost, options: ApiOptions, log: Log): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(host, options, req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) log.error('request failed', { method: req.method, url: req.url, error: (err as Error).message });
      send(res, status, { error: (err as Error).message }, err instanceof HttpError ? err.headers : {});
    });
  };
}

async function handle(host: ModelHost, options: ApiOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const segments = pathSegments(req.url ?? '/');
  if (segments[0] !== 'v2') throw new HttpError(404, `no route ${req.url}: this server speaks the Open Inference Protocol v2 under /v2`);
  const rest = segments.slice(1);

  if (rest.length === 0) {
    allow(req, 'GET');
    return send(res, 200, { name: options.serverName, version: options.serverVersion, extensions: [] });
  }
  if (rest[0] === 'health' && rest.length === 2 && (rest[1] === 'live' || rest[1] === 'ready')) {
    allow(req, 'GET');
    // Live as long as the process answers: a model still loading is not a reason to kill it.
    if (rest[1] === 'live') return send(res, 200, { live: true });
    return readiness(host, res);
  }
  if (rest[0] === 'models' && rest.length >= 2) {
    const name = rest[1]!;
    let tail = rest.slice(2);
    let version: string | undefined;
    if (tail[0] === 'versions') {
      if (tail.length < 2) throw new HttpError(404, `no route ${req.url}: name a version, /v2/models/${name}/versions/{version}`);
      version = tail[1];
      tail = tail.slice(2);
    }
    if (tail.length <= 1 && (tail[0] === undefined || tail[0] === 'ready' || tail[0] === 'infer')) {
      allow(req, tail[0] === 'infer' ? 'POST' : 'GET');
      servedModel(options, name, version);
      if (tail[0] === 'ready') return readiness(host, res);
      const model = readyModel(host);
      if (tail[0] === undefined) return send(res, 200, modelMetadata(model, options));
      return infer(host, model, options, req, res);
    }
  }
  throw new HttpError(404, `no route ${req.url}: see /v2, /v2/health/{live,ready}, /v2/models/{name}[/versions/{version}][/ready|/infer]`);
}

function pathSegments(url: string): string[] {
  const pathname = url.split('?')[0]!;
  try {
    return pathname.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw new HttpError(400, `the path ${pathname} is not valid percent-encoding`);
  }
}

function allow(req: IncomingMessage, method: 'GET' | 'POST'): void {
  if (req.method === method || (method === 'GET' && req.method === 'HEAD')) return;
  throw new HttpError(405, `${req.method} is not allowed on ${req.url}: use ${method}`, { allow: method === 'GET' ? 'GET, HEAD' : 'POST' });
}

function servedModel(options: ApiOptions, name: string, version: string | undefined): void {
  if (name !== options.modelName) throw new HttpError(404, `model '${name}' is not served here; this server serves '${options.modelName}'`);
  if (version !== undefined && version !== options.modelVersion) {
    throw new HttpError(404, `model '${name}' version '${version}' is not served here; this server serves version '${options.modelVersion}'`);
  }
}

function readiness(host: ModelHost, res: ServerResponse): void {
  const state = host.state;
  if (state.status === 'ready') return send(res, 200, { ready: true });
  send(res, 503, { ready: false, error: notReadyReason(state) });
}

function readyModel(host: ModelHost): ModelMetadata {
  const state = host.state;
  if (state.status !== 'ready') throw new HttpError(503, notReadyReason(state));
  return state.model;
}

function modelMetadata(model: ModelMetadata, options: ApiOptions) {
  return {
    name: options.modelName,
    versions: [options.modelVersion],
    platform: 'onnxruntime_onnx',
    inputs: model.inputs,
    outputs: model.outputs,
  };
}

async function infer(host: ModelHost, model: ModelMetadata, options: ApiOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.headers['inference-header-content-length'] !== undefined) {
    throw new HttpError(400, 'the binary tensor data extension is not supported: send the tensors as JSON');
  }
  const body = await readJson(req, options.maxRequestBytes);
  const request = parseInferRequest(body, model);
  let outputs: Record<string, RawTensor>;
  try {
    outputs = await host.run(request.feeds, request.fetches);
  } catch (err) {
    if (err instanceof InferenceError) throw new HttpError(400, `onnxruntime refused the request: ${err.message}`);
    if (err instanceof NotReadyError) throw new HttpError(503, err.message);
    throw err;
  }
  // Written by hand so INT64 and UINT64 data go out as exact integer literals (dataToJson).
  const parts = request.fetches.map((name) => {
    const tensor = outputs[name]!;
    const datatype = model.outputs.find((o) => o.name === name)!.datatype;
    return `{"name":${JSON.stringify(name)},"datatype":"${datatype}","shape":${JSON.stringify(tensor.dims)},"data":${dataToJson(tensor)}}`;
  });
  const head = JSON.stringify({ model_name: options.modelName, model_version: options.modelVersion, ...(request.id !== undefined && { id: request.id }) });
  sendText(res, 200, `${head.slice(0, -1)},"outputs":[${parts.join(',')}]}`);
}

interface InferRequest {
  id: string | undefined;
  feeds: Record<string, RawTensor>;
  fetches: string[];
}

/** Checks the request against the model's inputs and outputs and converts its tensors. */
function parseInferRequest(body: unknown, model: ModelMetadata): InferRequest {
  if (!isObject(body)) throw new HttpError(400, 'the request body must be a JSON object with "inputs"');
  const { id, inputs, outputs } = body;
  if (id !== undefined && typeof id !== 'string') throw new HttpError(400, '"id" must be a string');
  if (!Array.isArray(inputs) || inputs.length === 0) {
    throw new HttpError(400, `"inputs" must be a non-empty array of tensors; the model takes ${list(model.inputs)}`);
  }
  const feeds: Record<string, RawTensor> = {};
  try {
    for (const input of inputs) {
      if (!isObject(input) || typeof input.name !== 'string') throw new TensorError('each input must be an object with a "name"');
      const { name } = input;
      const declared = model.inputs.find((i) => i.name === name);
      if (!declared) throw new TensorError(`the model has no input '${name}'; it takes ${list(model.inputs)}`);
      if (Object.hasOwn(feeds, name)) throw new TensorError(`input '${name}' is given twice`);
      checkDatatype(name, input.datatype, declared.datatype);
      const shape = checkShape(name, input.shape, declared);
      feeds[name] = tensorFromJson(name, declared.datatype, shape, input.data);
    }
  } catch (err) {
    if (err instanceof TensorError) throw new HttpError(400, err.message);
    throw err;
  }
  const missing = model.inputs.filter((i) => !Object.hasOwn(feeds, i.name));
  if (missing.length > 0) throw new HttpError(400, `the request lacks input${missing.length > 1 ? 's' : ''} ${list(missing)}`);
  return { id, feeds, fetches: requestedOutputs(outputs, model) };
}

function checkShape(name: string, shape: unknown, declared: TensorMetadata): number[] {
  const expected = `[${declared.shape.join(', ')}]`;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new TensorError(`input '${name}' needs a "shape" of non-negative integers (the model takes ${expected}, -1 for any size)`);
  }
  const dims = shape as number[];
  if (dims.length !== declared.shape.length) {
    throw new TensorError(`input '${name}' has shape [${dims.join(', ')}] but the model takes rank ${declared.shape.length}: ${expected}${declared.shape.length === 0 ? ' (a scalar)' : ''}`);
  }
  const wrong = dims.findIndex((d, i) => declared.shape[i] !== -1 && declared.shape[i] !== d);
  if (wrong >= 0) {
    throw new TensorError(`input '${name}' has shape [${dims.join(', ')}] but the model takes ${expected} (dimension ${wrong} must be ${declared.shape[wrong]})`);
  }
  if (!Number.isSafeInteger(elementCount(dims))) throw new TensorError(`input '${name}' has shape [${dims.join(', ')}], far too many elements`);
  return dims;
}

function requestedOutputs(outputs: unknown, model: ModelMetadata): string[] {
  if (outputs === undefined) return model.outputs.map((o) => o.name);
  if (!Array.isArray(outputs) || outputs.length === 0) throw new HttpError(400, `"outputs" must be a non-empty array of {"name"}; the model gives ${list(model.outputs)}`);
  const names: string[] = [];
  for (const output of outputs) {
    if (!isObject(output) || typeof output.name !== 'string') throw new HttpError(400, 'each requested output must be an object with a "name"');
    if (!model.outputs.some((o) => o.name === output.name)) throw new HttpError(400, `the model has no output '${output.name}'; it gives ${list(model.outputs)}`);
    if (isObject(output.parameters) && output.parameters.binary_data === true) {
      throw new HttpError(400, `output '${output.name}' asks for binary_data, an extension this server does not support`);
    }
    if (!names.includes(output.name)) names.push(output.name);
  }
  return names;
}

function list(tensors: TensorMetadata[]): string {
  return tensors.map((t) => `'${t.name}' (${t.datatype} [${t.shape.join(', ')}])`).join(', ');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge(maxBytes);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `the request body is not JSON: ${(err as Error).message}`);
  }
}

function tooLarge(maxBytes: number): HttpError {
  return new HttpError(413, `the request body is over ${maxBytes} bytes (MLFLEET_MAX_REQUEST_BYTES)`, { connection: 'close' });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendText(res, status, JSON.stringify(body), headers);
}

function sendText(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { ...JSON_TYPE, 'content-length': Buffer.byteLength(text), ...headers }).end(res.req.method === 'HEAD' ? undefined : text);
}
