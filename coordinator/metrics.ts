// The coordinator's Prometheus metrics, served on --http-listen /metrics.
import { Counter, Gauge, Histogram, Registry, Summary, collectDefaultMetrics } from 'prom-client';
import type { StartPhase } from '../shared/proto.js';
import { START_PHASE_BUCKETS, startSeconds } from '../shared/start-phases.js';

export class CoordinatorMetrics {
  readonly registry = new Registry();

  /** Time from an agent stamping a heartbeat to the leader's view holding it. */
  readonly heartbeatLag = new Summary({
    name: 'mlfleet_heartbeat_lag_seconds',
    help: 'Delay between an agent sending a heartbeat and the leader applying it to its view',
    percentiles: [0.5, 0.9, 0.99],
    maxAgeSeconds: 60,
    ageBuckets: 6,
    registers: [this.registry],
  });

  readonly heartbeats = new Counter({
    name: 'mlfleet_heartbeats_total',
    help: 'Heartbeats applied by this leader',
    registers: [this.registry],
  });

  readonly sessions = new Gauge({
    name: 'mlfleet_agent_sessions',
    help: 'Agent sessions connected to this coordinator',
    registers: [this.registry],
  });

  readonly isLeader = new Gauge({
    name: 'mlfleet_coordinator_is_leader',
    help: '1 while this coordinator leads',
    registers: [this.registry],
  });

  readonly leadershipLosses = new Counter({
    name: 'mlfleet_leadership_losses_total',
    help: 'Times this coordinator lost leadership without closing',
    registers: [this.registry],
  });

  readonly leaseRenewalGap = new Gauge({
    name: 'mlfleet_lease_renewal_gap_max_seconds',
    help: 'Longest time between two successful renewals of the election lease (its TTL/3 when nothing delays them)',
    registers: [this.registry],
  });

  readonly locates = new Counter({
    name: 'mlfleet_coordinator_locates_total',
    help: 'DeliveryService.Locate calls answered, by caller (node: an agent filling its cache; user: a client)',
    labelNames: ['caller'],
    registers: [this.registry],
  });

  readonly rejectedCalls = new Counter({
    name: 'mlfleet_rpc_rejected_total',
    help: 'Calls refused with RESOURCE_EXHAUSTED because their caller had its share of calls open',
    labelNames: ['role'],
    registers: [this.registry],
  });

  readonly blobSentBytes = new Counter({
    name: 'mlfleet_coordinator_blob_sent_bytes_total',
    help: 'Blob bytes this coordinator sent over HTTP (GET /v1/blobs/<digest>)',
    registers: [this.registry],
  });

  readonly sourceImportedBytes = new Counter({
    name: 'mlfleet_coordinator_source_imported_bytes_total',
    help: 'Bytes of model versions imported from model sources (a version directory counts its tar)',
    labelNames: ['tenant', 'source'],
    registers: [this.registry],
  });
  readonly sourcePolls = new Counter({
    name: 'mlfleet_coordinator_source_polls_total',
    help: 'Polls of model sources, by result (ok or error)',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly uploadReceivedBytes = new Counter({
    name: 'mlfleet_coordinator_upload_received_bytes_total',
    help: 'Push bytes this coordinator received over HTTP (PUT /v1/uploads/<id>)',
    registers: [this.registry],
  });

  readonly replicaStartPhase = new Histogram({
    name: 'mlfleet_replica_start_phase_seconds',
    help: 'Time each phase of a replica start took (schedule on the leader; pull, create, start, load on its agent), observed at its first ready',
    labelNames: ['phase'],
    buckets: START_PHASE_BUCKETS,
    registers: [this.registry],
  });

  readonly replicaStart = new Histogram({
    name: 'mlfleet_replica_start_seconds',
    help: 'Time from a replica being asked for to its first ready (the sum of its start phases)',
    buckets: START_PHASE_BUCKETS,
    registers: [this.registry],
  });

  /** One replica start's phases, at its first ready. */
  observeStart(phases: readonly StartPhase[]): void {
    for (const p of phases) this.replicaStartPhase.observe({ phase: p.phase }, p.seconds);
    this.replicaStart.observe(startSeconds(phases));
  }

  /** Set by the RPC edge: calls open now, counted only when /metrics is scraped. */
  openCalls: (() => number) | undefined;

  readonly callsOpen: Gauge = new Gauge({
    name: 'mlfleet_rpc_calls_open',
    help: 'Calls open at the RPC edge (unary and streams), each within its caller’s share',
    registers: [this.registry],
    collect: (): void => this.callsOpen.set(this.openCalls?.() ?? 0),
  });

  /** Set by the leader's node registry; counted only when /metrics is scraped. */
  nodeCounts: (() => Record<string, number>) | undefined;

  readonly nodes = new Gauge({
    name: 'mlfleet_nodes',
    help: 'Nodes known to the leader, by status',
    labelNames: ['status'],
    registers: [this.registry],
    collect: () => {
      this.nodes.reset();
      for (const [status, count] of Object.entries(this.nodeCounts?.() ?? {})) this.nodes.set({ status }, count);
    },
  });

  readonly nodeTransitions = new Counter({
    name: 'mlfleet_node_transitions_total',
    help: 'Node status transitions written by this leader',
    labelNames: ['to'],
    registers: [this.registry],
  });

  private worstLeaseGapMs = 0;

  noteLeaseRenewal(gapMs: number): void {
    if (gapMs <= this.worstLeaseGapMs) return;
    this.worstLeaseGapMs = gapMs;
    this.leaseRenewalGap.set(gapMs / 1000);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'mlfleet_coordinator_' });
  }
}
