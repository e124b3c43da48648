// The autoscaling settings of a deployment as people write them (docs/autoscaling.md "Spec"),
// without a coordinator: the rules of shared/autoscale-spec.ts under each surface's names, the
// YAML fields compiled into the wire spec, and how `deployments ls` and `show` render an
// autoscaled deployment and its autoscaler's view.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTOSCALE_FLAG_NAMES, AUTOSCALE_WIRE_NAMES, autoscaleProblems } from '../../shared/autoscale-spec.js';
import type { AutoscalerView, Deployment } from '../../shared/proto.js';
import { compileDeploymentSpec, parseWorkloadFile, WorkloadFileError } from '../../shared/workload-spec.js';
import { render } from '../../scripts/cli/output.js';
import { deploymentDetailView, deploymentListView } from '../../scripts/cli/views/deployments.js';

const messages = (shape: Parameters<typeof autoscaleProblems>[0], names = AUTOSCALE_FLAG_NAMES) => autoscaleProblems(shape, names).map((p) => `${p.setting}: ${p.message}`);

test('the rules: a maximum makes it autoscaled, and the other settings need one', () => {
  assert.deepEqual(messages({ minReplicas: 0, maxReplicas: 4, targetConcurrency: 2, scaleToZeroAfterMs: 300_000 }), []);
  assert.deepEqual(messages({ maxReplicas: 1 }), []);
  assert.deepEqual(messages({ replicas: true }), [], 'a fixed size alone');
  assert.deepEqual(messages({ replicas: true, maxReplicas: 4 }), ['replicas: give --replicas (a fixed size) or --max-replicas (autoscaled between bounds), not both']);
  assert.deepEqual(messages({ replicas: true, minReplicas: 1, maxReplicas: 4 }), ['replicas: give --replicas (a fixed size) or --min-replicas and --max-replicas (autoscaled between bounds), not both']);
  assert.deepEqual(messages({ minReplicas: 5, maxReplicas: 4 }), ['minReplicas: --min-replicas 5 is above --max-replicas 4: the minimum must be at most the maximum']);
  assert.deepEqual(messages({ maxReplicas: 4, targetConcurrency: 0 }), ['targetConcurrency: --target-concurrency must be more than 0 (in-flight requests per replica; leave it out for 4)']);
  assert.deepEqual(messages({ maxReplicas: 4, targetConcurrency: -1 }).length, 1);
  assert.deepEqual(messages({ targetConcurrency: 2 }), [
    'targetConcurrency: --target-concurrency applies to an autoscaled deployment only: give --max-replicas too (or leave --target-concurrency out for a fixed size)',
  ]);
  assert.deepEqual(messages({ scaleToZeroAfterMs: 60_000 }), [
    'scaleToZeroAfter: --scale-to-zero-after applies to an autoscaled deployment only: give --max-replicas too (or leave --scale-to-zero-after out for a fixed size)',
  ]);
  assert.deepEqual(messages({ minReplicas: 2 }), ['minReplicas: --min-replicas applies to an autoscaled deployment only: give --max-replicas too (or leave --min-replicas out for a fixed size)']);
  assert.deepEqual(messages({ minReplicas: 1, maxReplicas: 4, scaleToZeroAfterMs: 60_000 }), [
    'scaleToZeroAfter: --scale-to-zero-after removes the last replica, which --min-replicas 1 keeps: give --min-replicas 0 or leave --scale-to-zero-after out',
  ]);
  assert.deepEqual(
    autoscaleProblems({ minReplicas: 3, maxReplicas: 2, scaleToZeroAfterMs: 1 }, AUTOSCALE_WIRE_NAMES).map((p) => p.setting),
    ['minReplicas', 'scaleToZeroAfter'],
    'every problem at once, each naming the field to change',
  );
});

