// The cluster's id (coordinator/bootstrap.ts ensureClusterId): made once by the first leader,
// kept in the store, the same for every agent and after the coordinator restarts; agents label
// their containers with it so that two clusters on one engine keep apart.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startLeader } from '../helpers/coordinator.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { tempDir } from '../helpers/processes.js';

test('every agent is welcomed with the cluster id, which a restarted coordinator keeps and another cluster does not share', async (t) => {
  const dir = tempDir(t);
  const first = await startLeader(t, { dataDir: dir });
  const a = await FakeAgent.start(t, 'node-a', first.coordinator.address, first.join);
  const b = await FakeAgent.start(t, 'node-b', first.coordinator.address, first.join);
  assert.match(a.clusterId ?? '', /^[0-9a-f]{16}$/);
  assert.equal(b.clusterId, a.clusterId);
  const id = a.clusterId;

  await first.coordinator.close();
  const again = await startLeader(t, { dataDir: dir });
  const c = await FakeAgent.start(t, 'node-c', again.coordinator.address, again.join);
  assert.equal(c.clusterId, id, 'the same store, the same cluster');

  const other = await startLeader(t);
  const d = await FakeAgent.start(t, 'node-a', other.coordinator.address, other.join);
  assert.match(d.clusterId ?? '', /^[0-9a-f]{16}$/);
  assert.notEqual(d.clusterId, id, 'another store is another cluster');
});
