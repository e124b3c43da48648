// The reference ONNX runtime (agent/stacks/onnx) as a process on this host, speaking the Open
// Inference Protocol v2 over HTTP: every route, every error the protocol defines, every datatype
// onnxruntime-node holds, readiness separate from liveness, and the load timeout. Outputs are
// compared with onnxruntime-node run directly on the same model and the same input.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { fromFloat16Bits, toFloat16Bits } from '../../agent/stacks/onnx/datatypes.js';
import { denseModel, greetingModel, identityModel, IDENTITY_TYPES, linearModel, offsetModel } from '../../scripts/onnx/example-models.js';
import { encodeModel, type ModelSpec } from '../../agent/stacks/onnx/onnx-model.js';
import { eventually } from '../helpers/eventually.js';
import { Daemon, REPO_ROOT } from '../helpers/processes.js';

const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: any;
}

/** One request on its own connection (no pool left open), the body parsed when it is JSON. */
function request(port: number, method: string, urlPath: string, body?: unknown, raw = false): Promise<Reply> {
  const payload = body === undefined ? undefined : raw ? String(body) : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, agent: false, timeout: 10_000, headers: payload ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const get = (port: number, urlPath: string) => request(port, 'GET', urlPath);
const post = (port: number, urlPath: string, body: unknown) => request(port, 'POST', urlPath, body);

interface Server {
  port: number;
  daemon: Daemon;
}

const servers: Daemon[] = [];
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-onnx-server-'));

after(async () => {
  await Promise.all(servers.map((d) => d.kill('SIGKILL')));
  rmSync(dir, { recursive: true, force: true });
});

function writeModel(file: string, spec: ModelSpec): string {
  const full = path.join(dir, file);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, encodeModel(spec));
  return full;
}

/** `node dist/agent/stacks/onnx/server.js` with this environment, on a port the kernel picks. */
async function startServer(name: string, env: Record<string, string>, { waitReady = true } = {}): Promise<Server> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/agent/stacks/onnx/server.js')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH, MLFLEET_LOG_LEVEL: 'debug', PORT: '0', HOST: '127.0.0.1', ...env },
  });
  const daemon = new Daemon(name, child);
  servers.push(daemon);
  const listening = await daemon.waitForMessage('onnx server listening');
  const port = listening.port as number;
  if (waitReady) {
    await eventually(`${name} ready`, 20_000, async () => ((await get(port, '/v2/health/ready')).status === 200 ? true : undefined));
  }
  return { port, daemon };
}

/** What onnxruntime-node itself answers for `feeds` on `file`. */
async function direct(file: string, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
  const session = await ort.InferenceSession.create(file);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}

/** A tensor's data as the protocol's JSON carries it. */
function asJson(tensor: ort.Tensor): unknown[] {
  if (tensor.type === 'bool') return Array.from(tensor.data as Uint8Array, (v) => v !== 0);
  if (tensor.type === 'float16') return Array.from(tensor.data as Uint16Array, fromFloat16Bits);
  if (tensor.type === 'int64' || tensor.type === 'uint64') return Array.from(tensor.data as BigInt64Array, Number);
  return Array.from(tensor.data as ArrayLike<unknown>);
}

