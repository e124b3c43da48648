// The Open Inference Protocol's gRPC messages and their REST form, converted with no process
// started: typed and raw contents of every datatype give the same JSON, raw answers go back raw,
// and every mismatch a client can send (shape vs data, unknown datatype, wrong contents field,
// cut-off BYTES, too many elements) is INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import {
  CodecError,
  codeForHttpStatus,
  decodeRaw,
  encodeRaw,
  inferRequestToRest,
  inferResponseFromRest,
  type ModelInferRequest,
} from '../../agent/gateway/oip-grpc-codec.js';

const request = (inputs: ModelInferRequest['inputs'], raw: Buffer[] = []): ModelInferRequest => ({ model_name: 'm', model_version: '', id: '', inputs, raw_input_contents: raw });
const rest = (r: ModelInferRequest) => JSON.parse(inferRequestToRest(r, 1_000_000).body) as { inputs: Array<{ name: string; datatype: string; shape: number[]; data: unknown[] }>; id?: string; parameters?: unknown; outputs?: unknown };

function refused(r: ModelInferRequest, code: status, pattern: RegExp, maxElements = 1_000_000): void {
  assert.throws(
    () => inferRequestToRest(r, maxElements),
    (err: unknown) => err instanceof CodecError && err.code === code && pattern.test(err.message),
  );
}

test('typed contents and raw contents of one tensor give the same REST body, for every datatype with a typed field', () => {
  const cases: Array<[string, Record<string, unknown[]>, unknown[]]> = [
    ['BOOL', { bool_contents: [true, false] }, [true, false]],
    ['INT8', { int_contents: [-128, 127] }, [-128, 127]],
    ['INT16', { int_contents: [-300, 300] }, [-300, 300]],
    ['INT32', { int_contents: [-70000, 70000] }, [-70000, 70000]],
    ['INT64', { int64_contents: ['-5', '9007199254740993'] }, [-5, 9007199254740993]],
    ['UINT8', { uint_contents: [0, 255] }, [0, 255]],
    ['UINT16', { uint_contents: [1, 65535] }, [1, 65535]],
    ['UINT32', { uint_contents: [1, 4294967295] }, [1, 4294967295]],
    ['UINT64', { uint64_contents: ['1', '18446744073709551615'] }, [1, 18446744073709551615]],
    ['FP32', { fp32_contents: [0.5, -2] }, [0.5, -2]],
    ['FP64', { fp64_contents: [0.1, 1e300] }, [0.1, 1e300]],
    ['BYTES', { bytes_contents: [Buffer.from('héllo'), Buffer.from('')] }, ['héllo', '']],
  ];
  for (const [datatype, contents, data] of cases) {
    const typed = inferRequestToRest(request([{ name: 'x', datatype, shape: ['1', '2'], contents }]), 100);
    const values = datatype === 'BYTES' ? data : datatype === 'INT64' || datatype === 'UINT64' ? (Object.values(contents)[0] as string[]).map(BigInt) : data;
    const raw = inferRequestToRest(request([{ name: 'x', datatype, shape: ['1', '2'], contents: null }], [encodeRaw(datatype as never, values as never)]), 100);
    assert.equal(typed.raw, false);
    assert.equal(raw.raw, true);
    assert.equal(raw.body, typed.body, datatype);
    assert.deepEqual(JSON.parse(typed.body).inputs[0].shape, [1, 2]);
    if (datatype !== 'INT64' && datatype !== 'UINT64') assert.deepEqual(JSON.parse(typed.body).inputs[0].data, data, datatype);
  }
  // 64-bit integers past 2^53 travel as exact literals, not rounded.
  assert.match(inferRequestToRest(request([{ name: 'x', datatype: 'UINT64', shape: ['1'], contents: { uint64_contents: ['18446744073709551615'] } }]), 10).body, /"data":\[18446744073709551615\]/);
});

test('FP16 and BF16 travel raw only, decoded to numbers for the replica and encoded back', () => {
  const fp16 = encodeRaw('FP16', [1.5, -0.25]);
  assert.equal(fp16.length, 4);
  assert.deepEqual(rest(request([{ name: 'h', datatype: 'FP16', shape: ['2'] }], [fp16])).inputs[0]!.data, [1.5, -0.25]);
  assert.deepEqual(decodeRaw('b', 'BF16', encodeRaw('BF16', [2, -3]), 2), [2, -3]);
  refused(request([{ name: 'h', datatype: 'FP16', shape: ['1'], contents: { fp32_contents: [1] } }]), status.INVALID_ARGUMENT, /'h' is FP16 but has values in contents.fp32_contents/);
  refused(request([{ name: 'h', datatype: 'FP16', shape: ['1'], contents: null }]), status.INVALID_ARGUMENT, /no typed contents field: send it in raw_input_contents/);
});

test('the request id, parameters and requested outputs come along; BYTES raw contents are 4-byte little-endian length prefixes', () => {
  const r: ModelInferRequest = {
    ...request([{ name: 's', datatype: 'BYTES', shape: ['2'] }], [Buffer.from([2, 0, 0, 0, 0x68, 0x69, 0, 0, 0, 0])]),
    id: 'req-1',
    parameters: { flag: { bool_param: true, parameter_choice: 'bool_param' }, n: { int64_param: '7', parameter_choice: 'int64_param' }, s: { string_param: 'x', parameter_choice: 'string_param' } },
    outputs: [{ name: 'y' }],
  };
  const body = rest(r);
  assert.deepEqual(body.inputs[0]!.data, ['hi', '']);
  assert.equal(body.id, 'req-1');
  assert.deepEqual(body.parameters, { flag: true, n: 7, s: 'x' });
  assert.deepEqual(body.outputs, [{ name: 'y' }]);
});

