// The REST API's route table (docs/rest-api.md): each route is an HTTP method and path under
// /api/v1/, the gRPC method whose handler answers it (through the same edge as a gRPC call:
// authentication, coordinator/auth/rules.ts, admission, the leader check, the request schemas,
// the audit trail), how the gRPC request is built from the path, query and JSON body, and how
// the answer is shaped (the -o json shapes of mlfleetctl, shared/views/). Pure: the HTTP side is
// coordinator/rest/router.ts, the OpenAPI document coordinator/rest/openapi.ts.
import { z } from 'zod';
import type { ArtifactKind } from '../../shared/artifact-ref.js';
import { InvalidArgumentError } from '../../shared/errors.js';
import { MAX_NODE_NAME_CHARS } from '../../shared/validation.js';
import { MAX_NODE_PAGE } from '../api/schemas.js';
import type { AllocationInfo, Artifact, ArtifactSummary, ArtifactVersion, ClusterStatus, Deployment, Job, Node, SelectResponse, Tenant, PushTicket } from '../../shared/proto.js';
import { parseWorkloadFile, WorkloadFileError, type WorkloadKind, type WorkloadObject } from '../../shared/workload-spec.js';
import { allocationJson } from '../../shared/views/allocations.js';
import { artifactJson, artifactSummaryJson, artifactVersionJson } from '../../shared/views/artifacts.js';
import { clusterStatusJson } from '../../shared/views/cluster.js';
import { deploymentJson, wasCreated } from '../../shared/views/deployments.js';
import { jobJson } from '../../shared/views/jobs.js';
import { nodeDetailJson, nodeJson } from '../../shared/views/nodes.js';
import { selectionJson } from '../../shared/views/selection.js';
import { tenantJson } from '../../shared/views/tenants.js';
import * as shapes from './shapes.js';

export const API_PREFIX = '/api/v1';
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RouteInput {
  params: Record<string, string>;
  query: URLSearchParams;
  /** The parsed JSON body (already checked against the route's `body` schema); {} when none. */
  body: unknown;
}

/**
 * How a route is answered: `unary` calls `rpc` once; `list` too, answering `{items, nextCursor}`;
 * the others are streams or answers of the REST layer itself (router.ts).
 */
export type RouteKind = 'unary' | 'list' | 'events' | 'logs' | 'job-logs' | 'content' | 'allocation' | 'whoami' | 'openapi';

export interface Route {
  method: HttpMethod;
  /** e.g. /api/v1/nodes/{name} */
  path: string;
  kind: RouteKind;
  /** The gRPC method ("Service.Method") whose handler answers; absent for whoami and openapi. */
  rpc?: string;
  summary: string;
  tag: string;
  /** The JSON body's schema (also its OpenAPI schema). */
  body?: z.ZodTypeAny;
  /** Query parameters: name → description. */
  query?: Record<string, string>;
  /** The gRPC request. */
  request?(input: RouteInput): Record<string, unknown>;
  /** The answer's JSON from the gRPC answer (a list route: the items). */
  response?(message: never, input: RouteInput): unknown;
  /** The success answer's schema: the JSON, or for a list route one item's. */
  schema?: z.ZodTypeAny;
  /** The success status (default 200); `created` when it depends on the answer. */
  status?: number;
  created?(message: never): boolean;
  /** The error statuses the route documents besides 400/401/403/429/500/503. */
  errors?: number[];
  /** Needs no token. */
  open?: boolean;
  /** Paged by the REST layer (`?limit=&cursor=`): the key each item is ordered by. */
  pagedBy?(item: never): string;
}

const tenantQuery = { tenant: 'admins: another tenant (default: the caller\'s; admins listing: every tenant)' };

function tenantOf(input: RouteInput): string {
  return input.query.get('tenant') ?? '';
}

/** A query flag: 1/true/yes on, 0/false/no/absent off; anything else is a bad request naming it. */
export function queryFlag(query: URLSearchParams, name: string, fallback = false): boolean {
  const value = query.get(name);
  if (value === null || value === '') return fallback;
  if (['1', 'true', 'yes'].includes(value)) return true;
  if (['0', 'false', 'no'].includes(value)) return false;
  throw new InvalidArgumentError(`query ${name}: expected 1 or 0 (true or false), got ${JSON.stringify(value)}`);
}

