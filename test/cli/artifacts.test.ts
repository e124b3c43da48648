// `mlfleetctl models …` and `datasets …` as users run them, against the fake coordinator's
// in-memory registry: pushes of files and directories arrive whole and come back byte for byte,
// -o json has the stable fields, a tampered download leaves nothing behind, an interrupted pull
// resumes, Ctrl-C during a push leaves no version, bad refs are bad usage. Plus the SDK's push
// finding the leader before it reads a byte, parseRef, and the progress bar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseRef, formatRef } from '../../shared/artifact-ref.js';
import { CoordinatorClient, inChunks } from '../../shared/client.js';
import { InvalidArgumentError } from '../../shared/errors.js';
import { progressBar } from '../../scripts/cli/progress.js';
import type { FakeCoordinator } from '../helpers/fake-coordinator.js';
import { startLeader } from '../helpers/coordinator.js';
import { CLI, coordinator, mlfleetctl, tempHome, type TestContext } from '../helpers/mlfleetctl.js';

const MiB = 1024 * 1024;

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlfleet-artifacts-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Bytes that differ at every offset (a repeated pattern would hide a misplaced chunk). */
function content(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(String(seed)).digest();
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Every directory and file under `dir`, with the files' contents, by relative path. */
async function tree(dir: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    const absolute = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      out[`${relative}/`] = 'dir';
      Object.assign(out, await tree(absolute, relative));
    } else {
      out[relative] = sha256(await readFile(absolute));
    }
  }
  return out;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** A SavedModel-shaped directory: nested folders, an empty one, a file over one push chunk. */
async function savedModel(root: string): Promise<string> {
  const dir = path.join(root, 'resnet-savedmodel');
  await mkdir(path.join(dir, 'variables'), { recursive: true });
  await mkdir(path.join(dir, 'assets'));
  await writeFile(path.join(dir, 'saved_model.pb'), content(3000, 1));
  await writeFile(path.join(dir, 'variables', 'variables.data-00000-of-00001'), content(2 * MiB + 123, 2));
  await writeFile(path.join(dir, 'variables', 'variables.index'), content(700, 3));
  return dir;
}

function cli(fake: FakeCoordinator) {
  return ['--coordinator', fake.address];
}

// ---- parseRef ----------------------------------------------------------------------------

test('parseRef reads name, name:version and name@alias', () => {
  assert.deepEqual(parseRef('resnet'), { name: 'resnet' });
  assert.deepEqual(parseRef('resnet:3'), { name: 'resnet', version: 3 });
  assert.deepEqual(parseRef('resnet-50.v2_int8@production'), { name: 'resnet-50.v2_int8', alias: 'production' });
  assert.equal(formatRef(parseRef('bert@canary')), 'bert@canary');
  assert.equal(formatRef(parseRef('bert:12')), 'bert:12');
});

test('parseRef refuses paths, bad names and bad versions with a message that says the rule', () => {
  const cases: [string, RegExp][] = [
    ['a/b', /name "a\/b" is not valid: use lowercase letters/],
    ['../x', /name "\.\.\/x" is not valid/],
    ['a..b', /is not valid/],
    ['', /name "" is not valid/],
    ['Resnet', /is not valid/],
    ['-resnet', /is not valid/],
    ['x'.repeat(101), /is not valid/],
    ['resnet:0', /positive whole number/],
    ['resnet:-1', /positive whole number/],
    ['resnet:1.5', /positive whole number/],
    ['resnet:', /positive whole number/],
    ['resnet@', /alias "" is not valid/],
    ['resnet@Prod', /alias "Prod" is not valid/],
    ['resnet@a/b', /alias "a\/b" is not valid/],
  ];
  for (const [ref, message] of cases) {
    assert.throws(() => parseRef(ref), (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message), ref);
  }
  assert.deepEqual(parseRef('x'.repeat(100)), { name: 'x'.repeat(100) });
});

