// Compute on partitioned data, end to end on real Docker agents with the image the project
// builds offline: a dataset of CSV files is pushed, `jobs run --partitions 3 --output-dataset`
// runs three containers, each processing the rows whose index modulo 3 is its partition and
// writing /output/part-<i>.csv; the output dataset pulled back holds exactly their union.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type { Job } from '../../shared/proto.js';
import { dockerFleet } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';

/** One partition's work, in the runtime image (node, no shell): its share of every CSV's rows, upper-cased. */
const PARTITION = `const fs = require('fs'), path = require('path');
const dir = process.env.MLFLEET_DATASET_ROWS, k = Number(process.env.MLFLEET_PARTITIONS), p = Number(process.env.MLFLEET_PARTITION);
const rows = fs.readdirSync(dir).sort().flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').trim().split('\\n').slice(1));
const mine = rows.filter((_, i) => i % k === p).map((row) => row.toUpperCase());
fs.writeFileSync(path.join(process.env.MLFLEET_OUTPUT_PATH, 'part-' + p + '.csv'), ['id,text', ...mine].join('\\n') + '\\n');`;

const FILES: Record<string, string> = {
  'a.csv': 'id,text\n0,apple\n1,banana\n2,cherry\n3,date\n',
  'b.csv': 'id,text\n4,elderberry\n5,fig\n6,grape\n',
};

test('a job over 3 partitions on Docker agents makes a dataset whose content is the union of its partitions', async (t) => {
  const f = await dockerFleet(t);
  const { image, dir, api, client, address: coordinatorAddress, admin } = f;
  for (const name of ['data-a', 'data-b']) await f.agent(name);
  const env = { MLFLEET_COORDINATOR: coordinatorAddress, MLFLEET_TOKEN: admin };

  const rows = path.join(dir, 'rows');
  await mkdir(rows);
  for (const [name, content] of Object.entries(FILES)) await writeFile(path.join(rows, name), content);
  const pushed = await mlfleetctl(t, ['datasets', 'push', 'rows', rows], env);
  assert.equal(pushed.code, 0, pushed.stderr);

  const run = await mlfleetctl(t, ['jobs', 'run', 'upper', '--image', image, '--dataset', 'rows', '--partitions', '3', '--output-dataset', 'upper', '--', 'node', '-e', PARTITION], env);
  assert.equal(run.code, 0, run.stderr);
  const job = await eventually('the job ended', 60_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'upper' });
    return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
  });
  assert.equal(job.status, 'succeeded', `${job.message} ${JSON.stringify(job.allocations.map((a) => [a.rank, a.node, a.status, a.reason]))}`);
  assert.equal(job.outputDataset, 'upper:1');
  assert.deepEqual(job.allocations.map((a) => [a.rank, a.status]), [[0, 'completed'], [1, 'completed'], [2, 'completed']]);

  const shown = await mlfleetctl(t, ['jobs', 'show', 'upper', '-o', 'json'], env);
  assert.equal(shown.code, 0, shown.stderr);
  const json = JSON.parse(shown.stdout) as { partitions: number; output: unknown; outputDataset: string };
  assert.deepEqual([json.partitions, json.output, json.outputDataset], [3, { dataset: 'upper' }, 'upper:1']);

  const [version] = (await client.getArtifact('dataset', 'upper')).versions;
  assert.equal(version?.format, 'csv', 'every file of the union is a CSV');
  assert.equal(version?.metadata?.sourceJob, 'job/upper');
  assert.deepEqual(version?.metadata?.sourceDatasets, ['rows:1']);

  const pulled = path.join(dir, 'pulled');
  const pull = await mlfleetctl(t, ['datasets', 'pull', 'upper:1', pulled], env);
  assert.equal(pull.code, 0, pull.stderr);
  const all = Object.values(FILES).flatMap((content) => content.trim().split('\n').slice(1));
  const expected = Object.fromEntries([0, 1, 2].map((p) => [`part-${p}.csv`, ['id,text', ...all.filter((_, i) => i % 3 === p).map((row) => row.toUpperCase())].join('\n') + '\n']));
  assert.deepEqual((await readdir(pulled)).sort(), Object.keys(expected));
  for (const [name, content] of Object.entries(expected)) assert.equal(await readFile(path.join(pulled, name), 'utf8'), content, name);
  const union = Object.values(expected).flatMap((content) => content.trim().split('\n').slice(1)).sort();
  assert.deepEqual(union, all.map((row) => row.toUpperCase()).sort(), 'every row once, in some partition');
});
