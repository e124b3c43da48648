// The leader's BlobLocation in the piece fetcher's terms.
import assert from 'node:assert/strict';
import test from 'node:test';
import { toLocation } from '../../../agent/delivery/locator.js';
import type { BlobLocation } from '../../../shared/proto.js';

test('toLocation keeps the manifest, rank and grant, and leaves out sources of unknown kinds or without a URL', () => {
  const answer: BlobLocation = {
    version: null,
    digest: `sha256:${'a'.repeat(64)}`,
    sizeBytes: 3 * 1024 * 1024,
    pieceBytes: 8 * 1024 * 1024,
    pieceHashes: Buffer.alloc(32, 7),
    sources: [
      { kind: 'peer', url: 'http://10.0.0.2:7780/v1/blobs/x', node: 'b', complete: false, expiresAtMs: 0, fetcherRank: 0 },
      { kind: 'carrier-pigeon', url: 'http://x', node: '', complete: false, expiresAtMs: 0, fetcherRank: 0 },
      { kind: 's3', url: '', node: '', complete: false, expiresAtMs: 0, fetcherRank: 0 },
      { kind: 'coordinator', url: 'https://c:7701/v1/blobs/x', node: '', complete: false, expiresAtMs: 0, fetcherRank: 0 },
    ],
    grant: 'g',
    grantExpiresAtMs: 5,
    rank: 1,
    fetchers: 3,
    refreshAtMs: 1234,
  };
  const location = toLocation(answer);
  assert.deepEqual(location.sources, [
    { kind: 'peer', url: 'http://10.0.0.2:7780/v1/blobs/x', node: 'b', complete: false },
    { kind: 'coordinator', url: 'https://c:7701/v1/blobs/x', node: undefined, complete: false },
  ]);
  assert.equal(location.rank, 1);
  assert.equal(location.fetchers, 3);
  assert.equal(location.grant, 'g');
  assert.equal(location.refreshAtMs, 1234);
  assert.equal(location.pieceHashes.length, 32);
});
