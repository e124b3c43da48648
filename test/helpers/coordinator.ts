// An in-process coordinator for tests: loopback ports chosen by the kernel, SQLite in a temp
// dir, closed in t.after(), returned once it leads with the admin and join tokens it bootstrapped.
import type { TestContext } from 'node:test';
import { Coordinator, type CoordinatorDeps, type CoordinatorOptions } from '../../coordinator/coordinator.js';
import { bootstrapTokens, tempDir } from './processes.js';

export function coordinatorOptions(dir: string, overrides: Partial<CoordinatorOptions> = {}): CoordinatorOptions {
  return {
    listen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    store: `sqlite:${dir}/c.db`,
    dataDir: dir,
    blobStore: undefined,
    advertise: undefined,
    nodeTtlMs: 5_000,
    electionTtlMs: 1_000,
    id: 'test',
    tls: undefined,
    ...overrides,
  };
}

/** A coordinator that has not been waited on: for tests that run several on one store. */
export async function createCoordinator(t: TestContext, options: CoordinatorOptions, deps: CoordinatorDeps = {}): Promise<Coordinator> {
  const coordinator = await Coordinator.create(options, deps);
  void coordinator.run();
  t.after(() => coordinator.close());
  return coordinator;
}

export interface LeadingCoordinator {
  coordinator: Coordinator;
  dir: string;
  admin: string;
  join: string;
}

export async function startLeader(t: TestContext, overrides: Partial<CoordinatorOptions> = {}, deps: CoordinatorDeps = {}): Promise<LeadingCoordinator> {
  const dir = overrides.dataDir ?? tempDir(t);
  const coordinator = await createCoordinator(t, coordinatorOptions(dir, overrides), deps);
  for (let i = 0; i < 200 && !coordinator.isLeader; i++) await new Promise((resolve) => setTimeout(resolve, 25));
  if (!coordinator.isLeader) throw new Error('the only coordinator did not become leader within 5 s');
  const { admin, join } = await bootstrapTokens([dir]);
  return { coordinator, dir, admin, join };
}
