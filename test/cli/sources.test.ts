// `mlfleetctl sources …` as users run it: the compiled CLI as a child process against a real
// coordinator and s3rver. create prints the source, ls and show the stable -o json fields (the
// credentials by name only), sync imports and prints what it imported (a version directory
// here), rm forgets it; a bad flag is exit 2, a refused spec exit 1 with the coordinator's words.
import assert from 'node:assert/strict';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from '../helpers/coordinator.js';
import { mlfleetctl, type Run } from '../helpers/mlfleetctl.js';
import { startS3, S3RVER_CREDENTIALS } from '../helpers/s3rver.js';

function ok(run: Run, what: string): string {
  assert.equal(run.code, 0, `${what}: exit ${run.code}\n${run.stderr}`);
  return run.stdout;
}

test('sources create, ls, show, sync (a version directory) and rm through mlfleetctl', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const { coordinator, admin } = await startLeader(t, { sourceCredentials: new Map([['lab', S3RVER_CREDENTIALS]]) });
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const ctl = (...args: string[]) => mlfleetctl(t, ['--coordinator', coordinator.address, ...args], { MLFLEET_TOKEN: admin });
  const from = `s3://${bucket}/runs?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1`;

  const created = JSON.parse(ok(await ctl('sources', 'create', 'lab', '--model', 'fraud', '--from', from, '--alias', 'production', '--every', '30s', '--layout', 'version-dirs', '--credentials', 'lab', '-o', 'json'), 'create'));
  assert.deepEqual(
    { name: created.name, model: created.model, url: created.url, alias: created.alias, everyMs: created.everyMs, layout: created.layout, credentials: created.credentials },
    { name: 'lab', model: 'fraud', url: from, alias: 'production', everyMs: 30_000, layout: 'version-dirs', credentials: 'lab' },
  );
  assert.ok(!JSON.stringify(created).includes(S3RVER_CREDENTIALS.secretAccessKey), 'no secret is shown');
  ok(await ctl('sources', 'sync', 'lab'), 'first sync');

  const s3c = s3.client(t);
  await s3c.send(new PutObjectCommand({ Bucket: bucket, Key: 'runs/2026-12-07/model.onnx', Body: 'weights' }));
  await s3c.send(new PutObjectCommand({ Bucket: bucket, Key: 'runs/2026-12-07/labels.txt', Body: 'a\nb\n' }));
  const waiting = JSON.parse(ok(await ctl('sources', 'sync', 'lab', '--once', '-o', 'json'), 'sync seeing it'));
  assert.deepEqual(waiting.imported, []);
  assert.deepEqual(waiting.source.waiting, ['runs/2026-12-07/']);
  const synced = ok(await ctl('sources', 'sync', 'lab', '--once'), 'sync importing');
  assert.match(synced, /imported 1 version\(s\) of fraud/);
  assert.match(synced, /runs\/2026-12-07\/\s+1\s/);
  const model = await client.getArtifact('model', 'fraud');
  assert.equal(model.versions[0]!.directory, true);
  assert.equal(model.aliases['production'], 1);

  const listed = ok(await ctl('sources', 'ls'), 'ls');
  assert.match(listed, /^NAME\s+MODEL\s+ALIAS\s+EVERY\s+STATE\s+IMPORTED/);
  assert.match(listed, /lab\s+fraud\s+production\s+30s\s+ok\s+1\s+1\s/);
  const shown = JSON.parse(ok(await ctl('sources', 'show', 'lab', '-o', 'json'), 'show'));
  assert.equal(shown.state, 'ok');
  assert.equal(shown.imported, 1);
  assert.equal(shown.lastImportedVersion, 1);
  assert.match(ok(await ctl('sources', 'show', 'lab'), 'show table'), /Credentials:\s+lab/);

  const badEvery = await ctl('sources', 'create', 'x', '--model', 'm', '--from', from, '--every', 'soon');
  assert.equal(badEvery.code, 2, badEvery.stderr);
  const refused = await ctl('sources', 'create', 'x', '--model', 'm', '--from', from, '--every', '5s');
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /at least 10s/);
  const noFrom = await ctl('sources', 'create', 'x', '--model', 'm');
  assert.equal(noFrom.code, 2);
  assert.match(noFrom.stderr, /--from/);

  ok(await ctl('sources', 'rm', 'lab'), 'rm');
  const gone = await ctl('sources', 'show', 'lab');
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /source "lab" not found/);
  assert.equal((await client.getArtifact('model', 'fraud')).versions.length, 1, 'the versions it imported stay');
});
