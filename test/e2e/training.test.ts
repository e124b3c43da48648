// Training closes the loop, end to end on real Docker and through the CLI as the README tells
// it: a CSV dataset and the example training script (scripts/examples/classifier) pushed as
// datasets; a job on the onnx stack fits a logistic regression and writes it as ONNX to /output;
// mlfleet pushes that as the next version of the output model with its lineage; the version is
// deployed on the onnx stack, and inference through another host's gateway answers what the
// script itself computed for the same rows.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { Deployment, Job } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { CLI, runScript, type TestContext } from '../helpers/mlfleetctl.js';
import { REPO_ROOT, startAgent, tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

const EXAMPLE = path.join(REPO_ROOT, 'scripts', 'examples', 'classifier');
const PROBE = [
  [2, 5],
  [4.5, 6],
  [7, 8],
];

interface TrainerReport {
  rows: number;
  accuracy: number;
  predictions: number[];
}

test('train → register → deploy → infer: a job on the onnx stack fits a model from a CSV, which is served and predicts what the script computed', async (t) => {
  await ensureOnnxImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const api = new WorkloadApi(coordinator.address, admin);
  t.after(() => api.close());
  await startAgent(t, 'gpu-box', [coordinator.address], dir, ['--driver', 'docker', '--join-token', join, '--labels', 'docker=yes']);
  removeContainersAfter(t, 'gpu-box');
  const edge = await startAgent(t, 'edge-box', [coordinator.address], dir, ['--driver', 'process', '--join-token', join]);
  const gateway = (await edge.waitForMessage('agent started')).gateway as string;
  const cli = async (...args: string[]) => {
    const run = await runScript(t as TestContext, CLI, ['--coordinator', coordinator.address, ...args], { MLFLEET_TOKEN: admin });
    assert.equal(run.code, 0, `mlfleetctl ${args.join(' ')}: ${run.stderr}`);
    return run.stdout;
  };

  await cli('datasets', 'push', 'exams', path.join(EXAMPLE, 'exams.csv'));
  await cli('datasets', 'push', 'classifier-trainer', EXAMPLE);
  const probe = PROBE.map((row) => row.join(',')).join(';');
  await cli(
    'jobs', 'run', 'fit-exams', '--stack', 'onnx', '--dataset', 'exams', '--dataset', 'classifier-trainer', '--constraint', 'docker=yes',
    '--output-model', 'exam-pass', '--output-model-type', 'classification', '--output-model-input', 'tensor', '--output-model-output', 'tensor',
    '--', '/data/classifier-trainer', '--probe', probe,
  );
  const job = await eventually('the training job ends', 120_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'fit-exams' });
    return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
  });
  assert.equal(job.status, 'succeeded', job.message);
  assert.equal(job.outputModel, 'exam-pass:1');

  // What the script says it learned and predicted, from its own log.
  const logs = await cli('jobs', 'logs', 'fit-exams');
  const line = logs.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `the script's report in its log:\n${logs}`);
  const report = JSON.parse(line) as TrainerReport;
  assert.equal(report.rows, 240);
  assert.ok(report.accuracy > 0.8, `training accuracy ${report.accuracy}`);

  // Registered with its lineage: the job and the exact dataset versions, the script's included.
  const shown = JSON.parse(await cli('-o', 'json', 'models', 'show', 'exam-pass')) as {
    versions: Array<{ version: number; format: string; metadata: { type: string; sourceJob: string; sourceDatasets: string[] } }>;
  };
  const version = shown.versions[0]!;
  assert.equal(version.format, 'onnx');
  assert.equal(version.metadata.type, 'classification');
  assert.equal(version.metadata.sourceJob, 'job/fit-exams');
  assert.deepEqual([...version.metadata.sourceDatasets].sort(), ['classifier-trainer:1', 'exams:1']);

  await cli('deploy', 'exam-pass', '--model', 'exam-pass', '--stack', 'onnx', '--constraint', 'docker=yes');
  await eventually('the deployment is available', 90_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'exam-pass' });
    return d.status === 'available' ? d : undefined;
  });
  const input = path.join(dir, 'probe.json');
  writeFileSync(input, JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [PROBE.length, 2], data: PROBE.flat() }] }));
  const answer = await eventually("the edge host's gateway answers", 30_000, async () => {
    const run = await runScript(t as TestContext, CLI, ['--coordinator', coordinator.address, '-o', 'json', 'infer', 'exam-pass', '--input', input, '--gateway', gateway], { MLFLEET_TOKEN: admin });
    return run.code === 0 ? (JSON.parse(run.stdout) as { outputs: Array<{ name: string; shape: number[]; data: number[] }> }) : undefined;
  });
  const output = answer.outputs[0]!;
  assert.equal(output.name, 'probability');
  assert.deepEqual(output.shape, [PROBE.length, 1]);
  // The served model computes in float32; the script in float64.
  output.data.forEach((p, i) => assert.ok(Math.abs(p - report.predictions[i]!) < 1e-5, `row ${i}: served ${p}, the script computed ${report.predictions[i]}`));
});
