// Jobs over partitioned data, inside a real coordinator with scripted agents: partitions are
// placed one by one as capacity allows and each knows its index; a failed partition is retried
// on its own, the others keeping their result; every partition's /output is
// stored as a part, and once all exited 0 the leader makes the output dataset from their union
// (a path two partitions wrote fails the job, as does nothing written); a repeated push from
// one allocation (an agent that restarted) makes nothing new, for parts and for output models;
// bad requests are refused up front with nothing started.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { coordinatorOutputPusher } from '../../agent/job-output.js';
import { jobDetailView } from '../../scripts/cli/views/jobs.js';
import { NAME_RULE } from '../../shared/artifact-ref.js';
import { setBearer } from '../../shared/auth.js';
import { fromGrpcError } from '../../shared/errors.js';
import { mlfleetV1, type Allocation, type ArtifactVersion, type Job } from '../../shared/proto.js';
import { packDirectory, unpackTar } from '../../shared/tar.js';
import { parseWorkloadFile, type WorkloadFileError } from '../../shared/workload-spec.js';
import { taskEnvironment } from '../../shared/workloads.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually, until } from '../helpers/eventually.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { CLI, runScript } from '../helpers/mlfleetctl.js';
import { tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';
import { workloadCluster, type WorkloadCluster } from '../helpers/workload-cluster.js';

type Cluster = WorkloadCluster;
const cluster = (t: TestContext) => workloadCluster(t);

const getJob = (c: Cluster, name: string) => c.api.call<Job>('JobService', 'GetJob', { name });
const runJob = (c: Cluster, spec: Record<string, unknown>) => c.api.call<Job>('JobService', 'RunJob', { spec: { image: 'mlfleet/runtime:0.1.0', command: ['node', 'part.js'], workers: 1, ...spec } });

function ended(c: Cluster, name: string): Promise<Job> {
  return eventually(`job ${name} ended`, 10_000, async () => {
    const j = await getJob(c, name);
    return ['succeeded', 'failed', 'cancelled'].includes(j.status) ? j : undefined;
  });
}

/** Every allocation of the job on these agents, by partition. */
function partitionsOf(agents: FakeAgent[], job: string): Array<{ agent: FakeAgent; allocation: Allocation; partition: number }> {
  return agents
    .flatMap((agent) => agent.desired.filter((a) => a.workload === job).map((allocation) => ({ agent, allocation, partition: agent.run(allocation).rank })))
    .sort((x, y) => x.partition - y.partition);
}

/** A directory holding `files` (relative path → content). */
async function outputDir(t: TestContext, files: Record<string, string>): Promise<string> {
  const dir = tempDir(t, 'output');
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  return dir;
}

/** What the agent's reconciler does once a partition exited 0: push its /output as a part. */
function pushPart(address: string, agent: FakeAgent, allocationId: string, dir: string, dataset: string): Promise<number> {
  return coordinatorOutputPusher({ leader: () => address, token: () => agent.credential, credentials: grpc.credentials.createInsecure() })(
    { allocationId, dir, dataset },
    new AbortController().signal,
  );
}

/** A push with the agent's node credential (as agent/job-output.ts sends it), answered with what the coordinator made of it. */
async function rawPush(c: Cluster, agent: FakeAgent, kind: 'model' | 'dataset', allocationId: string, name: string, body: Buffer, directory: boolean): Promise<ArtifactVersion> {
  const client = new (kind === 'model' ? mlfleetV1().ModelService : mlfleetV1().DatasetService)(c.address, grpc.credentials.createInsecure());
  try {
    return await new Promise<ArtifactVersion>((resolve, reject) => {
      const call = client.push(setBearer(new grpc.Metadata(), agent.credential), (err, value) => (err ? reject(fromGrpcError(err)) : resolve(value as ArtifactVersion)));
      call.write({ header: { name, format: 'other', directory, sizeBytes: body.length, jobAllocation: allocationId } });
      call.write({ chunk: body });
      call.end();
    });
  } finally {
    client.close();
  }
}

async function tarOf(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of packDirectory(dir) as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Every file under `dir`, relative path → content. */
async function filesIn(dir: string, relative = ''): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(path.join(dir, relative), { withFileTypes: true })) {
    const child = relative ? `${relative}/${entry.name}` : entry.name;
    if (entry.isDirectory()) Object.assign(files, await filesIn(dir, child));
    else files[child] = await readFile(path.join(dir, child), 'utf8');
  }
  return files;
}