describe('the ONNX server speaks the Open Inference Protocol v2', () => {
  let linearFile: string;
  let linear: Server;
  let offsetFile: string;
  let offset: Server;
  let identityFile: string;
  let identity: Server;
  let greetingFile: string;
  let greeting: Server;

  before(async () => {
    linearFile = writeModel('linear.onnx', linearModel());
    offsetFile = writeModel('offset.onnx', offsetModel());
    // A directory with one .onnx file serves that file; one with model.onnx serves model.onnx.
    identityFile = writeModel('identity-dir/identity.onnx', identityModel());
    greetingFile = writeModel('greeting-dir/model.onnx', greetingModel());
    writeModel('greeting-dir/other.onnx', linearModel());
    [linear, offset, identity, greeting] = await Promise.all([
      startServer('linear', { MLFLEET_MODEL_PATH: linearFile, MLFLEET_MODEL_NAME: 'linear', MLFLEET_MODEL_VERSION: '3' }),
      startServer('offset', { MLFLEET_MODEL_PATH: offsetFile }),
      startServer('identity', { MLFLEET_MODEL_PATH: path.dirname(identityFile), MLFLEET_MODEL_NAME: 'identity' }),
      startServer('greeting', { MLFLEET_MODEL_PATH: path.dirname(greetingFile), MLFLEET_MODEL_NAME: 'greeting' }),
    ]);
  });

  it('describes itself at /v2', async () => {
    const reply = await get(linear.port, '/v2');
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, { name: 'mlfleet-onnx', version: VERSION, extensions: [] });
    assert.match(String(reply.headers['content-type']), /^application\/json/);
  });

  it('is live and, with its model loaded, ready', async () => {
    assert.deepEqual(await get(linear.port, '/v2/health/live').then((r) => [r.status, r.body]), [200, { live: true }]);
    assert.deepEqual(await get(linear.port, '/v2/health/ready').then((r) => [r.status, r.body]), [200, { ready: true }]);
    assert.deepEqual(await get(linear.port, '/v2/models/linear/ready').then((r) => [r.status, r.body]), [200, { ready: true }]);
    assert.equal((await request(linear.port, 'HEAD', '/v2/health/ready')).status, 200);
  });

  it('gives model metadata from the model: names, datatypes, shapes with dynamic dimensions as -1', async () => {
    const reply = await get(linear.port, '/v2/models/linear');
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, {
      name: 'linear',
      versions: ['3'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }],
    });
    const scalar = await get(offset.port, '/v2/models/offset');
    assert.deepEqual(scalar.body.inputs, [
      { name: 'values', datatype: 'INT64', shape: [-1] },
      { name: 'offset', datatype: 'INT64', shape: [] },
    ]);
    assert.equal(scalar.body.name, 'offset', 'the name defaults to the file name');
    assert.deepEqual(scalar.body.versions, ['1'], 'the version defaults to 1');
  });

  it('infers what onnxruntime computes, from flat or nested data, and echoes the request id', async () => {
    const x = [0.5, 1, -2, 3.25, 0, 7, -1.5, 2.5, 4, 1e-3, 100, -100];
    const expected = await direct(linearFile, { x: new ort.Tensor('float32', Float32Array.from(x), [4, 3]) });
    const flat = await post(linear.port, '/v2/models/linear/infer', { id: 'req-1', inputs: [{ name: 'x', datatype: 'FP32', shape: [4, 3], data: x }] });
    assert.equal(flat.status, 200, flat.text);
    assert.deepEqual(flat.body, {
      model_name: 'linear',
      model_version: '3',
      id: 'req-1',
      outputs: [{ name: 'y', datatype: 'FP32', shape: [4, 1], data: asJson(expected.y!) }],
    });
    const nested = [x.slice(0, 3), x.slice(3, 6), x.slice(6, 9), x.slice(9, 12)];
    const again = await post(linear.port, '/v2/models/linear/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [4, 3], data: nested }] });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.body.outputs[0].data, asJson(expected.y!));
    assert.equal('id' in again.body, false, 'no id when the request had none');
  });

  it('serves its version on the versioned paths and 404s any other version', async () => {
    const input = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] };
    assert.equal((await get(linear.port, '/v2/models/linear/versions/3')).body.name, 'linear');
    assert.equal((await get(linear.port, '/v2/models/linear/versions/3/ready')).status, 200);
    const inferred = await post(linear.port, '/v2/models/linear/versions/3/infer', input);
    assert.equal(inferred.status, 200, inferred.text);
    assert.equal(inferred.body.model_version, '3');
    for (const reply of [
      await get(linear.port, '/v2/models/linear/versions/2'),
      await get(linear.port, '/v2/models/linear/versions/2/ready'),
      await post(linear.port, '/v2/models/linear/versions/2/infer', input),
    ]) {
      assert.equal(reply.status, 404);
      assert.match(reply.body.error, /version '2' is not served here/);
    }
  });

  it('answers 404 with an error body for a model it does not serve, and for unknown routes', async () => {
    for (const reply of [
      await get(linear.port, '/v2/models/resnet'),
      await get(linear.port, '/v2/models/resnet/ready'),
      await post(linear.port, '/v2/models/resnet/infer', { inputs: [] }),
      await get(linear.port, '/v2/models/resnet/versions/3'),
    ]) {
      assert.equal(reply.status, 404);
      assert.match(reply.body.error, /model 'resnet' is not served here/);
    }
    for (const route of ['/', '/v1/models', '/v2/models', '/v2/health', '/v2/models/linear/explain']) {
      const reply = await get(linear.port, route);
      assert.equal(reply.status, 404, route);
      assert.equal(typeof reply.body.error, 'string');
    }
  });

  it('answers 405 for the wrong method', async () => {
    const infer = await get(linear.port, '/v2/models/linear/infer');
    assert.equal(infer.status, 405);
    assert.equal(infer.headers.allow, 'POST');
    assert.equal(typeof infer.body.error, 'string');
    assert.equal((await post(linear.port, '/v2/health/live', {})).status, 405);
  });

  it('answers 400 with an error body for a tensor that does not fit the model', async () => {
    const x = (fields: Record<string, unknown>) => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3], ...fields }] });
    const cases: [string, unknown, RegExp][] = [
      ['an unknown input name', x({ name: 'features' }), /no input 'features'.*takes 'x' \(FP32 \[-1, 3\]\)/],
      ['the wrong datatype', x({ datatype: 'FP64' }), /datatype FP64 but the model takes FP32/],
      ['a datatype the protocol does not have', x({ datatype: 'FLOAT' }), /not an Open Inference Protocol datatype/],
      ['BF16, which onnxruntime-node cannot hold', x({ datatype: 'BF16' }), /BF16, which onnxruntime-node cannot hold/],
      ['the wrong rank', x({ shape: [3] }), /shape \[3\] but the model takes rank 2/],
      ['the wrong fixed dimension', x({ shape: [1, 4], data: [1, 2, 3, 4] }), /dimension 1 must be 3/],
      ['a negative dimension', x({ shape: [-1, 3] }), /non-negative integers/],
      ['too few values for the shape', x({ shape: [2, 3] }), /3 values but shape \[2, 3\] holds 6/],
      ['nesting that is not the shape', x({ shape: [1, 3], data: [[1, 2], [3]] }), /nested "data" that does not match shape/],
      ['a string where numbers go', x({ data: [1, 'two', 3] }), /element 1 is the string "two": FP32 needs numbers/],
      ['no data', x({ data: undefined }), /needs "data"/],
      ['an input given twice', { inputs: [x({}).inputs[0], x({}).inputs[0]] }, /given twice/],
      ['no inputs', { inputs: [] }, /non-empty array/],
      ['an unknown output', { ...x({}), outputs: [{ name: 'z' }] }, /no output 'z'/],
      ['a non-string id', { ...x({}), id: 7 }, /"id" must be a string/],
      ['binary output data', { ...x({}), outputs: [{ name: 'y', parameters: { binary_data: true } }] }, /binary_data/],
    ];
    for (const [what, body, message] of cases) {
      const reply = await post(linear.port, '/v2/models/linear/infer', body);
      assert.equal(reply.status, 400, `${what}: ${reply.text}`);
      assert.deepEqual(Object.keys(reply.body), ['error'], what);
      assert.match(reply.body.error, message, what);
    }
    const missing = await post(offset.port, '/v2/models/offset/infer', { inputs: [{ name: 'values', datatype: 'INT64', shape: [1], data: [1] }] });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error, /lacks input 'offset' \(INT64 \[\]\)/);
    const notJson = await request(linear.port, 'POST', '/v2/models/linear/infer', '{"inputs": [', true);
    assert.equal(notJson.status, 400);
    assert.match(notJson.body.error, /not JSON/);
  });

  it('takes int64 inputs and a scalar, with 64-bit integers exact', async () => {
    const values = [1, -2, 3, 2 ** 40];
    const expected = await direct(offsetFile, {
      values: new ort.Tensor('int64', BigInt64Array.from(values, BigInt), [4]),
      offset: new ort.Tensor('int64', BigInt64Array.from([10n]), []),
    });
    const reply = await post(offset.port, '/v2/models/offset/infer', {
      inputs: [
        { name: 'values', datatype: 'INT64', shape: [4], data: values },
        { name: 'offset', datatype: 'INT64', shape: [], data: [10] },
      ],
    });
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.body.outputs, [{ name: 'sum', datatype: 'INT64', shape: [4], data: asJson(expected.sum!) }]);

    // Past 2^53 a JSON number has lost digits before the server sees it: decimal strings keep
    // them, and the answer is an exact integer literal.
    const big = await post(offset.port, '/v2/models/offset/infer', {
      inputs: [
        { name: 'values', datatype: 'INT64', shape: [2], data: ['9007199254740993', '-9223372036854775807'] },
        { name: 'offset', datatype: 'INT64', shape: [], data: ['-1'] },
      ],
    });
    assert.equal(big.status, 200, big.text);
    assert.match(big.text, /"data":\[9007199254740992,-9223372036854775808\]/);

    const notScalar = await post(offset.port, '/v2/models/offset/infer', {
      inputs: [
        { name: 'values', datatype: 'INT64', shape: [1], data: [1] },
        { name: 'offset', datatype: 'INT64', shape: [1], data: [1] },
      ],
    });
    assert.equal(notScalar.status, 400);
    assert.match(notScalar.body.error, /rank 0: \[\] \(a scalar\)/);
    const fraction = await post(offset.port, '/v2/models/offset/infer', {
      inputs: [
        { name: 'values', datatype: 'INT64', shape: [1], data: [1.5] },
        { name: 'offset', datatype: 'INT64', shape: [], data: [1] },
      ],
    });
    assert.equal(fraction.status, 400);
    assert.match(fraction.body.error, /element 0 is 1.5: INT64 needs integers/);
  });

  it('round-trips every datatype onnxruntime-node holds, BYTES included', async () => {
    const samples: Record<string, { datatype: string; data: unknown[]; tensor: () => ort.Tensor }> = {};
    const values = {
      BOOL: [true, false, true],
      UINT8: [0, 255, 7],
      UINT16: [0, 65535, 300],
      UINT32: [0, 4294967295, 70000],
      UINT64: [0, 2 ** 53 - 1, 12],
      INT8: [-128, 127, 0],
      INT16: [-32768, 32767, -1],
      INT32: [-2147483648, 2147483647, 5],
      INT64: [-(2 ** 53 - 1), 2 ** 53 - 1, -7],
      FLOAT16: [1.5, -2, 0.1],
      FLOAT: [0.1, -3.5, 1e30],
      DOUBLE: [0.1, -3.5, 1e300],
      STRING: ['', 'hello', 'zoë ✓'],
    } as const;
    const datatypes = { FLOAT16: 'FP16', FLOAT: 'FP32', DOUBLE: 'FP64', STRING: 'BYTES' } as Record<string, string>;
    for (const type of IDENTITY_TYPES) {
      const data = values[type as keyof typeof values] as readonly unknown[];
      const name = `in_${type.toLowerCase()}`;
      samples[name] = {
        datatype: datatypes[type] ?? type,
        data: [...data],
        tensor: () => {
          switch (type) {
            case 'BOOL': return new ort.Tensor('bool', Uint8Array.from(data as boolean[], Number), [3]);
            case 'UINT8': return new ort.Tensor('uint8', Uint8Array.from(data as number[]), [3]);
            case 'UINT16': return new ort.Tensor('uint16', Uint16Array.from(data as number[]), [3]);
            case 'UINT32': return new ort.Tensor('uint32', Uint32Array.from(data as number[]), [3]);
            case 'UINT64': return new ort.Tensor('uint64', BigUint64Array.from(data as number[], BigInt), [3]);
            case 'INT8': return new ort.Tensor('int8', Int8Array.from(data as number[]), [3]);
            case 'INT16': return new ort.Tensor('int16', Int16Array.from(data as number[]), [3]);
            case 'INT32': return new ort.Tensor('int32', Int32Array.from(data as number[]), [3]);
            case 'INT64': return new ort.Tensor('int64', BigInt64Array.from(data as number[], BigInt), [3]);
            case 'FLOAT16': return new ort.Tensor('float16', Uint16Array.from(data as number[], toFloat16Bits), [3]);
            case 'FLOAT': return new ort.Tensor('float32', Float32Array.from(data as number[]), [3]);
            case 'DOUBLE': return new ort.Tensor('float64', Float64Array.from(data as number[]), [3]);
            default: return new ort.Tensor('string', [...(data as string[])], [3]);
          }
        },
      };
    }
    const expected = await direct(identityFile, Object.fromEntries(Object.entries(samples).map(([name, s]) => [name, s.tensor()])));
    const reply = await post(identity.port, '/v2/models/identity/infer', {
      inputs: Object.entries(samples).map(([name, s]) => ({ name, datatype: s.datatype, shape: [3], data: s.data })),
    });
    assert.equal(reply.status, 200, reply.text);
    for (const [name, s] of Object.entries(samples)) {
      const outputName = name.replace(/^in_/, 'out_');
      const output = reply.body.outputs.find((o: { name: string }) => o.name === outputName);
      assert.deepEqual(output, { name: outputName, datatype: s.datatype, shape: [3], data: asJson(expected[outputName]!) }, name);
    }
    // FP16 answers the half-precision value nearest the one sent.
    assert.deepEqual(reply.body.outputs.find((o: { name: string }) => o.name === 'out_float16').data, [1.5, -2, 0.0999755859375]);

    const some = (name: string, datatype: string, data: unknown[]) => ({
      inputs: Object.entries(samples).map(([n, s]) => (n === name ? { name, datatype, shape: [data.length], data } : { name: n, datatype: s.datatype, shape: [3], data: s.data })),
    });
    for (const [name, datatype, data, message] of [
      ['in_uint8', 'UINT8', [256, 0, 0], /element 0 is 256: UINT8 needs integers from 0 to 255/],
      ['in_int8', 'INT8', [0, -129, 0], /element 1 is -129: INT8 needs integers from -128 to 127/],
      ['in_uint64', 'UINT64', [-1, 0, 0], /UINT64 needs integers from 0/],
      ['in_bool', 'BOOL', ['yes', true, false], /BOOL needs true or false/],
      ['in_string', 'BYTES', [1, 'a', 'b'], /element 0 is 1: BYTES needs strings/],
      ['in_float', 'FP32', [null, 1, 2], /element 0 is null: FP32 needs numbers/],
    ] as [string, string, unknown[], RegExp][]) {
      const bad = await post(identity.port, '/v2/models/identity/infer', some(name, datatype, data));
      assert.equal(bad.status, 400, `${name}: ${bad.text}`);
      assert.match(bad.body.error, message);
    }
  });

  it('serves string (BYTES) models and answers only the outputs asked for', async () => {
    const names = ['Ada', 'Grace', 'Zoë'];
    const expected = await direct(greetingFile, { name: new ort.Tensor('string', names, [3]) });
    const all = await post(greeting.port, '/v2/models/greeting/infer', { inputs: [{ name: 'name', datatype: 'BYTES', shape: [3], data: names }] });
    assert.equal(all.status, 200, all.text);
    assert.deepEqual(all.body.outputs, [
      { name: 'greeting', datatype: 'BYTES', shape: [3], data: asJson(expected.greeting!) },
      { name: 'count', datatype: 'INT64', shape: [1], data: [3] },
    ]);
    assert.deepEqual(asJson(expected.greeting!), ['hello, Ada', 'hello, Grace', 'hello, Zoë']);
    const one = await post(greeting.port, '/v2/models/greeting/infer', {
      inputs: [{ name: 'name', datatype: 'BYTES', shape: [3], data: names }],
      outputs: [{ name: 'count' }],
    });
    assert.equal(one.status, 200, one.text);
    assert.deepEqual(one.body.outputs, [{ name: 'count', datatype: 'INT64', shape: [1], data: [3] }]);
    const served = greeting.daemon.lines.find((l) => l.msg === 'model ready');
    assert.equal(served?.file, greetingFile, 'model.onnx is the one served from a directory of several');
  });

  it('stops cleanly on SIGTERM', async () => {
    const server = await startServer('stopping', { MLFLEET_MODEL_PATH: linearFile });
    const started = Date.now();
    server.daemon.child.kill('SIGTERM');
    assert.equal(await server.daemon.exited, 0);
    assert.ok(Date.now() - started < 5_000);
  });
});

