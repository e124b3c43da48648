// The agent's delivery counters on its /metrics: read from DeliveryCounters at each scrape.
import { Counter, type Registry } from 'prom-client';
import type { DeliveryCounters, DeliverySourceKind } from './counters.js';

const SOURCES: DeliverySourceKind[] = ['peer', 'coordinator', 's3'];

export function registerDeliveryMetrics(registry: Registry, counters: DeliveryCounters): void {
  new Counter({
    name: 'mlfleet_agent_blob_received_bytes_total',
    help: 'blob bytes received into the model cache, by source (peer, coordinator, s3)',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.reset();
      for (const source of SOURCES) this.inc({ source }, counters.receivedBytes[source]);
    },
  });
  new Counter({
    name: 'mlfleet_agent_blob_corrupt_pieces_total',
    help: 'pieces discarded because their SHA-256 did not match the manifest, by source',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.reset();
      for (const source of SOURCES) this.inc({ source }, counters.corruptPieces[source]);
    },
  });
  new Counter({
    name: 'mlfleet_agent_blob_peer_sent_bytes_total',
    help: 'blob bytes given to other agents',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(counters.peerSentBytes);
    },
  });
}