// ---- push --------------------------------------------------------------------------------

test('models push uploads a file whole, infers its format from the extension and prints the version', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  const bytes = content(3 * MiB + 17, 7);
  const file = path.join(dir, 'resnet.onnx');
  await writeFile(file, bytes);

  const run = await mlfleetctl(t, [
    ...cli(leader), 'models', 'push', 'resnet', file,
    '--type', 'classification', '--input-format', 'image', '--output-format', 'tensor', '--accuracy', '97.8%', '--meta', 'team=vision', '--meta', 'arch=resnet50',
  ]);

  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, `pushed resnet:1 (${sha256(bytes)}, 3MiB)\n`);
  assert.equal(run.stderr, '', 'no progress bar when stderr is not a terminal');
  assert.deepEqual(leader.content('model', 'resnet', 1), bytes);
  const [push] = leader.pushes;
  assert.equal(push?.outcome, 'stored');
  assert.equal(push?.header?.format, 'onnx');
  assert.equal(push?.header?.directory, false);
  assert.equal(push?.header?.sizeBytes, bytes.length);
  assert.deepEqual(push?.header?.metadata, {
    type: 'classification',
    inputFormat: 'image',
    outputFormat: 'tensor',
    accuracy: 0.978,
    labels: { team: 'vision', arch: 'resnet50' },
    sourceJob: '',
    sourceDatasets: [],
  });
  // The leader was asked first (a cheap GetArtifact), then sent the upload.
  assert.deepEqual(
    leader.calls.map((c) => c.method),
    ['ModelService.GetArtifact', 'ModelService.Push'],
  );
});

test('models push -o json prints the version with its stable fields', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  const file = path.join(dir, 'weights.safetensors');
  await writeFile(file, content(1000, 8));

  const first = await mlfleetctl(t, [...cli(leader), 'models', 'push', 'bert', file, '-o', 'json']);
  const second = await mlfleetctl(t, [...cli(leader), 'models', 'push', 'bert', file, '--format', 'other', '--meta', 'k=v=w', '-o', 'json']);

  assert.equal(first.code, 0, first.stderr);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(first.stderr, '');
  const version = JSON.parse(second.stdout) as { createdAt: string };
  assert.match(version.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(version, {
    name: 'bert',
    version: 2,
    digest: sha256(content(1000, 8)),
    sizeBytes: 1000,
    format: 'other',
    directory: false,
    createdAt: version.createdAt,
    metadata: { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: { k: 'v=w' }, sourceJob: '', sourceDatasets: [] },
  });
  assert.equal((JSON.parse(first.stdout) as { format: string }).format, 'safetensors');
});

test('a directory is pushed as a tar with its digest declared, and pulled back as the same tree', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  const source = await savedModel(dir);

  const push = await mlfleetctl(t, [...cli(leader), 'models', 'push', 'resnet', source, '-o', 'json']);
  assert.equal(push.code, 0, push.stderr);
  const version = JSON.parse(push.stdout) as { digest: string; format: string; directory: boolean; sizeBytes: number };
  assert.equal(version.format, 'tensorflow-savedmodel');
  assert.equal(version.directory, true);
  const stored = leader.content('model', 'resnet', 1)!;
  assert.equal(leader.pushes[0]?.header?.digest, sha256(stored), 'the digest of the counting pass is declared');
  assert.equal(version.sizeBytes, stored.length);

  const dest = path.join(dir, 'pulled');
  const pull = await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet', dest]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stdout, new RegExp(`^pulled resnet:1 \\(${version.digest}, .*\\) to ${dest}\\n$`));
  assert.deepEqual(await tree(dest), await tree(source));
  assert.equal(await exists(`${dest}.partial`), false);
  assert.equal(await exists(`${dest}.unpacking`), false);

  // An existing empty directory is fine; a non-empty one is refused before any download.
  const empty = path.join(dir, 'empty');
  await mkdir(empty);
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet:1', empty])).code, 0);
  assert.deepEqual(await tree(empty), await tree(source));
  const downloads = leader.callsTo('ModelService.Download').length;
  const again = await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet', dest]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /is not empty; pull resnet:1 \(a directory\) to a new or empty directory/);
  assert.equal(leader.callsTo('ModelService.Download').length, downloads);
});

