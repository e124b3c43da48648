// The Open Inference Protocol v2 over gRPC (proto/inference/open_inference_grpc.proto) and its
// REST form, which every replica serves: pure conversions, no I/O. A ModelInferRequest becomes
// the JSON body of POST /v2/models/{name}/infer, with its tensors checked on the way (datatype,
// shape against the number of elements, typed contents in the field the datatype uses, raw
// contents little-endian at the datatype's width, BYTES as 4-byte little-endian length
// prefixes); the replica's JSON answer becomes a ModelInferResponse, its outputs as typed
// contents or, when the request's inputs came raw, as raw_output_contents (as Triton does). An
// HTTP status becomes the gRPC code grpc-gateway would give it. Everything a client can get
// wrong is a CodecError naming the tensor and what was expected.
//
// The messages are the proto-loader objects of agent/gateway/oip-grpc.ts's loader options:
// field names as in the proto (keepCase), 64-bit integers as decimal strings (longs: String).
import { status as Status } from '@grpc/grpc-js';
import { fromFloat16Bits, toFloat16Bits } from '../stacks/onnx/datatypes.js';

export type Int64 = string | number;

export interface InferParameter {
  bool_param?: boolean;
  int64_param?: Int64;
  string_param?: string;
  double_param?: number;
  uint64_param?: Int64;
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
}

export interface TensorContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: Int64[];
  uint_contents?: number[];
  uint64_contents?: Int64[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Uint8Array[];
}

export interface InferTensor {
  name: string;
  datatype: string;
  shape: Int64[];
  parameters?: Record<string, InferParameter>;
  contents?: TensorContents | null;
}

export interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: Record<string, InferParameter>;
  inputs: InferTensor[];
  outputs?: Array<{ name: string; parameters?: Record<string, InferParameter> }>;
  raw_input_contents?: Uint8Array[];
}

export interface ModelInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  outputs: InferTensor[];
  raw_output_contents: Buffer[];
}

/** A request the protocol or the gateway cannot take: answered with its gRPC code, nothing sent on. */
export class CodecError extends Error {
  override readonly name = 'CodecError';
  constructor(
    readonly code: Status,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string) => new CodecError(Status.INVALID_ARGUMENT, message);

/** Bytes per element in raw contents (BYTES: variable, length-prefixed). */
const WIDTH = { BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8, FP16: 2, BF16: 2, FP32: 4, FP64: 8, BYTES: 0 } as const;
export type Datatype = keyof typeof WIDTH;
const DATATYPES = Object.keys(WIDTH) as Datatype[];

/** The InferTensorContents field each datatype uses; FP16 and BF16 have none (raw only). */
const FIELD: Record<Datatype, keyof TensorContents | undefined> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
  FP16: undefined,
  BF16: undefined,
};

const INT_RANGES: Partial<Record<Datatype, [number, number]>> = {
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-(2 ** 31), 2 ** 31 - 1],
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 2 ** 32 - 1],
};
const BIG_RANGES = { INT64: [-(2n ** 63n), 2n ** 63n - 1n], UINT64: [0n, 2n ** 64n - 1n] } as const;

/** One tensor's elements, flat: numbers, booleans, bigints (INT64, UINT64) or UTF-8 strings (BYTES). */
type Element = number | boolean | bigint | string;

export function isDatatype(value: string): value is Datatype {
  return Object.hasOwn(WIDTH, value);
}

function datatypeOf(tensor: string, datatype: string): Datatype {
  if (!isDatatype(datatype)) throw invalid(`tensor '${tensor}' has datatype '${datatype.slice(0, 40)}', which is not an Open Inference Protocol datatype (${DATATYPES.join(', ')})`);
  return datatype;
}

/** The shape's dimensions as numbers and their product; each must be a whole number ≥ 0. */
export function elementsOf(tensor: string, shape: readonly Int64[]): { dims: number[]; count: number } {
  const dims = shape.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0) throw invalid(`tensor '${tensor}' has shape [${shape.join(', ')}]: every dimension must be a whole number from 0 up`);
    return n;
  });
  const count = dims.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(count)) throw invalid(`tensor '${tensor}' has shape [${shape.join(', ')}], which holds too many elements`);
  return { dims, count };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function bytesToText(tensor: string, bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid(`tensor '${tensor}' has a BYTES element that is not UTF-8 text: the replicas take BYTES as JSON strings`);
  }
}

