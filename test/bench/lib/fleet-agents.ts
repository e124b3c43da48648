// One process of simulated agents for test/bench/fleet.ts: COUNT real agent sessions
// (agent/session.ts, each on its own gRPC connection) that say hello with a synthetic 8-GPU
// capacity and heartbeat at the interval the leader asks for. Prints "ready N" once every
// session has been welcomed, then runs until SIGTERM. JOIN_TOKEN may be a comma-separated list:
// session i joins with the (i mod n)th, since each join token is admitted two joins at a time
// (coordinator/api/admission.ts) and one token makes 5,000 joins take minutes.
import { setMaxListeners } from 'node:events';
import { systemClock } from '../../../shared/clock.js';
import { silentLogger } from '../../../shared/log.js';
import { CoordinatorSession } from '../../../agent/session.js';
import type { Usage } from '../../../shared/proto.js';

const [address, prefix, countText, joinTokens] = process.argv.slice(2);
const count = Number(countText);
const tokens = joinTokens!.split(',');
const abort = new AbortController();
// Every simulated session listens on this one signal.
setMaxListeners(0, abort.signal);
const GiB = 2 ** 30;
const usage: Usage = { cpuMillisUsed: 1200, memoryUsedBytes: 64 * GiB, gpus: [] };

const sessions = Array.from({ length: count }, (_, i) => {
  const name = `${prefix}-${String(i).padStart(5, '0')}`;
  let credential: string | undefined;
  return new CoordinatorSession({
    coordinators: [address!],
    clock: systemClock,
    random: Math.random,
    log: silentLogger(),
    usage: () => usage,
    onDesired: () => undefined,
    token: () => credential ?? tokens[i % tokens.length]!,
    onCredential: (issued) => void (credential = issued),
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
    hello: () => ({
      nodeName: name,
      agentVersion: 'bench',
      address: `10.0.0.1:${7780 + i}`,
      labels: { pool: prefix! },
      capacity: {
        cpuMillis: 64_000,
        memoryBytes: 512 * GiB,
        gpus: Array.from({ length: 8 }, (_, g) => ({
          index: g,
          uuid: `GPU-${name}-${g}`,
          model: 'NVIDIA H100 80GB HBM3',
          memoryBytes: 80 * GiB,
          computeCapability: '9.0',
          migEnabled: false,
          driverVersion: '580.159.04',
        })),
        nics: [{ name: 'eth0', speedMbps: 100_000, ipv4: '10.0.0.1' }],
        disks: [],
      },
      appliedRevision: 0,
      allocations: [],
      cache: [],
      sessionId: name,
    }),
  });
});

// Open sessions in small batches so connection setup does not starve heartbeats.
const runs: Promise<void>[] = [];
for (let i = 0; i < sessions.length; i += 100) {
  for (const session of sessions.slice(i, i + 100)) runs.push(session.run(abort.signal));
  await new Promise((resolve) => setTimeout(resolve, 20));
}
const readyTimer = setInterval(() => {
  const connected = sessions.filter((s) => s.state === 'connected').length;
  if (connected === count) {
    clearInterval(readyTimer);
    process.stdout.write(`ready ${connected}\n`);
  }
}, 200);
process.on('SIGTERM', () => {
  clearInterval(readyTimer);
  abort.abort();
});
await Promise.all(runs);