function blobPath(c: Cluster, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return path.join(c.dir, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

test('partitions are placed one by one as capacity allows, each told its index; the job runs while one waits and succeeds when all exited 0', async (t) => {
  const c = await cluster(t);
  // Room for two partitions of 400m, not three.
  const a = await c.agent('node-a', { cpuMillis: 1000 });
  const created = await runJob(c, { name: 'scan', partitions: 3, resources: { cpuMillis: 400 } });
  assert.equal(created.spec?.partitions, 3);
  await until('two partitions placed', () => a.desired.length === 2);
  const job = await eventually('running, one partition waiting', 5_000, async () => {
    const j = await getJob(c, 'scan');
    return j.status === 'running' && /^0 of 3 partitions exited 0; 2 placed; 1 wait for capacity: /.test(j.message) ? j : undefined;
  });
  assert.equal(job.allocations.length, 2);
  const table = jobDetailView(job).table();
  assert.match(table, /Partitions:\s+3: 2 pending, 1 waiting to be placed/);
  assert.match(table, /waiting for capacity|wait for capacity/);

  for (const allocation of a.desired) {
    const run = a.run(allocation);
    assert.equal(allocation.hostPort, 0, 'partitions are not a gang: no peer port');
    assert.deepEqual(run.peers, []);
    const env = taskEnvironment(allocation.id, run, { model: undefined, datasets: {}, port: 0 });
    assert.equal(env.MLFLEET_PARTITION, String(run.rank));
    assert.equal(env.MLFLEET_PARTITIONS, '3');
    assert.equal(env.MLFLEET_RANK, String(run.rank));
    assert.equal(env.MLFLEET_WORLD_SIZE, '3');
    assert.equal(env.MLFLEET_PEERS, undefined);
  }

  // One partition finishes; the third gets its place.
  const first = a.desired[0]!;
  a.report({ id: first.id, state: 'completed' });
  await until('the waiting partition placed', () => a.desired.some((x) => !job.allocations.some((y) => y.id === x.id)));
  assert.deepEqual(partitionsOf([a], 'scan').map((p) => p.partition), [0, 1, 2], 'every partition, once');
  a.reportAll('completed');
  const done = await ended(c, 'scan');
  assert.equal(done.status, 'succeeded', done.message);
  assert.equal(done.message, '3 partitions exited 0');
  assert.equal(done.attempts, 1);
  assert.deepEqual(done.allocations.map((x) => x.rank), [0, 1, 2]);
  const events = await c.api.events('job/scan');
  assert.ok(events.some((e) => e.type === 'Started' && /2 of 3 partitions placed/.test(e.message)), events.map((e) => `${e.type}: ${e.message}`).join('\n'));
});

test('a failing partition is retried on its own: the others ran once and keep their result, the retry is told its attempt, and the output dataset is the union', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  await runJob(c, { name: 'flaky', partitions: 3, outputDataset: 'merged', maxRetries: 1, retryBackoffMs: 100 });
  await until('all three placed', () => partitionsOf([a], 'flaky').length === 3);
  const [p0, p1, p2] = partitionsOf([a], 'flaky');
  const env = (allocation: Allocation) => taskEnvironment(allocation.id, a.run(allocation), { model: undefined, datasets: {}, port: 0 });
  assert.deepEqual([p0, p1, p2].map((p) => env(p!.allocation).MLFLEET_ATTEMPT), ['1', '1', '1']);
  for (const p of [p0, p1, p2]) a.report({ id: p!.allocation.id, state: 'running' });
  await eventually('running', 5_000, async () => ((await getJob(c, 'flaky')).allocations.every((x) => x.status === 'running') ? true : undefined));
  const kept = [
    await rawPush(c, a, 'dataset', p0!.allocation.id, 'merged', await tarOf(await outputDir(t, { 'part-0.csv': '0\n' })), true),
    await rawPush(c, a, 'dataset', p2!.allocation.id, 'merged', await tarOf(await outputDir(t, { 'part-2.csv': '2\n' })), true),
  ];
  // Partition 1 stores a part and then fails (its agent lost it before it could say completed): that part is not used.
  const lost = await rawPush(c, a, 'dataset', p1!.allocation.id, 'merged', await tarOf(await outputDir(t, { 'stale.csv': 'from the failed attempt' })), true);
  a.report({ id: p0!.allocation.id, state: 'completed' }, { id: p1!.allocation.id, state: 'failed', reason: 'exited with code 3', exitCode: 3 });

  const first = new Set([p0, p1, p2].map((p) => p!.allocation.id));
  await until('partition 1 placed again', () => a.desired.some((x) => !first.has(x.id)), 10_000);
  const retry = a.desired.find((x) => !first.has(x.id))!;
  assert.equal(a.run(retry).rank, 1);
  assert.equal(env(retry).MLFLEET_ATTEMPT, '2', "the partition's own attempt");
  assert.ok(a.desired.some((x) => x.id === p2!.allocation.id), 'partition 2 kept running');
  const retried = await getJob(c, 'flaky');
  assert.equal(retried.status, 'running');
  assert.equal(retried.attempts, 2, 'the most attempts any partition took');
  assert.deepEqual(retried.allocations.map((x) => [x.rank, x.attempt, x.id]), [[0, 1, p0!.allocation.id], [1, 2, retry.id], [2, 1, p2!.allocation.id]]);
  assert.ok((await c.api.events('job/flaky')).some((e) => e.type === 'Retrying' && e.message === 'partition 1 failed in its attempt 1 (exited with code 3); retrying it in 100ms'));
  await until("the failed attempt's part is deleted", () => !existsSync(blobPath(c, lost.digest)));
  for (const part of kept) assert.ok(existsSync(blobPath(c, part.digest)), "the completed partitions' parts are kept for the dataset");

  a.report({ id: p2!.allocation.id, state: 'completed' }, { id: retry.id, state: 'running' });
  const running = await eventually('the retry running', 5_000, async () => {
    const j = await getJob(c, 'flaky');
    return j.allocations.find((x) => x.rank === 1)?.status === 'running' ? j : undefined;
  });
  assert.equal(running.message, '2 of 3 partitions exited 0; 1 placed (1 of them retries)', 'where the partitions stand now, not the retry decided earlier');
  await pushPart(c.address, a, retry.id, await outputDir(t, { 'part-1.csv': '1\n' }), 'merged');
  a.report({ id: retry.id, state: 'completed' });
  const done = await ended(c, 'flaky');
  assert.equal(done.status, 'succeeded', done.message);
  assert.equal(done.outputDataset, 'merged:1');
  assert.equal(done.attempts, 2);
  const all = await c.api.call<{ allocations: Array<{ rank: number; attempt: number }> }>('AllocationService', 'ListAllocations', { all: true, workload: 'job/flaky' });
  assert.deepEqual(all.allocations.map((x) => `${x.rank}#${x.attempt}`).sort(), ['0#1', '1#1', '1#2', '2#1'], 'partitions 0 and 2 ran once, partition 1 twice');
  const pulled = tempDir(t, 'pulled');
  const download = await c.client.download('dataset', { ref: 'merged:1' });
  await unpackTar(Readable.from(download.chunks), path.join(pulled, 'merged'));
  assert.deepEqual(await filesIn(path.join(pulled, 'merged')), { 'part-0.csv': '0\n', 'part-1.csv': '1\n', 'part-2.csv': '2\n' });
});

test('a partition that spends its retries fails the job, naming it, its cause and its attempts; the partitions still running are stopped', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  await runJob(c, { name: 'doomed', partitions: 3, maxRetries: 1, retryBackoffMs: 100 });
  await until('all three placed', () => partitionsOf([a], 'doomed').length === 3);
  const [p0, p1, p2] = partitionsOf([a], 'doomed');
  a.report({ id: p0!.allocation.id, state: 'running' }, { id: p1!.allocation.id, state: 'failed', reason: 'exited with code 1', exitCode: 1 }, { id: p2!.allocation.id, state: 'completed' });
  const first = new Set([p0, p1, p2].map((p) => p!.allocation.id));
  await until('partition 1 placed again', () => a.desired.some((x) => !first.has(x.id)), 10_000);
  const retry = a.desired.find((x) => !first.has(x.id))!;
  a.report({ id: retry.id, state: 'failed', reason: 'exited with code 1', exitCode: 1 });
  const done = await ended(c, 'doomed');
  assert.equal(done.status, 'failed');
  assert.equal(done.message, 'partition 1 failed after 2 attempts: exited with code 1');
  assert.equal(done.attempts, 2);
  await until('the running partition stopped', () => !a.desired.some((x) => x.id === p0!.allocation.id));
  assert.ok((await c.api.events('job/doomed')).some((e) => e.type === 'Failed' && e.message === done.message));
});