/** How each fixed-width datatype is read from and written to raw contents (little-endian). */
const RAW: Record<Exclude<Datatype, 'BYTES'>, { read(view: DataView, at: number): Element; write(view: DataView, at: number, v: Element): void }> = {
  BOOL: { read: (d, at) => d.getUint8(at) !== 0, write: (d, at, v) => d.setUint8(at, v ? 1 : 0) },
  UINT8: { read: (d, at) => d.getUint8(at), write: (d, at, v) => d.setUint8(at, Number(v)) },
  INT8: { read: (d, at) => d.getInt8(at), write: (d, at, v) => d.setInt8(at, Number(v)) },
  UINT16: { read: (d, at) => d.getUint16(at, true), write: (d, at, v) => d.setUint16(at, Number(v), true) },
  INT16: { read: (d, at) => d.getInt16(at, true), write: (d, at, v) => d.setInt16(at, Number(v), true) },
  UINT32: { read: (d, at) => d.getUint32(at, true), write: (d, at, v) => d.setUint32(at, Number(v), true) },
  INT32: { read: (d, at) => d.getInt32(at, true), write: (d, at, v) => d.setInt32(at, Number(v), true) },
  UINT64: { read: (d, at) => d.getBigUint64(at, true), write: (d, at, v) => d.setBigUint64(at, BigInt(v), true) },
  INT64: { read: (d, at) => d.getBigInt64(at, true), write: (d, at, v) => d.setBigInt64(at, BigInt(v), true) },
  FP16: { read: (d, at) => fromFloat16Bits(d.getUint16(at, true)), write: (d, at, v) => d.setUint16(at, toFloat16Bits(Number(v)), true) },
  // BF16 is the upper half of an FP32.
  BF16: { read: (d, at) => bf16.read(d.getUint16(at, true)), write: (d, at, v) => d.setUint16(at, bf16.write(Number(v)), true) },
  FP32: { read: (d, at) => d.getFloat32(at, true), write: (d, at, v) => d.setFloat32(at, Number(v), true) },
  FP64: { read: (d, at) => d.getFloat64(at, true), write: (d, at, v) => d.setFloat64(at, Number(v), true) },
};

const bf16 = {
  scratch: new DataView(new ArrayBuffer(4)),
  read(bits: number): number {
    this.scratch.setUint32(0, bits << 16);
    return this.scratch.getFloat32(0);
  },
  write(value: number): number {
    this.scratch.setFloat32(0, value);
    return this.scratch.getUint32(0) >>> 16;
  },
};

/** Decodes raw contents: little-endian elements of the datatype's width, BYTES as 4-byte little-endian length + bytes. */
export function decodeRaw(tensor: string, datatype: Datatype, raw: Uint8Array, count: number): Element[] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (datatype === 'BYTES') {
    const out: string[] = [];
    let at = 0;
    while (at < raw.length) {
      if (out.length === count) throw invalid(`tensor '${tensor}': raw contents hold more than the ${count} BYTES elements its shape says`);
      if (at + 4 > raw.length) throw invalid(`tensor '${tensor}': raw BYTES element ${out.length} is cut off in its 4-byte length prefix`);
      const length = view.getUint32(at, true);
      at += 4;
      if (at + length > raw.length) throw invalid(`tensor '${tensor}': raw BYTES element ${out.length} says ${length} bytes, but only ${raw.length - at} follow`);
      out.push(bytesToText(tensor, raw.subarray(at, at + length)));
      at += length;
    }
    if (out.length !== count) throw invalid(`tensor '${tensor}': raw contents hold ${out.length} BYTES elements, its shape says ${count}`);
    return out;
  }
  const width = WIDTH[datatype];
  if (raw.length !== count * width) {
    throw invalid(`tensor '${tensor}': raw contents are ${raw.length} bytes, but its shape (${count} elements of ${datatype}) needs ${count * width}`);
  }
  const read = RAW[datatype].read;
  const out: Element[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = read(view, i * width);
  return out;
}

