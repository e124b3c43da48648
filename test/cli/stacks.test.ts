// `mlfleetctl stacks …` as users run it: the compiled CLI as a child process against a real
// coordinator (SQLite, in this process). ls and show print the stable fields; register reads a
// YAML file with the Stack fields in camelCase, flags, or both (flags win); a file of the wrong
// shape is bad usage (exit 2) and sends nothing; the coordinator's refusals are exit 1.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import YAML from 'yaml';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from '../helpers/coordinator.js';
import { mlfleetctl, tempHome, type Run } from '../helpers/mlfleetctl.js';

interface Cli {
  client: CoordinatorClient;
  ctl(...args: string[]): Promise<Run>;
  file(name: string, content: string): Promise<string>;
}

async function cli(t: TestContext): Promise<Cli> {
  const { coordinator, admin } = await startLeader(t);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const dir = await tempHome(t);
  return {
    client,
    ctl: (...args) => mlfleetctl(t, ['--coordinator', coordinator.address, ...args], { MLFLEET_TOKEN: admin }),
    file: async (name, content) => {
      const file = path.join(dir, name);
      await writeFile(file, content);
      return file;
    },
  };
}

function ok(run: Run, what: string): string {
  assert.equal(run.code, 0, `${what}: exit ${run.code}\n${run.stderr}`);
  return run.stdout;
}

const customYaml = `
name: custom
description: our own server
image: registry.example.com/team/server:1.0
formats: [safetensors, other]
modelMount: /srv/model
port: 9000
protocol: http
readinessPath: /healthz
command: [serve, --port, "9000"]
env: { WORKERS: 2, DEBUG: false }
trainCommand: [python, train.py]
`;

test('stacks ls lists the built-ins on aligned rows; -o json has every field', async (t) => {
  const c = await cli(t);
  const table = ok(await c.ctl('stacks', 'ls'), 'stacks ls');
  const lines = table.trimEnd().split('\n');
  assert.match(lines[0]!, /^NAME\s+IMAGE\s+FORMATS\s+PORT\s+PROTOCOL\s+BUILTIN$/);
  assert.match(lines[1]!, /^onnx\s+mlfleet\/onnx:0\.1\.0\s+onnx\s+8080\s+v2\s+yes$/);
  assert.match(lines[2]!, /^tensorflow-serving\s+tensorflow\/serving:2\.16\.1\s+tensorflow-savedmodel\s+8501\s+tfserving-rest\s+yes$/);
  assert.match(lines[3]!, /^triton\s+nvcr\.io\/nvidia\/tritonserver:24\.08-py3\s+onnx,torchscript,tensorflow-savedmodel,other\s+8000\s+v2\s+yes$/);
  assert.match(lines[4]!, /^mlserver\s+seldonio\/mlserver:1\.6\.1\s+other,safetensors,onnx\s+8080\s+v2\s+yes$/);
  assert.equal(lines[1]!.indexOf('mlfleet/onnx'), lines[0]!.indexOf('IMAGE'));

  const list = JSON.parse(ok(await c.ctl('stacks', 'ls', '-o', 'json'), 'stacks ls -o json')) as Array<Record<string, unknown>>;
  assert.deepEqual(list[2], {
    name: 'triton',
    description: 'NVIDIA Triton Inference Server 24.08 (Open Inference Protocol v2); push a Triton model repository directory',
    image: 'nvcr.io/nvidia/tritonserver:24.08-py3',
    formats: ['onnx', 'torchscript', 'tensorflow-savedmodel', 'other'],
    modelMount: '/models',
    port: 8000,
    protocol: 'v2',
    readinessPath: '/v2/health/ready',
    readinessTimeoutMs: 900_000,
    command: ['tritonserver', '--model-repository=/models', '--http-port=8000'],
    env: {},
    gpus: true,
    trainCommand: [],
    builtin: true,
  });
});

test('stacks show prints a detail block; -o yaml is the same object as -o json', async (t) => {
  const c = await cli(t);
  const table = ok(await c.ctl('stacks', 'show', 'tensorflow-serving'), 'stacks show');
  assert.match(table, /^Name:\s+tensorflow-serving$/m);
  assert.match(table, /^Model mount:\s+\/models\/model\/1 \(read-only\)$/m);
  assert.match(table, /^Readiness:\s+GET \/v1\/models\/model\/metadata within 15m0s$/m);
  assert.match(table, /^Command:\s+the image's own$/m);
  assert.match(table, /^Env:\s+MODEL_NAME=model$/m);
  assert.match(table, /^GPUs:\s+yes$/m);
  const json = JSON.parse(ok(await c.ctl('stacks', 'show', 'mlserver', '-o', 'json'), 'show -o json')) as unknown;
  const yaml = YAML.parse(ok(await c.ctl('stacks', 'show', 'mlserver', '-o', 'yaml'), 'show -o yaml')) as unknown;
  assert.deepEqual(yaml, json);
  const missing = await c.ctl('stacks', 'show', 'nope');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /stack "nope" not found/);
});