test("a partitioned job's output dataset is the union of its partitions' files, with lineage; a repeated push keeps the first part; the parts go once it is made", async (t) => {
  const c = await cluster(t);
  const raw = Buffer.from('id,text\n0,a\n1,b\n2,c\n');
  await c.client.push('dataset', { name: 'raw', format: 'csv', sizeBytes: raw.length }, Readable.from([raw]));
  const a = await c.agent('node-a', { cpuMillis: 1000 });
  const b = await c.agent('node-b', { cpuMillis: 1000 });
  await runJob(c, { name: 'clean', datasets: ['raw'], partitions: 3, outputDataset: 'cleaned', resources: { cpuMillis: 400 } });
  await until('all three placed', () => partitionsOf([a, b], 'clean').length === 3);
  const partitions = partitionsOf([a, b], 'clean');
  assert.deepEqual(partitions.map((p) => p.agent.run(p.allocation).outputDataset), ['cleaned', 'cleaned', 'cleaned']);
  for (const p of partitions) p.agent.report({ id: p.allocation.id, state: 'running' });
  await eventually('running', 5_000, async () => ((await getJob(c, 'clean')).allocations.every((x) => x.status === 'running') ? true : undefined));

  const outputs = [
    await outputDir(t, { 'part-0.csv': 'id,text\n0,a\n', 'nested/0.txt': 'zero' }),
    await outputDir(t, { 'part-1.csv': 'id,text\n1,b\n', 'nested/1.txt': 'one' }),
    // A partition may have nothing to write.
    await outputDir(t, {}),
  ];
  const [p0, p1, p2] = partitions;
  // Only the partition's own node pushes for it, and only into the job's dataset, through DatasetService.
  const other = p0!.agent === a ? b : a;
  await assert.rejects(pushPart(c.address, other, p0!.allocation.id, outputs[0]!, 'cleaned'), { code: 'PERMISSION_DENIED' });
  await assert.rejects(pushPart(c.address, p0!.agent, p0!.allocation.id, outputs[0]!, 'elsewhere'), /PERMISSION_DENIED|output dataset is "cleaned"/);
  await assert.rejects(rawPush(c, p0!.agent, 'model', p0!.allocation.id, 'cleaned', Buffer.from('x'), false), { code: 'PERMISSION_DENIED', message: /the job's output is dataset "cleaned"; push it through DatasetService/ });
  await assert.rejects(rawPush(c, p0!.agent, 'dataset', p0!.allocation.id, 'cleaned', Buffer.from('x'), false), { code: 'INVALID_ARGUMENT', message: /tar of its \/output directory/ });

  const parts: ArtifactVersion[] = [];
  for (const [i, p] of [p0!, p1!, p2!].entries()) parts.push(await rawPush(c, p.agent, 'dataset', p.allocation.id, 'cleaned', await tarOf(outputs[i]!), true));
  assert.deepEqual(parts.map((v) => v.version), [0, 0, 0], 'a part is not a version');
  // The agent of partition 0 restarts before it recorded its push and pushes again — other bytes even: the first part stays.
  const again = await rawPush(c, p0!.agent, 'dataset', p0!.allocation.id, 'cleaned', await tarOf(await outputDir(t, { 'late.csv': 'x' })), true);
  assert.equal(again.digest, parts[0]!.digest);
  assert.equal(await pushPart(c.address, p1!.agent, p1!.allocation.id, outputs[1]!, 'cleaned'), 0, "the agent's own pusher sends the same tar, and gets the same answer");
  await assert.rejects(c.client.getArtifact('dataset', 'cleaned'), { code: 'NOT_FOUND' }, 'no version before every partition is done');
  for (const part of parts) assert.ok(existsSync(blobPath(c, part.digest)), 'each part is stored meanwhile');

  for (const p of partitions) p.agent.report({ id: p.allocation.id, state: 'completed' });
  const done = await ended(c, 'clean');
  assert.equal(done.status, 'succeeded', done.message);
  assert.equal(done.outputDataset, 'cleaned:1');
  assert.match(done.message, /3 partitions exited 0; its output is dataset cleaned:1/);
  assert.match(jobDetailView(done).table(), /Output dataset:\s+cleaned:1/);
  assert.deepEqual((jobDetailView(done).data as { output: unknown }).output, { dataset: 'cleaned' });

  const [version] = (await c.client.getArtifact('dataset', 'cleaned')).versions;
  assert.equal(version?.directory, true);
  assert.equal(version?.metadata?.sourceJob, 'job/clean');
  assert.deepEqual(version?.metadata?.sourceDatasets, ['raw:1']);
  assert.equal(version?.metadata?.labels['source-attempt'], '1');
  const pulled = tempDir(t, 'pulled');
  const download = await c.client.download('dataset', { ref: 'cleaned:1' });
  await unpackTar(Readable.from(download.chunks), path.join(pulled, 'cleaned'));
  assert.deepEqual(await filesIn(path.join(pulled, 'cleaned')), { 'part-0.csv': 'id,text\n0,a\n', 'part-1.csv': 'id,text\n1,b\n', 'nested/0.txt': 'zero', 'nested/1.txt': 'one' });
  await until('the parts are deleted', () => parts.every((part) => !existsSync(blobPath(c, part.digest))));
  assert.ok(!existsSync(blobPath(c, again.digest)), 'and the bytes of the repeated push never stayed');
  assert.ok(existsSync(blobPath(c, version!.digest)));
  // The job has ended: nothing more is taken from its allocations.
  await assert.rejects(pushPart(c.address, p2!.agent, p2!.allocation.id, outputs[2]!, 'cleaned'), { code: 'PERMISSION_DENIED' });
});

test('the parts recorded survive a leader change: the next leader makes the output dataset from them', async (t) => {
  const dir = tempDir(t, 'coordinator');
  const first = await startLeader(t, { dataDir: dir, workloads: { tickMs: 100 } });
  const api = new WorkloadApi(first.coordinator.address, first.admin);
  t.after(() => api.close());
  const a = await FakeAgent.start(t, 'node-a', first.coordinator.address, first.join);
  await api.call('JobService', 'RunJob', { spec: { name: 'split', image: 'i', command: ['node'], workers: 1, partitions: 2, outputDataset: 'halves' } });
  await until('placed', () => a.desired.length === 2);
  const partitions = partitionsOf([a], 'split');
  for (const p of partitions) a.report({ id: p.allocation.id, state: 'running' });
  await eventually('running', 5_000, async () => ((await api.call<Job>('JobService', 'GetJob', { name: 'split' })).allocations.every((x) => x.status === 'running') ? true : undefined));
  for (const p of partitions) await pushPart(first.coordinator.address, a, p.allocation.id, await outputDir(t, { [`half-${p.partition}.csv`]: `${p.partition}\n` }), 'halves');

  // The leader goes before the partitions' completion reaches it; the next one hears of it.
  a.close();
  await first.coordinator.close();
  const second = await startLeader(t, { dataDir: dir, workloads: { tickMs: 100 } });
  // The node comes back with its credential: a join token admits new nodes only.
  const again = new FakeAgent('node-a', second.coordinator.address, a.credential!);
  t.after(() => again.close());
  await again.connect(partitions.map((p) => ({ id: p.allocation.id, state: 'completed' })));
  const secondApi = new WorkloadApi(second.coordinator.address, second.admin);
  t.after(() => secondApi.close());
  const done = await eventually('succeeded under the new leader', 10_000, async () => {
    const j = await secondApi.call<Job>('JobService', 'GetJob', { name: 'split' });
    return j.status === 'succeeded' || j.status === 'failed' ? j : undefined;
  });
  assert.equal(done.status, 'succeeded', done.message);
  assert.equal(done.outputDataset, 'halves:1');
});

test('two partitions writing the same path fail the job, naming the path and both; partitions that wrote nothing at all fail it too; no version is made', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  const finish = async (job: string, files: Array<Record<string, string>>) => {
    await runJob(c, { name: job, partitions: files.length, outputDataset: job, maxRetries: 2 });
    await until(`${job} placed`, () => partitionsOf([a], job).length === files.length);
    const partitions = partitionsOf([a], job);
    for (const p of partitions) a.report({ id: p.allocation.id, state: 'running' });
    await eventually('running', 5_000, async () => ((await getJob(c, job)).allocations.every((x) => x.status === 'running') ? true : undefined));
    for (const p of partitions) {
      await pushPart(c.address, a, p.allocation.id, await outputDir(t, files[p.partition]!), job);
      a.report({ id: p.allocation.id, state: 'completed' });
    }
    return ended(c, job);
  };

  const clash = await finish('clash', [{ 'a.csv': '0' }, { 'b.csv': '1' }, { 'sub/a.csv': '2', 'a.csv': 'again' }]);
  assert.equal(clash.status, 'failed');
  assert.match(clash.message, /output dataset clash could not be made: partitions 0 and 2 both wrote a\.csv/);
  assert.equal(clash.attempts, 1, 'the same partitions would clash again: not retried');
  const empty = await finish('empty', [{}, {}]);
  assert.equal(empty.status, 'failed');
  assert.match(empty.message, /no partition wrote anything to \/output/);
  await assert.rejects(c.client.getArtifact('dataset', 'clash'), { code: 'NOT_FOUND' });
  await assert.rejects(c.client.getArtifact('dataset', 'empty'), { code: 'NOT_FOUND' });
  assert.ok((await c.api.events('job/clash')).some((e) => e.type === 'Failed' && /both wrote a\.csv/.test(e.message)));
});

test('an agent that pushes its output model again (it restarted before recording the answer) gets the version its first push made, and no new one', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  await runJob(c, { name: 'train', output: { model: 'sentiment', format: 'other', metadata: null } });
  await until('placed', () => a.desired.length === 1);
  const worker = a.desired[0]!;
  a.report({ id: worker.id, state: 'running' });
  await eventually('running', 5_000, async () => ((await getJob(c, 'train')).allocations[0]?.status === 'running' ? true : undefined));
  const first = await rawPush(c, a, 'model', worker.id, 'sentiment', Buffer.from('weights'), false);
  const second = await rawPush(c, a, 'model', worker.id, 'sentiment', Buffer.from('weights'), false);
  const third = await rawPush(c, a, 'model', worker.id, 'sentiment', Buffer.from('other weights'), false);
  assert.deepEqual([first.version, second.version, third.version], [1, 1, 1]);
  assert.equal(third.digest, first.digest);
  const model = await c.client.getArtifact('model', 'sentiment');
  assert.equal(model.versions.length, 1);
  assert.equal(model.versions[0]!.metadata?.labels['source-allocation'], worker.id);
  a.report({ id: worker.id, state: 'completed', outputVersion: second.version });
  assert.equal((await ended(c, 'train')).outputModel, 'sentiment:1');
});