/** Encodes elements as raw contents (the inverse of decodeRaw). */
export function encodeRaw(datatype: Datatype, values: readonly Element[]): Buffer {
  if (datatype === 'BYTES') {
    const parts = values.map((v) => Buffer.from(String(v), 'utf8'));
    const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.writeUInt32LE(p.length, at);
      p.copy(out, at + 4);
      at += 4 + p.length;
    }
    return out;
  }
  const width = WIDTH[datatype];
  const write = RAW[datatype].write;
  const out = Buffer.alloc(values.length * width);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  values.forEach((v, i) => write(view, i * width, v));
  return out;
}

/** A tensor's elements from its typed contents: only the datatype's field may hold values, as many as its shape says. */
export function decodeTyped(tensor: string, datatype: Datatype, contents: TensorContents | null | undefined, count: number): Element[] {
  const field = FIELD[datatype];
  const used = (Object.keys(contents ?? {}) as Array<keyof TensorContents>).filter((k) => Array.isArray(contents![k]) && contents![k]!.length > 0);
  const stray = used.find((k) => k !== field);
  if (stray) throw invalid(`tensor '${tensor}' is ${datatype} but has values in contents.${stray}${field ? `: ${datatype} goes in contents.${field}` : ''}`);
  if (!field) {
    if (count === 0) return [];
    throw invalid(`tensor '${tensor}' is ${datatype}, which has no typed contents field: send it in raw_input_contents`);
  }
  const values = (contents?.[field] ?? []) as unknown[];
  if (values.length !== count) throw invalid(`tensor '${tensor}' has ${values.length} values in contents.${field}, but its shape says ${count}`);
  if (datatype === 'BYTES') return (values as Uint8Array[]).map((b) => bytesToText(tensor, b));
  if (datatype === 'INT64' || datatype === 'UINT64') return values.map((v) => BigInt(v as Int64));
  const range = INT_RANGES[datatype];
  if (range) {
    const [min, max] = range;
    const i = (values as number[]).findIndex((v) => v < min || v > max);
    if (i >= 0) throw invalid(`tensor '${tensor}' element ${i} is ${String(values[i])}, outside ${datatype}'s range ${min} to ${max}`);
  }
  return values as Element[];
}

/** Typed contents for a datatype's elements; undefined for FP16/BF16, which have no field. */
export function encodeTyped(datatype: Datatype, values: readonly Element[]): TensorContents | undefined {
  const field = FIELD[datatype];
  if (!field) return undefined;
  if (datatype === 'BYTES') return { bytes_contents: values.map((v) => Buffer.from(String(v), 'utf8')) };
  if (datatype === 'INT64' || datatype === 'UINT64') return { [field]: values.map((v) => String(v)) };
  return { [field]: values.slice() } as TensorContents;
}

/** An element as JSON text; bigints as exact integer literals (JSON allows them). */
function elementJson(tensor: string, datatype: Datatype, v: Element, i: number): string {
  if (typeof v === 'number' && !Number.isFinite(v)) throw invalid(`tensor '${tensor}' element ${i} is ${v}, which JSON (how replicas take tensors) cannot carry`);
  if (typeof v === 'bigint') {
    const [min, max] = BIG_RANGES[datatype as 'INT64' | 'UINT64'];
    if (v < min || v > max) throw invalid(`tensor '${tensor}' element ${i} is ${v}, outside ${datatype}'s range`);
    return v.toString();
  }
  return JSON.stringify(v);
}

export function parameterToJson(p: InferParameter): unknown {
  switch (p.parameter_choice) {
    case 'bool_param':
      return p.bool_param;
    case 'string_param':
      return p.string_param;
    case 'double_param':
      return p.double_param;
    case 'int64_param':
    case 'uint64_param': {
      const n = Number(p[p.parameter_choice]);
      if (!Number.isSafeInteger(n)) throw invalid(`parameter ${String(p[p.parameter_choice])} is past 2^53, which JSON parameters cannot carry exactly`);
      return n;
    }
    default:
      return null;
  }
}

export function parameterFromJson(value: unknown): InferParameter | undefined {
  if (typeof value === 'boolean') return { bool_param: value };
  if (typeof value === 'string') return { string_param: value };
  if (typeof value === 'number') return Number.isSafeInteger(value) ? { int64_param: String(value) } : { double_param: value };
  return undefined;
}

