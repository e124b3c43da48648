// ApplyDeployment's autoscaling fields as a raw gRPC client sends them (docs/autoscaling.md
// "Spec"): a bad combination is INVALID_ARGUMENT naming the field, and changes nothing; a good
// one is kept as sent and read back.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Deployment, DeploymentSpec } from '../../shared/proto.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { eventually } from '../helpers/eventually.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

test('bad autoscaling combinations are refused with INVALID_ARGUMENT and change nothing; a good one is kept', async (t) => {
  const c = await workloadCluster(t);
  const body = Buffer.from('model sentiment');
  // A push in the leader's first moments may find it still settling in (UNAVAILABLE): push again.
  await eventually('the model is pushed', 10_000, () =>
    c.client.push('model', { name: 'sentiment', format: 'onnx', sizeBytes: body.length }, Readable.from([body])).then(
      () => true,
      (err: { code?: string }) => (err.code === 'UNAVAILABLE' ? undefined : Promise.reject(err)),
    ),
  );
  const apply = (spec: DeploymentSpec) => c.call<Deployment>('DeploymentService', 'ApplyDeployment', { spec, tenant: '' });
  const get = () => c.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web', tenant: '' });

  const good = compileDeploymentSpec({ name: 'web', model: 'sentiment', stack: 'onnx', minReplicas: 0, maxReplicas: 4, targetConcurrency: 2.5, scaleToZeroAfterMs: 300_000 });
  const created = await apply(good);
  assert.deepEqual(
    [created.spec?.minReplicas, created.spec?.maxReplicas, created.spec?.targetConcurrency, Number(created.spec?.scaleToZeroAfterMs)],
    [0, 4, 2.5, 300_000],
    'the bounds are kept as sent',
  );
  const before = await get();

  const refused: Array<[string, DeploymentSpec, RegExp]> = [
    ['min above max', { ...good, minReplicas: 5, maxReplicas: 4, scaleToZeroAfterMs: 0 }, /minReplicas: minReplicas 5 is above maxReplicas 4/],
    ['a negative target', { ...good, targetConcurrency: -1 }, /targetConcurrency: targetConcurrency must be more than 0/],
    ['scale to zero with a minimum', { ...good, minReplicas: 1 }, /scaleToZeroAfterMs: scaleToZeroAfterMs removes the last replica, which minReplicas 1 keeps/],
    ['a target without a maximum', { ...good, maxReplicas: 0, scaleToZeroAfterMs: 0, targetConcurrency: 2 }, /targetConcurrency: targetConcurrency applies to an autoscaled deployment only: give maxReplicas too/],
    ['scale to zero without a maximum', { ...good, maxReplicas: 0 }, /scaleToZeroAfterMs: scaleToZeroAfterMs applies to an autoscaled deployment only/],
    ['a minimum without a maximum', { ...good, maxReplicas: 0, minReplicas: 2, scaleToZeroAfterMs: 0, targetConcurrency: 0 }, /minReplicas: minReplicas applies to an autoscaled deployment only/],
    ['a maximum over 1000', { ...good, maxReplicas: 1001 }, /maxReplicas: must be at most 1000/],
    ['a target over 100000', { ...good, targetConcurrency: 100_001 }, /targetConcurrency: must be at most 100000/],
    ['scale to zero after more than 30 days', { ...good, scaleToZeroAfterMs: 31 * 86_400_000 }, /scaleToZeroAfterMs: must be at most 30 days/],
  ];
  for (const [what, spec, message] of refused) {
    const err = await apply(spec).then(
      () => assert.fail(`${what}: accepted`),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${what}: ${err.details}`);
    assert.match(err.details, /^invalid ApplyDeployment request: /, what);
    assert.match(err.details, message, what);
  }
  const after = await get();
  assert.deepEqual(after.spec, before.spec, 'no refused spec changed the deployment');
  assert.equal(after.generation, before.generation);

  // On the wire a fixed spec's zeros are "not set", and an autoscaled spec's replicas is no error.
  const fixed = await apply(compileDeploymentSpec({ name: 'fixed', model: 'sentiment', stack: 'onnx', replicas: 2 }));
  assert.deepEqual([fixed.spec?.replicas, fixed.spec?.maxReplicas, fixed.spec?.targetConcurrency], [2, 0, 0]);
  await apply({ ...good, name: 'both', replicas: 3 });
});
