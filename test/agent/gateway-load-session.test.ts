// The gateway's load reports on a real agent session (agent/session.ts over real gRPC), wired as
// the agent wires them (agent/agent.ts: reportLoad → session.send({load}), onConnected →
// gateway.rewake()), against a minimal AgentService that welcomes the agent and records what it
// sends: a held request's wake reaches the leader at once, a busy deployment's load every second,
// and after the session breaks (a leader failover) the new session hears of the held requests
// again, at once, while the request stays held and is answered once a replica is ready.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Gateway } from '../../agent/gateway/gateway.js';
import { CoordinatorSession } from '../../agent/session.js';
import { mlfleetV1, type AgentMessageIn } from '../../shared/proto.js';
import { seededRandom, systemClock } from '../../shared/clock.js';
import { silentLogger } from '../../shared/log.js';
import { modelRoute, type ModelRoute } from '../helpers/routes.js';
import type { DeploymentLoad__Output as DeploymentLoad } from '../../shared/gen/mlfleet/v1/DeploymentLoad.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { until } from '../helpers/eventually.js';

/** An AgentService that welcomes every session and keeps the load messages it receives, per session. */
async function leader(t: TestContext) {
  const sessions: Array<{ loads: DeploymentLoad[][]; end: () => void }> = [];
  const server = new grpc.Server();
  server.addService(mlfleetV1().AgentService.service, {
    Session: (call: grpc.ServerDuplexStream<AgentMessageIn & { msg?: string; load?: { deployments: DeploymentLoad[] } }, unknown>) => {
      const session = { loads: [] as DeploymentLoad[][], end: () => call.end() };
      call.on('data', (message: { msg?: string; load?: { deployments: DeploymentLoad[] }; hello?: unknown }) => {
        if (message.hello) {
          sessions.push(session);
          call.write({ welcome: { nodeName: 'here', coordinatorId: 'fake', leaderAddress: '', heartbeatIntervalMs: 60_000, nodeTtlMs: 60_000 } });
        }
        if (message.msg === 'load' && message.load) session.loads.push(message.load.deployments);
      });
      call.on('error', () => undefined);
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.after(() => server.forceShutdown());
  return { address: `127.0.0.1:${port}`, sessions };
}

function route(address?: string): ModelRoute {
  return modelRoute('acme', 'm', address ? [{ id: 'a1', address }] : [], { deployment: 'web', holds: true });
}

test('load reports go out on the agent session: a wake at once, again on the new session after a failover, and zero once the held request is answered', async (t) => {
  const fake = await leader(t);
  const consumer = mintGatewayToken('consumer', 'acme');
  let gateway!: Gateway;
  const session = new CoordinatorSession({
    coordinators: [fake.address],
    clock: systemClock,
    random: seededRandom(3),
    log: silentLogger(),
    usage: () => ({ cpuMillisUsed: 0, memoryUsedBytes: 0, gpus: [] }),
    onDesired: () => undefined,
    token: () => 'join',
    hello: () => ({ nodeName: 'here', agentVersion: 'test', address: '127.0.0.1:7780', labels: {}, sessionId: 's' }),
    onConnected: () => gateway.rewake(),
  });
  gateway = await Gateway.start({ listen: '127.0.0.1:0', node: 'here', credential: () => undefined, log: silentLogger(), reportLoad: (load) => void session.send({ load }) });
  t.after(() => gateway.close());
  gateway.setTokens(tokenTable(consumer));
  gateway.setRoutes({ revision: 1, models: [route()] });
  const abort = new AbortController();
  const running = session.run(abort.signal);
  t.after(async () => {
    abort.abort();
    await running;
  });
  await until('connected', () => session.state === 'connected');

  const [host, port] = gateway.address.split(':') as [string, string];
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path: '/v2/models/m/infer', method: 'POST', headers: { authorization: `Bearer ${consumer.token}` } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end('{"inputs":[]}');
  });
  const woke = (loads: DeploymentLoad[][]) => loads.flat().some((d) => d.tenant === 'acme' && d.deployment === 'web' && d.wake && d.waiting === 1 && d.inFlight === 1);
  await until('the wake on the first session', () => woke(fake.sessions[0]?.loads ?? []), 5_000);

  // The leader goes away; the agent's next session (the new leader) hears of the held request at once.
  fake.sessions[0]!.end();
  await until('a second session', () => fake.sessions.length >= 2, 10_000);
  await until('the wake again on the new session', () => woke(fake.sessions[1]!.loads), 5_000);
  assert.equal(gateway.held('acme', 'web'), 1, 'the request is still held');

  // A replica is ready: the held request is answered, and the load report says so within a second or two.
  const replica = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{"outputs":[]}'));
  });
  await new Promise<void>((resolve) => replica.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => replica.close(() => resolve())));
  gateway.setRoutes({ revision: 2, models: [route(`127.0.0.1:${(replica.address() as AddressInfo).port}`)] });
  assert.deepEqual(await answer, { status: 200, body: '{"outputs":[]}' });
  const last = () => fake.sessions[1]!.loads.flat().filter((d) => d.deployment === 'web').at(-1);
  await until('a report with nothing in flight or held', () => last()?.inFlight === 0 && last()?.waiting === 0, 5_000);
});
