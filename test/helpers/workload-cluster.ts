// A leading in-process coordinator as workload tests drive it: the workload services and the
// client SDK with the admin token, and scripted agents (FakeAgent) that join it; passes every
// 100 ms unless told otherwise. Everything is closed in t.after().
import type { TestContext } from 'node:test';
import type { CoordinatorOptions } from '../../coordinator/coordinator.js';
import type { WorkloadController } from '../../coordinator/workloads/controller.js';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from './coordinator.js';
import { FakeAgent, type FakeAgentOptions } from './fake-agent.js';
import { WorkloadApi, type WorkloadServiceName } from './workload-api.js';

export interface WorkloadCluster {
  address: string;
  /** Its ops HTTP server (/metrics). */
  httpAddress: string;
  /** The coordinator's data directory (its blobs are under blobs/). */
  dir: string;
  admin: string;
  join: string;
  client: CoordinatorClient;
  api: WorkloadApi;
  call<T>(service: WorkloadServiceName, method: string, request: unknown): Promise<T>;
  agent(name: string, options?: FakeAgentOptions): Promise<FakeAgent>;
  /** The leader's workload controller, for what no service calls (the autoscaler's side). */
  controller(): WorkloadController;
}

export async function workloadCluster(t: TestContext, overrides: Partial<CoordinatorOptions> = {}): Promise<WorkloadCluster> {
  const { coordinator, admin, join, dir } = await startLeader(t, { ...overrides, workloads: { tickMs: 100, ...overrides.workloads } });
  const address = coordinator.address;
  const api = new WorkloadApi(address, admin);
  const client = new CoordinatorClient([address], { token: admin });
  t.after(() => {
    api.close();
    client.close();
  });
  return {
    address,
    httpAddress: coordinator.httpAddress,
    dir,
    admin,
    join,
    client,
    api,
    call: (service, method, request) => api.call(service, method, request),
    agent: (name, options) => FakeAgent.start(t, name, address, join, options),
    controller: () => (coordinator as unknown as { leaderRole(): { workloads: WorkloadController } }).leaderRole().workloads,
  };
}
