// The agent's cold-start histograms on its /metrics (docs/autoscaling.md "Cold starts"): each
// replica start this agent launched, observed once at its first ready.
import { Histogram, type Registry } from 'prom-client';
import type { StartPhase } from '../shared/proto.js';
import { START_PHASE_BUCKETS, startSeconds } from '../shared/start-phases.js';

/** Registers the histograms; the returned function observes one start's phases. */
export function registerStartMetrics(registry: Registry): (phases: StartPhase[]) => void {
  const phase = new Histogram({
    name: 'mlfleet_agent_replica_start_phase_seconds',
    help: 'Time each phase of a replica start took on this agent (pull, create, start, load), observed at its first ready',
    labelNames: ['phase'],
    buckets: START_PHASE_BUCKETS,
    registers: [registry],
  });
  const total = new Histogram({
    name: 'mlfleet_agent_replica_start_seconds',
    help: 'Time from a replica start on this agent (pulling its model) to its first ready',
    buckets: START_PHASE_BUCKETS,
    registers: [registry],
  });
  return (phases) => {
    for (const p of phases) phase.observe({ phase: p.phase }, p.seconds);
    total.observe(startSeconds(phases));
  };
}
