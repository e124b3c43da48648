// A lone coordinator on SQLite whose disk fills up: a real coordinator process with its store
// and blobs on a 16 MiB tmpfs (mounting one needs root, as CI runs). While the disk is full every
// write is RESOURCE_EXHAUSTED naming the path, nothing partial is left, the coordinator keeps
// its leadership (a lone coordinator has no one to hand it to), and once space is freed it
// takes writes again.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CoordinatorClient } from '../../shared/client.js';
import type { MlfleetError } from '../../shared/errors.js';
import { bootstrapTokens, startCoordinator } from '../helpers/processes.js';
import { fill, smallDisk } from '../helpers/small-disk.js';

const ELECTION_TTL_MS = 1_000;

async function health(http: string): Promise<{ role: string }> {
  const res = await fetch(`http://${http}/healthz`);
  return (await res.json()) as { role: string };
}

test('a full disk under a lone SQLite coordinator: RESOURCE_EXHAUSTED naming the path on every write, nothing partial, leadership kept, writes again once freed', async (t) => {
  const disk = smallDisk(t, '16m');
  const coordinator = await startCoordinator(t, 'full', ['--store', `sqlite:${disk}/c.db`, '--data-dir', disk, '--election-ttl', `${ELECTION_TTL_MS}ms`]);
  const { admin } = await bootstrapTokens([disk]);
  const client = new CoordinatorClient([coordinator.grpc], { token: admin });
  t.after(() => client.close());
  await client.createTenant({ name: 'before', description: '' });

  const filler = path.join(disk, 'filler');
  fill(filler);
  const failures: string[] = [];
  const expectFull = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      failures.push(`${what} succeeded on a full disk`);
    } catch (err) {
      const e = err as MlfleetError;
      if (e.grpcStatus !== grpc.status.RESOURCE_EXHAUSTED || !e.message.includes(disk)) failures.push(`${what}: ${e.code} ${e.message}`);
    }
  };
  await expectFull('tenants create', () => client.createTenant({ name: 'during', description: '' }));
  await expectFull('tokens create', () => client.createToken({ tenant: 'before', role: 'consumer', description: '' }));
  const model = Buffer.alloc(4 * 2 ** 20, 7);
  await expectFull('models push', () =>
    client.push('model', { name: 'big', format: 'onnx', sizeBytes: model.length, metadata: { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] } }, Readable.from([model])),
  );
  assert.deepEqual(failures, []);

  // Several election TTLs on a full disk: still the leader, still answering reads.
  await new Promise((resolve) => setTimeout(resolve, ELECTION_TTL_MS * 4));
  assert.equal((await health(coordinator.http)).role, 'leader', 'a lone coordinator keeps its leadership over a full disk');
  assert.deepEqual((await client.listTenants()).tenants.map((x) => x.name).sort(), ['before', 'default']);
  assert.deepEqual((await client.listArtifacts('model')).artifacts, [], 'no partial model');

  rmSync(filler);
  await client.createTenant({ name: 'after', description: '' });
  assert.deepEqual((await client.listTenants()).tenants.map((x) => x.name).sort(), ['after', 'before', 'default']);
  assert.equal((await health(coordinator.http)).role, 'leader');
  assert.equal(coordinator.child.exitCode, null, 'the coordinator stayed up');
});
