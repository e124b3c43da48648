// An agent whose model cache's disk is too small for a model: a real agent process with its data
// dir on a 24 MiB tmpfs asked to prefetch a 40 MiB model. The pull fails with RESOURCE_EXHAUSTED
// naming the cache's path, leaves no partial bytes to keep the disk full, the agent stays up,
// and a model that fits is pulled right after.
import assert from 'node:assert/strict';
import { readdirSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { startAgent } from '../helpers/processes.js';
import { smallDisk } from '../helpers/small-disk.js';

const METADATA = { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] };

test("a model larger than the agent's disk: a clear error naming the cache, nothing partial left, the agent stays up and pulls what fits", async (t) => {
  const disk = smallDisk(t, '24m');
  const { coordinator, admin, join } = await startLeader(t);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const agent = await startAgent(t, 'small', [coordinator.address], disk, ['--join-token', join]);
  const free = () => statfsSync(disk).bavail * statfsSync(disk).bsize;
  const freeAtStart = free();

  const big = Buffer.alloc(40 * 2 ** 20, 1);
  await client.push('model', { name: 'big', format: 'onnx', sizeBytes: big.length, metadata: METADATA }, Readable.from([big]));
  await client.prefetchModel('small', 'big');
  const failed = await agent.waitFor((line) => line.msg === 'prefetch failed', 30_000);
  const cache = path.join(disk, 'small', 'cache');
  assert.match(String(failed.err), new RegExp(`the model cache at ${cache.replace(/[/.]/g, '\\$&')} is out of disk space`));
  assert.deepEqual(readdirSync(path.join(cache, 'partial')), [], 'no partial download is kept');
  assert.ok(free() > freeAtStart - 2 * 2 ** 20, `the disk is free again (${free()} of ${freeAtStart} bytes)`);
  assert.ok(agent.running, 'the agent is still running');

  const small = Buffer.alloc(2 * 2 ** 20, 2);
  const pushed = await client.push('model', { name: 'small', format: 'onnx', sizeBytes: small.length, metadata: METADATA }, Readable.from([small]));
  await client.prefetchModel('small', 'small');
  await eventually('the model that fits is cached', 30_000, async () => ((await client.getNode('small')).cache.some((c) => c.digest === pushed.digest) ? true : undefined));
});