/** `?cursor=`: the name of the last node of the page before. */
export function nodeCursor(query: URLSearchParams): string {
  const cursor = query.get('cursor') ?? '';
  if (cursor.length > MAX_NODE_NAME_CHARS) throw new InvalidArgumentError(`query cursor: expected the nextCursor of the page before (a node name), got ${cursor.length} characters`);
  return cursor;
}

/** Nodes per page of GET /api/v1/nodes: unless asked, and at most. */
export const NODE_PAGE = { fallback: 500, max: MAX_NODE_PAGE };

/** A whole-number query parameter within [min, max]. */
export function queryNumber(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const value = query.get(name);
  if (value === null || value === '') return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`query ${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

/** A deployment or job as `mlfleetctl apply` takes it in YAML, here as JSON; `kind` may be left out. */
export function workloadFromBody(kind: WorkloadKind, body: unknown, tenant = ''): { spec: unknown; tenant: string } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new InvalidArgumentError(`the body: expected a ${kind} object with name and spec`);
  const document = { kind, ...(body as Record<string, unknown>) };
  if (document.kind !== kind) throw new InvalidArgumentError(`kind: must be ${kind} on this route, got ${JSON.stringify(document.kind)}`);
  let objects: WorkloadObject[];
  try {
    objects = parseWorkloadFile(JSON.stringify(document), 'body');
  } catch (err) {
    if (!(err instanceof WorkloadFileError)) throw err;
    // "body document 1 (Deployment "web"): spec.replicas: …" → "spec.replicas: …"
    throw new InvalidArgumentError(err.problems.map((p) => p.replace(/^body (document 1( \([^)]*\))?: )?/, '')).join('; '));
  }
  const [object] = objects;
  if (!object) throw new InvalidArgumentError(`the body: expected a ${kind} object with name and spec`);
  return { spec: object.spec, tenant: object.tenant || tenant };
}

/** A version path segment: a number (name:3) or an alias (name@production). */
export function versionRef(name: string, version: string): string {
  return /^\d+$/.test(version) ? `${name}:${version}` : `${name}@${version}`;
}

const scaleBody = z.object({ replicas: z.number().int().min(0) }).strict();
const aliasBody = z.object({ version: z.number().int().min(1) }).strict();
const quotaFields = z
  .object({
    cpuMillis: z.number().int().min(0),
    memoryBytes: z.number().int().min(0),
    gpus: z.number().int().min(0),
    gpuMemoryBytes: z.number().int().min(0),
    storageBytes: z.number().int().min(0),
    maxDeployments: z.number().int().min(0),
  })
  .partial()
  .strict();
const tenantBody = z.object({ name: z.string(), description: z.string().optional(), quota: quotaFields.optional() }).strict();
const quotaBody = z.object({ quota: quotaFields.optional(), clear: z.array(z.string()).optional() }).strict();
const metadataBody = z
  .object({
    type: z.string(),
    inputFormat: z.string(),
    outputFormat: z.string(),
    accuracy: z.number(),
    labels: z.record(z.string()),
  })
  .partial()
  .strict();
const uploadBody = z
  .object({
    format: z.string(),
    sizeBytes: z.number().int().min(0),
    digest: z.string().optional(),
    directory: z.boolean().optional(),
    metadata: metadataBody.optional(),
    uploadKey: z.string().optional().describe('the same key resumes an unfinished upload of the same bytes'),
  })
  .strict();
const commitBody = z.object({ upload: z.string(), partEtags: z.array(z.string()).optional() }).strict();
const workloadBody = z.object({ name: z.string(), tenant: z.string().optional(), spec: z.record(z.unknown()) }).passthrough().describe('as a document of `mlfleetctl apply -f` (docs/workloads.md), in JSON; kind may be left out');
const selectBody = z
  .object({
    type: z.string(),
    inputFormat: z.string(),
    outputFormat: z.string(),
    prefer: z.string(),
    latencyWeight: z.number(),
    maxLatencyMs: z.number(),
  })
  .partial()
  .strict();

function artifactRoutes(kind: ArtifactKind): Route[] {
  const plural = `${kind}s`;
  const service = kind === 'model' ? 'ModelService' : 'DatasetService';
  const base = `${API_PREFIX}/${plural}`;
  const tag = plural;
  return [
    { method: 'GET', path: base, kind: 'list', rpc: `${service}.ListArtifacts`, tag, summary: `the tenant's ${plural}`, query: tenantQuery, request: (i) => ({ tenant: tenantOf(i) }), response: (m: { artifacts: ArtifactSummary[] }) => m.artifacts.map(artifactSummaryJson), schema: shapes.artifactSummary },
    { method: 'GET', path: `${base}/{name}`, kind: 'unary', rpc: `${service}.GetArtifact`, tag, summary: `a ${kind}: its versions and aliases`, query: tenantQuery, errors: [404], request: (i) => ({ name: i.params.name, tenant: tenantOf(i) }), response: (m: Artifact) => artifactJson(m, kind), schema: shapes.artifact },
    { method: 'GET', path: `${base}/{name}/versions/{version}`, kind: 'unary', rpc: `${service}.Resolve`, tag, summary: 'one version (a number or an alias), with its lineage', query: tenantQuery, errors: [404], request: (i) => ({ ref: versionRef(i.params.name!, i.params.version!), tenant: tenantOf(i) }), response: (m: ArtifactVersion) => artifactVersionJson(m), schema: shapes.artifactVersion },
    { method: 'GET', path: `${base}/{name}/versions/{version}/content`, kind: 'content', rpc: `${service}.Resolve`, tag, summary: "the version's bytes: a redirect (307) to its blob route, /v1/blobs/<digest>, which takes the same token and Range requests", query: tenantQuery, status: 307, errors: [404], request: (i) => ({ ref: versionRef(i.params.name!, i.params.version!), tenant: tenantOf(i) }) },
    { method: 'PUT', path: `${base}/{name}/aliases/{alias}`, kind: 'unary', rpc: `${service}.SetAlias`, tag, summary: 'points an alias at a version', query: tenantQuery, body: aliasBody, errors: [404], request: (i) => ({ name: i.params.name, alias: i.params.alias, version: (i.body as z.infer<typeof aliasBody>).version, tenant: tenantOf(i) }), response: (m: Artifact) => artifactJson(m, kind), schema: shapes.artifact },
    {
      method: 'POST',
      path: `${base}/{name}/uploads`,
      kind: 'unary',
      rpc: 'DeliveryService.BeginPush',
      tag,
      summary: `begins (or resumes) a push of a new version: PUT the bytes from offset to uploadUrl (header Upload-Offset), then POST ${base}/{name}/versions`,
      body: uploadBody,
      status: 201,
      request: (i) => {
        const b = i.body as z.infer<typeof uploadBody>;
        return { kind, uploadKey: b.uploadKey ?? '', header: { name: i.params.name, format: b.format, sizeBytes: b.sizeBytes, digest: b.digest ?? '', directory: b.directory ?? false, metadata: b.metadata } };
      },
      response: (m: PushTicket) => ({ uploadId: m.uploadId, uploadUrl: m.url, offset: m.offset, partUrls: m.partUrls, partBytes: m.partBytes, partsDone: m.partsDone, expiresAt: m.expiresAtMs > 0 ? new Date(m.expiresAtMs).toISOString() : null }),
      schema: shapes.uploadTicket,
    },
    { method: 'POST', path: `${base}/{name}/versions`, kind: 'unary', rpc: 'DeliveryService.CommitPush', tag, summary: 'commits an upload whose bytes have all been sent: the new version', body: commitBody, status: 201, errors: [404], request: (i) => ({ uploadId: (i.body as z.infer<typeof commitBody>).upload, partEtags: (i.body as z.infer<typeof commitBody>).partEtags ?? [] }), response: (m: ArtifactVersion) => artifactVersionJson(m), schema: shapes.artifactVersion },
  ];
}

