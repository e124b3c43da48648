// The package as another project uses it: a scratch project that depends on mlfleet by a file:
// link imports it by name ('mlfleet', through package.json "exports"), type-checks a small
// TypeScript consumer with tsc against the published declarations, and runs it against a real
// coordinator. A consumer that misuses a type must fail to compile: the types are real, not any.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startLeader } from '../helpers/coordinator.js';
import { tempDir } from '../helpers/processes.js';

const run = promisify(execFile);
/** The package root: dist/test/sdk/ → three levels up. */
const ROOT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

const CONSUMER = `
import { connect, NotFoundError, type DeploymentJson, type Fleet, type InferResponse } from 'mlfleet';

const [coordinator, token] = process.argv.slice(2);
const fleet: Fleet = await connect({ coordinator, token });
try {
  const pushed = await fleet.models.put('greeting', new TextEncoder().encode('hello'), { format: 'other', metadata: { labels: { from: 'consumer' } } });
  const deployments: DeploymentJson[] = await fleet.deployments.list();
  let missing = '';
  try {
    await fleet.models.get('absent');
  } catch (err) {
    if (err instanceof NotFoundError) missing = err.code;
  }
  const infer: (ref: string) => Promise<InferResponse> = (ref) => fleet.infer(ref, []);
  console.log(JSON.stringify({ version: pushed.version, labels: pushed.metadata.labels, deployments: deployments.length, missing, infer: typeof infer }));
} finally {
  fleet.close();
}
`;

const MISUSE = `
import { connect } from 'mlfleet';
const fleet = await connect({ coordinator: 'localhost:7700' });
const version: string = (await fleet.models.put('m', 'file.onnx')).version;
fleet.deployments.scale('web', 'three');
`;

function scratchProject(dir: string, source: string): void {
  mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { mlfleet: `file:${ROOT}` } }));
  // What npm does for a file: dependency on a directory: a link to it.
  symlinkSync(ROOT, path.join(dir, 'node_modules', 'mlfleet'), 'dir');
  writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: true, outDir: 'out', types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')] },
      include: ['consumer.ts'],
    }),
  );
  writeFileSync(path.join(dir, 'consumer.ts'), source);
}

test("a project depending on mlfleet imports { connect } from 'mlfleet', type-checks with tsc, and runs against a coordinator", async (t) => {
  const dir = tempDir(t, 'mlfleet-consumer-');
  scratchProject(dir, CONSUMER);
  const compiled = await run(process.execPath, [TSC, '-p', dir], { cwd: dir }).catch((err: { stdout: string; stderr: string }) => err);
  assert.equal(compiled.stdout + compiled.stderr, '', 'tsc compiles the consumer without a diagnostic');

  const { coordinator, admin } = await startLeader(t);
  const { stdout } = await run(process.execPath, [path.join(dir, 'out', 'consumer.js'), coordinator.address, admin], { cwd: dir });
  assert.deepEqual(JSON.parse(stdout), { version: 1, labels: { from: 'consumer' }, deployments: 0, missing: 'NOT_FOUND', infer: 'function' });

  // And the plain import by name, from the scratch project, as an application without TypeScript does it.
  const { stdout: names } = await run(process.execPath, ['--input-type=module', '-e', "const m = await import('mlfleet'); console.log(Object.keys(m).filter((k) => ['connect', 'Fleet', 'MlfleetError', 'NotFoundError'].includes(k)).sort().join(','))"], { cwd: dir });
  assert.equal(names.trim(), 'Fleet,MlfleetError,NotFoundError,connect');
});

test('a consumer that misuses the SDK types does not compile', async (t) => {
  const dir = tempDir(t, 'mlfleet-consumer-');
  scratchProject(dir, MISUSE);
  const failed = await run(process.execPath, [TSC, '-p', dir], { cwd: dir }).then(
    () => assert.fail('tsc accepted a misuse'),
    (err: { stdout: string }) => err.stdout,
  );
  assert.match(failed, /consumer\.ts\(4,7\): error TS2322: Type 'number' is not assignable to type 'string'/);
  assert.match(failed, /consumer\.ts\(5,32\): error TS2345: Argument of type 'string' is not assignable to parameter of type 'number'/);
});

test('npm pack would ship the SDK entry point and its declarations', async () => {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 * 2 ** 20 });
  const files = new Set((JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path));
  for (const file of ['package.json', 'dist/shared/sdk/index.js', 'dist/shared/sdk/index.d.ts', 'dist/shared/sdk/fleet.d.ts', 'proto/mlfleet/v1/types.proto']) {
    assert.ok(files.has(file), `${file} is in the package`);
  }
});
