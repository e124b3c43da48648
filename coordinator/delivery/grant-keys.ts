// The key pair leaders sign peer grants with (shared/blob-http.ts signGrant): made once, by
// whichever coordinator gets there first, and kept in the store, so that every coordinator
// loads the same one and a new leader's grants verify with the key agents already hold.
import { UnavailableError } from '../../shared/errors.js';
import { generateGrantKeys, loadGrantKeys, type GrantKeys } from '../../shared/blob-http.js';
import { keys } from '../../shared/keys.js';
import type { Store } from '../../shared/store/store.js';

/** The cluster's grant keys, made when absent (PKCS#8 DER, base64, under /mlfleet/grant-key). */
export async function loadClusterGrantKeys(store: Store): Promise<GrantKeys> {
  const existing = await store.get(keys.grantKey);
  if (existing) return fromStored(existing.value);
  const made = generateGrantKeys();
  // Created only if nobody else has: two coordinators starting together end up with one key.
  await store.txn([{ key: keys.grantKey, target: 'createRevision', op: '=', value: 0 }], [{ type: 'put', key: keys.grantKey, value: made.privateKeyDer.toString('base64') }]);
  const stored = await store.get(keys.grantKey);
  if (!stored) throw new UnavailableError('the grant key could not be read back from the store');
  return fromStored(stored.value);
}

function fromStored(value: string): GrantKeys {
  try {
    return loadGrantKeys(Buffer.from(value, 'base64'));
  } catch (err) {
    throw new UnavailableError(`the grant key in the store (${keys.grantKey}) is not an Ed25519 PKCS#8 key: ${(err as Error).message}`);
  }
}
