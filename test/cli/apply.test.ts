// The workload file format of `mlfleetctl apply -f` (shared/workload-spec.ts), without a
// coordinator: YAML documents in human units become wire specs in base units with every
// default filled in; a file is checked whole, and every problem names its document and field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../shared/errors.js';
import { compileDeploymentSpec, compileJobSpec, parseWorkloadFile, WorkloadFileError, type WorkloadObject } from '../../shared/workload-spec.js';

/** The rollout's canary and automatic-rollback settings when none is given: 0, the defaults (shared/rollout-spec.ts). */
const NO_CANARY = { canaryPercent: 0, maxErrorRate: 0, maxP99Ratio: 0, watchMs: 0, minRequests: 0, autoRollbackOff: false };

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** The problems a file has, one line each, as apply prints them. */
function problems(content: string, source = 'web.yaml'): string[] {
  try {
    parseWorkloadFile(content, source);
  } catch (err) {
    assert.ok(err instanceof WorkloadFileError, `a WorkloadFileError, got ${String(err)}`);
    assert.ok(err instanceof InvalidArgumentError, 'an InvalidArgumentError too, for code that only knows the base classes');
    assert.equal(err.message, `${source} is invalid (nothing was sent):\n${err.problems.map((p) => `  ${p}`).join('\n')}`);
    return [...err.problems];
  }
  assert.fail('the file was accepted');
}

const sentiment = `
kind: Deployment
name: sentiment
spec:
  model: sentiment@production
  stack: onnx
  replicas: 3
  resources: { cpu: 500m, memory: 512Mi, gpuMemory: 10Gi, gpuModel: H100 }
  constraints: { zone: eu-1 }
  maxPerNode: 1
  priority: 10
  rollout: { maxSurge: 1, maxUnavailable: 0 }
`;

const train = `
kind: Job
name: train
spec:
  image: pytorch/pytorch:2.3
  command: [python, train.py, --epochs, "3"]
  env: { EPOCHS: 3, DEBUG: true, NAME: resnet }
  datasets: [imagenet@v2, labels:3]
  resources: { cpu: 4, memory: 12Gi, gpus: 2, gpuMemory: 40Gi, gpuModel: A100, nicMbps: 10000 }
  workers: 2
  retries: 2
  retryBackoff: 10s
  deadline: 2h
  constraints: { zone: eu-1, gpu: true }
  priority: -5
`;

test('a Deployment in human units becomes the wire spec in base units', () => {
  const [object] = parseWorkloadFile(sentiment, 'sentiment.yaml');
  assert.deepEqual(object, {
    kind: 'Deployment',
    name: 'sentiment',
    tenant: '',
    spec: {
      name: 'sentiment',
      model: 'sentiment@production',
      stack: 'onnx',
      image: '',
      command: [],
      env: {},
      port: 0,
      readinessPath: '',
      replicas: 3,
      resources: { cpuMillis: 500, memoryBytes: 512 * MiB, gpus: 0, gpuMemoryBytes: 10 * GiB, gpuModel: 'H100', nicMbps: 0 },
      constraints: { zone: 'eu-1' },
      maxPerNode: 1,
      priority: 10,
      rollout: { maxSurge: 1, maxUnavailable: 0, canaryPercent: 0, maxErrorRate: 0, maxP99Ratio: 0, watchMs: 0, minRequests: 0, autoRollbackOff: false },
      public: false,
      maxRequestBytes: 0,
      minReplicas: 0,
      maxReplicas: 0,
      targetConcurrency: 0,
      scaleToZeroAfterMs: 0,
    },
  } satisfies WorkloadObject);
});

test('a Job in human units becomes the wire spec: durations in ms, scalars in env and constraints as strings', () => {
  const [object] = parseWorkloadFile(train, 'train.yaml');
  assert.deepEqual(object, {
    kind: 'Job',
    name: 'train',
    tenant: '',
    spec: {
      name: 'train',
      stack: '',
      image: 'pytorch/pytorch:2.3',
      command: ['python', 'train.py', '--epochs', '3'],
      env: { EPOCHS: '3', DEBUG: 'true', NAME: 'resnet' },
      datasets: ['imagenet@v2', 'labels:3'],
      resources: { cpuMillis: 4000, memoryBytes: 12 * GiB, gpus: 2, gpuMemoryBytes: 40 * GiB, gpuModel: 'A100', nicMbps: 10_000 },
      workers: 2,
      maxRetries: 2,
      retryBackoffMs: 10_000,
      deadlineMs: 2 * 3_600_000,
      constraints: { zone: 'eu-1', gpu: 'true' },
      priority: -5,
      output: null,
      partitions: 0,
      outputDataset: '',
    },
  } satisfies WorkloadObject);
});

