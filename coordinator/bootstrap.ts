// The first leader to find an empty store creates the `default` tenant, an admin token and an
// agent join token, in one transaction guarded by the bootstrap key (so two leaders racing on a
// new etcd cannot both do it), and writes the two secrets to <data-dir>/admin-token and
// <data-dir>/join-token, readable by the owner only. It also gives the cluster its id, once
// (ensureClusterId): agents label what they run with it, so two clusters on one Docker engine
// never touch each other's containers.
import { randomBytes } from 'node:crypto';
import { writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../shared/clock.js';
import { keys } from '../shared/keys.js';
import type { Store } from '../shared/store/store.js';
import type { TokenRegistry } from './auth/token-registry.js';
import type { FencedWriter } from './node-registry.js';
import { NO_QUOTA, type TenantRecord } from './tenants.js';

export const DEFAULT_TENANT = 'default';

export interface BootstrapTokens {
  adminToken: string;
  joinToken: string;
  adminTokenFile: string;
  joinTokenFile: string;
}

export async function bootstrap(
  store: Store,
  writer: FencedWriter,
  tokens: TokenRegistry,
  dataDir: string,
  clock: Clock,
): Promise<BootstrapTokens | undefined> {
  if (await store.get(keys.bootstrap)) return undefined;
  const admin = tokens.mint({ tenant: DEFAULT_TENANT, role: 'admin', description: 'bootstrap admin token', createdBy: 'bootstrap' });
  const join = tokens.mint({ tenant: '', role: 'join', description: 'bootstrap agent join token', createdBy: 'bootstrap' });
  const tenant: TenantRecord = { name: DEFAULT_TENANT, description: 'created at bootstrap', quota: NO_QUOTA, createdAtMs: clock.now() };
  const result = await writer.txn(
    [{ key: keys.bootstrap, target: 'createRevision', op: '=', value: 0 }],
    [
      { type: 'put', key: keys.bootstrap, value: JSON.stringify({ atMs: clock.now(), admin: admin.record.id, join: join.record.id }) },
      { type: 'put', key: keys.tenant(DEFAULT_TENANT), value: JSON.stringify(tenant) },
      { type: 'put', key: keys.token(admin.record.id), value: JSON.stringify(admin.record) },
      { type: 'put', key: keys.token(join.record.id), value: JSON.stringify(join.record) },
    ],
  );
  if (!result.succeeded) return undefined;
  tokens.remember(admin.record);
  tokens.remember(join.record);
  const adminTokenFile = path.join(dataDir, 'admin-token');
  const joinTokenFile = path.join(dataDir, 'join-token');
  writeSecret(adminTokenFile, admin.token);
  writeSecret(joinTokenFile, join.token);
  return { adminToken: admin.token, joinToken: join.token, adminTokenFile, joinTokenFile };
}

/** A cluster id: 16 lowercase hex digits, short enough for Docker network names. */
export const CLUSTER_ID = /^[0-9a-f]{16}$/;

/**
 * The cluster's id, made by the first leader that finds none (a new store, or one bootstrapped
 * before clusters had ids) and never changed after: a transaction guarded on the key's absence,
 * so two leaders racing both end up with the one that was written.
 */
export async function ensureClusterId(store: Store, writer: FencedWriter, clock: Clock): Promise<string> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const existing = await store.get(keys.cluster);
    if (existing) {
      const id = (JSON.parse(existing.value) as { id?: unknown }).id;
      if (typeof id !== 'string' || !CLUSTER_ID.test(id)) throw new Error(`the store's cluster id (${keys.cluster}) is malformed; restore it from a backup`);
      return id;
    }
    const id = randomBytes(8).toString('hex');
    const result = await writer.txn(
      [{ key: keys.cluster, target: 'createRevision', op: '=', value: 0 }],
      [{ type: 'put', key: keys.cluster, value: JSON.stringify({ id, createdAtMs: clock.now() }) }],
    );
    if (result.succeeded) return id;
  }
  throw new Error('could not read or create the cluster id');
}

export function writeSecret(file: string, secret: string): void {
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600); // the mode above only applies when the file is new
}
