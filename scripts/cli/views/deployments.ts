// Deployments as mlfleetctl shows them: the stable -o json shape (DESIGN "Interfaces users
// touch": `deployments show -o json` has name, model, resolvedVersion, replicas, readyReplicas
// and allocations with id, node, status, endpoint), the list table and the detail block.
import { ROLLOUT_DEFAULTS as guardDefaults } from '../../../shared/rollout-spec.js';
import type { Deployment } from '../../../shared/proto.js';
import { formatBytes, formatDuration } from '../../../shared/units.js';
import { ago, formatLabels, indent, keyValues, table, type KeyValue, type Printable } from '../output.js';
import { age, formatResources, replicaTable } from './allocations.js';
import { deploymentJson, wasCreated, type AutoscalerJson, type AutoscalingJson, type DeploymentJson } from '../../../shared/views/deployments.js';

export { deploymentJson, wasCreated, type AutoscalerJson, type AutoscalingJson, type DeploymentJson };

/** "sentiment@production → version 3" */
function modelLine(d: DeploymentJson): string {
  return d.resolvedVersion > 0 ? `${d.model} → version ${d.resolvedVersion}` : d.model;
}

/** "2/3", or "2/3 (1–4 auto)" for an autoscaled deployment. */
export function replicasColumn(d: DeploymentJson): string {
  const ready = `${d.readyReplicas}/${d.replicas}`;
  return d.autoscaling ? `${ready} (${d.autoscaling.minReplicas}–${d.autoscaling.maxReplicas} auto)` : ready;
}

/** A concurrency or rate: at most one decimal, no trailing zero ("9.2", "4"). */
function decimal(x: number): string {
  return String(Number(x.toFixed(1)));
}

/** The Autoscaling and Autoscaler lines of `deployments show`. */
function autoscaleLines(d: DeploymentJson, now: number): KeyValue[] {
  const a = d.autoscaling;
  if (!a) return [];
  const toZero =
    a.scaleToZeroAfterMs > 0 ? `to zero after ${formatDuration(a.scaleToZeroAfterMs)} without a request` : a.minReplicas === 0 ? 'keeps at least 1 replica (no scale to zero)' : `keeps at least ${a.minReplicas}`;
  const lines: KeyValue[] = [['Autoscaling', `${a.minReplicas}–${a.maxReplicas} replicas, target ${decimal(a.targetConcurrency)} in flight per replica; ${toZero}`]];
  const v = d.autoscaler;
  if (!v) return [...lines, ['Autoscaler', 'no reading yet (the leader has not looked at it)']];
  lines.push(
    ['Autoscaler', `desired ${v.desiredReplicas}; ${decimal(v.inFlight)} in flight, ${v.waiting} waiting, ${decimal(v.requestRate)} req/s`],
    ['Concurrency', `stable ${decimal(v.stableConcurrency)}, panic ${decimal(v.panicConcurrency)}${v.panicking ? ' (panicking: scaling up only)' : ''}`],
    ['Last decision', v.lastDecision ? `${v.lastDecision}${v.lastDecisionAt ? ` (${ago(Date.parse(v.lastDecisionAt), now)})` : ''}` : 'none yet'],
  );
  if (v.idleSince) lines.push(['Idle since', `${v.idleSince} (${ago(Date.parse(v.idleSince), now)})`]);
  if (v.blocked) lines.push(['Blocked', v.blocked]);
  return lines;
}

/** The Traffic line of `deployments show`: what the gateways measure of its replicas. */
function trafficLine(d: DeploymentJson, now: number): string {
  const t = d.traffic;
  if (!t) return 'none measured lately';
  const at = t.measuredAt ? ` (${ago(Date.parse(t.measuredAt), now)})` : '';
  return `${decimal(t.requestRate)} req/s, p50 ${decimal(t.p50Ms)} ms, p99 ${decimal(t.p99Ms)} ms, ${decimal(t.errorRate * 100)}% errors${at}`;
}

/** `deployments ls`: a JSON array, or one row per deployment. */
export function deploymentListView(deployments: readonly Deployment[], now = Date.now()): Printable {
  const list = deployments.map(deploymentJson);
  return {
    data: list,
    table: () =>
      table(
        ['NAME', 'MODEL', 'VERSION', 'READY', 'STATUS', 'AGE'],
        list.map((d, i) => [d.name, d.model, d.resolvedVersion > 0 ? String(d.resolvedVersion) : '-', replicasColumn(d), d.status || '-', age(deployments[i]!.createdAtMs, now)]),
      ),
  };
}