test('what a document leaves out gets the documented defaults, the same as the flags would give', () => {
  const [deployment, job] = parseWorkloadFile(
    'kind: Deployment\nname: web\nspec: { model: m, image: "mlfleet/runtime:0.1.0" }\n---\nkind: Job\nname: etl\nspec: { stack: onnx }\n',
    'min.yaml',
  );
  const deploymentSpec = compileDeploymentSpec({ name: 'web', model: 'm', image: 'mlfleet/runtime:0.1.0' });
  assert.deepEqual(deployment, { kind: 'Deployment', name: 'web', tenant: '', spec: deploymentSpec });
  assert.equal(deploymentSpec.replicas, 1);
  assert.deepEqual(deploymentSpec.rollout, { maxSurge: 1, maxUnavailable: 0, ...NO_CANARY });
  // 0 on the wire: the coordinator's default resources, the stack's port and readiness path.
  assert.deepEqual(deploymentSpec.resources, { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 });
  assert.deepEqual([deploymentSpec.port, deploymentSpec.readinessPath, deploymentSpec.maxPerNode, deploymentSpec.priority], [0, '', 0, 0]);

  const jobSpec = compileJobSpec({ name: 'etl', stack: 'onnx' });
  assert.deepEqual(job, { kind: 'Job', name: 'etl', tenant: '', spec: jobSpec });
  assert.deepEqual([jobSpec.workers, jobSpec.maxRetries, jobSpec.retryBackoffMs, jobSpec.deadlineMs], [1, 0, 1000, 0]);
  assert.deepEqual([jobSpec.command, jobSpec.datasets, jobSpec.env, jobSpec.constraints], [[], [], {}, {}]);
});

test('a rollout that gives one limit keeps the default of the other', () => {
  const [object] = parseWorkloadFile('kind: Deployment\nname: web\nspec: { model: m, stack: onnx, rollout: { maxUnavailable: 2 } }\n', 'f.yaml');
  assert.deepEqual(object?.kind === 'Deployment' && object.spec.rollout, { maxSurge: 1, maxUnavailable: 2, ...NO_CANARY });
});

test('several documents keep their order; empty ones (a leading or trailing ---) are skipped', () => {
  const objects = parseWorkloadFile(`---\n${sentiment}\n---\n# a comment only\n---\n${train}\n---\n`, 'all.yaml');
  assert.deepEqual(
    objects.map((o) => `${o.kind}/${o.name}`),
    ['Deployment/sentiment', 'Job/train'],
  );
});

test('sizes, CPU and model refs take every form the flags take', () => {
  const spec = (resources: string, model = 'm') => {
    const [object] = parseWorkloadFile(`kind: Deployment\nname: web\nspec: { model: "${model}", stack: onnx, resources: ${resources} }\n`, 'f.yaml');
    assert.equal(object?.kind, 'Deployment');
    return object!.spec as ReturnType<typeof compileDeploymentSpec>;
  };
  assert.equal(spec('{ cpu: 2 }').resources?.cpuMillis, 2000);
  assert.equal(spec('{ cpu: 0.5 }').resources?.cpuMillis, 500);
  assert.equal(spec('{ cpu: "1.5" }').resources?.cpuMillis, 1500);
  assert.equal(spec('{ memory: 1.5GB }').resources?.memoryBytes, 1_500_000_000);
  assert.equal(spec('{ memory: 1048576 }').resources?.memoryBytes, MiB);
  assert.equal(spec('{}', ' m:3 ').model, 'm:3');
});

test('a command may hold numbers and booleans, passed on as strings', () => {
  const [object] = parseWorkloadFile('kind: Job\nname: etl\nspec: { image: busybox, command: [sleep, 10, true] }\n', 'f.yaml');
  assert.deepEqual(object?.spec.command, ['sleep', '10', 'true']);
});

test('a tenant named in the document is kept', () => {
  const [object] = parseWorkloadFile('kind: Job\nname: etl\ntenant: vision\nspec: { image: busybox, command: [true] }\n', 'f.yaml');
  assert.equal(object?.tenant, 'vision');
});

test('a bad size names the file, the document and the field', () => {
  const file = `${sentiment}---\nkind: Job\nname: train\nspec: { image: busybox, command: [true], resources: { memory: 12Q } }\n`;
  assert.deepEqual(problems(file, 'FILE.yaml'), [
    'FILE.yaml document 2 (Job "train"): spec.resources.memory: "12Q" is not a size; use forms like 1000, 512Mi, 20Gi or 1.5GB',
  ]);
});

