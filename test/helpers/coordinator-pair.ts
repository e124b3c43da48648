// Two coordinator processes on a dedicated real etcd, for the fault tests that kill the leader
// with SIGKILL: started, their bootstrap tokens read, a client of both, and the wait for the
// survivor to lead.
import type { TestContext } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { startEtcd } from './etcd.js';
import { bootstrapTokens, startCoordinator, tempDir, type StartedCoordinator } from './processes.js';

export interface CoordinatorPair {
  dir: string;
  coordinators: StartedCoordinator[];
  tokens: { admin: string; join: string; joinFile: string };
  /** An admin client of both coordinators. */
  client: CoordinatorClient;
  /** Which one leads now, and the other. */
  roles(): Promise<{ leader: StartedCoordinator; follower: StartedCoordinator }>;
  /** Waits until `follower` leads (after the leader was killed); an admin client of it alone. */
  survivor(follower: StartedCoordinator, withinMs: number, deadlineMs?: number): Promise<CoordinatorClient>;
}

/** c1 and c2 with `--election-ttl 1s` and `args`, each with its data directory under `dir` (default: a new one). */
export async function startCoordinatorPair(t: TestContext, options: { dir?: string; args?: string[]; deadlineMs?: number } = {}): Promise<CoordinatorPair> {
  const etcd = await startEtcd(t, { dedicated: true });
  const dir = options.dir ?? tempDir(t);
  const storeSpec = `etcd:${etcd.endpoints.join(',')}`;
  const coordinators: StartedCoordinator[] = [];
  for (const name of ['c1', 'c2']) coordinators.push(await startCoordinator(t, name, ['--store', storeSpec, '--data-dir', `${dir}/${name}`, '--election-ttl', '1s', ...(options.args ?? [])]));
  const tokens = await bootstrapTokens(['c1', 'c2'].map((name) => `${dir}/${name}`));
  const client = new CoordinatorClient(coordinators.map((c) => c.grpc), { deadlineMs: options.deadlineMs ?? 5_000, token: tokens.admin });
  t.after(() => client.close());
  return {
    dir,
    coordinators,
    tokens,
    client,
    async roles() {
      const address = (await client.clusterStatus()).leader;
      const leader = coordinators.find((c) => c.grpc === address)!;
      return { leader, follower: coordinators.find((c) => c !== leader)! };
    },
    async survivor(follower, withinMs, deadlineMs = 2_000) {
      const survivor = new CoordinatorClient([follower.grpc], { deadlineMs, token: tokens.admin });
      t.after(() => survivor.close());
      const deadline = Date.now() + withinMs;
      while ((await survivor.clusterStatus().catch(() => undefined))?.leader !== follower.grpc) {
        if (Date.now() > deadline) throw new Error(`${follower.name} did not lead within ${withinMs} ms of the kill`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return survivor;
    },
  };
}
