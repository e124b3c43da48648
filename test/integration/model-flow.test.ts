// The model store end to end, through real processes: mlfleetctl pushes a file and a
// directory to a coordinator, pulls them back byte-identical, refuses a blob tampered with on
// the coordinator's disk, and an agent prefetches a model into its cache, reports it, and keeps
// it across a restart.
import { eventually } from '../helpers/eventually.js';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { runScript, CLI } from '../helpers/mlfleetctl.js';
import { bootstrapTokens, startAgent, startCoordinator, tempDir } from '../helpers/processes.js';

function tree(dir: string, base = dir): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) Object.assign(out, tree(full, base));
    else out[path.relative(base, full)] = createHash('sha256').update(readFileSync(full)).digest('hex');
  }
  return out;
}

test('push, pull, tamper detection and the agent cache, through real processes', async (t) => {
  const dir = tempDir(t);
  const coordinator = await startCoordinator(t, 'c1', ['--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/c1`]);
  // Run as installed, the coordinator carries the heap limit its shebang names: without it, a
  // download costs a full garbage collection every few MiB (coordinator/main.ts).
  const nodeArgs = readFileSync(`/proc/${coordinator.child.pid}/cmdline`, 'utf8').split('\0');
  assert.ok(nodeArgs.includes('--initial-old-space-size=128'), nodeArgs.join(' '));
  const tokens = await bootstrapTokens([`${dir}/c1`]);
  const ctl = (...args: string[]) => runScript(t, CLI, ['--coordinator', coordinator.grpc, ...args], { MLFLEET_TOKEN: tokens.admin });

  // A file and a directory.
  const model = path.join(dir, 'model.onnx');
  writeFileSync(model, randomBytes(3 * 2 ** 20 + 17));
  const saved = path.join(dir, 'saved_model');
  mkdirSync(path.join(saved, 'variables'), { recursive: true });
  writeFileSync(path.join(saved, 'saved_model.pb'), randomBytes(5000));
  writeFileSync(path.join(saved, 'variables', 'variables.data-00000-of-00001'), randomBytes(70_000));

  const pushedFile = await ctl('-o', 'json', 'models', 'push', 'ranker', model, '--type', 'regression');
  assert.equal(pushedFile.code, 0, pushedFile.stderr);
  const fileVersion = JSON.parse(pushedFile.stdout) as { version: number; digest: string; format: string };
  assert.deepEqual([fileVersion.version, fileVersion.format], [1, 'onnx']);
  assert.equal(fileVersion.digest, `sha256:${createHash('sha256').update(readFileSync(model)).digest('hex')}`);

  const pushedDir = await ctl('-o', 'json', 'models', 'push', 'sentiment', saved);
  assert.equal(pushedDir.code, 0, pushedDir.stderr);
  const dirVersion = JSON.parse(pushedDir.stdout) as { digest: string; format: string };
  assert.equal(dirVersion.format, 'tensorflow-savedmodel');
  // The same directory pushed again has the same digest (deterministic tar).
  const again = JSON.parse((await ctl('-o', 'json', 'models', 'push', 'sentiment', saved)).stdout) as { digest: string; version: number };
  assert.deepEqual([again.version, again.digest], [2, dirVersion.digest]);

  const pulledFile = path.join(dir, 'pulled.onnx');
  assert.equal((await ctl('models', 'pull', 'ranker:1', pulledFile)).code, 0);
  assert.ok(readFileSync(pulledFile).equals(readFileSync(model)), 'the file comes back byte-identical');
  const pulledDir = path.join(dir, 'pulled-saved-model');
  const dirPull = await ctl('models', 'pull', 'sentiment', pulledDir);
  assert.equal(dirPull.code, 0, dirPull.stderr);
  assert.deepEqual(tree(pulledDir), tree(saved), 'the directory comes back identical');

  // Tamper with the blob on the coordinator's disk: the pull notices and leaves nothing.
  const hex = fileVersion.digest.slice('sha256:'.length);
  const blob = path.join(dir, 'c1', 'blobs', 'sha256', hex.slice(0, 2), hex);
  chmodSync(blob, 0o644);
  const bytes = readFileSync(blob);
  bytes[1000] = bytes[1000]! ^ 0xff;
  writeFileSync(blob, bytes);
  const tampered = path.join(dir, 'tampered.onnx');
  const refused = await ctl('models', 'pull', 'ranker:1', tampered);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /sha256|digest/i);
  assert.equal(existsSync(tampered), false);
  writeFileSync(blob, readFileSync(model));

  // An agent prefetches the directory model into its cache and reports it.
  const client = new CoordinatorClient([coordinator.grpc], { token: tokens.admin });
  t.after(() => client.close());
  const agent = await startAgent(t, 'cache-node', [coordinator.grpc], dir, ['--join-token-file', tokens.joinFile, '--cache-max-bytes', '1Gi']);
  // The agent, as installed, caps its young generation (agent/main.ts): its memory during a pull.
  assert.ok(readFileSync(`/proc/${agent.child.pid}/cmdline`, 'utf8').split('\0').includes('--max-semi-space-size=4'));
  await eventually('the agent to register', 10_000, async () => ((await client.listNodes({ status: 'ready' })).nodes.length === 1 ? true : undefined));
  const prefetch = await ctl('nodes', 'prefetch', 'cache-node', 'sentiment@latest');
  assert.equal(prefetch.code, 1, 'an alias that does not exist yet');
  assert.match(prefetch.stderr, /has no alias "latest"/);
  assert.equal((await ctl('models', 'alias', 'sentiment', 'latest', '2')).code, 0);
  const warmed = await ctl('nodes', 'prefetch', 'cache-node', 'sentiment@latest');
  assert.equal(warmed.code, 0, warmed.stderr);
  const reported = await eventually('the cache report', 15_000, async () => {
    const node = await client.getNode('cache-node');
    return node.cache.find((e) => e.digest === dirVersion.digest);
  });
  assert.equal(reported.inUse, false);
  const cached = path.join(dir, 'cache-node', 'cache', 'blobs', dirVersion.digest.slice('sha256:'.length));
  assert.deepEqual(tree(cached), tree(saved), 'the cache holds the unpacked directory');

  // Restarted, the agent still has it and says so in its hello.
  await agent.kill('SIGTERM');
  await startAgent(t, 'cache-node', [coordinator.grpc], dir);
  await eventually('the cache to be reported after the restart', 15_000, async () => {
    const node = await client.getNode('cache-node');
    return node.status === 'ready' && node.cache.some((e) => e.digest === dirVersion.digest) ? true : undefined;
  });
});
