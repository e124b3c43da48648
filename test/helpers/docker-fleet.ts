// A cluster of real agents on the local Docker engine for tests: a leader, agents started on
// demand (each waiting until its node is ready), the runtime image, and clean-up of every
// container those agents started (containers outlive their agents by design).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import Docker from 'dockerode';
import { CoordinatorClient } from '../../shared/client.js';
import type { Job } from '../../shared/proto.js';
import { startLeader } from './coordinator.js';
import { eventually } from './eventually.js';
import { ensureRuntimeImage } from './images.js';
import { startAgent, tempDir, type Daemon } from './processes.js';
import { WorkloadApi } from './workload-api.js';

export interface Fleet {
  image: string;
  address: string;
  admin: string;
  api: WorkloadApi;
  client: CoordinatorClient;
  docker: Docker;
  /** The test's temporary directory (agents' data directories are under it). */
  dir: string;
  /** Starts a Docker agent whose data directory is dataDir(name); resolves once its node is ready. */
  agent(name: string, options?: { memory?: string }): Promise<void>;
  dataDir(name: string): string;
  job(name: string): Promise<Job>;
  /** The job once `test` holds; on a timeout, the error says how the job stands and what its agents warned of. */
  jobWhen(name: string, what: string, timeoutMs: number, test: (job: Job) => boolean): Promise<Job>;
  /** The allocation's containers, running or not. */
  containers(allocation: string): Promise<Docker.ContainerInfo[]>;
}

export async function dockerFleet(t: TestContext): Promise<Fleet> {
  const image = await ensureRuntimeImage();
  const docker = new Docker();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  const agents: Daemon[] = [];
  t.after(() => {
    api.close();
    client.close();
  });
  const job = (name: string) => api.call<Job>('JobService', 'GetJob', { name });
  return {
    image,
    address: coordinator.address,
    admin,
    api,
    client,
    docker,
    dir,
    agent: async (name, { memory } = {}) => {
      // The agents advertise 127.0.0.1 (the default): the docker driver names such peers to
      // the workers by host.docker.internal, as loopback inside a container is the container.
      const extra = ['--driver', 'docker', '--join-token', join];
      if (memory) {
        const inventory = path.join(dir, `${name}-small.json`);
        writeFileSync(inventory, JSON.stringify({ cpu: '16', memory }));
        extra.push('--inventory-file', inventory);
      }
      agents.push(await startAgent(t, name, [coordinator.address], dir, extra));
      removeContainersAfter(t, name, docker);
      await eventually(`node ${name} ready`, 15_000, async () => ((await client.getNode(name).catch(() => undefined))?.status === 'ready' ? true : undefined));
    },
    dataDir: (name) => path.join(dir, name),
    job,
    jobWhen: (name, what, timeoutMs, test) =>
      eventually(what, timeoutMs, async () => {
        const current = await job(name);
        return test(current) ? current : undefined;
      }).catch(async (err: unknown) => {
        const current = await job(name);
        const workers = JSON.stringify(current.allocations.map((a) => [a.rank, a.node, a.status, a.reason]));
        const warnings = agents.flatMap((a) => a.lines.filter((l) => Number(l.level) >= 40).map((l) => `  ${a.name}: ${JSON.stringify(l)}`));
        throw new Error([`${(err as Error).message}; job ${name} is ${current.status} (${current.message}), workers ${workers}`, ...warnings.slice(-10)].join('\n'));
      }),
    containers: (allocation) => docker.listContainers({ all: true, filters: { label: [`mlfleet.allocation=${allocation}`] } }),
  };
}


/**
 * Containers outlive their agents by design (serving goes on while an agent is down): a test
 * removes what the agent of `node` started. Call it after starting the agent, so that it runs
 * after the agent is stopped (after-hooks run in the order they were added) and nothing is
 * started again behind it.
 */
export function removeContainersAfter(t: TestContext, node: string, docker: Docker = new Docker()): void {
  t.after(async () => {
    const started = await docker.listContainers({ all: true, filters: { label: [`mlfleet.node=${node}`] } });
    await Promise.all(started.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    // And the tenant networks nothing uses any more (Docker refuses to remove one in use):
    // the engine has address pools for a few dozen only.
    await docker.pruneNetworks({ filters: { label: ['mlfleet.network=tenant'] } }).catch(() => undefined);
  });
}