function parametersJson(params: Record<string, InferParameter> | undefined): Record<string, unknown> | undefined {
  const entries = Object.entries(params ?? {});
  if (entries.length === 0) return undefined;
  return Object.fromEntries(entries.map(([k, p]) => [k, parameterToJson(p)]));
}

function parametersFromJson(value: unknown): Record<string, InferParameter> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  const out: Record<string, InferParameter> = {};
  for (const [k, v] of Object.entries(value)) {
    const p = parameterFromJson(v);
    if (p) out[k] = p;
  }
  return out;
}

export interface RestInfer {
  /** The JSON body for POST …/infer. */
  body: string;
  /** The inputs came as raw_input_contents: the answer's outputs go back raw too. */
  raw: boolean;
}

/**
 * A ModelInferRequest as the REST body the replica takes. `maxElements` bounds the elements of
 * all inputs together (each takes at least two bytes of JSON), checked before any is decoded.
 */
export function inferRequestToRest(request: ModelInferRequest, maxElements: number): RestInfer {
  const raw = request.raw_input_contents ?? [];
  const useRaw = raw.length > 0;
  if (request.inputs.length === 0) throw invalid('the request has no inputs');
  if (useRaw && raw.length !== request.inputs.length) {
    throw invalid(`raw_input_contents has ${raw.length} entries for ${request.inputs.length} inputs: when used, every input's data goes there, in the order of inputs`);
  }
  const shapes = request.inputs.map((input, i) => {
    if (!input.name) throw invalid(`input ${i} has no name`);
    return { datatype: datatypeOf(input.name, input.datatype), ...elementsOf(input.name, input.shape) };
  });
  const total = shapes.reduce((n, s) => n + s.count, 0);
  if (total > maxElements) {
    throw new CodecError(Status.RESOURCE_EXHAUSTED, `the request holds ${total} elements; as JSON that is over the ${maxElements * 2} bytes the largest deployment here takes (its owner can raise it with deploy --max-request-size)`);
  }
  const inputs = request.inputs.map((input, i) => {
    const { datatype, dims, count } = shapes[i]!;
    let values: Element[];
    if (useRaw) {
      const typed = Object.values(input.contents ?? {}).some((v) => Array.isArray(v) && v.length > 0);
      if (typed) throw invalid(`input '${input.name}' has typed contents and raw_input_contents: send one or the other`);
      values = decodeRaw(input.name, datatype, raw[i]!, count);
    } else {
      values = decodeTyped(input.name, datatype, input.contents, count);
    }
    const head = { name: input.name, datatype, shape: dims, ...(parametersJson(input.parameters) ? { parameters: parametersJson(input.parameters) } : {}) };
    const data = values.map((v, j) => elementJson(input.name, datatype, v, j)).join(',');
    return `${JSON.stringify(head).slice(0, -1)},"data":[${data}]}`;
  });
  const rest: Record<string, unknown> = {};
  if (request.id) rest.id = request.id;
  const params = parametersJson(request.parameters);
  if (params) rest.parameters = params;
  if (request.outputs && request.outputs.length > 0) {
    rest.outputs = request.outputs.map((o) => ({ name: o.name, ...(parametersJson(o.parameters) ? { parameters: parametersJson(o.parameters) } : {}) }));
  }
  const tail = JSON.stringify(rest).slice(1, -1);
  return { body: `{"inputs":[${inputs.join(',')}]${tail ? `,${tail}` : ''}}`, raw: useRaw };
}

interface RestTensor {
  name?: unknown;
  datatype?: unknown;
  shape?: unknown;
  data?: unknown;
  parameters?: unknown;
}

/** Nested `data` (the REST form allows it) flattened, row-major. */
function flatten(data: unknown): unknown[] {
  if (!Array.isArray(data)) return [data];
  return data.some(Array.isArray) ? (data as unknown[]).flat(Infinity) : data;
}

/** A REST output's `data` as elements of its datatype: null (NaN, ±Infinity in JSON) reads as NaN. */
function restElements(tensor: string, datatype: Datatype, data: unknown): Element[] {
  return flatten(data).map((v, i) => {
    if (datatype === 'BYTES') {
      if (typeof v !== 'string') throw new CodecError(Status.INTERNAL, `the replica answered BYTES output '${tensor}' with a non-string at element ${i}`);
      return v;
    }
    if (datatype === 'BOOL') return v === true || v === 1;
    if (v === null) return Number.NaN;
    if (typeof v !== 'number' && !(typeof v === 'string' && /^-?\d+$/.test(v))) throw new CodecError(Status.INTERNAL, `the replica answered output '${tensor}' with ${typeof v} at element ${i}, not a number`);
    if (datatype === 'INT64' || datatype === 'UINT64') return BigInt(typeof v === 'number' ? Math.trunc(v) : v);
    return Number(v);
  });
}