/** The canary and the automatic rollback, for `deployments show`. */
function rolloutExtras(deployment: Deployment): string {
  const r = deployment.spec?.rollout;
  const percent = r?.canaryPercent ?? 0;
  const canary = percent > 0 ? `; canary ${percent}%${deployment.canaryReplicas > 0 ? ` (${deployment.canaryReplicas} canary replica${deployment.canaryReplicas === 1 ? '' : 's'} ready: promote or rollback)` : ''}` : '';
  if (r?.autoRollbackOff) return `${canary}; automatic rollback off`;
  const g = guardDefaults;
  const errorRate = r?.maxErrorRate || g.maxErrorRate;
  const ratio = r?.maxP99Ratio || g.maxP99Ratio;
  const watch = Number(r?.watchMs ?? 0) || g.watchMs;
  const min = r?.minRequests || g.minRequests;
  return `${canary}; automatic rollback past +${(errorRate * 100).toFixed(1)}% errors or ${ratio}× p99 (after ${min} requests), watched ${watch / 1000} s`;
}

function detailTable(deployment: Deployment, now: number): string {
  const d = deploymentJson(deployment);
  const head: KeyValue[] = [
    ['Name', d.name],
    ['Tenant', d.tenant || '-'],
    ['Model', modelLine(d)],
    ['Digest', d.modelDigest || '-'],
    [d.stack ? 'Stack' : 'Image', d.stack || d.image],
  ];
  if (d.command.length > 0) head.push(['Command', d.command.join(' ')]);
  if (d.port > 0) head.push(['Port', String(d.port)]);
  if (d.readinessPath) head.push(['Readiness', d.readinessPath]);
  head.push(
    ['Status', d.status || '-'],
    ['Replicas', `${d.readyReplicas} ready of ${d.replicas}${d.autoscaling ? ' (autoscaled)' : ''}`],
    ...autoscaleLines(d, now),
    ['Traffic', trafficLine(d, now)],
    ['Generation', String(d.generation)],
    ['Resources', `${formatResources(d.resources)} per replica`],
    ['Constraints', formatLabels(d.constraints)],
    ['Max per node', d.maxPerNode > 0 ? String(d.maxPerNode) : 'no limit'],
    ['Priority', String(d.priority)],
    ['Rollout', `max surge ${d.rollout.maxSurge}, max unavailable ${d.rollout.maxUnavailable}${rolloutExtras(deployment)}`],
    ['Last good', `${deployment.lastGoodVersion > 0 ? `version ${deployment.lastGoodVersion}` : 'none yet'}${deployment.pinned ? ' (pinned after a rollback: not following its alias until applied or promoted)' : ''}`],
    ['Inference', `${d.public ? 'public: anyone, with no token' : 'a token of the tenant'}; requests up to ${d.maxRequestBytes > 0 ? formatBytes(d.maxRequestBytes) : '8Mi (default)'}`],
  );
  if (Object.keys(d.env).length > 0) head.push(['Env', formatLabels(d.env)]);
  head.push(['Created', d.createdAt ?? '-'], ['Updated', d.updatedAt ?? '-']);
  if (d.message) head.push(['Message', d.message]);
  const allocationsLine: KeyValue[] = [['Allocations', d.allocations.length === 0 ? '<none>' : String(d.allocations.length)]];
  const blocks = [keyValues(head, allocationsLine), keyValues(allocationsLine, head)];
  if (d.allocations.length > 0) blocks.push(indent(replicaTable(deployment.allocations, now)));
  return blocks.join('\n');
}

/** `deployments show`: the deployment object, or its detail with an allocations table. */
export function deploymentDetailView(deployment: Deployment, now = Date.now()): Printable {
  return { data: deploymentJson(deployment), table: () => detailTable(deployment, now) };
}

/** `deploy`: "deployment/NAME created" (or configured), then the deployment. */
export function deploymentAppliedView(deployment: Deployment, now = Date.now()): Printable {
  const name = deployment.spec?.name ?? '';
  return {
    data: deploymentJson(deployment),
    table: () => `deployment/${name} ${wasCreated(deployment) ? 'created' : 'configured'}\n\n${detailTable(deployment, now)}`,
  };
}

/** `deployments scale`: one line, or the deployment. */
export function deploymentScaledView(deployment: Deployment): Printable {
  const d = deploymentJson(deployment);
  return { data: d, table: () => `deployment/${d.name} scaled to ${d.replicas} replica${d.replicas === 1 ? '' : 's'} (${d.readyReplicas} ready now)` };
}

/** `deployments promote` / `rollback`: one line. */
export function deploymentChangedView(deployment: Deployment, action: 'promoted' | 'rolled back'): Printable {
  const d = deploymentJson(deployment);
  return { data: d, table: () => `deployment/${d.name} ${action}: model version ${d.resolvedVersion}, generation ${d.generation}${deployment.pinned ? ', pinned' : ''}` };
}

/** `deployments rm`. */
export function deploymentDeletedView(name: string): Printable {
  return { data: { kind: 'deployment', name, action: 'deleted' }, table: () => `deployment/${name} deleted; its replicas are being stopped` };
}