test('an unknown field is refused, with the field meant when it is a near miss; problems come in file order', () => {
  const file = [
    'kind: Deployment',
    'name: web',
    'metadata: { labels: { a: b } }',
    'spec:',
    '  model: m',
    '  stack: onnx',
    '  replica: 3',
    '  resources: { gpu: 1, cpu: 1 }',
    '  rollout: { surge: 2 }',
    '  colour: blue',
  ].join('\n');
  assert.deepEqual(problems(file), [
    'web.yaml document 1 (Deployment "web"): metadata: unknown field',
    'web.yaml document 1 (Deployment "web"): spec.replica: unknown field (did you mean "replicas"?)',
    'web.yaml document 1 (Deployment "web"): spec.resources.gpu: unknown field (did you mean "gpus"?)',
    'web.yaml document 1 (Deployment "web"): spec.rollout.surge: unknown field',
    'web.yaml document 1 (Deployment "web"): spec.colour: unknown field',
  ]);
  // A job has workers, not replicas: no suggestion from another kind's fields.
  assert.deepEqual(problems('kind: Job\nname: j\nspec: { image: busybox, replicas: 2 }\n'), ['web.yaml document 1 (Job "j"): spec.replicas: unknown field']);
});

test('the whole file is checked: every problem of every document is reported at once', () => {
  const file = [
    'kind: Deployment',
    'name: web',
    'spec: { model: m, stack: onnx, replicas: -1, resources: { cpu: lots } }',
    '---',
    'kind: Job',
    'name: etl',
    'spec: { image: busybox, retryBackoff: 5q, deadline: 3600, workers: 0 }',
  ].join('\n');
  assert.deepEqual(problems(file), [
    'web.yaml document 1 (Deployment "web"): spec.replicas: must be between 0 and 4294967295, got -1',
    'web.yaml document 1 (Deployment "web"): spec.resources.cpu: "lots" is not a CPU amount; use cores (2, 0.5) or millicores (500m)',
    'web.yaml document 2 (Job "etl"): spec.retryBackoff: "5q" is not a duration; use forms like 500ms, 15s, 2m, 1h or 30d',
    'web.yaml document 2 (Job "etl"): spec.deadline: expected a duration such as "5s", "2m" or "1h", got 3600',
    'web.yaml document 2 (Job "etl"): spec.workers: must be between 1 and 4294967295, got 0',
  ]);
});

test('stack and image: exactly one', () => {
  assert.deepEqual(problems('kind: Deployment\nname: web\nspec: { model: m, stack: onnx, image: busybox }\n'), [
    'web.yaml document 1 (Deployment "web"): spec.image: give stack or image, not both',
  ]);
  assert.deepEqual(problems('kind: Job\nname: etl\nspec: { command: [true] }\n'), [
    'web.yaml document 1 (Job "etl"): spec.stack: is required: give stack (a built-in runtime such as onnx) or image (your own container)',
  ]);
});

test('the envelope: kind, name and spec are required and checked', () => {
  assert.deepEqual(problems('name: web\nspec: { model: m, stack: onnx }\n'), ['web.yaml document 1 ("web"): kind: is required: Deployment or Job']);
  assert.deepEqual(problems('kind: Service\nname: web\nspec: {}\n'), ['web.yaml document 1 ("web"): kind: must be Deployment or Job, got "Service"']);
  assert.deepEqual(problems('kind: Deployment\nspec: { model: m, stack: onnx }\n'), ['web.yaml document 1 (Deployment): name: is required']);
  assert.deepEqual(problems('kind: Deployment\nname: Web_1\nspec: { model: m, stack: onnx }\n'), [
    'web.yaml document 1 (Deployment "Web_1"): name: "Web_1" is not valid: use lowercase letters, digits and "-" (1-63, starting and ending with a letter or digit)',
  ]);
  assert.deepEqual(problems('kind: Deployment\nname: web\n'), ['web.yaml document 1 (Deployment "web"): spec: is required']);
  assert.deepEqual(problems('kind: Deployment\nname: web\nspec: [model, m]\n'), ['web.yaml document 1 (Deployment "web"): spec: expected a mapping, got array']);
  assert.deepEqual(problems('kind: Deployment\nname: web\nspec: { stack: onnx }\n'), [
    'web.yaml document 1 (Deployment "web"): spec.model: is required: the model REF to serve (name, name:3 or name@alias)',
  ]);
  assert.deepEqual(problems('- kind: Deployment\n'), ['web.yaml document 1: expected a mapping with kind, name and spec, got a list']);
});