test('a file is pulled byte for byte, to DEST or into a directory DEST as NAME-vVERSION.EXT', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  const bytes = content(2 * MiB + 5, 9);
  await writeFile(path.join(dir, 'model.onnx'), bytes);
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'push', 'resnet', path.join(dir, 'model.onnx')])).code, 0);
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'alias', 'resnet', 'production', '1'])).code, 0);

  const dest = path.join(dir, 'copy.onnx');
  const run = await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet@production', dest, '-o', 'json']);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(await readFile(dest), bytes);
  assert.equal((JSON.parse(run.stdout) as { path: string }).path, dest);
  // The content was fetched by the digest the ref resolved to, from byte 0.
  assert.deepEqual(leader.callsTo('ModelService.Download')[0]?.request, { ref: '', digest: sha256(bytes), offset: 0, tenant: '' });

  const into = path.join(dir, 'models');
  await mkdir(into);
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet', into])).code, 0);
  assert.deepEqual(await readFile(path.join(into, 'resnet-v1.onnx')), bytes);

  const taken = await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet', dest]);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /already exists; remove it or pull to another path/);
});

test('a tampered download fails with exit 1 and leaves nothing at DEST', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  await writeFile(path.join(dir, 'model.onnx'), content(300_000, 10));
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'push', 'resnet', path.join(dir, 'model.onnx')])).code, 0);
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'push', 'tree', await savedModel(dir)])).code, 0);
  leader.corruptDownloads = true;

  for (const [ref, dest] of [
    ['resnet', path.join(dir, 'out.onnx')],
    ['tree', path.join(dir, 'out-tree')],
  ] as const) {
    const run = await mlfleetctl(t, [...cli(leader), 'models', 'pull', ref, dest]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`^mlfleetctl: the content of ${ref}:1 does not match its digest \\(expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}\\); nothing was written to ${dest}`));
    assert.equal(run.stdout, '');
    assert.equal(await exists(dest), false, `${dest} must not exist`);
    assert.equal(await exists(`${dest}.partial`), false);
  }
});

test('a pull resumes from DEST.partial, and starts over when the partial holds other content', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  const bytes = content(1 * MiB + 999, 11);
  await writeFile(path.join(dir, 'model.onnx'), bytes);
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'push', 'resnet', path.join(dir, 'model.onnx')])).code, 0);

  const dest = path.join(dir, 'resumed.onnx');
  await writeFile(`${dest}.partial`, bytes.subarray(0, 400_000));
  const resumed = await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet', dest]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /resumed at 390\.6KiB/);
  assert.deepEqual(await readFile(dest), bytes);
  assert.equal(await exists(`${dest}.partial`), false);
  assert.deepEqual(
    leader.callsTo('ModelService.Download').map((c) => (c.request as { offset: number }).offset),
    [400_000],
  );

  // A partial from another version: the hash gives it away, and the pull starts over.
  const other = path.join(dir, 'other.onnx');
  await writeFile(`${other}.partial`, content(1000, 99));
  const restarted = await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet', other]);
  assert.equal(restarted.code, 0, restarted.stderr);
  assert.deepEqual(await readFile(other), bytes);
  assert.deepEqual(
    leader.callsTo('ModelService.Download').map((c) => (c.request as { offset: number }).offset),
    [400_000, 1000, 0],
  );
});