test('bad data-job requests are refused with the setting to change, and nothing is stored or started', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  const output = { model: 'm', format: '', metadata: null };
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ name: 'j', outputDataset: 'out' }, /INVALID_ARGUMENT: .*spec\.partitions: outputDataset is the union of the partitions' \/output: give partitions K/],
    [{ name: 'j', partitions: 3, workers: 2 }, /INVALID_ARGUMENT: .*spec\.workers: a partitioned job's workers are its partitions/],
    [{ name: 'j', partitions: 3, outputDataset: 'out', output }, /INVALID_ARGUMENT: .*spec\.outputDataset: a job has one output: give output or outputDataset, not both/],
    [{ name: 'j', partitions: 1001 }, /INVALID_ARGUMENT: .*spec\.partitions: must be at most 1000/],
    [{ name: 'j', partitions: 2, outputDataset: 'Not A Name' }, /INVALID_ARGUMENT: .*spec\.outputDataset: .*is not a dataset name/],
    [{ name: 'j', partitions: 2, outputDataset: 'a/b/c' }, /INVALID_ARGUMENT: .*spec\.outputDataset/],
    [{ name: 'j', partitions: 2, outputDataset: 'other/out' }, /PERMISSION_DENIED: .*runs in tenant "default" and writes only that tenant's datasets, not "other\/out" of tenant "other"/],
  ];
  for (const [spec, message] of bad) await assert.rejects(runJob(c, spec), message, JSON.stringify(spec));
  assert.deepEqual((await c.api.call<{ jobs: Job[] }>('JobService', 'ListJobs', {})).jobs, []);
  assert.deepEqual((await c.api.call<{ allocations: unknown[] }>('AllocationService', 'ListAllocations', { all: true })).allocations, []);
  assert.deepEqual((await c.client.listArtifacts('dataset')).artifacts, []);
  assert.equal(a.desired.length, 0);

  // The job's own tenant named in full is the same dataset.
  const own = await runJob(c, { name: 'own', partitions: 1, outputDataset: 'default/out' });
  assert.equal(own.spec?.outputDataset, 'out');

  // mlfleetctl refuses the same as bad usage (exit 2) before it calls anyone.
  const ctl = (args: string[]) => runScript(t, CLI, ['--coordinator', '127.0.0.1:1', 'jobs', 'run', 'j', '--image', 'i', ...args, '--', 'node', 'x.js']);
  const usage: Array<[string[], RegExp]> = [
    [['--partitions', '3', '--workers', '2'], /a partitioned job's workers are its partitions \(--partitions 3 runs 3 workers\); leave out --workers/],
    [['--output-dataset', 'out'], /--output-dataset is the union of the partitions' \/output: give --partitions K/],
    [['--partitions', '2', '--output-dataset', 'out', '--output-model', 'm'], /give --output-model or --output-dataset, not both/],
    [['--partitions', '0'], /--partitions must be more than 0/],
    [['--partitions', '1001'], /--partitions must be at most 1000/],
    [['--partitions', '2', '--output-dataset', 'Bad Name'], /output dataset "Bad Name" is not valid/],
  ];
  for (const [args, message] of usage) {
    const run = await ctl(args);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
});

test("a Job file says partitions: K and output: {dataset: NAME}, checked by the same rules as the flags", () => {
  const [job] = parseWorkloadFile('kind: Job\nname: etl\nspec: { image: i, partitions: 4, output: { dataset: cleaned } }\n', 'etl.yaml');
  assert.equal(job?.kind, 'Job');
  assert.deepEqual(job?.kind === 'Job' && [job.spec.partitions, job.spec.outputDataset, job.spec.output, job.spec.workers], [4, 'cleaned', null, 1]);
  const problems = (yaml: string) => {
    try {
      parseWorkloadFile(yaml, 'etl.yaml');
    } catch (err) {
      return (err as WorkloadFileError).problems;
    }
    return [];
  };
  const doc = (spec: string) => `kind: Job\nname: etl\nspec: { image: i, ${spec} }\n`;
  assert.deepEqual(problems(doc('partitions: 4, workers: 2')), [
    `etl.yaml document 1 (Job "etl"): spec.workers: a partitioned job's workers are its partitions (partitions 4 runs 4 workers); leave out workers`,
  ]);
  assert.deepEqual(problems(doc('output: { dataset: cleaned }')), [
    `etl.yaml document 1 (Job "etl"): spec.partitions: output.dataset is the union of the partitions' /output: give partitions K (1 for a single worker)`,
  ]);
  assert.deepEqual(problems(doc('partitions: 2, output: { dataset: cleaned, model: m }')), ['etl.yaml document 1 (Job "etl"): spec.output.dataset: a job has one output: give model or dataset, not both']);
  assert.deepEqual(problems(doc('partitions: 2, output: { dataset: cleaned, type: tabular }')), ['etl.yaml document 1 (Job "etl"): spec.output.type: describes an output model; an output dataset takes only its name']);
  assert.deepEqual(problems(doc('partitions: 1001')), ['etl.yaml document 1 (Job "etl"): spec.partitions: must be between 1 and 1000, got 1001']);
  assert.deepEqual(problems(doc('partitions: 2, output: { dataset: "Bad Name" }')), [`etl.yaml document 1 (Job "etl"): spec.output.dataset: output dataset "Bad Name" is not valid: use ${NAME_RULE}`]);
});
