// A node's desired set goes out in bounded pieces (DESIGN principle 4), and objects are bounded
// at the API (issue 14, item 2): the pieces are cut and gathered right, and a node whose whole
// set is over gRPC's 4 MiB default still gets it and keeps its session.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { allocationBytes, DesiredAssembler, desiredPieces } from '../../shared/desired-pieces.js';
import type { Allocation, Deployment, Node } from '../../shared/proto.js';
import { until } from '../helpers/eventually.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

function allocation(id: string, specBytes: number): Allocation {
  return { id, kind: 'deployment', workload: 'w', tenant: 't', resources: null, gpuIndexes: [], hostPort: 0, specJson: JSON.stringify({ pad: 'x'.repeat(specBytes) }), modRevision: 1 } as Allocation;
}

test('a set is cut into pieces under the bound, the first resets and the last completes', () => {
  const set = { revision: 7, allocations: Array.from({ length: 50 }, (_, i) => allocation(`a${i}`, 100_000)) };
  const pieces = desiredPieces(set, 1_000_000);
  assert.ok(pieces.length >= 5, `${pieces.length} pieces`);
  for (const piece of pieces) assert.ok(piece.allocations.reduce((n, a) => n + allocationBytes(a), 0) <= 1_000_000);
  assert.deepEqual(pieces.map((p) => p.reset), pieces.map((_, i) => i === 0));
  assert.deepEqual(pieces.map((p) => p.complete), pieces.map((_, i) => i === pieces.length - 1));
  assert.deepEqual(pieces.flatMap((p) => p.allocations.map((a) => a.id)), set.allocations.map((a) => a.id));

  const assembler = new DesiredAssembler();
  const results = pieces.map((p) => assembler.add(p));
  assert.ok(results.slice(0, -1).every((r) => r === undefined), 'nothing is applied before the last piece');
  assert.deepEqual(results.at(-1)!.allocations.map((a) => a.id), set.allocations.map((a) => a.id));
  assert.equal(results.at(-1)!.revision, 7);
});

test('an empty set is one piece, and pieces without their start are dropped', () => {
  assert.deepEqual(desiredPieces({ revision: 3, allocations: [] }), [{ revision: 3, allocations: [], reset: true, complete: true }]);
  const pieces = desiredPieces({ revision: 4, allocations: [allocation('a', 600_000), allocation('b', 600_000)] }, 1_000_000);
  assert.equal(pieces.length, 2);
  const assembler = new DesiredAssembler();
  assert.equal(assembler.add(pieces[1]!), undefined, 'a tail without its head is not a set');
  // A set that changed revision half way is dropped; the next whole one is applied.
  assert.equal(assembler.add(pieces[0]!), undefined);
  assert.equal(assembler.add({ ...pieces[1]!, revision: 5 }), undefined);
  assert.equal(assembler.add(pieces[1]!), undefined, 'the gathered set was dropped with the stray piece');
  assert.equal(assembler.add(pieces[0]!), undefined);
  assert.deepEqual(assembler.add(pieces[1]!)?.allocations.map((a) => a.id), ['a', 'b']);
});

test('a node whose whole desired set is over 4 MiB gets it in pieces, keeps its session and stays ready', async (t) => {
  const c = await workloadCluster(t);
  const model = Buffer.from('model');
  await c.client.push('model', { name: 'm', format: 'onnx', sizeBytes: model.length }, Readable.from([model]));
  // The fake agent keeps grpc-js's default 4 MiB receive limit: one message with the set would end its session.
  const a = await c.agent('node-a');
  const env: Record<string, string> = {};
  for (let i = 0; i < 4; i++) env[`PAD_${i}`] = 'p'.repeat(30 * 1024);
  await c.call<Deployment>('DeploymentService', 'ApplyDeployment', {
    spec: { name: 'wide', model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 40, resources: { cpuMillis: 10, memoryBytes: 2 ** 20 }, env },
  });
  await until('all 40 replicas desired on node-a', () => a.desired.length === 40, 20_000);
  const wholeBytes = a.desired.reduce((n, x) => n + Buffer.byteLength(x.specJson), 0);
  assert.ok(wholeBytes > 4 * 2 ** 20, `the whole set is ${wholeBytes} bytes`);
  assert.ok(a.desiredPieces >= 5, `${a.desiredPieces} pieces`);
  assert.equal(a.endedWith, undefined, `the session holds: ${a.endedWith?.details}`);

  // The node stays ready and takes new work: a new deployment reaches it (it stayed pending before).
  await c.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'small', model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 1, resources: { cpuMillis: 10, memoryBytes: 2 ** 20 } } });
  await until('the new replica reaches node-a', () => a.desired.some((x) => x.workload === 'small'), 20_000);
  assert.equal(a.endedWith, undefined);
  assert.equal(((await c.client.getNode('node-a')) as Node).status, 'ready');
});