test('bad refs and names are bad usage (exit 2) and never reach the coordinator', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  await writeFile(path.join(dir, 'm.onnx'), 'x');
  const cases = [
    ['models', 'pull', 'a/b', path.join(dir, 'out')],
    ['models', 'pull', '../x', path.join(dir, 'out')],
    ['models', 'show', 'a/b'],
    ['models', 'show', 'resnet:zero'],
    ['models', 'push', 'A/b', path.join(dir, 'm.onnx')],
    ['models', 'push', '../x', path.join(dir, 'm.onnx')],
    ['models', 'push', 'resnet', path.join(dir, 'm.onnx'), '--format', 'pickle'],
    ['models', 'push', 'resnet', path.join(dir, 'm.onnx'), '--accuracy', '1.5'],
    ['models', 'push', 'resnet', path.join(dir, 'm.onnx'), '--meta', 'novalue'],
    ['models', 'rm', 'resnet'],
    ['models', 'rm', 'resnet@production'],
    ['models', 'alias', 'resnet', 'Prod', '1'],
    ['models', 'alias', 'resnet', 'prod', 'one'],
    ['datasets', 'push', 'images', path.join(dir, 'm.onnx'), '--format', 'onnx'],
    ['datasets', 'push', 'images', path.join(dir, 'm.onnx'), '--type', 'classification'],
  ];
  for (const args of cases) {
    const run = await mlfleetctl(t, [...cli(leader), ...args]);
    assert.equal(run.code, 2, `mlfleetctl ${args.join(' ')} → ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, /^mlfleetctl: /, args.join(' '));
  }
  assert.deepEqual(leader.calls, []);
});

test('show, ls, alias and rm: -o json has the stable fields; NAME:VERSION shows one version', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  await writeFile(path.join(dir, 'a.onnx'), content(100, 1));
  await writeFile(path.join(dir, 'b.onnx'), content(200, 2));
  for (const file of ['a.onnx', 'b.onnx']) {
    assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'push', 'resnet', path.join(dir, file), '--type', 'classification'])).code, 0);
  }
  const alias = await mlfleetctl(t, [...cli(leader), 'models', 'alias', 'resnet', 'production', '1']);
  assert.equal(alias.code, 0, alias.stderr);
  assert.equal(alias.stdout, 'model resnet@production now points at version 1\n');

  const show = await mlfleetctl(t, [...cli(leader), 'models', 'show', 'resnet', '-o', 'json']);
  assert.equal(show.code, 0, show.stderr);
  const artifact = JSON.parse(show.stdout) as { name: string; versions: { version: number; createdAt: string }[]; aliases: unknown };
  assert.equal(artifact.name, 'resnet');
  assert.deepEqual(artifact.aliases, { production: 1 });
  assert.deepEqual(artifact.versions[1], {
    version: 2,
    digest: sha256(content(200, 2)),
    sizeBytes: 200,
    format: 'onnx',
    directory: false,
    createdAt: artifact.versions[1]!.createdAt,
    metadata: { type: 'classification', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] },
  });
  assert.deepEqual(
    artifact.versions.map((v) => v.version),
    [1, 2],
  );

  const one = JSON.parse((await mlfleetctl(t, [...cli(leader), 'models', 'show', 'resnet@production', '-o', 'json'])).stdout) as typeof artifact;
  assert.deepEqual(
    one.versions.map((v) => v.version),
    [1],
  );
  const table = await mlfleetctl(t, [...cli(leader), 'models', 'show', 'resnet:2']);
  assert.match(table.stdout, /^Name:\s+resnet\nAliases:\s+-\nVERSION\s+FORMAT\s+SIZE\s+DIGEST/);
  assert.match(table.stdout, /\n2\s+onnx\s+200B\s+sha256:[0-9a-f]{12}\s/);
  const missing = await mlfleetctl(t, [...cli(leader), 'models', 'show', 'resnet:7']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /model "resnet" has no version 7/);

  const ls = await mlfleetctl(t, [...cli(leader), 'models', 'ls', '-o', 'json']);
  const [summary] = JSON.parse(ls.stdout) as { updatedAt: string }[];
  assert.deepEqual(summary, { name: 'resnet', latestVersion: 2, versions: 2, totalBytes: 300, aliases: { production: 1 }, updatedAt: summary!.updatedAt });
  const lsTable = await mlfleetctl(t, [...cli(leader), 'models', 'ls']);
  assert.match(lsTable.stdout, /^NAME\s+LATEST\s+VERSIONS\s+SIZE\s+ALIASES\s+UPDATED\nresnet\s+2\s+2\s+300B\s+production=1\s+\S+ ago\n$/);

  const aliased = await mlfleetctl(t, [...cli(leader), 'models', 'rm', 'resnet:1']);
  assert.equal(aliased.code, 1);
  assert.match(aliased.stderr, /aliased as production; move or remove the alias first/);
  const rm = await mlfleetctl(t, [...cli(leader), 'models', 'rm', 'resnet:2', '-o', 'json']);
  assert.equal(rm.code, 0, rm.stderr);
  assert.deepEqual(
    (JSON.parse(rm.stdout) as typeof artifact).versions.map((v) => v.version),
    [1],
  );
  assert.deepEqual(leader.callsTo('ModelService.DeleteVersion').at(-1)?.request, { name: 'resnet', version: 2, tenant: '' });
});

test('datasets use the dataset service, with their own formats', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  const bytes = Buffer.from('a,b\n1,2\n');
  await writeFile(path.join(dir, 'train.csv'), bytes);

  const push = await mlfleetctl(t, [...cli(leader), 'datasets', 'push', 'train', path.join(dir, 'train.csv'), '--meta', 'rows=1', '-o', 'json']);
  assert.equal(push.code, 0, push.stderr);
  assert.equal((JSON.parse(push.stdout) as { format: string }).format, 'csv');
  assert.deepEqual(leader.content('dataset', 'train', 1), bytes);
  assert.equal(leader.artifacts.model.size, 0);

  const dest = path.join(dir, 'copy.csv');
  assert.equal((await mlfleetctl(t, [...cli(leader), 'datasets', 'pull', 'train:1', dest])).code, 0);
  assert.deepEqual(await readFile(dest), bytes);
  const ls = await mlfleetctl(t, [...cli(leader), 'datasets', 'ls']);
  assert.match(ls.stdout, /\ntrain\s+1\s+1\s+8B\s+-\s/);
  assert.ok(leader.calls.every((c) => c.method.startsWith('DatasetService.')));
});

/** Runs mlfleetctl, sends it SIGINT once `ready()` holds, and returns how it ended. */
async function interrupted(t: TestContext, args: string[], ready: () => boolean): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: await tempHome(t) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  for (let i = 0; i < 400 && !ready(); i++) await new Promise((r) => setTimeout(r, 25));
  assert.ok(ready(), `mlfleetctl ${args.join(' ')} got going: ${stderr}`);
  child.kill('SIGINT');
  return { code: await closed, stdout, stderr };
}

test('Ctrl-C during a push cancels the upload: exit 130 and the coordinator keeps nothing', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  leader.pushChunkDelayMs = 100; // ~10 MiB/s: the 64 MiB upload is still going when Ctrl-C comes
  const dir = await tempDir(t);
  const file = path.join(dir, 'big.onnx');
  await writeFile(file, randomBytes(64 * MiB));

  const { code, stdout, stderr } = await interrupted(t, [...cli(leader), 'models', 'push', 'big', file], () => (leader.pushes[0]?.bytesReceived ?? 0) >= 2 * MiB);

  assert.equal(code, 130, stderr);
  assert.equal(stdout, '');
  assert.match(stderr, /^mlfleetctl: interrupted; the upload was cancelled and nothing was pushed\n$/);
  for (let i = 0; i < 100 && leader.pushes[0]?.outcome === 'failed' && !leader.pushes[0]?.error; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(leader.pushes[0]?.outcome, 'cancelled');
  assert.ok(leader.pushes[0]!.bytesReceived < 64 * MiB);
  assert.equal(leader.artifacts.model.size, 0);
});

test('against a real coordinator: a file and a directory go up and come back the same', async (t) => {
  const { coordinator: real, admin } = await startLeader(t as Parameters<typeof startLeader>[0]);
  const adminClient = new CoordinatorClient([real.address], { token: admin });
  t.after(() => adminClient.close());
  await adminClient.createTenant({ name: 'vision', description: '', quota: null });
  const { token } = await adminClient.createToken({ tenant: 'vision', role: 'developer', description: 'test', ttlMs: 0 });
  const dir = await tempDir(t);
  const bytes = content(MiB + 3, 21);
  await writeFile(path.join(dir, 'm.onnx'), bytes);
  const source = await savedModel(dir);
  const run = (...args: string[]) => mlfleetctl(t, ['--coordinator', real.address, '--token', token, ...args]);

  const file = await run('models', 'push', 'resnet', path.join(dir, 'm.onnx'), '-o', 'json');
  assert.equal(file.code, 0, file.stderr);
  assert.equal((JSON.parse(file.stdout) as { digest: string }).digest, sha256(bytes));
  const tree1 = await run('models', 'push', 'resnet', source);
  assert.equal(tree1.code, 0, tree1.stderr);
  assert.match(tree1.stdout, /^pushed resnet:2 \(sha256:[0-9a-f]{64}, /);

  assert.equal((await run('models', 'pull', 'resnet:1', path.join(dir, 'back.onnx'))).code, 0);
  assert.deepEqual(await readFile(path.join(dir, 'back.onnx')), bytes);
  const pulled = await run('models', 'pull', 'resnet', path.join(dir, 'back'));
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.deepEqual(await tree(path.join(dir, 'back')), await tree(source));

  const show = JSON.parse((await run('models', 'show', 'resnet', '-o', 'json')).stdout) as { versions: { format: string; directory: boolean }[] };
  assert.deepEqual(
    show.versions.map((v) => [v.format, v.directory]),
    [
      ['onnx', false],
      ['tensorflow-savedmodel', true],
    ],
  );
});

test('Ctrl-C during a pull keeps the .partial, and the next pull resumes from it', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const dir = await tempDir(t);
  const bytes = content(4 * MiB, 14);
  await writeFile(path.join(dir, 'm.onnx'), bytes);
  assert.equal((await mlfleetctl(t, [...cli(leader), 'models', 'push', 'resnet', path.join(dir, 'm.onnx')])).code, 0);
  const dest = path.join(dir, 'out.onnx');
  leader.downloadChunkDelayMs = 20; // 64 KiB every 20 ms: about 1.3 s for the whole
  const size = async () => (await stat(`${dest}.partial`).catch(() => undefined))?.size ?? 0;
  let kept = 0;
  const poll = setInterval(() => void size().then((n) => (kept = n)), 10);
  t.after(() => clearInterval(poll));

  const run = await interrupted(t, [...cli(leader), 'models', 'pull', 'resnet', dest], () => kept >= 256 * 1024);
  clearInterval(poll);

  assert.equal(run.code, 130, run.stderr);
  assert.match(run.stderr, new RegExp(`^mlfleetctl: interrupted; \\S+ of 4MiB kept in ${dest}\\.partial: run the same pull again to resume\\n$`));
  assert.equal(await exists(dest), false);
  const partial = await size();
  assert.ok(partial > 0 && partial < bytes.length, `partial holds ${partial} bytes`);

  leader.downloadChunkDelayMs = 0;
  const resumed = await mlfleetctl(t, [...cli(leader), 'models', 'pull', 'resnet', dest]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.deepEqual(await readFile(dest), bytes);
  assert.equal((leader.callsTo('ModelService.Download').at(-1)?.request as { offset: number }).offset, partial);
});

// ---- the SDK -----------------------------------------------------------------------------

test('a push through a follower finds the leader before it reads a byte of the body', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const follower = await coordinator(t, { role: 'follower', leader: leader.address });
  const client = new CoordinatorClient([follower.address]);
  t.after(() => client.close());
  const bytes = content(2 * MiB + 1, 13);
  async function* body() {
    yield bytes.subarray(0, 1000);
    yield bytes.subarray(1000);
  }
  const progress: number[] = [];

  const version = await client.push('model', { name: 'resnet', format: 'onnx', sizeBytes: bytes.length }, body(), { onProgress: (n) => progress.push(n) });

  assert.equal(version.version, 1);
  assert.deepEqual(leader.content('model', 'resnet', 1), bytes);
  // The follower only saw the question that found the leader, never the upload.
  assert.deepEqual(
    follower.calls.map((c) => c.method),
    ['ModelService.GetArtifact'],
  );
  assert.deepEqual(progress, [MiB, 2 * MiB, 2 * MiB + 1], 'the body travels in 1 MiB chunks');

  // A download through the follower is redirected the same way, and checks its length.
  const client2 = new CoordinatorClient([follower.address]);
  t.after(() => client2.close());
  const { version: sent, chunks } = await client2.download('model', { ref: 'resnet', offset: 5 });
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  assert.equal(sent.digest, sha256(bytes));
  assert.deepEqual(Buffer.concat(parts), bytes.subarray(5));
});

test('a refused push leaves no version; a bad name is refused before any call', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const client = new CoordinatorClient([leader.address]);
  t.after(() => client.close());

  await assert.rejects(
    client.push('model', { name: 'resnet', format: 'onnx', sizeBytes: 10 }, (async function* () {
      yield Buffer.alloc(4);
    })()),
    /declared 10 bytes but sent 4/,
  );
  await assert.rejects(client.push('model', { name: 'a/b', format: 'onnx', sizeBytes: 1 }, (async function* () {})()), InvalidArgumentError);
  assert.equal(leader.artifacts.model.size, 0);
  assert.equal(leader.callsTo('ModelService.Push').length, 1);
});

test('inChunks re-cuts any stream into chunks of the given size', async () => {
  async function* pieces() {
    yield Buffer.from('ab');
    yield Buffer.from('cdefg');
    yield Buffer.from('');
    yield Buffer.from('h');
  }
  const out: string[] = [];
  for await (const chunk of inChunks(pieces(), 3)) out.push(chunk.toString());
  assert.deepEqual(out, ['abc', 'def', 'gh']);
});

// ---- the progress bar --------------------------------------------------------------------

/** A stream that says it is a terminal and keeps what is drawn on it. */
function fakeTerminal(isTTY: boolean) {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      stream.text += chunk.toString();
      done();
    },
  }) as Writable & { text: string; isTTY: boolean; columns: number; cursorTo(): boolean; clearLine(): boolean; moveCursor(): boolean };
  stream.text = '';
  stream.isTTY = isTTY;
  stream.columns = 120;
  stream.cursorTo = () => true;
  stream.clearLine = () => true;
  stream.moveCursor = () => true;
  return stream;
}

test('the progress bar shows bytes, rate and ETA on a terminal, and nothing elsewhere', () => {
  let now = 0;
  const terminal = fakeTerminal(true);
  const bar = progressBar('pushing', 100 * MiB, { enabled: true, stream: terminal as unknown as NodeJS.WriteStream, now: () => now });
  now = 2000;
  bar.update(20 * MiB);
  bar.stop();
  bar.stop();
  assert.match(terminal.text, /pushing \[.*\] 20% \| 20MiB\/100MiB \| 10MiB\/s \| ETA /);

  for (const [enabled, tty] of [
    [false, true],
    [true, false],
  ] as const) {
    const quiet = fakeTerminal(tty);
    const none = progressBar('pulling', 10, { enabled, stream: quiet as unknown as NodeJS.WriteStream });
    none.update(5);
    none.stop();
    assert.equal(quiet.text, '');
  }
});
