// --source-credentials: a file others may read is refused, a malformed one is named by path
// only (never echoing a value, which may be a secret), a good one loads.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { credentialFor, loadSourceCredentials } from '../../coordinator/sources/source-credentials.js';
import { tempDir } from '../helpers/processes.js';

test('named credentials load from a 0600 JSON file; anything else is refused with what to fix', (t) => {
  const dir = tempDir(t);
  const file = (name: string, content: string, mode = 0o600) => {
    const p = path.join(dir, name);
    writeFileSync(p, content, { mode });
    return p;
  };
  const good = loadSourceCredentials(file('good.json', JSON.stringify({ lab: { accessKeyId: 'AK', secretAccessKey: 'SK' }, prod: { accessKeyId: 'A2', secretAccessKey: 'S2', sessionToken: 'T' } })));
  assert.deepEqual(good.get('lab'), { accessKeyId: 'AK', secretAccessKey: 'SK' });
  assert.equal(good.get('prod')?.sessionToken, 'T');
  const scoped = loadSourceCredentials(file('scoped.json', JSON.stringify({ team: { accessKeyId: 'AK', secretAccessKey: 'SK', tenants: ['acme'] } })));
  assert.ok('credential' in credentialFor(scoped, 'team', 'acme'));
  assert.match((credentialFor(scoped, 'team', 'other') as { refusal: string }).refusal, /not known to the coordinator for tenant "other"/);
  assert.ok('credential' in credentialFor(good, 'lab', 'any-tenant'), 'without "tenants": every tenant');
  assert.throws(() => loadSourceCredentials(file('open.json', '{}', 0o644)), /may be read by others \(mode 644\); chmod 600 it/);
  assert.throws(() => loadSourceCredentials(path.join(dir, 'missing.json')), /cannot read/);
  assert.throws(() => loadSourceCredentials(file('text.json', 'not json')), /is not JSON/);
  const secret = 'VERY-SECRET-VALUE';
  assert.throws(
    () => loadSourceCredentials(file('shape.json', JSON.stringify({ lab: { accessKeyId: 'AK', secret } }))),
    (err: Error) => /lab\.secretAccessKey: Required/.test(err.message) && !err.message.includes(secret),
  );
});
