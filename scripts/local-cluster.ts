#!/usr/bin/env node
// `npm start`: a working single-machine cluster on the embedded defaults — a coordinator on
// SQLite and one agent for this host, in one process. State lives under ./.mlfleet (or
// MLFLEET_DATA_DIR); Ctrl-C stops both cleanly, and running it again picks the state up.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import path from 'node:path';
import { Agent } from '../agent/agent.js';
import { defaultNodeName } from '../agent/node-name.js';
import { detectDriver } from '../agent/driver-detect.js';
import { gatewayGrpcListen } from '../agent/options.js';
import { writeSecret } from '../coordinator/bootstrap.js';
import { Coordinator } from '../coordinator/coordinator.js';
import { runMain } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { handleSignals } from '../shared/signals.js';
import { stopMessage } from './local/stop-message.js';

await runMain('mlfleet local cluster', async () => {
  const dataDir = path.resolve(process.env.MLFLEET_DATA_DIR ?? '.mlfleet');
  const log = createLogger({ name: 'mlfleet', level: process.env.MLFLEET_LOG_LEVEL ?? 'warn' });
  let bootstrapped = false;
  const coordinator = await Coordinator.create(
    {
      listen: process.env.MLFLEET_LISTEN ?? '127.0.0.1:7700',
      httpListen: process.env.MLFLEET_HTTP_LISTEN ?? '127.0.0.1:7701',
      store: `sqlite:${path.join(dataDir, 'coordinator.db')}`,
      dataDir,
      blobStore: process.env.MLFLEET_BLOB_STORE,
      advertise: undefined,
      nodeTtlMs: 15_000,
      electionTtlMs: 2_000,
      id: 'local',
      tls: undefined,
    },
    { log, onBootstrap: () => void (bootstrapped = true) },
  );
  const running = [coordinator.run()];
  // mlfleetctl reads ~/.config/mlfleet/token; a new cluster puts its admin token there (an
  // existing one only when the file is missing), so the quick start needs no extra step.
  const tokenFile = path.join(homedir(), '.config', 'mlfleet', 'token');
  try {
    await waitFor(() => coordinator.isLeader, 30_000, 'the coordinator did not become leader within 30 s');
  } catch (err) {
    await coordinator.close();
    throw err;
  }
  const adminToken = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  let tokenNote = `${tokenFile.replace(homedir(), '~')} (unchanged)`;
  if (bootstrapped || !existsSync(tokenFile)) {
    mkdirSync(path.dirname(tokenFile), { recursive: true, mode: 0o700 });
    writeSecret(tokenFile, adminToken);
    tokenNote = `written to ${tokenFile.replace(homedir(), '~')}`;
  }
  // A developer's machine without Docker still gets a cluster, but never silently: the process
  // driver runs every task as this user, with no containers (the agent itself never falls back).
  const driver = await detectDriver();
  if (driver === 'process') {
    process.stderr.write(
      'WARNING: no Docker engine answers, so this local cluster runs tasks with the process driver: as plain processes of your user, ' +
        'able to read your files and the cluster\'s tokens. Start dockerd for containers; never use this for other people\'s workloads.\n',
    );
  }
  let agent: Agent;
  try {
    agent = await Agent.create(
      {
        coordinators: [coordinator.address],
        name: process.env.MLFLEET_NAME ?? defaultNodeName(),
        dataDir: path.join(dataDir, 'agent'),
        labels: {},
        driver,
        taskUser: userInfo().username,
        gatewayListen: process.env.MLFLEET_GATEWAY_LISTEN ?? '127.0.0.1:7780',
        gatewayGrpcListen: gatewayGrpcListen(process.env.MLFLEET_GATEWAY_GRPC_LISTEN, process.env.MLFLEET_GATEWAY_LISTEN ?? '127.0.0.1:7780'),
        httpListen: process.env.MLFLEET_AGENT_HTTP_LISTEN ?? '127.0.0.1:7781',
        advertise: undefined,
        cacheMaxBytes: 50 * 2 ** 30,
        inventoryFile: process.env.MLFLEET_INVENTORY_FILE,
        tls: undefined,
        joinToken: readFileSync(path.join(dataDir, 'join-token'), 'utf8').trim(),
      },
      { log },
    );
  } catch (err) {
    await coordinator.close();
    throw err;
  }
  running.push(agent.run());
  const gpus = agent.capacity.gpus.length;
  process.stdout.write(
    [
      'mlfleet local cluster is up (Ctrl-C to stop)',
      `  coordinator  gRPC ${coordinator.address}   HTTP http://${coordinator.httpAddress}/healthz   store sqlite:${path.join(dataDir, 'coordinator.db')}`,
      `  agent        node ${agent.options.name}   HTTP http://${agent.httpAddress}/healthz   driver ${agent.options.driver}   ` +
        `${agent.capacity.cpuMillis / 1000} cores, ${(agent.capacity.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${gpus} GPU${gpus === 1 ? '' : 's'}`,
      `  admin token  ${tokenNote}; also in ${path.join(dataDir, 'admin-token')}`,
      '  try          npx mlfleetctl nodes ls',
      '',
    ].join('\n'),
  );
  handleSignals(async () => {
    // Asked before the close: a closed agent can no longer list what its driver runs.
    const tasks = await agent.tasks().catch(() => []);
    const clusterId = agent.session.welcome?.clusterId;
    await agent.close();
    await coordinator.close();
    const left = stopMessage({ driver: agent.options.driver, node: agent.options.name, clusterId, tasks });
    process.stdout.write(['mlfleet local cluster stopped', ...left, ''].join('\n'));
  }, log);
  await Promise.all(running);
});

async function waitFor(check: () => boolean, timeoutMs: number, message: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