test('stacks register reads a YAML file, flags override it, and rm forgets the stack', async (t) => {
  const c = await cli(t);
  const file = await c.file('custom.yaml', customYaml);
  assert.equal(ok(await c.ctl('stacks', 'register', '-f', file), 'register -f'), 'stack custom registered\n');
  assert.deepEqual(await c.client.getStack('custom'), {
    name: 'custom',
    description: 'our own server',
    image: 'registry.example.com/team/server:1.0',
    formats: ['safetensors', 'other'],
    modelMount: '/srv/model',
    port: 9000,
    protocol: 'http',
    readinessPath: '/healthz',
    readinessTimeoutMs: 900_000,
    command: ['serve', '--port', '9000'],
    env: { WORKERS: '2', DEBUG: 'false' },
    gpus: false,
    trainCommand: ['python', 'train.py'],
    builtin: false,
  });

  // The file again, with flags on top: a replacement.
  const replaced = JSON.parse(
    ok(await c.ctl('stacks', 'register', 'custom', '-f', file, '--image', 'registry.example.com/team/server:2.0', '--port', '9100', '--env', 'DEBUG=true', '--gpus', '-o', 'json'), 'register -f with flags'),
  ) as { image: string; port: number; env: Record<string, string>; gpus: boolean; command: string[] };
  assert.equal(replaced.image, 'registry.example.com/team/server:2.0');
  assert.equal(replaced.port, 9100);
  assert.deepEqual(replaced.env, { DEBUG: 'true', WORKERS: '2' });
  assert.equal(replaced.gpus, true);
  assert.deepEqual(replaced.command, ['serve', '--port', '9000'], 'what the flags leave out comes from the file');

  // Flags alone, the command after --.
  ok(
    await c.ctl(
      'stacks', 'register', 'flags-only', '--image', 'example/server:1', '--format', 'onnx', '--format', 'other', '--model-mount', '/m',
      '--port', '8000', '--protocol', 'v2', '--readiness-path', '/ready', '--readiness-timeout', '2m', '--', 'serve', '--fast',
    ),
    'register with flags',
  );
  const flagged = await c.client.getStack('flags-only');
  assert.deepEqual([flagged.formats, flagged.modelMount, flagged.readinessTimeoutMs, flagged.command], [['onnx', 'other'], '/m', 120_000, ['serve', '--fast']]);

  const names = JSON.parse(ok(await c.ctl('stacks', 'ls', '-o', 'json'), 'ls')) as Array<{ name: string; builtin: boolean }>;
  assert.deepEqual(names.filter((s) => !s.builtin).map((s) => s.name), ['custom', 'flags-only']);
  assert.equal(ok(await c.ctl('stacks', 'rm', 'custom'), 'rm'), 'stack custom deleted\n');
  await assert.rejects(c.client.getStack('custom'), { code: 'NOT_FOUND' });
});

test('a stack file of the wrong shape is bad usage and sends nothing; refusals by the coordinator are exit 1', async (t) => {
  const c = await cli(t);
  const typo = await c.file('typo.yaml', `${customYaml.replace('port: 9000', 'port: "9000"')}imagee: x\n`);
  const run = await c.ctl('stacks', 'register', '-f', typo);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /typo\.yaml is not a stack \(nothing was sent\)/);
  assert.match(run.stderr, /port: Expected number, received string/);
  assert.match(run.stderr, /Unrecognized key\(s\) in object: 'imagee'/);

  const unnamed = await c.ctl('stacks', 'register', '--image', 'x:1');
  assert.equal(unnamed.code, 2);
  assert.match(unnamed.stderr, /give the stack a name/);
  const missingFile = await c.ctl('stacks', 'register', '-f', '/nonexistent/stack.yaml');
  assert.equal(missingFile.code, 2);
  assert.match(missingFile.stderr, /cannot read \/nonexistent\/stack\.yaml/);
  assert.deepEqual((await c.client.listStacks()).stacks.filter((s) => !s.builtin), []);

  const badValues = await c.ctl('stacks', 'register', 'half', '--image', 'x:1', '--format', 'pickle', '--model-mount', 'relative');
  assert.equal(badValues.code, 1);
  assert.match(badValues.stderr, /formats\.0: must be one of/);
  assert.match(badValues.stderr, /modelMount: must be an absolute path/);
  assert.match(badValues.stderr, /port: must be a port number/);
  assert.match(badValues.stderr, /protocol: must be one of v2, tfserving-rest, http/);

  const builtIn = await c.ctl('stacks', 'register', '-f', await c.file('onnx.yaml', customYaml.replace('name: custom', 'name: onnx')));
  assert.equal(builtIn.code, 1);
  assert.match(builtIn.stderr, /stack "onnx" is built in and cannot be replaced/);
  assert.deepEqual((await c.client.listStacks()).stacks.filter((s) => !s.builtin), []);
});
