// The agent session's `load` message (docs/autoscaling.md "Signals"): a valid GatewayLoad
// reaches onLoad with the session's node; a malformed one ends the session with a clear
// INVALID_ARGUMENT error and reaches nothing. Drives the real handler over an in-memory call.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { agentSessionHandler, type AgentSessionDeps } from '../../coordinator/api/agent-session.js';
import { createLogger } from '../../shared/log.js';
import type { GatewayLoad } from '../../shared/proto.js';
import { FakeClock } from '../helpers/fake-clock.js';

class FakeCall extends EventEmitter {
  written: unknown[] = [];
  errors: Array<{ code: number; details: string }> = [];
  ended = false;

  constructor() {
    super();
    this.on('error', (err: { code: number; details?: string; message: string }) => this.errors.push({ code: err.code, details: err.details ?? err.message }));
  }

  write(message: unknown): boolean {
    this.written.push(message);
    return true;
  }

  end(): void {
    this.ended = true;
  }

  getPeer(): string {
    return 'ipv4:127.0.0.1:1';
  }
}

function harness(t: import('node:test').TestContext) {
  const loads: Array<{ node: string; load: GatewayLoad }> = [];
  const ended: string[] = [];
  const deps = {
    registry: () => ({ hello: async () => undefined, heartbeat: () => undefined, reportCache: () => undefined, disconnected: () => true }),
    revision: async () => 1,
    workloads: () => ({ reportStatuses: async () => undefined, desiredFor: () => [], markSent: () => undefined }),
    logs: { deliver: () => undefined, nodeGone: () => undefined },
    routes: () => ({ table: { revision: 1, routes: [] }, record: () => undefined }),
    tokenTable: () => [],
    coordinatorId: 'c1',
    clusterId: () => 'cluster',
    leaderAddress: () => '127.0.0.1:7700',
    sessionEnded: (node: string) => ended.push(node),
    onLoad: (node: string, load: GatewayLoad) => loads.push({ node, load }),
    admit: async () => ({ token: '', credentialId: '' }),
    abandon: async () => undefined,
    heartbeatIntervalMs: 1000,
    nodeTtlMs: 10_000,
    helloTimeoutMs: 5_000,
    clock: new FakeClock(),
    log: createLogger({ level: 'silent' }),
    metrics: { sessions: { inc: () => undefined, dec: () => undefined } },
  } as unknown as AgentSessionDeps;
  const call = new FakeCall();
  agentSessionHandler(deps)(call as never, { tokenId: 't1', role: 'node', tenant: '', node: 'node-a' }, { transfer: () => true });
  call.emit('data', {
    msg: 'hello',
    hello: {
      nodeName: 'node-a', agentVersion: 'test', address: '127.0.0.1:7780', labels: {},
      capacity: { cpuMillis: 1000, memoryBytes: 2 ** 30, gpus: [], nics: [], disks: [] },
      appliedRevision: 0, allocations: [], cache: [], sessionId: 's', peerUploadMbps: 0,
    },
  });
  t.after(() => call.emit('cancelled'));
  return { call, loads, ended };
}

const good: GatewayLoad = {
  sentAtMs: 1_700_000_000_000,
  intervalMs: 1000,
  deployments: [
    { tenant: 'acme', deployment: 'resnet', concurrency: 2.5, inFlight: 3, waiting: 1, requests: 7, wake: true },
    { tenant: 'acme', deployment: 'bert', concurrency: 0, inFlight: 0, waiting: 0, requests: 0, wake: false },
  ],
};

test('a valid load report reaches onLoad with the node', async (t) => {
  const { call, loads } = harness(t);
  await new Promise((r) => setImmediate(r));
  call.emit('data', { msg: 'load', load: good });
  assert.deepEqual(loads, [{ node: 'node-a', load: good }]);
  assert.deepEqual(call.errors, []);
});

test('a malformed load report ends the session with a clear error and reaches nothing', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['negative concurrency', { ...good, deployments: [{ ...good.deployments[0], concurrency: -1 }] }, /invalid gateway load: deployments\.0\.concurrency/],
    ['infinite concurrency', { ...good, deployments: [{ ...good.deployments[0], concurrency: Infinity }] }, /deployments\.0\.concurrency/],
    ['fractional in flight', { ...good, deployments: [{ ...good.deployments[0], inFlight: 1.5 }] }, /deployments\.0\.inFlight/],
    ['empty tenant', { ...good, deployments: [{ ...good.deployments[0], tenant: '' }] }, /deployments\.0\.tenant: is required/],
    ['long name', { ...good, deployments: [{ ...good.deployments[0], deployment: 'x'.repeat(64) }] }, /deployments\.0\.deployment/],
    ['too many deployments', { ...good, deployments: Array.from({ length: 10_001 }, () => good.deployments[1]) }, /deployments: Array must contain at most 10000/],
  ];
  for (const [what, load, message] of cases) {
    const { call, loads, ended } = harness(t);
    await new Promise((r) => setImmediate(r));
    call.emit('data', { msg: 'load', load });
    assert.deepEqual(loads, [], what);
    assert.equal(call.errors.length, 1, what);
    assert.equal(call.errors[0]!.code, grpc.status.INVALID_ARGUMENT, what);
    assert.match(call.errors[0]!.details, message, what);
    assert.deepEqual(ended, ['node-a'], `${what}: the session ended`);
  }
});

test('a load report before hello is refused', (t) => {
  const loads: unknown[] = [];
  const call = new FakeCall();
  const deps = {
    registry: () => ({}),
    onLoad: (_node: string, load: GatewayLoad) => loads.push(load),
    logs: { nodeGone: () => undefined },
    helloTimeoutMs: 5_000,
    clock: new FakeClock(),
    log: createLogger({ level: 'silent' }),
    metrics: { sessions: { inc: () => undefined, dec: () => undefined } },
  } as unknown as AgentSessionDeps;
  agentSessionHandler(deps)(call as never, { tokenId: 't1', role: 'node', tenant: '', node: 'node-a' }, { transfer: () => true });
  t.after(() => call.emit('cancelled'));
  call.emit('data', { msg: 'load', load: good });
  assert.deepEqual(loads, []);
  assert.equal(call.errors[0]?.code, grpc.status.FAILED_PRECONDITION);
  assert.match(call.errors[0]!.details, /first message of a session must be hello/);
});
