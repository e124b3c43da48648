// One process of simulated agents for test/bench/fleet.ts: COUNT real agent sessions
// (agent/session.ts, each on its own gRPC connection) that say hello with a synthetic 8-GPU
// capacity and heartbeat at the interval the leader asks for. Prints "ready N" once every
// session has been welcomed, then runs until SIGTERM. JOIN_TOKEN may be a comma-separated list:
// session i joins with the (i mod n)th. Each join token is admitted two joins at a time
// (coordinator/api/admission.ts), and a refused join is answered after a second and then backs
// off for up to 5 s: a fleet that opens every session at once spends minutes being refused (and
// the leader's time on refusals). So each token has at most JOINS_PER_TOKEN sessions joining at
// once; the next starts when one is welcomed, as an operator enrolling hosts in parallel would.
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
/** The join streams the leader admits per join token at once (DEFAULT_ADMISSION_LIMITS.join.streams). */
const JOINS_PER_TOKEN = 2;
/** Per join token, the sessions still waiting for their turn to join. */
const waiting = tokens.map(() => [] as Array<() => void>);
const joined = (i: number) => waiting[i % tokens.length]!.shift()?.();
const usage: Usage = { cpuMillisUsed: 1200, memoryUsedBytes: 64 * GiB, gpus: [] };

const sessions = Array.from({ length: count }, (_, i) => {
  const name = `${prefix}-${String(i).padStart(5, '0')}`;
  let credential: string | undefined;
  let welcomed = false;
  return new CoordinatorSession({
    coordinators: [address!],
    clock: systemClock,
    random: Math.random,
    log: silentLogger(),
    usage: () => usage,
    onDesired: () => undefined,
    // The first welcome carries the credential: this session no longer needs its token's turn.
    onConnected: () => {
      if (welcomed) return;
      welcomed = true;
      joined(i);
    },
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

// Each token's first JOINS_PER_TOKEN sessions start now, each of the others once one before it
// on the same token has been welcomed.
const runs = sessions.map((session, i) => {
  const turn = i < tokens.length * JOINS_PER_TOKEN ? Promise.resolve() : new Promise<void>((resolve) => waiting[i % tokens.length]!.push(resolve));
  return turn.then(() => session.run(abort.signal));
});
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
  // Sessions still waiting for their turn start, see the abort, and end at once.
  for (const queue of waiting) for (const start of queue.splice(0)) start();
});
await Promise.all(runs);