test('an autoscaled deployment compiles to its bounds, the default target, and max(min, 1) replicas to start', () => {
  const fixed = compileDeploymentSpec({ name: 'web', model: 'm', stack: 'onnx', replicas: 3 });
  assert.deepEqual([fixed.replicas, fixed.minReplicas, fixed.maxReplicas, fixed.targetConcurrency, fixed.scaleToZeroAfterMs], [3, 0, 0, 0, 0]);
  const toZero = compileDeploymentSpec({ name: 'web', model: 'm', stack: 'onnx', maxReplicas: 8, scaleToZeroAfterMs: 300_000 });
  assert.deepEqual([toZero.replicas, toZero.minReplicas, toZero.maxReplicas, toZero.targetConcurrency, toZero.scaleToZeroAfterMs], [1, 0, 8, 4, 300_000]);
  const floor = compileDeploymentSpec({ name: 'web', model: 'm', stack: 'onnx', minReplicas: 2, maxReplicas: 8, targetConcurrency: 2.5 });
  assert.deepEqual([floor.replicas, floor.minReplicas, floor.maxReplicas, floor.targetConcurrency, floor.scaleToZeroAfterMs], [2, 2, 8, 2.5, 0]);
});

const autoscaledYaml = `
kind: Deployment
name: web
spec:
  model: sentiment
  stack: onnx
  minReplicas: 0
  maxReplicas: 6
  targetConcurrency: 2.5
  scaleToZeroAfter: 5m
`;

test('YAML minReplicas, maxReplicas, targetConcurrency and scaleToZeroAfter become the wire fields', () => {
  const [object] = parseWorkloadFile(autoscaledYaml, 'web.yaml');
  assert.equal(object?.kind, 'Deployment');
  const spec = object!.spec as ReturnType<typeof compileDeploymentSpec>;
  assert.deepEqual(
    { replicas: spec.replicas, minReplicas: spec.minReplicas, maxReplicas: spec.maxReplicas, targetConcurrency: spec.targetConcurrency, scaleToZeroAfterMs: spec.scaleToZeroAfterMs },
    { replicas: 1, minReplicas: 0, maxReplicas: 6, targetConcurrency: 2.5, scaleToZeroAfterMs: 300_000 },
  );
  assert.deepEqual(spec, compileDeploymentSpec({ name: 'web', model: 'sentiment', stack: 'onnx', minReplicas: 0, maxReplicas: 6, targetConcurrency: 2.5, scaleToZeroAfterMs: 300_000 }), 'the same spec as the flags give');
});

function yamlProblems(specLines: string): string[] {
  const content = `kind: Deployment\nname: web\nspec:\n  model: sentiment\n  stack: onnx\n${specLines}`;
  try {
    parseWorkloadFile(content, 'web.yaml');
  } catch (err) {
    assert.ok(err instanceof WorkloadFileError, String(err));
    return [...err.problems];
  }
  return assert.fail(`accepted:\n${specLines}`);
}

