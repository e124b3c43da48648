// The two Store backends as the conformance suite sees them: each opens a store on fresh
// state of its own (a new SQLite file; a new etcd key namespace), a second client of that
// same state, and forces compaction, so one suite of cases runs against both.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { EtcdStore } from '../../shared/store/etcd-store.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import type { Store } from '../../shared/store/store.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';

export interface Opened {
  store: Store;
  /** Another client (connection, process-like) of the same state. */
  connect(): Promise<Store>;
  /** Discards history before `revision`, as the backend's compaction would. */
  compact(revision: number): Promise<void>;
}

export interface StoreBackend {
  readonly name: 'sqlite' | 'etcd';
  /** Starts what every case needs (etcd: a server), within the suite's test. */
  setup(t: TestContext): Promise<void>;
  open(t: TestContext): Promise<Opened>;
}

/** SQLite on a file per case; sweeps and polls often, so short TTLs expire on time. */
export function sqliteBackend(): StoreBackend {
  let dir = '';
  let files = 0;
  const options = { sweepIntervalMs: 25, pollIntervalMs: 20 };
  return {
    name: 'sqlite',
    async setup(t) {
      dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-store-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
    },
    async open(t) {
      const file = path.join(dir, `case-${++files}.db`);
      const open = async () => {
        const store = await SqliteStore.create(file, options);
        t.after(() => store.close());
        return store;
      };
      const store = await open();
      return { store, connect: open, compact: (revision) => store.compact(revision) };
    },
  };
}

/**
 * etcd with a key namespace per case: spawned for this file alone (test/helpers/etcd.ts), not the
 * shared one, because the conformance cases compact, and a compaction is cluster-wide: on the
 * shared etcd it broke other files' watches resuming from before it (a CI run failed so).
 */
export function etcdBackend(): StoreBackend {
  let etcd: TestEtcd | undefined;
  let namespaces = 0;
  return {
    name: 'etcd',
    async setup(t) {
      etcd = await startEtcd(t, { dedicated: true });
    },
    async open(t) {
      const prefix = `${etcd!.prefix}case-${++namespaces}/`;
      const open = async () => {
        const store = await EtcdStore.create({ endpoints: etcd!.endpoints, prefix });
        t.after(() => store.close());
        return store;
      };
      const store = await open();
      return { store, connect: open, compact: (revision) => store.compact(revision) };
    },
  };
}
