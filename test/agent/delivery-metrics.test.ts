// The agent's delivery counters on /metrics: each scrape reads the live DeliveryCounters.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { DeliveryCounters } from '../../agent/delivery/counters.js';
import { registerDeliveryMetrics } from '../../agent/delivery/metrics.js';

test('received bytes and corrupt pieces by source, and bytes sent to peers, as the counters stand at each scrape', async () => {
  const registry = new Registry();
  const counters = new DeliveryCounters();
  registerDeliveryMetrics(registry, counters);
  const before = await registry.metrics();
  assert.match(before, /^mlfleet_agent_blob_received_bytes_total\{source="peer"\} 0$/m);
  assert.match(before, /^mlfleet_agent_blob_peer_sent_bytes_total 0$/m);

  counters.received('peer', 1000);
  counters.received('coordinator', 24);
  counters.received('s3', 7);
  counters.corrupt('peer');
  counters.sentToPeer(4096);
  const after = await registry.metrics();
  assert.match(after, /^# TYPE mlfleet_agent_blob_received_bytes_total counter$/m);
  assert.match(after, /^mlfleet_agent_blob_received_bytes_total\{source="peer"\} 1000$/m);
  assert.match(after, /^mlfleet_agent_blob_received_bytes_total\{source="coordinator"\} 24$/m);
  assert.match(after, /^mlfleet_agent_blob_received_bytes_total\{source="s3"\} 7$/m);
  assert.match(after, /^mlfleet_agent_blob_corrupt_pieces_total\{source="peer"\} 1$/m);
  assert.match(after, /^mlfleet_agent_blob_corrupt_pieces_total\{source="s3"\} 0$/m);
  assert.match(after, /^mlfleet_agent_blob_peer_sent_bytes_total 4096$/m);
  // A second scrape does not add the totals again.
  assert.match(await registry.metrics(), /^mlfleet_agent_blob_peer_sent_bytes_total 4096$/m);
});
