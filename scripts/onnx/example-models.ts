// The small ONNX models the project makes itself (no download at run time): what the ONNX
// stack's tests serve, and what `make-example-models` writes for trying a deployment by hand.
// Each is a few hundred bytes and exercises one thing a serving runtime must get right.
import { encodeModel, type ElementType, type ModelSpec } from '../../agent/stacks/onnx/onnx-model.js';

/** y = x·W + b: FP32 input [batch, 3] with a dynamic batch, output [batch, 1]. */
export const LINEAR_WEIGHTS = { w: [0.5, -1.25, 2], b: [0.75] };

export function linearModel(): ModelSpec {
  return {
    name: 'linear',
    doc: 'y = x·W + b with W = [0.5, -1.25, 2]ᵀ and b = 0.75',
    inputs: [{ name: 'x', type: 'FLOAT', shape: ['batch', 3] }],
    outputs: [{ name: 'y', type: 'FLOAT', shape: ['batch', 1] }],
    initializers: [
      { name: 'W', type: 'FLOAT', dims: [3, 1], data: LINEAR_WEIGHTS.w },
      { name: 'b', type: 'FLOAT', dims: [1], data: LINEAR_WEIGHTS.b },
    ],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'W'], outputs: ['xW'] },
      { op: 'Add', inputs: ['xW', 'b'], outputs: ['y'] },
    ],
  };
}

/** sum = values + offset: an INT64 vector of any length and an INT64 scalar (shape []). */
export function offsetModel(): ModelSpec {
  return {
    name: 'offset',
    doc: 'sum = values + offset, in int64; offset is a scalar',
    inputs: [
      { name: 'values', type: 'INT64', shape: ['n'] },
      { name: 'offset', type: 'INT64', shape: [] },
    ],
    outputs: [{ name: 'sum', type: 'INT64', shape: ['n'] }],
    nodes: [{ op: 'Add', inputs: ['values', 'offset'], outputs: ['sum'] }],
  };
}

/**
 * greeting = "hello, " + name: a string (BYTES) vector in and out, plus its length as INT64.
 * (StringConcat, not StringNormalizer: onnxruntime's normalizer needs the en_US.UTF-8 locale
 * installed, which a scratch image does not have.)
 */
export function greetingModel(): ModelSpec {
  return {
    name: 'greeting',
    doc: 'StringConcat of a constant prefix and a vector of names, and the vector length',
    inputs: [{ name: 'name', type: 'STRING', shape: ['n'] }],
    outputs: [
      { name: 'greeting', type: 'STRING', shape: ['n'] },
      { name: 'count', type: 'INT64', shape: [1] },
    ],
    initializers: [{ name: 'prefix', type: 'STRING', dims: [], data: ['hello, '] }],
    nodes: [
      { op: 'StringConcat', inputs: ['prefix', 'name'], outputs: ['greeting'] },
      { op: 'Shape', inputs: ['name'], outputs: ['count'] },
    ],
    opsets: { '': 20 },
  };
}

/** Every element type the Open Inference Protocol and onnxruntime-node share. */
export const IDENTITY_TYPES: ElementType[] = [
  'BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FLOAT16', 'FLOAT', 'DOUBLE', 'STRING',
];

/** out_T = in_T for every type T above, each a vector of dynamic length. */
export function identityModel(): ModelSpec {
  const names = IDENTITY_TYPES.map((type) => type.toLowerCase());
  return {
    name: 'identity',
    doc: 'Identity of one vector per element type',
    inputs: IDENTITY_TYPES.map((type, i) => ({ name: `in_${names[i]}`, type, shape: ['n'] })),
    outputs: IDENTITY_TYPES.map((type, i) => ({ name: `out_${names[i]}`, type, shape: ['n'] })),
    nodes: IDENTITY_TYPES.map((_, i) => ({ op: 'Identity', inputs: [`in_${names[i]}`], outputs: [`out_${names[i]}`] })),
  };
}

/**
 * y = x·W for a square W of `size`² FP32 weights (size 1024: 4 MiB): a model that takes
 * measurably long to load, for load-timeout tests. W is a fixed pattern, not random.
 */
export function denseModel(size: number): ModelSpec {
  const w = new Float32Array(size * size);
  for (let i = 0; i < w.length; i++) w[i] = ((i % 97) - 48) / 97;
  return {
    name: 'dense',
    doc: `y = x·W with a ${size}×${size} W`,
    inputs: [{ name: 'x', type: 'FLOAT', shape: ['batch', size] }],
    outputs: [{ name: 'y', type: 'FLOAT', shape: ['batch', size] }],
    initializers: [{ name: 'W', type: 'FLOAT', dims: [size, size], data: w }],
    nodes: [{ op: 'MatMul', inputs: ['x', 'W'], outputs: ['y'] }],
  };
}

/** The examples `make-example-models` writes, by file name. */
export function exampleModels(): Record<string, Uint8Array> {
  return {
    'linear.onnx': encodeModel(linearModel()),
    'offset.onnx': encodeModel(offsetModel()),
    'greeting.onnx': encodeModel(greetingModel()),
    'identity.onnx': encodeModel(identityModel()),
  };
}