test('bad autoscaling in YAML is refused naming the field, and nothing is compiled', () => {
  const at = 'web.yaml document 1 (Deployment "web"): spec.';
  assert.deepEqual(yamlProblems('  replicas: 2\n  maxReplicas: 4\n'), [`${at}replicas: give replicas (a fixed size) or maxReplicas (autoscaled between bounds), not both`]);
  assert.deepEqual(yamlProblems('  minReplicas: 5\n  maxReplicas: 4\n'), [`${at}minReplicas: minReplicas 5 is above maxReplicas 4: the minimum must be at most the maximum`]);
  assert.deepEqual(yamlProblems('  maxReplicas: 4\n  targetConcurrency: 0\n'), [`${at}targetConcurrency: must be more than 0 and at most 100000, got 0`]);
  assert.deepEqual(yamlProblems('  maxReplicas: 4\n  targetConcurrency: many\n'), [`${at}targetConcurrency: expected a number such as 4 or 0.5, got "many"`]);
  assert.deepEqual(yamlProblems('  targetConcurrency: 2\n'), [
    `${at}targetConcurrency: targetConcurrency applies to an autoscaled deployment only: give maxReplicas too (or leave targetConcurrency out for a fixed size)`,
  ]);
  assert.deepEqual(yamlProblems('  scaleToZeroAfter: 5m\n'), [
    `${at}scaleToZeroAfter: scaleToZeroAfter applies to an autoscaled deployment only: give maxReplicas too (or leave scaleToZeroAfter out for a fixed size)`,
  ]);
  assert.deepEqual(yamlProblems('  minReplicas: 1\n  maxReplicas: 4\n  scaleToZeroAfter: 5m\n'), [
    `${at}scaleToZeroAfter: scaleToZeroAfter removes the last replica, which minReplicas 1 keeps: give minReplicas 0 or leave scaleToZeroAfter out`,
  ]);
  assert.deepEqual(yamlProblems('  maxReplicas: 1001\n'), [`${at}maxReplicas: must be between 1 and 1000, got 1001`]);
  assert.deepEqual(yamlProblems('  maxReplicas: 0\n'), [`${at}maxReplicas: must be between 1 and 1000, got 0`]);
  assert.deepEqual(yamlProblems('  maxReplicas: 4\n  scaleToZeroAfter: 300\n'), [`${at}scaleToZeroAfter: expected a duration such as "5s", "2m" or "1h", got 300`]);
  assert.deepEqual(yamlProblems('  maxReplicas: 4\n  scaleToZeroAfter: 31d\n'), [`${at}scaleToZeroAfter: must be at most 30d`]);
  assert.match(yamlProblems('  maxReplica: 4\n')[0]!, /spec\.maxReplica: unknown field \(did you mean "maxReplicas"\?\)/);
});

// ---- rendering ---------------------------------------------------------------------------------

const NOW = Date.parse('2026-12-07T12:00:00Z');

function fakeDeployment(overrides: Partial<ReturnType<typeof compileDeploymentSpec>>, autoscaler: AutoscalerView | null): Deployment {
  const spec = { ...compileDeploymentSpec({ name: 'web', model: 'sentiment', stack: 'onnx' }), ...overrides };
  return {
    spec,
    tenant: 'acme',
    resolvedVersion: 3,
    modelDigest: 'sha256:ab',
    readyReplicas: 2,
    status: 'available',
    message: '',
    generation: 1,
    allocations: [],
    createdAtMs: NOW - 3_600_000,
    updatedAtMs: NOW - 60_000,
    autoscaler,
  } as unknown as Deployment;
}

const view: AutoscalerView = {
  desiredReplicas: 3,
  inFlight: 9.25,
  waiting: 1,
  requestRate: 12.5,
  stableConcurrency: 8.04,
  panicConcurrency: 9.2,
  panicking: true,
  lastDecision: 'scaled 2 → 3: 9.2 in flight / target 4',
  lastDecisionAtMs: NOW - 12_000,
  idleSinceMs: 0,
  blocked: 'tenant acme is at its quota of 8 GPUs',
};

test('deployments ls shows an autoscaled deployment\'s bounds beside its replicas', () => {
  const auto = fakeDeployment({ replicas: 3, minReplicas: 1, maxReplicas: 4, targetConcurrency: 4 }, view);
  const fixed = fakeDeployment({ name: 'fixed', replicas: 3 }, null);
  const text = render('table', deploymentListView([auto, fixed], NOW));
  const [, autoRow, fixedRow] = text.trimEnd().split('\n');
  assert.match(autoRow!, /^web\s+sentiment\s+3\s+2\/3 \(1–4 auto\)\s+available\s+/);
  assert.match(fixedRow!, /^fixed\s+sentiment\s+3\s+2\/3\s+available\s+/);
});