test('values of the wrong type say what was expected and what was found, in file order', () => {
  const file = [
    'kind: Deployment',
    'name: web',
    'spec:',
    '  model: "m:0"',
    '  stack: ONNX',
    '  replicas: "3"',
    '  command: python serve.py',
    '  env: { 1BAD: x, GOOD: [1] }',
    '  constraints: { "zone eu": x }',
    '  port: 70000',
    '  readinessPath: health',
    '  resources: { memory: [1], gpuModel: 100 }',
  ].join('\n');
  assert.deepEqual(problems(file), [
    'web.yaml document 1 (Deployment "web"): spec.model: "m:0": the version after ":" must be a positive whole number',
    'web.yaml document 1 (Deployment "web"): spec.stack: stack "ONNX" is not a stack name (lowercase letters, digits and "-", like onnx)',
    'web.yaml document 1 (Deployment "web"): spec.replicas: expected a whole number, got "3"',
    'web.yaml document 1 (Deployment "web"): spec.command: expected a list such as [python, train.py], got "python serve.py"',
    'web.yaml document 1 (Deployment "web"): spec.env.1BAD: "1BAD" is not a valid name; environment variable names are letters, digits and _, not starting with a digit',
    'web.yaml document 1 (Deployment "web"): spec.env.GOOD: expected a string, got a list',
    'web.yaml document 1 (Deployment "web"): spec.constraints.zone eu: "zone eu" is not a valid name; label keys are letters, digits, ".", "_", "-" and "/" (at most 63)',
    'web.yaml document 1 (Deployment "web"): spec.port: must be between 1 and 65535, got 70000',
    'web.yaml document 1 (Deployment "web"): spec.readinessPath: "health" is not a path starting with /',
    'web.yaml document 1 (Deployment "web"): spec.resources.memory: expected a size such as "512Mi" or a whole number of bytes, got a list',
    'web.yaml document 1 (Deployment "web"): spec.resources.gpuModel: expected a string, got 100',
  ]);
});

test('a job lists its datasets as REFs, each checked', () => {
  assert.deepEqual(problems('kind: Job\nname: etl\nspec: { image: busybox, datasets: [ok, "Bad Name", 3] }\n'), [
    'web.yaml document 1 (Job "etl"): spec.datasets[1]: name "Bad Name" is not valid: use lowercase letters, digits, ".", "_" and "-" (1-100, starting and ending with a letter or digit, no "..")',
    'web.yaml document 1 (Job "etl"): spec.datasets[2]: expected a string, got 3',
  ]);
});

test('YAML that does not parse says where', () => {
  assert.deepEqual(problems(`${sentiment}---\nkind: Job\nname: [etl\n`), [
    'web.yaml document 2: not valid YAML: line 16, column 1: Flow sequence in block collection must be sufficiently indented and end with a ]',
  ]);
  assert.match(problems('kind: Job\nkind: Deployment\n')[0]!, /^web\.yaml document 1: not valid YAML: line 2, column 1: Map keys must be unique/);
  assert.match(problems('kind: Job\nname: *nowhere\n')[0]!, /^web\.yaml document 1: not valid YAML: /);
});

test('an object defined twice in one file is refused; the same name in two kinds is fine', () => {
  const web = 'kind: Deployment\nname: web\nspec: { model: m, stack: onnx }\n';
  assert.deepEqual(problems(`${web}---\n${web}`), ['web.yaml document 2 (Deployment "web"): Deployment "web" is already defined by document 1']);
  assert.equal(parseWorkloadFile(`${web}---\nkind: Job\nname: web\nspec: { image: busybox }\n`, 'f.yaml').length, 2);
});

test('a file without documents is refused', () => {
  assert.deepEqual(problems('', 'stdin'), ['stdin: no documents; expected YAML documents with kind: Deployment or kind: Job']);
  assert.deepEqual(problems('# nothing\n---\n', 'stdin'), ['stdin: no documents; expected YAML documents with kind: Deployment or kind: Job']);
});

test("a Job's output: the model its rank 0's /output is pushed as, with metadata; checked like models push", () => {
  const [job] = parseWorkloadFile(
    'kind: Job\nname: ft\nspec:\n  image: pytorch/pytorch:2.3\n  command: [python, train.py]\n  output: { model: sentiment, format: onnx, type: classification, accuracy: 0.91, meta: { team: nlp } }\n',
    'ft.yaml',
  );
  assert.deepEqual(job?.kind === 'Job' ? job.spec.output : undefined, {
    model: 'sentiment',
    format: 'onnx',
    metadata: { type: 'classification', inputFormat: '', outputFormat: '', accuracy: 0.91, labels: { team: 'nlp' }, sourceJob: '', sourceDatasets: [] },
  });
  const bad = problems('kind: Job\nname: ft\nspec:\n  image: i\n  command: [x]\n  output: { model: Bad Name, format: csv, accuracy: 2, sourceJob: forged }\n');
  assert.ok(bad.some((p) => /spec\.output\.model: .*not valid/.test(p)), bad.join('\n'));
  assert.ok(bad.some((p) => /spec\.output\.format: .*not a model format/.test(p)), bad.join('\n'));
  assert.ok(bad.some((p) => /spec\.output\.accuracy: must be between 0 and 1/.test(p)), bad.join('\n'));
  assert.ok(bad.some((p) => /spec\.output\.sourceJob: unknown field/.test(p)), bad.join('\n'));
});
