// What decideJob (coordinator/workloads/reconcile.ts) decides for a running partitioned job, from
// its record and allocations alone: a failed partition is retried on its own with its own
// attempt and doubling backoff, completed ones keep their result, one that spent its retries
// fails the job and the others are stopped; a gang still fails and retries as a whole.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideJob, type NodeHealth } from '../../coordinator/workloads/reconcile.js';
import { attemptOf, type AllocationRecord, type JobRecord } from '../../coordinator/workloads/records.js';
import type { JobSpec } from '../../shared/proto.js';
import type { AllocationState } from '../../shared/workloads.js';

const NOW = 1_000_000;
const ready = (): NodeHealth => 'ready';

function job(spec: Partial<JobSpec>, record: Partial<JobRecord> = {}): JobRecord {
  return {
    tenant: 'default',
    spec: {
      name: 'etl', stack: '', image: 'i', command: ['x'], env: {}, datasets: [], resources: null, workers: 1, maxRetries: 0, retryBackoffMs: 100,
      deadlineMs: 0, constraints: {}, priority: 0, output: null, partitions: 0, outputDataset: '', ...spec,
    },
    status: 'running',
    attempts: 1,
    message: 'attempt 1 running',
    run: { image: 'i', command: ['x'], env: {}, port: 0, readinessPath: '', readinessTimeoutMs: 0, model: undefined, datasets: [], rank: 0, worldSize: 1 },
    createdAtMs: 0,
    startedAtMs: 1,
    finishedAtMs: 0,
    notBeforeMs: 0,
    outputModel: '',
    ...record,
  };
}

let ids = 0;
function worker(rank: number, attempt: number, status: AllocationState, more: Partial<AllocationRecord> = {}): AllocationRecord {
  return {
    id: `a${++ids}`, kind: 'job', workload: 'etl', tenant: 'default', node: 'node-a', priority: 0,
    resources: { cpuMillis: 100, memoryBytes: 1, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 }, gpuIndexes: [], hostPort: 0,
    run: job({}).run, generation: 0, attempt, rank, desired: 'run', status, reason: status === 'failed' ? 'exited with code 1' : '', endpoint: '', exitCode: status === 'failed' ? 1 : 0,
    createdAtMs: 0, updatedAtMs: 0, ...more,
  };
}

test('a failed partition is retried on its own after the backoff; the others keep running and the completed keep their result', () => {
  const record = job({ partitions: 3, maxRetries: 2 });
  const allocations = [worker(0, 1, 'completed'), worker(1, 1, 'failed'), worker(2, 1, 'running')];
  const d = decideJob(record, allocations, NOW, ready);
  assert.deepEqual(d.stops, [], 'nothing is stopped: partition 2 keeps running');
  assert.deepEqual(d.place, [], 'the retry waits for its backoff');
  assert.equal(d.next?.status, 'running');
  assert.deepEqual(d.next?.partitionRetries, { 1: { attempt: 2, notBeforeMs: NOW + 100 } });
  assert.equal(d.next?.attempts, 2, 'the most attempts any partition took');
  assert.deepEqual(d.events, [{ type: 'Retrying', message: 'partition 1 failed in its attempt 1 (exited with code 1); retrying it in 100ms' }]);
  assert.deepEqual([0, 1, 2].map((rank) => attemptOf(d.next!, rank)), [1, 2, 1]);

  // Before the backoff passed nothing happens; after, only partition 1 is placed, in its attempt 2.
  assert.deepEqual(decideJob(d.next!, allocations, NOW + 99, ready).place, []);
  const due = decideJob(d.next!, allocations, NOW + 100, ready);
  assert.deepEqual(due.place, [{ rank: 1, attempt: 2 }]);
  assert.equal(due.next, undefined);

  // Its second failure waits twice as long.
  const again = decideJob(d.next!, [...allocations, worker(1, 2, 'failed')], NOW + 200, ready);
  assert.deepEqual(again.next?.partitionRetries, { 1: { attempt: 3, notBeforeMs: NOW + 200 + 200 } });
  assert.match(again.events[0]!.message, /partition 1 failed in its attempt 2 .*retrying it in 200ms/);
});

test('the job succeeds with each partition completed once, whatever attempt it took; the output dataset takes the completed allocations only', () => {
  const record = job({ partitions: 3, maxRetries: 1, outputDataset: 'out' }, { attempts: 2, partitionRetries: { 1: { attempt: 2, notBeforeMs: 0 } } });
  const part = (digest: string) => ({ outputPart: { digest, sizeBytes: 1 } });
  const failed = worker(1, 1, 'failed', part('sha256:failed'));
  const completed = [worker(0, 1, 'completed', part('sha256:p0')), worker(1, 2, 'completed', part('sha256:p1')), worker(2, 1, 'completed', part('sha256:p2'))];
  const d = decideJob(record, [failed, ...completed], NOW, ready);
  assert.deepEqual(d.assemble?.map((a) => a.outputPart?.digest), ['sha256:p0', 'sha256:p1', 'sha256:p2']);
  const plain = decideJob(job({ partitions: 2 }, { partitionRetries: { 0: { attempt: 2, notBeforeMs: 0 } }, attempts: 2 }), [worker(0, 1, 'failed'), worker(0, 2, 'completed'), worker(1, 1, 'completed')], NOW, ready);
  assert.equal(plain.next?.status, 'succeeded');
  assert.equal(plain.next?.message, '2 partitions exited 0');
});

