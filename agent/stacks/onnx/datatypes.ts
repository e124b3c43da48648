// The Open Inference Protocol's tensor datatypes and onnxruntime's, and the conversions between
// the protocol's JSON tensors (flat or nested `data`) and the typed arrays onnxruntime takes and
// gives. Everything a client can get wrong about one tensor is caught here, with a message that
// names the tensor, the element and what was expected.

/** OIP datatype → onnxruntime-node tensor type, for every type both know. */
export const ORT_TYPES = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
} as const;

export type Datatype = keyof typeof ORT_TYPES;
export type OrtType = (typeof ORT_TYPES)[Datatype];

/** OIP datatypes onnxruntime-node cannot hold (BF16: no tensor type in the Node binding). */
const UNSUPPORTED_DATATYPES = new Set(['BF16']);

export type TensorData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigUint64Array
  | BigInt64Array
  | Float32Array
  | Float64Array
  | string[];

/** A tensor as it crosses to and from the session worker: onnxruntime's type, flat data, dims. */
export interface RawTensor {
  type: OrtType;
  data: TensorData;
  dims: number[];
}

/** The client sent a tensor that does not fit: answered with 400. */
export class TensorError extends Error {
  override readonly name = 'TensorError';
}

export function isDatatype(value: string): value is Datatype {
  return Object.hasOwn(ORT_TYPES, value);
}

/** The OIP datatype of an onnxruntime tensor type, or undefined when the protocol has none. */
export function datatypeOf(ortType: string): Datatype | undefined {
  for (const [datatype, type] of Object.entries(ORT_TYPES)) if (type === ortType) return datatype as Datatype;
  return undefined;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Checks a request's datatype string; `expected` is the model's. */
export function checkDatatype(tensor: string, datatype: unknown, expected: Datatype): void {
  if (typeof datatype !== 'string') throw new TensorError(`input '${tensor}' needs a "datatype" string (the model takes ${expected})`);
  if (UNSUPPORTED_DATATYPES.has(datatype)) {
    throw new TensorError(`input '${tensor}' has datatype ${datatype}, which onnxruntime-node cannot hold; the model takes ${expected}`);
  }
  if (!isDatatype(datatype)) {
    throw new TensorError(`input '${tensor}' has datatype '${datatype}', which is not an Open Inference Protocol datatype (${Object.keys(ORT_TYPES).join(', ')})`);
  }
  if (datatype !== expected) throw new TensorError(`input '${tensor}' has datatype ${datatype} but the model takes ${expected}`);
}

/**
 * The request's `data` for a tensor of `shape`, as onnxruntime wants it. Flat data is taken as
 * row-major; nested data must nest exactly as the shape says.
 */
export function tensorFromJson(tensor: string, datatype: Datatype, shape: readonly number[], data: unknown): RawTensor {
  if (!Array.isArray(data)) throw new TensorError(`input '${tensor}' needs "data": an array of ${elementCount(shape)} values`);
  const flat = flatten(tensor, shape, data);
  const count = elementCount(shape);
  if (flat.length !== count) {
    throw new TensorError(`input '${tensor}' has ${flat.length} values but shape [${shape.join(', ')}] holds ${count}`);
  }
  return { type: ORT_TYPES[datatype], data: convert(tensor, datatype, flat), dims: [...shape] };
}

function flatten(tensor: string, shape: readonly number[], data: unknown[]): unknown[] {
  if (!data.some(Array.isArray)) return data;
  const flat: unknown[] = [];
  const walk = (value: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (Array.isArray(value)) throw nesting();
      flat.push(value);
      return;
    }
    if (!Array.isArray(value) || value.length !== shape[depth]) throw nesting();
    for (const item of value) walk(item, depth + 1);
  };
  const nesting = () =>
    new TensorError(`input '${tensor}' has nested "data" that does not match shape [${shape.join(', ')}]; send it flat (row-major) or nested exactly as the shape`);
  walk(data, 0);
  return flat;
}

