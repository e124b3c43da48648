// What the etcd backend does beyond the shared conformance suite: TTLs in etcd's whole
// seconds, failing fast when nothing answers, and riding out broken connections (through a
// TCP proxy that cuts them).
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import { EtcdStore } from '../../shared/store/etcd-store.js';
import { Lease } from '../../shared/store/lease.js';
import { StoreUnavailableError } from '../../shared/store/store.js';
import { startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { TcpProxy } from './tcp-proxy.js';
import { WatchReader, aborted, eventually, within } from './support.js';

async function open(t: TestContext, endpoint: string, prefix: string): Promise<EtcdStore> {
  const store = await EtcdStore.create({ endpoints: [endpoint], prefix, callTimeoutMs: 2_000 });
  t.after(() => store.close());
  return store;
}

test('an etcd spawned for tests grants 1 s leases, and TTLs round up to whole seconds', async (t) => {
  const etcd = await startEtcd(t, { dedicated: true });
  const store = await open(t, etcd.endpoints[0]!, etcd.prefix);
  assert.equal((await store.leaseGrant(300)).ttlMs, 1_000);
  assert.equal((await store.leaseGrant(1_500)).ttlMs, 2_000);
});

test('an endpoint that accepts connections but never answers fails within the call timeout', async (t) => {
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    sockets.forEach((socket) => socket.destroy());
    silent.close();
  });
  const endpoint = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
  const startedAt = Date.now();
  await assert.rejects(EtcdStore.create({ endpoints: [endpoint], callTimeoutMs: 1_000 }), (err: unknown) => {
    assert.ok(err instanceof StoreUnavailableError);
    assert.match(err.message, new RegExp(`cannot reach etcd at ${endpoint} \\(no answer within 1000 ms\\)`));
    return true;
  });
  assert.ok(Date.now() - startedAt < 2_000, `took ${Date.now() - startedAt} ms`);
});

test('the etcd store through broken connections', async (t) => {
  const etcd: TestEtcd = await startEtcd(t);
  const url = new URL(etcd.endpoints[0]!);
  let cases = 0;
  const pair = async (t: TestContext) => {
    const prefix = `${etcd.prefix}case-${++cases}/`;
    const proxy = await TcpProxy.start(t, { host: url.hostname, port: Number(url.port) });
    return { proxy, direct: await open(t, url.origin, prefix), proxied: await open(t, proxy.endpoint, prefix) };
  };

  await t.test('a watch resumes after its connection breaks, missing and repeating nothing', async (t) => {
    const { proxy, direct, proxied } = await pair(t);
    const reader = new WatchReader(proxied.watch('/r/', { fromRevision: (await direct.revision()) + 1 }));
    t.after(() => reader.watch.close());
    await direct.put('/r/1', 'before');
    assert.deepEqual((await reader.take(1)).map((e) => e.key), ['/r/1']);
    proxy.cut();
    await direct.put('/r/2', 'during');
    await direct.put('/r/3', 'during');
    assert.deepEqual((await reader.take(2, 15_000)).map((e) => e.key), ['/r/2', '/r/3']);
    await direct.put('/r/4', 'after');
    assert.deepEqual((await reader.take(1)).map((e) => e.key), ['/r/4']);
  });

  await t.test('a Lease reports lost when etcd is out of reach for its TTL, and etcd expires it', async (t) => {
    const { proxy, direct, proxied } = await pair(t);
    const lease = await Lease.create(proxied, 1_000);
    t.after(() => lease.revoke().catch(() => undefined));
    await direct.put('/leased', 'v', { lease: lease.id });
    proxy.block();
    await within('the Lease to report lost', lease.ttlMs + 1_000, aborted(lease.lost));
    await eventually('etcd to expire the lease', lease.ttlMs + 2_000, async () => ((await direct.get('/leased')) ? undefined : true));
    proxy.unblock();
  });
});