test('a partition that spent its retries fails the job, naming it, its cause and its attempts; the others still running are stopped', () => {
  const record = job({ partitions: 3, maxRetries: 2 }, { attempts: 3, partitionRetries: { 1: { attempt: 3, notBeforeMs: 0 } } });
  const running = worker(2, 1, 'running');
  const d = decideJob(record, [worker(0, 1, 'completed'), worker(1, 1, 'failed'), worker(1, 2, 'failed'), worker(1, 3, 'failed'), running], NOW, ready);
  assert.equal(d.next?.status, 'failed');
  assert.equal(d.next?.message, 'partition 1 failed after 3 attempts: exited with code 1');
  assert.deepEqual(d.events, [{ type: 'Failed', message: 'partition 1 failed after 3 attempts: exited with code 1' }]);
  assert.deepEqual(d.stops, [{ id: running.id, reason: 'partition 1 failed' }]);
});

test("a partition preempted, or on a node that went down, or that exited 0 without its part, is retried like one that failed", () => {
  const record = job({ partitions: 3, maxRetries: 1, outputDataset: 'out' });
  const preempted = worker(0, 1, 'running', { desired: 'stop', reason: 'preempted by a higher priority job' });
  const lost = worker(1, 1, 'running', { node: 'node-b' });
  const unstored = worker(2, 1, 'completed');
  const d = decideJob(record, [preempted, lost, unstored], NOW, (node) => (node === 'node-b' ? 'down' : 'ready'));
  assert.deepEqual(d.stops, [{ id: lost.id, reason: 'node node-b is down', fail: true }]);
  assert.deepEqual(Object.keys(d.next?.partitionRetries ?? {}), ['0', '1', '2']);
  assert.deepEqual(d.events.map((e) => e.message), [
    'partition 0 failed in its attempt 1 (was stopped: preempted by a higher priority job); retrying it in 100ms',
    "partition 1 failed in its attempt 1 (its node node-b is down); retrying it in 100ms",
    'partition 2 failed in its attempt 1 (exited 0 but its output was not stored); retrying it in 100ms',
  ]);
});

test('deadline and cancel still stop every partition', () => {
  const running = worker(0, 2, 'running');
  const record = job({ partitions: 2, maxRetries: 3, deadlineMs: 10 }, { attempts: 2, partitionRetries: { 0: { attempt: 2, notBeforeMs: 0 } } });
  const d = decideJob(record, [worker(0, 1, 'failed'), running, worker(1, 1, 'completed')], NOW, ready);
  assert.equal(d.next?.status, 'failed');
  assert.deepEqual(d.stops, [{ id: running.id, reason: 'deadline exceeded' }]);
  const cancelled = decideJob({ ...record, spec: { ...record.spec, deadlineMs: 0 }, status: 'cancelled' }, [running], NOW, ready);
  assert.deepEqual(cancelled.stops, [{ id: running.id, reason: 'job cancelled' }]);
});

test("a gang's failing worker still fails its attempt as a whole, and the job retries every worker", () => {
  const record = job({ workers: 2, maxRetries: 1 });
  const running = worker(0, 1, 'running');
  const d = decideJob(record, [running, worker(1, 1, 'failed')], NOW, ready);
  assert.equal(d.next?.status, 'pending');
  assert.deepEqual(d.stops, [{ id: running.id, reason: 'attempt 1 failed' }]);
  assert.equal(d.next?.message, 'attempt 1 failed (worker 1 exited with code 1); retrying in 100ms');
  assert.deepEqual(decideJob(d.next!, [], NOW + 100, ready).place, [{ rank: 0, attempt: 2 }, { rank: 1, attempt: 2 }]);
});

test('a running partitioned job from before per-partition retries keeps its partitions on its attempt', () => {
  const record = job({ partitions: 2, maxRetries: 3 }, { attempts: 2 });
  const d = decideJob(record, [worker(0, 2, 'completed'), worker(1, 2, 'failed')], NOW, ready);
  assert.deepEqual(d.next?.partitionRetries, { 0: { attempt: 2, notBeforeMs: 0 }, 1: { attempt: 3, notBeforeMs: NOW + 200 } });
  assert.equal(d.next?.attempts, 3);
});
