// Writes ONNX model files without Python: a small description of a graph (typed inputs and
// outputs, nodes, initializers) encoded as an ONNX ModelProto with protobufjs and the vendored
// subset of onnx.proto next to this file. The onnx stack's training side: the mlfleet/onnx image
// carries it as /opt/mlfleet/onnx.js for training scripts to write their models with (see
// train.ts), and the project makes its example and test models with it. Not a general ONNX
// toolkit: enough to write the graphs a small trainer produces.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/** agent/stacks/onnx/onnx.proto, from dist/agent/stacks/onnx/ where this module runs (in the image too). */
export const ONNX_PROTO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../agent/stacks/onnx/onnx.proto');

/** TensorProto.DataType, by ONNX's own names. */
export const ELEMENT_TYPES = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
} as const;
export type ElementType = keyof typeof ELEMENT_TYPES;

/** A graph input or output. A string dimension is symbolic (dynamic); `[]` is a scalar. */
export interface ValueSpec {
  name: string;
  type: ElementType;
  shape: (number | string)[];
}

/** A constant tensor. Numbers are stored little-endian in raw_data; FLOAT16 takes the raw bits. */
export interface InitializerSpec {
  name: string;
  type: ElementType;
  dims: number[];
  data: ArrayLike<number> | readonly bigint[] | readonly string[];
}

/** An attribute value; the tag says which AttributeProto field it is. */
export type AttributeValue =
  | { int: number }
  | { float: number }
  | { string: string }
  | { ints: number[] }
  | { floats: number[] }
  | { strings: string[] }
  | { tensor: InitializerSpec };

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  /** '' (the default ONNX domain) or, for instance, 'ai.onnx.ml'. */
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface ModelSpec {
  name: string;
  doc?: string;
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  nodes: NodeSpec[];
  initializers?: InitializerSpec[];
  /** ONNX opset of the default domain (17 unless said); other domains by name. */
  opsets?: Record<string, number>;
}

// Opset 17 (ONNX 1.12, IR version 8) unless a model needs a newer operator; every onnxruntime of
// the last years loads it. The IR version is the one ONNX released with the opset.
const DEFAULT_OPSET = 17;

function irVersion(opset: number): number {
  return opset <= 17 ? 8 : opset <= 20 ? 9 : 10;
}

let root: protobuf.Root | undefined;

function modelType(): protobuf.Type {
  root ??= protobuf.loadSync(ONNX_PROTO);
  return root.lookupType('onnx.ModelProto');
}

/** The bytes of an .onnx file for `spec`. */
export function encodeModel(spec: ModelSpec): Uint8Array {
  const opsets = { '': DEFAULT_OPSET, ...spec.opsets };
  const message = {
    irVersion: irVersion(opsets['']),
    opsetImport: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
    producerName: 'mlfleet',
    producerVersion: '1',
    modelVersion: 1,
    docString: spec.doc ?? '',
    graph: {
      name: spec.name,
      node: spec.nodes.map((node, i) => ({
        input: node.inputs,
        output: node.outputs,
        name: node.name ?? `${node.op.toLowerCase()}_${i}`,
        opType: node.op,
        domain: node.domain ?? '',
        attribute: Object.entries(node.attributes ?? {}).map(([name, value]) => attribute(name, value)),
      })),
      initializer: (spec.initializers ?? []).map(tensor),
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
    },
  };
  const type = modelType();
  const invalid = type.verify(message);
  if (invalid) throw new Error(`model ${spec.name}: ${invalid}`);
  return type.encode(type.fromObject(message)).finish();
}

function valueInfo(value: ValueSpec) {
  return {
    name: value.name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[value.type],
        // An empty dim list is a scalar; leaving `shape` out would mean "rank unknown".
        shape: { dim: value.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensor(spec: InitializerSpec) {
  const count = spec.dims.reduce((a, b) => a * b, 1);
  if (spec.data.length !== count) throw new Error(`initializer ${spec.name}: ${spec.data.length} values for dims [${spec.dims.join(', ')}]`);
  const base = { name: spec.name, dims: spec.dims, dataType: ELEMENT_TYPES[spec.type] };
  if (spec.type === 'STRING') return { ...base, stringData: (spec.data as readonly string[]).map((s) => Buffer.from(s, 'utf8')) };
  return { ...base, rawData: rawBytes(spec.type, spec.data) };
}

/** Fixed-width little-endian bytes, as TensorProto.raw_data requires. */
function rawBytes(type: Exclude<ElementType, 'STRING'>, data: InitializerSpec['data']): Uint8Array {
  const values = Array.from(data as ArrayLike<number | bigint>);
  let array: ArrayBufferView;
  switch (type) {
    case 'FLOAT': array = Float32Array.from(values as number[]); break;
    case 'DOUBLE': array = Float64Array.from(values as number[]); break;
    case 'UINT8': case 'BOOL': array = Uint8Array.from(values as number[]); break;
    case 'INT8': array = Int8Array.from(values as number[]); break;
    case 'UINT16': case 'FLOAT16': array = Uint16Array.from(values as number[]); break;
    case 'INT16': array = Int16Array.from(values as number[]); break;
    case 'INT32': array = Int32Array.from(values as number[]); break;
    case 'UINT32': array = Uint32Array.from(values as number[]); break;
    case 'INT64': array = BigInt64Array.from(values, (v) => BigInt(v)); break;
    case 'UINT64': array = BigUint64Array.from(values, (v) => BigInt(v)); break;
  }
  // The typed arrays above are in the host's byte order; every platform Node runs on here is
  // little-endian, which is what ONNX wants.
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

function attribute(name: string, value: AttributeValue) {
  // AttributeProto.AttributeType values.
  if ('int' in value) return { name, type: 2, i: value.int };
  if ('float' in value) return { name, type: 1, f: value.float };
  if ('string' in value) return { name, type: 3, s: Buffer.from(value.string, 'utf8') };
  if ('tensor' in value) return { name, type: 4, t: tensor(value.tensor) };
  if ('floats' in value) return { name, type: 6, floats: value.floats };
  if ('ints' in value) return { name, type: 7, ints: value.ints };
  return { name, type: 8, strings: value.strings.map((s) => Buffer.from(s, 'utf8')) };
}
