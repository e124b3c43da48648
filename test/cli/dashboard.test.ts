// `mlfleetctl dashboard` as users run it: the link carries the CLI's token (flag, environment
// or token file) in its fragment, on the coordinator's HTTP address (--url, or the first
// --coordinator's host on port 7701); no token or a bad URL is an error and prints no link.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { homeWithToken, mlfleetctl } from '../helpers/mlfleetctl.js';

test('dashboard prints the link with the token in its fragment', async (t) => {
  const fromFile = await mlfleetctl(t, ['dashboard', '--coordinator', '10.1.2.3:7700'], { HOME: await homeWithToken(t, 'mlf_file/token+1') });
  assert.equal(fromFile.code, 0, fromFile.stderr);
  assert.equal(fromFile.stdout.split('\n')[0], 'http://10.1.2.3:7701/#token=mlf_file%2Ftoken%2B1');

  const json = await mlfleetctl(t, ['dashboard', '-o', 'json', '--url', 'https://coord.example:8443/'], { MLFLEET_TOKEN: 'tok-env' });
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), { url: 'https://coord.example:8443/#token=tok-env' });

  const env = await mlfleetctl(t, ['dashboard', '-o', 'json', '--token', 'tok-flag'], { MLFLEET_DASHBOARD_URL: 'http://[::1]:9000' });
  assert.deepEqual(JSON.parse(env.stdout), { url: 'http://[::1]:9000/#token=tok-flag' });
});

test('dashboard without a token or with a bad URL fails and prints no link', async (t) => {
  const none = await mlfleetctl(t, ['dashboard']);
  assert.equal(none.code, 1);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /no token/);

  const bad = await mlfleetctl(t, ['dashboard', '--url', 'ftp://x/'], { MLFLEET_TOKEN: 't' });
  assert.equal(bad.code, 2);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /not an http\(s\) URL/);
  const garbage = await mlfleetctl(t, ['dashboard', '--url', 'not a url'], { MLFLEET_TOKEN: 't' });
  assert.equal(garbage.code, 2);
  assert.match(garbage.stderr, /not a URL/);
});
