// The first leader to find an empty store creates the `default` tenant, an admin token and an
// agent join token, in one transaction guarded by the bootstrap key (so two leaders racing on a
// new etcd cannot both do it), and writes the two secrets to <data-dir>/admin-token and
// <data-dir>/join-token, readable by the owner only.
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

export function writeSecret(file: string, secret: string): void {
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600); // the mode above only applies when the file is new
}