/**
 * The replica's REST answer as a ModelInferResponse: typed contents, or raw_output_contents when
 * `raw` (the request's inputs came raw) or when an output's datatype has no typed field (FP16,
 * BF16: the protocol then puts every output raw).
 */
export function inferResponseFromRest(answer: unknown, raw: boolean): ModelInferResponse {
  if (!answer || typeof answer !== 'object') throw new CodecError(Status.INTERNAL, 'the replica answered with something other than a JSON object');
  const a = answer as { model_name?: unknown; model_version?: unknown; id?: unknown; parameters?: unknown; outputs?: unknown };
  const outputs = Array.isArray(a.outputs) ? (a.outputs as RestTensor[]) : [];
  const decoded = outputs.map((o, i) => {
    const name = typeof o.name === 'string' ? o.name : `output${i}`;
    const datatype = typeof o.datatype === 'string' && isDatatype(o.datatype) ? o.datatype : undefined;
    if (!datatype) throw new CodecError(Status.INTERNAL, `the replica answered output '${name}' with datatype ${JSON.stringify(o.datatype)}`);
    const shape = Array.isArray(o.shape) ? o.shape.map((d) => String(d)) : [];
    return { name, datatype, shape, parameters: parametersFromJson(o.parameters), values: restElements(name, datatype, o.data) };
  });
  const allRaw = raw || decoded.some((o) => FIELD[o.datatype] === undefined);
  return {
    model_name: typeof a.model_name === 'string' ? a.model_name : '',
    model_version: typeof a.model_version === 'string' || typeof a.model_version === 'number' ? String(a.model_version) : '',
    id: typeof a.id === 'string' ? a.id : '',
    parameters: parametersFromJson(a.parameters),
    outputs: decoded.map((o) => ({ name: o.name, datatype: o.datatype, shape: o.shape, parameters: o.parameters, contents: allRaw ? null : encodeTyped(o.datatype, o.values)! })),
    raw_output_contents: allRaw ? decoded.map((o) => encodeRaw(o.datatype, o.values)) : [],
  };
}

/** GET /v2/models/{name}'s answer as a ModelMetadataResponse. */
export function metadataFromRest(answer: unknown): object {
  const a = (answer && typeof answer === 'object' ? answer : {}) as { name?: unknown; versions?: unknown; platform?: unknown; inputs?: unknown; outputs?: unknown; properties?: unknown };
  const tensors = (list: unknown) =>
    (Array.isArray(list) ? (list as RestTensor[]) : []).map((t) => ({
      name: String(t.name ?? ''),
      datatype: String(t.datatype ?? ''),
      shape: Array.isArray(t.shape) ? t.shape.map((d) => String(d)) : [],
    }));
  const properties = a.properties && typeof a.properties === 'object' ? Object.fromEntries(Object.entries(a.properties).map(([k, v]) => [k, String(v)])) : {};
  return {
    name: String(a.name ?? ''),
    versions: Array.isArray(a.versions) ? a.versions.map(String) : [],
    platform: String(a.platform ?? ''),
    inputs: tensors(a.inputs),
    outputs: tensors(a.outputs),
    properties,
  };
}

/** The gRPC code for an HTTP status, as grpc-gateway maps them (413: the request is too large). */
export function codeForHttpStatus(status: number): Status {
  switch (status) {
    case 400:
    case 405:
      return Status.INVALID_ARGUMENT;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.NOT_FOUND;
    case 409:
      return Status.ABORTED;
    case 413:
    case 429:
      return Status.RESOURCE_EXHAUSTED;
    case 501:
      return Status.UNIMPLEMENTED;
    case 502:
    case 503:
      return Status.UNAVAILABLE;
    case 504:
      return Status.DEADLINE_EXCEEDED;
    default:
      return status >= 400 && status < 500 ? Status.FAILED_PRECONDITION : Status.INTERNAL;
  }
}