const nodeAction = (action: 'cordon' | 'uncordon' | 'drain', rpc: string, summary: string): Route => ({
  method: 'POST',
  path: `${API_PREFIX}/nodes/{name}/${action}`,
  kind: 'unary',
  rpc,
  tag: 'nodes',
  summary,
  errors: [404],
  request: (i) => ({ name: i.params.name }),
  response: (m: Node) => nodeJson(m),
  schema: shapes.node,
});

const deploymentAction = (action: 'promote' | 'rollback', rpc: string, summary: string): Route => ({
  method: 'POST',
  path: `${API_PREFIX}/deployments/{name}/${action}`,
  kind: 'unary',
  rpc,
  tag: 'deployments',
  summary,
  query: tenantQuery,
  errors: [404],
  request: (i) => ({ name: i.params.name, tenant: tenantOf(i) }),
  response: (m: Deployment) => deploymentJson(m),
  schema: shapes.deployment,
});

export const ROUTES: readonly Route[] = [
  { method: 'GET', path: `${API_PREFIX}/openapi.json`, kind: 'openapi', tag: 'meta', summary: 'this API as an OpenAPI 3.1 document (no token needed)', open: true, schema: z.object({ openapi: z.string(), paths: z.record(z.unknown()) }).passthrough() },
  { method: 'GET', path: `${API_PREFIX}/whoami`, kind: 'whoami', tag: 'meta', summary: "the caller's role and tenant", schema: shapes.whoami },
  { method: 'GET', path: `${API_PREFIX}/cluster`, kind: 'unary', rpc: 'ClusterService.GetStatus', tag: 'cluster', summary: 'the coordinators, the leader and the store', request: () => ({}), response: (m: ClusterStatus) => clusterStatusJson(m), schema: shapes.cluster },
  {
    method: 'GET',
    path: `${API_PREFIX}/nodes`,
    kind: 'list',
    rpc: 'NodeService.ListNodes',
    tag: 'nodes',
    summary: 'the nodes, by name, a page at a time',
    query: { status: 'only nodes of this status: ready | down | draining', selector: 'only nodes carrying these labels: k=v,k2=v2', limit: 'at most this many (1-5000, default 500)', cursor: "the previous page's nextCursor" },
    // The page is cut by the RPC, before the nodes are shaped (ListNodesRequest.limit/after).
    request: (i) => ({
      status: i.query.get('status') ?? '',
      selector: labelSelector(i.query.get('selector') ?? ''),
      limit: queryNumber(i.query, 'limit', NODE_PAGE.fallback, 1, NODE_PAGE.max),
      after: nodeCursor(i.query),
    }),
    response: (m: { nodes: Node[] }) => m.nodes.map(nodeJson),
    pagedBy: (n: { name: string }) => n.name,
    schema: shapes.node,
  },
  { method: 'GET', path: `${API_PREFIX}/nodes/{name}`, kind: 'unary', rpc: 'NodeService.GetNode', tag: 'nodes', summary: 'a node, with what it caches and runs', errors: [404], request: (i) => ({ name: i.params.name }), response: (m: Node) => nodeDetailJson(m), schema: shapes.node },
  nodeAction('cordon', 'NodeService.CordonNode', 'no new allocations go to the node (admins)'),
  nodeAction('uncordon', 'NodeService.UncordonNode', 'the node takes allocations again (admins)'),
  nodeAction('drain', 'NodeService.DrainNode', "cordons the node and moves its allocations away (admins)"),
  { method: 'GET', path: `${API_PREFIX}/tenants`, kind: 'list', rpc: 'TenantService.ListTenants', tag: 'tenants', summary: 'the tenants (a non-admin: its own)', request: () => ({}), response: (m: { tenants: Tenant[] }) => m.tenants.map(tenantJson), schema: shapes.tenant },
  {
    method: 'POST',
    path: `${API_PREFIX}/tenants`,
    kind: 'unary',
    rpc: 'TenantService.CreateTenant',
    tag: 'tenants',
    summary: 'creates a tenant (admins)',
    body: tenantBody,
    status: 201,
    errors: [409],
    request: (i) => {
      const b = i.body as z.infer<typeof tenantBody>;
      return { name: b.name, description: b.description ?? '', quota: b.quota ?? {} };
    },
    response: (m: Tenant) => tenantJson(m),
    schema: shapes.tenant,
  },
  { method: 'GET', path: `${API_PREFIX}/tenants/{name}`, kind: 'unary', rpc: 'TenantService.GetTenant', tag: 'tenants', summary: 'a tenant: its quota and use', errors: [404], request: (i) => ({ name: i.params.name }), response: (m: Tenant) => tenantJson(m), schema: shapes.tenant },
  {
    method: 'PUT',
    path: `${API_PREFIX}/tenants/{name}/quota`,
    kind: 'unary',
    rpc: 'TenantService.SetTenantQuota',
    tag: 'tenants',
    summary: "sets the given limits of a tenant's quota and clears those named in clear (admins)",
    body: quotaBody,
    errors: [404],
    request: (i) => {
      const b = i.body as z.infer<typeof quotaBody>;
      return { name: i.params.name, quota: b.quota ?? {}, clear: b.clear ?? [] };
    },
    response: (m: Tenant) => tenantJson(m),
    schema: shapes.tenant,
  },
  ...artifactRoutes('model'),
  ...artifactRoutes('dataset'),
  { method: 'GET', path: `${API_PREFIX}/deployments`, kind: 'list', rpc: 'DeploymentService.ListDeployments', tag: 'deployments', summary: "the tenant's deployments", query: tenantQuery, request: (i) => ({ tenant: tenantOf(i) }), response: (m: { deployments: Deployment[] }) => m.deployments.map(deploymentJson), schema: shapes.deployment },
  {
    method: 'POST',
    path: `${API_PREFIX}/deployments`,
    kind: 'unary',
    rpc: 'DeploymentService.ApplyDeployment',
    tag: 'deployments',
    summary: 'creates (201) or updates (200) a deployment',
    body: workloadBody,
    status: 200,
    created: (m: Deployment) => wasCreated(m),
    request: (i) => workloadFromBody('Deployment', i.body, tenantOf(i)) as Record<string, unknown>,
    response: (m: Deployment) => deploymentJson(m),
    schema: shapes.deployment,
  },
  { method: 'GET', path: `${API_PREFIX}/deployments/{name}`, kind: 'unary', rpc: 'DeploymentService.GetDeployment', tag: 'deployments', summary: 'a deployment, its replicas and where they run', query: tenantQuery, errors: [404], request: (i) => ({ name: i.params.name, tenant: tenantOf(i) }), response: (m: Deployment) => deploymentJson(m), schema: shapes.deployment },
  { method: 'POST', path: `${API_PREFIX}/deployments/{name}/scale`, kind: 'unary', rpc: 'DeploymentService.ScaleDeployment', tag: 'deployments', summary: 'sets the number of replicas', query: tenantQuery, body: scaleBody, errors: [404], request: (i) => ({ name: i.params.name, replicas: (i.body as z.infer<typeof scaleBody>).replicas, tenant: tenantOf(i) }), response: (m: Deployment) => deploymentJson(m), schema: shapes.deployment },
  deploymentAction('promote', 'DeploymentService.PromoteDeployment', "a canary's new generation replaces the old one"),
  deploymentAction('rollback', 'DeploymentService.RollbackDeployment', 'back to the last good version'),
  { method: 'DELETE', path: `${API_PREFIX}/deployments/{name}`, kind: 'unary', rpc: 'DeploymentService.DeleteDeployment', tag: 'deployments', summary: 'stops every replica and forgets the deployment', query: tenantQuery, status: 204, errors: [404], request: (i) => ({ name: i.params.name, tenant: tenantOf(i) }) },
  { method: 'GET', path: `${API_PREFIX}/jobs`, kind: 'list', rpc: 'JobService.ListJobs', tag: 'jobs', summary: "the tenant's jobs", query: tenantQuery, request: (i) => ({ tenant: tenantOf(i) }), response: (m: { jobs: Job[] }) => m.jobs.map(jobJson), schema: shapes.job },
  { method: 'POST', path: `${API_PREFIX}/jobs`, kind: 'unary', rpc: 'JobService.RunJob', tag: 'jobs', summary: 'submits a job', body: workloadBody, status: 201, errors: [409], request: (i) => workloadFromBody('Job', i.body, tenantOf(i)) as Record<string, unknown>, response: (m: Job) => jobJson(m), schema: shapes.job },
  { method: 'GET', path: `${API_PREFIX}/jobs/{name}`, kind: 'unary', rpc: 'JobService.GetJob', tag: 'jobs', summary: 'a job: status, attempts, workers', query: tenantQuery, errors: [404], request: (i) => ({ name: i.params.name, tenant: tenantOf(i) }), response: (m: Job) => jobJson(m), schema: shapes.job },
  { method: 'POST', path: `${API_PREFIX}/jobs/{name}/cancel`, kind: 'unary', rpc: 'JobService.CancelJob', tag: 'jobs', summary: "stops the job's workers; it ends cancelled", query: tenantQuery, errors: [404], request: (i) => ({ name: i.params.name, tenant: tenantOf(i) }), response: (m: Job) => jobJson(m), schema: shapes.job },
  {
    method: 'GET',
    path: `${API_PREFIX}/jobs/{name}/logs`,
    kind: 'job-logs',
    rpc: 'JobService.GetJob',
    tag: 'jobs',
    summary: "the output of the job's current (or last) attempt (text/plain; several workers: each line starts with [rank N]); follow=1 streams it",
    query: { ...tenantQuery, follow: '1: keep streaming new output until the workers end', tail: 'only the last this many bytes of each worker (default: all kept)' },
    errors: [404],
    request: (i) => ({ name: i.params.name, tenant: tenantOf(i) }),
  },
  {
    method: 'GET',
    path: `${API_PREFIX}/allocations`,
    kind: 'list',
    rpc: 'AllocationService.ListAllocations',
    tag: 'allocations',
    summary: 'the allocations (replicas and job workers) that run',
    query: { ...tenantQuery, node: 'only those on this node', workload: 'only those of this deployment or job', all: '1: ended ones too' },
    request: (i) => ({ tenant: tenantOf(i), node: i.query.get('node') ?? '', workload: i.query.get('workload') ?? '', all: queryFlag(i.query, 'all') }),
    response: (m: { allocations: AllocationInfo[] }) => m.allocations.map(allocationJson),
    schema: shapes.allocation,
  },
  { method: 'GET', path: `${API_PREFIX}/allocations/{id}`, kind: 'allocation', rpc: 'AllocationService.ListAllocations', tag: 'allocations', summary: 'one allocation, ended or not', query: tenantQuery, errors: [404], request: (i) => ({ tenant: tenantOf(i), all: true }), response: (m: AllocationInfo) => allocationJson(m), schema: shapes.allocation },
  {
    method: 'GET',
    path: `${API_PREFIX}/allocations/{id}/logs`,
    kind: 'logs',
    rpc: 'AllocationService.GetLogs',
    tag: 'allocations',
    summary: "the allocation's output (text/plain); follow=1 streams it",
    query: { follow: '1: keep streaming new output until the allocation ends', tail: 'only the last this many bytes (default: all kept)' },
    errors: [404],
    request: (i) => ({ allocation: i.params.id, follow: queryFlag(i.query, 'follow'), tailBytes: queryNumber(i.query, 'tail', 0, 0, 2 ** 31) }),
  },
  {
    method: 'GET',
    path: `${API_PREFIX}/events`,
    kind: 'events',
    rpc: 'EventService.WatchEvents',
    tag: 'events',
    summary: 'workload and node events as Server-Sent Events (text/event-stream), each with id: its sequence; resumes after Last-Event-ID (or ?since=)',
    query: { ...tenantQuery, object: 'only this object\'s events, e.g. deployment/web', replay: 'past events to send first (0-1000, default 0)', since: 'resume after this event id (as the Last-Event-ID header)', follow: '0: end after the past events (default 1)' },
    request: (i) => ({ tenant: tenantOf(i), object: i.query.get('object') ?? '' }),
    schema: shapes.event,
  },
  { method: 'POST', path: `${API_PREFIX}/select`, kind: 'unary', rpc: 'SelectionService.Select', tag: 'selection', summary: 'picks a ready deployment of the tenant by what its model does', query: tenantQuery, body: selectBody, errors: [404], request: (i) => ({ ...(i.body as object), tenant: tenantOf(i) }), response: (m: SelectResponse) => selectionJson(m), schema: shapes.selection },
];

/** "a=1,b=2" → {a: '1', b: '2'}. */
export function labelSelector(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',').filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`query selector: expected key=value pairs separated by commas, got ${JSON.stringify(part)}`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

export type Match = { route: Route; params: Record<string, string> } | { allowed: HttpMethod[] } | undefined;

/**
 * The route of a method and path: the route and its path parameters (decoded); or, when the
 * path is known but not with this method, the methods it takes (405); undefined when unknown.
 */
export function matchRoute(method: string, path: string, routes: readonly Route[] = ROUTES): Match {
  const segments = path.replace(/\/+$/, '').split('/');
  const allowed: HttpMethod[] = [];
  for (const route of routes) {
    const pattern = route.path.split('/');
    if (pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < pattern.length && ok; i++) {
      const want = pattern[i]!;
      const got = segments[i]!;
      if (want.startsWith('{')) {
        let value: string;
        try {
          value = decodeURIComponent(got);
        } catch {
          ok = false;
          break;
        }
        if (value === '') ok = false;
        else params[want.slice(1, -1)] = value;
      } else if (want !== got) ok = false;
    }
    if (!ok) continue;
    if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { route, params };
    allowed.push(route.method);
  }
  return allowed.length > 0 ? { allowed } : undefined;
}
