// The agent's session gathers a desired set sent in pieces and hands on only whole sets: a
// set half-sent when a session breaks is never applied (the leader sends it whole again).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CoordinatorSession } from '../../agent/session.js';
import { seededRandom, systemClock } from '../../shared/clock.js';
import { desiredPieces, type DesiredSet } from '../../shared/desired-pieces.js';
import { silentLogger } from '../../shared/log.js';
import { mlfleetV1, type Allocation } from '../../shared/proto.js';
import { until } from '../helpers/eventually.js';

function allocation(id: string): Allocation {
  return { id, kind: 'deployment', workload: 'w', tenant: 't', resources: null, gpuIndexes: [], hostPort: 0, specJson: JSON.stringify({ pad: 'x'.repeat(400_000) }), modRevision: 1 } as Allocation;
}

test('a set in pieces reaches the agent whole, and a set cut off by a broken session is not applied', async (t) => {
  let sessions = 0;
  const server = new grpc.Server();
  server.addService(mlfleetV1().AgentService.service, {
    Session: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      call.once('data', () => {
        sessions += 1;
        call.write({ welcome: { nodeName: 'n', coordinatorId: 'c', leaderAddress: '', heartbeatIntervalMs: 60_000, nodeTtlMs: 60_000 } });
        const first = desiredPieces({ revision: sessions * 10, allocations: ['a', 'b', 'c', 'd', 'e'].map(allocation) });
        assert.ok(first.length >= 2, 'the set is in several pieces');
        if (sessions === 1) {
          // Half a set, then the session breaks.
          call.write({ desired: first[0] });
          setTimeout(() => call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the leader went away' }), 100);
        } else {
          for (const piece of first) call.write({ desired: piece });
        }
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.after(() => server.forceShutdown());

  const received: DesiredSet[] = [];
  const abort = new AbortController();
  const session = new CoordinatorSession({
    coordinators: [`127.0.0.1:${port}`],
    clock: systemClock,
    random: seededRandom(3),
    log: silentLogger(),
    usage: () => ({ cpuMillisUsed: 0, memoryUsedBytes: 0, gpus: [] }),
    onDesired: (set) => void received.push(set),
    token: () => 'token',
    hello: () => ({ nodeName: 'n', agentVersion: 'test', address: '127.0.0.1:1', labels: {}, capacity: { cpuMillis: 1000, memoryBytes: 2 ** 30, gpus: [], nics: [], disks: [] } }),
  });
  const running = session.run(abort.signal);
  t.after(async () => {
    abort.abort();
    await running;
  });
  await until(`a whole set on the second session (sessions: ${sessions})`, () => received.length > 0, 15_000).catch((err: Error) => assert.fail(`${err.message}; sessions ${sessions}, sets ${received.length}`));
  assert.equal(sessions, 2);
  assert.equal(received.length, 1, 'only the whole set was handed on');
  assert.equal(received[0]!.revision, 20);
  assert.deepEqual(received[0]!.allocations.map((a) => a.id), ['a', 'b', 'c', 'd', 'e']);
});