test('deployments show renders the bounds, target, scale to zero and the autoscaler view, as text and JSON', () => {
  const auto = fakeDeployment({ replicas: 3, minReplicas: 0, maxReplicas: 4, targetConcurrency: 4, scaleToZeroAfterMs: 300_000 }, view);
  const text = render('table', deploymentDetailView(auto, NOW));
  assert.match(text, /Replicas:\s+2 ready of 3 \(autoscaled\)\n/);
  assert.match(text, /Autoscaling:\s+0–4 replicas, target 4 in flight per replica; to zero after 5m0s without a request\n/);
  assert.match(text, /Autoscaler:\s+desired 3; 9\.3 in flight, 1 waiting, 12\.5 req\/s\n/);
  assert.match(text, /Concurrency:\s+stable 8, panic 9\.2 \(panicking: scaling up only\)\n/);
  assert.match(text, /Last decision:\s+scaled 2 → 3: 9\.2 in flight \/ target 4 \(12s ago\)\n/);
  assert.match(text, /Blocked:\s+tenant acme is at its quota of 8 GPUs\n/);
  assert.doesNotMatch(text, /Idle since/, 'not idle: requests seen lately');

  const json = JSON.parse(render('json', deploymentDetailView(auto, NOW)));
  assert.deepEqual(json.autoscaling, { minReplicas: 0, maxReplicas: 4, targetConcurrency: 4, scaleToZeroAfterMs: 300_000 });
  assert.deepEqual(json.autoscaler, {
    desiredReplicas: 3,
    inFlight: 9.25,
    waiting: 1,
    requestRate: 12.5,
    stableConcurrency: 8.04,
    panicConcurrency: 9.2,
    panicking: true,
    lastDecision: 'scaled 2 → 3: 9.2 in flight / target 4',
    lastDecisionAt: new Date(NOW - 12_000).toISOString(),
    idleSince: null,
    blocked: 'tenant acme is at its quota of 8 GPUs',
  });

  const idle = fakeDeployment({ replicas: 0, maxReplicas: 2, scaleToZeroAfterMs: 60_000 }, { ...view, desiredReplicas: 0, inFlight: 0, waiting: 0, panicking: false, blocked: '', lastDecision: '', lastDecisionAtMs: 0, idleSinceMs: NOW - 90_000 });
  const idleText = render('table', deploymentDetailView(idle, NOW));
  assert.match(idleText, /Autoscaling:\s+0–2 replicas, target 4 in flight per replica; to zero after 1m0s without a request\n/, 'a target of 0 on the wire is the default, 4');
  assert.match(idleText, /Last decision:\s+none yet\n/);
  assert.match(idleText, /Idle since:\s+2026-12-07T11:58:30\.000Z \(1m30s ago\)\n/);
  assert.doesNotMatch(idleText, /Blocked|panicking/);

  const fresh = render('table', deploymentDetailView(fakeDeployment({ replicas: 1, minReplicas: 0, maxReplicas: 2, targetConcurrency: 1 }, null), NOW));
  assert.match(fresh, /Autoscaling:\s+0–2 replicas, target 1 in flight per replica; keeps at least 1 replica \(no scale to zero\)\n/);
  assert.match(fresh, /Autoscaler:\s+no reading yet/);
});

test('a fixed-size deployment shows no autoscaling, and its JSON says null', () => {
  const fixed = fakeDeployment({ replicas: 2 }, null);
  const text = render('table', deploymentDetailView(fixed, NOW));
  assert.match(text, /Replicas:\s+2 ready of 2\n/);
  assert.doesNotMatch(text, /Autoscal|Concurrency/);
  const json = JSON.parse(render('json', deploymentDetailView(fixed, NOW)));
  assert.equal(json.autoscaling, null);
  assert.equal(json.autoscaler, null);
});

test('a field refused on its own is not also judged with the others', () => {
  const at = 'web.yaml document 1 (Deployment "web"): spec.';
  assert.deepEqual(yamlProblems('  maxReplicas: 1001\n  scaleToZeroAfter: 5m\n'), [`${at}maxReplicas: must be between 1 and 1000, got 1001`]);
});
