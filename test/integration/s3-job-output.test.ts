// A job's output pushed by an agent (agent/job-output.ts, the same pushResumable as the CLI) to
// a leader whose blob store is an S3 bucket goes straight to the bucket: the part is a direct
// upload, verified and recorded as the job's part, and the output dataset made from it; the
// leader's scratch (tmp/) is empty afterwards and the agent's upload state is gone.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { coordinatorOutputPusher } from '../../agent/job-output.js';
import type { Job } from '../../shared/proto.js';
import { eventually, until } from '../helpers/eventually.js';
import { tempDir } from '../helpers/processes.js';
import { keysIn, startS3 } from '../helpers/s3rver.js';
import { request } from 'undici';
import { startLeader } from '../helpers/coordinator.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { WorkloadApi } from '../helpers/workload-api.js';
import { CoordinatorClient } from '../../shared/client.js';

async function coordinatorBlobBytes(httpAddress: string): Promise<number> {
  const text = await (await request(`http://${httpAddress}/metrics`)).body.text();
  const lines = text.split('\n').filter((line) => /^mlfleet_coordinator_(blob_sent|upload_received)_bytes_total[ {]/.test(line));
  assert.ok(lines.length >= 2, `both counters are exported: ${lines.join('; ')}`);
  return lines.reduce((total, line) => total + Number(line.split(' ').at(-1)), 0);
}

test("an agent's job output goes straight to the bucket and becomes the job's output dataset", async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const { coordinator, admin, join } = await startLeader(t, { blobStore: s3.spec(bucket), workloads: { tickMs: 100 } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => {
    api.close();
    client.close();
  });
  // The agent keeps its upload state here (pushResumable's default follows XDG_CACHE_HOME).
  const cache = tempDir(t, 'cache');
  const before = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = cache;
  t.after(() => (before === undefined ? delete process.env.XDG_CACHE_HOME : (process.env.XDG_CACHE_HOME = before)));

  const raw = Buffer.from('id,text\n0,a\n');
  await client.push('dataset', { name: 'raw', format: 'csv', sizeBytes: raw.length }, Readable.from([raw]));
  const a = await FakeAgent.start(t, 'node-a', coordinator.address, join, { cpuMillis: 1000 });
  await api.call<Job>('JobService', 'RunJob', {
    spec: { name: 'clean', image: 'mlfleet/runtime:0.1.0', command: ['node', 'part.js'], workers: 1, datasets: ['raw'], partitions: 1, outputDataset: 'cleaned', resources: { cpuMillis: 400 } },
  });
  await until('the partition placed', () => a.desired.length === 1);
  const allocation = a.desired[0]!;
  a.report({ id: allocation.id, state: 'running' });

  const output = tempDir(t, 'output');
  await mkdir(path.join(output, 'nested'), { recursive: true });
  await writeFile(path.join(output, 'part-0.csv'), 'id,text\n0,A\n');
  // Past one part, so that the tar goes as several parts of the bucket's multipart upload.
  await writeFile(path.join(output, 'nested', 'big.bin'), Buffer.alloc(9 * 1024 * 1024, 7));
  const pushed = await coordinatorOutputPusher({ leader: () => coordinator.address, token: () => a.credential, credentials: grpc.credentials.createInsecure() })(
    { allocationId: allocation.id, dir: output, dataset: 'cleaned' },
    new AbortController().signal,
  );
  assert.equal(pushed, 0, 'a part, not a version');
  const keys = await keysIn(s3.client(t), bucket);
  assert.deepEqual(keys.filter((k) => k.startsWith('tmp/')), [], keys.join(', '));
  assert.equal(keys.filter((k) => k.startsWith('sha256/')).length, 2, `the raw dataset and the part: ${keys.join(', ')}`);
  const stateDir = path.join(cache, 'mlfleet', 'uploads');
  assert.ok(!existsSync(stateDir) || readdirSync(stateDir).length === 0, 'the finished push left no upload state');
  assert.equal(await coordinatorBlobBytes(coordinator.httpAddress), 0, 'no byte of the output passed through the coordinator');

  a.report({ id: allocation.id, state: 'completed' });
  const done = await eventually('the job to end', 10_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'clean' });
    return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
  });
  assert.equal(done.status, 'succeeded', done.message);
  assert.equal(done.outputDataset, 'cleaned:1');
});