describe('the ONNX server keeps liveness apart from readiness', () => {
  it('is not ready, saying why, when the model does not load within MLFLEET_LOAD_TIMEOUT_MS, and stays live', async () => {
    // 4 MiB of weights: far more than a millisecond to read and initialise.
    const file = writeModel('dense.onnx', denseModel(1024));
    const server = await startServer('timeout', { MLFLEET_MODEL_PATH: file, MLFLEET_LOAD_TIMEOUT_MS: '1' }, { waitReady: false });
    const failed = await server.daemon.waitForMessage('model failed');
    assert.match(String(failed.reason), /did not load within 1 ms \(MLFLEET_LOAD_TIMEOUT_MS=1\)/);
    const ready = await get(server.port, '/v2/health/ready');
    assert.equal(ready.status, 503);
    assert.match(ready.body.error, /MLFLEET_LOAD_TIMEOUT_MS/);
    assert.equal((await get(server.port, '/v2/models/dense/ready')).status, 503);
    assert.equal((await get(server.port, '/v2/models/dense')).status, 503);
    const infer = await post(server.port, '/v2/models/dense/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1024], data: new Array(1024).fill(0) }] });
    assert.equal(infer.status, 503);
    assert.match(infer.body.error, /MLFLEET_LOAD_TIMEOUT_MS/);
    assert.deepEqual(await get(server.port, '/v2/health/live').then((r) => [r.status, r.body]), [200, { live: true }]);
    assert.equal(server.daemon.running, true, 'the process stays up so the failure can be read');

    // The same model under the default (generous) timeout loads.
    const patient = await startServer('patient', { MLFLEET_MODEL_PATH: file });
    const metadata = await get(patient.port, '/v2/models/dense');
    assert.deepEqual(metadata.body.inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 1024] }]);
  });

  it('is not ready, saying why, when onnxruntime cannot load the file, and stays live', async () => {
    const file = path.join(dir, 'broken.onnx');
    writeFileSync(file, 'this is not a protobuf');
    const server = await startServer('broken', { MLFLEET_MODEL_PATH: file }, { waitReady: false });
    await server.daemon.waitForMessage('model failed');
    const ready = await get(server.port, '/v2/health/ready');
    assert.equal(ready.status, 503);
    assert.match(ready.body.error, /onnxruntime could not load .*broken\.onnx/);
    assert.equal((await get(server.port, '/v2/health/live')).status, 200);

    const empty = path.join(dir, 'empty-dir');
    mkdirSync(empty);
    chmodSync(empty, 0o755);
    const none = await startServer('empty', { MLFLEET_MODEL_PATH: empty }, { waitReady: false });
    await none.daemon.waitForMessage('model failed');
    assert.match((await get(none.port, '/v2/health/ready')).body.error, /no \.onnx file/);
  });

  it('will not start without MLFLEET_MODEL_PATH', async () => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/agent/stacks/onnx/server.js')], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH } });
    const daemon = new Daemon('unconfigured', child);
    assert.equal(await daemon.exited, 2);
    assert.match(String((await daemon.waitForMessage('cannot start')).error), /MLFLEET_MODEL_PATH is not set/);
  });
});

describe('FP16 conversion', () => {
  it('rounds to the nearest half-precision value, ties to even, and keeps the special values', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00], // halfway past the largest half: rounds to infinity
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001], // the smallest subnormal
      [2 ** -25, 0x0000], // a tie below it rounds to even (zero)
      [1 + 2 ** -11, 0x3c00], // a tie between 1 and its successor rounds to even (1)
      [1 + 3 * 2 ** -11, 0x3c02],
    ];
    for (const [value, bits] of cases) assert.equal(toFloat16Bits(value), bits, `${value}`);
    assert.ok(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN))));
    for (let bits = 0; bits < 0x7c00; bits += 37) assert.equal(toFloat16Bits(fromFloat16Bits(bits)), bits, `bits ${bits}`);
  });
});