test('shape against data, datatypes, contents fields and raw lengths: each mismatch is INVALID_ARGUMENT naming the tensor', () => {
  const I = status.INVALID_ARGUMENT;
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['1', '3'], contents: { fp32_contents: [1, 2] } }]), I, /'x' has 2 values in contents.fp32_contents, but its shape says 3/);
  refused(request([{ name: 'x', datatype: 'FP33', shape: ['1'], contents: null }]), I, /datatype 'FP33', which is not an Open Inference Protocol datatype/);
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['-1'], contents: null }]), I, /every dimension must be a whole number from 0 up/);
  refused(request([{ name: 'x', datatype: 'INT32', shape: ['1'], contents: { fp32_contents: [1] } }]), I, /INT32 but has values in contents.fp32_contents: INT32 goes in contents.int_contents/);
  refused(request([{ name: 'x', datatype: 'INT8', shape: ['1'], contents: { int_contents: [200] } }]), I, /element 0 is 200, outside INT8's range/);
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['3'] }], [Buffer.alloc(8)]), I, /raw contents are 8 bytes, but its shape \(3 elements of FP32\) needs 12/);
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['1'] }, { name: 'y', datatype: 'FP32', shape: ['1'] }], [Buffer.alloc(4)]), I, /raw_input_contents has 1 entries for 2 inputs/);
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['1'], contents: { fp32_contents: [1] } }], [Buffer.alloc(4)]), I, /typed contents and raw_input_contents/);
  refused(request([{ name: 's', datatype: 'BYTES', shape: ['1'] }], [Buffer.from([9, 0, 0, 0, 1])]), I, /says 9 bytes, but only 1 follow/);
  refused(request([{ name: 's', datatype: 'BYTES', shape: ['1'] }], [Buffer.from([1, 0])]), I, /cut off in its 4-byte length prefix/);
  refused(request([{ name: 's', datatype: 'BYTES', shape: ['1'] }], [Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])]), I, /more than the 1 BYTES elements/);
  refused(request([{ name: 's', datatype: 'BYTES', shape: ['1'], contents: { bytes_contents: [Buffer.from([0xff, 0xfe])] } }]), I, /not UTF-8 text/);
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['1'], contents: { fp32_contents: [Number.NaN] } }]), I, /NaN, which JSON .* cannot carry/);
  refused(request([]), I, /no inputs/);
  refused(request([{ name: '', datatype: 'FP32', shape: ['1'], contents: { fp32_contents: [1] } }]), I, /input 0 has no name/);
});

test('more elements than the largest deployment takes as JSON is RESOURCE_EXHAUSTED before anything is decoded', () => {
  // A shape claiming 10^12 elements with no data: refused on the count, no array is allocated.
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['1000000', '1000000'] }], [Buffer.alloc(4)]), status.RESOURCE_EXHAUSTED, /10{12} elements/, 1000);
  refused(request([{ name: 'x', datatype: 'FP32', shape: ['2000'], contents: null }]), status.RESOURCE_EXHAUSTED, /over the 2000 bytes/, 1000);
});

test('the replica\'s JSON answer becomes typed contents, or raw_output_contents when the request was raw or an output is FP16', () => {
  const answer = { model_name: 'm', model_version: '1', id: 'a', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 2], data: [[1.5, 2]] }, { name: 'k', datatype: 'INT64', shape: [1], data: [3] }] };
  const typed = inferResponseFromRest(answer, false);
  assert.equal(typed.model_name, 'm');
  assert.equal(typed.model_version, '1');
  assert.deepEqual(typed.outputs[0]!.contents, { fp32_contents: [1.5, 2] });
  assert.deepEqual(typed.outputs[1]!.contents, { int64_contents: ['3'] });
  assert.deepEqual(typed.outputs[0]!.shape, ['1', '2']);
  assert.deepEqual(typed.raw_output_contents, []);
  const raw = inferResponseFromRest(answer, true);
  assert.equal(raw.outputs[0]!.contents, null);
  assert.deepEqual(decodeRaw('y', 'FP32', raw.raw_output_contents[0]!, 2), [1.5, 2]);
  assert.deepEqual(decodeRaw('k', 'INT64', raw.raw_output_contents[1]!, 1), [3n]);
  const half = inferResponseFromRest({ outputs: [{ name: 'h', datatype: 'FP16', shape: [1], data: [0.5] }, { name: 'f', datatype: 'FP32', shape: [1], data: [null] }] }, false);
  assert.equal(half.raw_output_contents.length, 2);
  assert.deepEqual(decodeRaw('h', 'FP16', half.raw_output_contents[0]!, 1), [0.5]);
  assert.ok(Number.isNaN(decodeRaw('f', 'FP32', half.raw_output_contents[1]!, 1)[0]));
});

test('HTTP statuses map to gRPC codes as grpc-gateway does', () => {
  const map: Array<[number, status]> = [
    [400, status.INVALID_ARGUMENT],
    [401, status.UNAUTHENTICATED],
    [403, status.PERMISSION_DENIED],
    [404, status.NOT_FOUND],
    [409, status.ABORTED],
    [413, status.RESOURCE_EXHAUSTED],
    [429, status.RESOURCE_EXHAUSTED],
    [500, status.INTERNAL],
    [501, status.UNIMPLEMENTED],
    [503, status.UNAVAILABLE],
    [504, status.DEADLINE_EXCEEDED],
  ];
  for (const [http, code] of map) assert.equal(codeForHttpStatus(http), code, String(http));
});
