// The s3:// URL of a source: what it accepts and the message for each mistake.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSourceUrl } from '../../coordinator/sources/source-url.js';

test('a bucket, a prefix (made to end in /), an endpoint and a region', () => {
  assert.deepEqual(parseSourceUrl('s3://models/fraud?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1'), { bucket: 'models', prefix: 'fraud/', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1' });
  assert.deepEqual(parseSourceUrl('s3://models'), { bucket: 'models', prefix: '', endpoint: undefined, region: 'us-east-1' });
  assert.deepEqual(parseSourceUrl('s3://models/a/b/'), { bucket: 'models', prefix: 'a/b/', endpoint: undefined, region: 'us-east-1' });
});

test('each mistake is named', () => {
  const bad: Array<[string, RegExp]> = [
    ['http://bucket/x', /must start with s3:\/\//],
    ['s3://', /not a bucket name/],
    ['s3://Bad_Bucket/x', /not a bucket name/],
    ['s3://b..b/x', /not a bucket name/],
    ['s3://bucket//x', /empty segments/],
    ['s3://bucket/x?endpoint=ftp://h', /must be http:\/\/ or https:\/\//],
    ['s3://bucket/x?endpoint=nota url', /is not a URL/],
    ['s3://bucket/x?endpoint=http://u:p@h:1', /must not carry credentials/],
    ['s3://bucket/x?accessKeyId=A', /unknown source URL parameter "accessKeyId".*--credentials/],
    ['s3://bucket/x?region=Not_A_Region', /is not a region/],
    [`s3://bucket/${'x'.repeat(3000)}`, /at most 2048/],
  ];
  for (const [url, message] of bad) assert.throws(() => parseSourceUrl(url), message, url);
});