const INTEGER_RANGES = {
  UINT8: [0, 0xff, Uint8Array],
  UINT16: [0, 0xffff, Uint16Array],
  UINT32: [0, 0xffffffff, Uint32Array],
  INT8: [-0x80, 0x7f, Int8Array],
  INT16: [-0x8000, 0x7fff, Int16Array],
  INT32: [-0x80000000, 0x7fffffff, Int32Array],
} as const;

const BIG_RANGES = {
  INT64: [-(2n ** 63n), 2n ** 63n - 1n, BigInt64Array],
  UINT64: [0n, 2n ** 64n - 1n, BigUint64Array],
} as const;

function convert(tensor: string, datatype: Datatype, values: unknown[]): TensorData {
  const bad = (i: number, what: string) => new TensorError(`input '${tensor}' element ${i} is ${describe(values[i])}: ${datatype} needs ${what}`);
  switch (datatype) {
    case 'BYTES':
      return values.map((v, i) => {
        if (typeof v !== 'string') throw bad(i, 'strings');
        return v;
      });
    case 'BOOL':
      return Uint8Array.from(values, (v, i) => {
        if (typeof v === 'boolean') return v ? 1 : 0;
        if (v === 0 || v === 1) return v;
        throw bad(i, 'true or false');
      });
    case 'FP32':
    case 'FP64': {
      const out = datatype === 'FP32' ? new Float32Array(values.length) : new Float64Array(values.length);
      values.forEach((v, i) => {
        if (typeof v !== 'number') throw bad(i, 'numbers');
        out[i] = v;
      });
      return out;
    }
    case 'FP16':
      return Uint16Array.from(values, (v, i) => {
        if (typeof v !== 'number') throw bad(i, 'numbers');
        return toFloat16Bits(v);
      });
    case 'INT64':
    case 'UINT64': {
      const [min, max, Array64] = BIG_RANGES[datatype];
      const out = new Array64(values.length);
      values.forEach((v, i) => {
        // JSON numbers past 2^53 have already lost digits; decimal strings keep them all.
        let big: bigint;
        if (typeof v === 'number' && Number.isInteger(v)) big = BigInt(v);
        else if (typeof v === 'string' && /^-?\d+$/.test(v)) big = BigInt(v);
        else throw bad(i, 'integers');
        if (big < min || big > max) throw bad(i, `integers from ${min} to ${max}`);
        out[i] = big;
      });
      return out;
    }
    default: {
      const [min, max, IntArray] = INTEGER_RANGES[datatype];
      const out = new IntArray(values.length);
      values.forEach((v, i) => {
        if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(i, 'integers');
        if (v < min || v > max) throw bad(i, `integers from ${min} to ${max}`);
        out[i] = v;
      });
      return out;
    }
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 20 ? `${value.slice(0, 20)}…` : value)}`;
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

/**
 * An output tensor's `data` as JSON text: booleans for BOOL, numbers for FP16 (decoded from its
 * bits), exact integer literals for INT64 and UINT64 (JSON allows them; JavaScript clients past
 * 2^53 round them, other clients keep every digit). NaN and infinities have no JSON form: null.
 */
export function dataToJson(tensor: RawTensor): string {
  const { type, data } = tensor;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) return `[${data.join(',')}]`;
  if (type === 'bool') return JSON.stringify(Array.from(data as Uint8Array, (v) => v !== 0));
  if (type === 'float16') return JSON.stringify(Array.from(data as Uint16Array, fromFloat16Bits));
  return JSON.stringify(Array.isArray(data) ? data : Array.from(data));
}

// One scratch word for the float → half conversion.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * IEEE 754 half-precision bits of `value`, rounded to nearest even. Rounding to single first and
 * then to half gives the same result as rounding once (single has more than 2·11+2 bits).
 */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return half;
}

export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
