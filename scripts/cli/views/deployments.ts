// Deployments as mlfleetctl shows them: the stable -o json shape (DESIGN "Interfaces users
// touch": `deployments show -o json` has name, model, resolvedVersion, replicas, readyReplicas
// and allocations with id, node, status, endpoint), the list table and the detail block.
import type { Deployment } from '../../../shared/proto.js';
import { formatBytes } from '../../../shared/units.js';
import { formatLabels, indent, isoOrNull, keyValues, sortedRecord, table, type KeyValue, type Printable } from '../output.js';
import { age, allocationJson, formatResources, replicaTable, resourcesJson, type AllocationJson, type ResourcesJson } from './allocations.js';

export interface DeploymentJson {
  name: string;
  tenant: string;
  /** The REF as given: name, name:3 or name@alias. */
  model: string;
  /** The model version the REF resolved to (0 before it did). */
  resolvedVersion: number;
  modelDigest: string;
  /** One of stack and image is set; the other is ''. */
  stack: string;
  image: string;
  command: string[];
  env: Record<string, string>;
  /** 0: the stack's port (or 8080). */
  port: number;
  /** '': the stack's (or /v2/health/ready). */
  readinessPath: string;
  replicas: number;
  readyReplicas: number;
  /** available | progressing | pending | degraded */
  status: string;
  /** Why, when replicas are pending or failing; '' otherwise. */
  message: string;
  generation: number;
  resources: ResourcesJson;
  constraints: Record<string, string>;
  /** 0: no limit. */
  maxPerNode: number;
  priority: number;
  rollout: { maxSurge: number; maxUnavailable: number };
  /** Anonymous inference through the gateways (--public). */
  public: boolean;
  /** The largest request body the gateways pass on; 0: the default (8 MiB). */
  maxRequestBytes: number;
  allocations: AllocationJson[];
  createdAt: string | null;
  updatedAt: string | null;
}

export function deploymentJson(d: Deployment): DeploymentJson {
  const spec = d.spec;
  return {
    name: spec?.name ?? '',
    tenant: d.tenant,
    model: spec?.model ?? '',
    resolvedVersion: d.resolvedVersion,
    modelDigest: d.modelDigest,
    stack: spec?.stack ?? '',
    image: spec?.image ?? '',
    command: [...(spec?.command ?? [])],
    env: sortedRecord(spec?.env ?? {}),
    port: spec?.port ?? 0,
    readinessPath: spec?.readinessPath ?? '',
    replicas: spec?.replicas ?? 0,
    readyReplicas: d.readyReplicas,
    status: d.status,
    message: d.message,
    generation: d.generation,
    resources: resourcesJson(spec?.resources ?? null),
    constraints: sortedRecord(spec?.constraints ?? {}),
    maxPerNode: spec?.maxPerNode ?? 0,
    priority: spec?.priority ?? 0,
    rollout: { maxSurge: spec?.rollout?.maxSurge ?? 1, maxUnavailable: spec?.rollout?.maxUnavailable ?? 0 },
    public: spec?.public ?? false,
    maxRequestBytes: Number(spec?.maxRequestBytes ?? 0),
    allocations: d.allocations.map(allocationJson),
    createdAt: isoOrNull(d.createdAtMs),
    updatedAt: isoOrNull(d.updatedAtMs),
  };
}

/** "sentiment@production → version 3" */
function modelLine(d: DeploymentJson): string {
  return d.resolvedVersion > 0 ? `${d.model} → version ${d.resolvedVersion}` : d.model;
}

/** `deployments ls`: a JSON array, or one row per deployment. */
export function deploymentListView(deployments: readonly Deployment[], now = Date.now()): Printable {
  const list = deployments.map(deploymentJson);
  return {
    data: list,
    table: () =>
      table(
        ['NAME', 'MODEL', 'VERSION', 'READY', 'STATUS', 'AGE'],
        list.map((d, i) => [d.name, d.model, d.resolvedVersion > 0 ? String(d.resolvedVersion) : '-', `${d.readyReplicas}/${d.replicas}`, d.status || '-', age(deployments[i]!.createdAtMs, now)]),
      ),
  };
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
    ['Replicas', `${d.readyReplicas} ready of ${d.replicas}`],
    ['Generation', String(d.generation)],
    ['Resources', `${formatResources(d.resources)} per replica`],
    ['Constraints', formatLabels(d.constraints)],
    ['Max per node', d.maxPerNode > 0 ? String(d.maxPerNode) : 'no limit'],
    ['Priority', String(d.priority)],
    ['Rollout', `max surge ${d.rollout.maxSurge}, max unavailable ${d.rollout.maxUnavailable}`],
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

/** Whether ApplyDeployment made it just now (it answers with the deployment either way). */
export function wasCreated(d: Deployment): boolean {
  return d.generation === 1 && d.createdAtMs > 0 && d.createdAtMs === d.updatedAtMs;
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

/** `deployments rm`. */
export function deploymentDeletedView(name: string): Printable {
  return { data: { kind: 'deployment', name, action: 'deleted' }, table: () => `deployment/${name} deleted; its replicas are being stopped` };
}
