// The SDK's pure pieces: which error class a gateway's HTTP status becomes, the URL of an
// inference, and how several workers' logs are cut into prefixed lines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MlfleetError } from '../../shared/errors.js';
import { gatewayError, inferPath } from '../../shared/sdk/infer.js';
import { LinePrefixer } from '../../shared/sdk/jobs.js';

test("a gateway's status becomes the error class it means, with the gateway's words", () => {
  const cases: Array<[number, string]> = [
    [400, 'INVALID_ARGUMENT'],
    [413, 'INVALID_ARGUMENT'],
    [401, 'UNAUTHENTICATED'],
    [403, 'PERMISSION_DENIED'],
    [404, 'NOT_FOUND'],
    [429, 'RESOURCE_EXHAUSTED'],
    [502, 'UNAVAILABLE'],
    [503, 'UNAVAILABLE'],
    [504, 'DEADLINE_EXCEEDED'],
    [500, 'INTERNAL'],
  ];
  for (const [status, code] of cases) {
    const err = gatewayError(status, 'model "x" not found');
    assert.ok(MlfleetError.is(err));
    assert.equal(err.code, code, `HTTP ${status}`);
    assert.equal(err.message, `the gateway answered ${status}: model "x" not found`);
  }
  assert.equal((gatewayError(429, 'busy', '2') as MlfleetError & { retryAfterMs?: number }).retryAfterMs, 2000);
  assert.equal((gatewayError(429, 'busy', 'soon') as MlfleetError & { retryAfterMs?: number }).retryAfterMs, undefined);
});

test('an inference path names the model, and the version when the ref has one', () => {
  assert.equal(inferPath('linear', undefined), '/v2/models/linear/infer');
  assert.equal(inferPath('linear', 3), '/v2/models/linear/versions/3/infer');
  assert.equal(inferPath('a b', undefined), '/v2/models/a%20b/infer');
});

test('a worker\'s bytes are cut into whole lines, each prefixed, the last one finished', () => {
  const lines = new LinePrefixer(Buffer.from('[rank 1] '));
  assert.equal(lines.push(Buffer.from('epo')).toString(), '');
  assert.equal(lines.push(Buffer.from('ch 1\nepoch 2\nepo')).toString(), '[rank 1] epoch 1\n[rank 1] epoch 2\n');
  assert.equal(lines.end().toString(), '[rank 1] epo\n');
  assert.equal(lines.end().toString(), '');
});
