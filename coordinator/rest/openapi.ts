// The REST API's OpenAPI 3.1 document, generated from the route table (coordinator/rest/routes.ts):
// its bodies from the zod schemas that validate them, its answers from coordinator/rest/shapes.ts,
// by zod-to-json-schema. Served at /api/v1/openapi.json without a token.
import { zodToJsonSchema } from 'zod-to-json-schema';
import type { z } from 'zod';
import { RULES } from '../auth/rules.js';
import { ROUTES, type Route } from './routes.js';
import * as shapes from './shapes.js';

type Json = Record<string, unknown>;

/** The error statuses every route that takes a token may answer (404: a tenant or object not found). */
const COMMON_ERRORS = [400, 401, 403, 404, 429, 500, 503];

const ERROR_WORDS: Record<number, string> = {
  307: 'a follower: the same request to the leader (Location)',
  400: 'a bad request (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE): the message names the field',
  401: 'no valid token (UNAUTHENTICATED)',
  403: "the token's role may not do this (PERMISSION_DENIED)",
  404: 'no such object in the caller\'s tenant (NOT_FOUND)',
  405: 'the path takes other methods',
  409: 'it exists already, or changed meanwhile (ALREADY_EXISTS, ABORTED)',
  413: 'the body is over 1 MiB',
  429: "over the caller's share of open calls (RESOURCE_EXHAUSTED); Retry-After says when to retry",
  500: 'INTERNAL',
  503: 'no leader elected yet (UNAVAILABLE)',
};

export function jsonSchema(schema: z.ZodTypeAny): Json {
  const { $schema: _drop, ...rest } = zodToJsonSchema(schema, { target: 'jsonSchema2019-09', $refStrategy: 'none' }) as Json;
  return rest;
}

function listOf(item: z.ZodTypeAny): Json {
  return {
    type: 'object',
    properties: { items: { type: 'array', items: jsonSchema(item) }, nextCursor: { type: ['string', 'null'], description: 'pass as ?cursor= for the next page; null after the last' } },
    required: ['items', 'nextCursor'],
  };
}

function successResponse(route: Route): [string, Json] {
  switch (route.kind) {
    case 'content':
      return ['307', { description: 'the blob route of the version\'s bytes', headers: { Location: { schema: { type: 'string' } } } }];
    case 'logs':
    case 'job-logs':
      return ['200', { description: 'the output, streamed while following', content: { 'text/plain': { schema: { type: 'string' } } } }];
    case 'events':
      return ['200', { description: `a stream of events; each data: line is one event as JSON: ${JSON.stringify(jsonSchema(route.schema!))}`, content: { 'text/event-stream': { schema: { type: 'string' } } } }];
    default:
      break;
  }
  if (route.status === 204) return ['204', { description: 'done' }];
  const schema = route.kind === 'list' ? listOf(route.schema!) : jsonSchema(route.schema!);
  return [String(route.status ?? 200), { description: route.summary, content: { 'application/json': { schema } } }];
}

function operation(route: Route): Json {
  const parameters: Json[] = [];
  for (const match of route.path.matchAll(/\{(\w+)\}/g)) parameters.push({ name: match[1], in: 'path', required: true, schema: { type: 'string' } });
  for (const [name, description] of Object.entries(route.query ?? {})) parameters.push({ name, in: 'query', required: false, description, schema: { type: 'string' } });
  if (route.kind === 'events') parameters.push({ name: 'Last-Event-ID', in: 'header', required: false, description: 'resume after this event id', schema: { type: 'string' } });
  const [status, success] = successResponse(route);
  const responses: Json = { [status]: success };
  if (route.created) responses['201'] = { ...success, description: 'created' };
  if (!route.open) {
    const errors = new Set([...COMMON_ERRORS, ...(route.errors ?? [])]);
    if (route.body) errors.add(413);
    if (route.rpc && !RULES[route.rpc]?.anyCoordinator) errors.add(307);
    for (const code of [...errors].sort((a, b) => a - b)) {
      responses[String(code)] =
        code === 307
          ? { description: ERROR_WORDS[307], headers: { Location: { schema: { type: 'string' } } } }
          : { description: ERROR_WORDS[code] ?? 'an error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    }
  }
  const rule = route.rpc ? RULES[route.rpc] : undefined;
  return {
    operationId: operationId(route),
    tags: [route.tag],
    summary: route.summary,
    ...(rule ? { description: `Answered by gRPC ${route.rpc}; roles: ${rule.roles.join(', ')}.` } : {}),
    ...(route.open ? { security: [] } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(route.body ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchema(route.body) } } } } : {}),
    responses,
  };
}

/** e.g. GET /api/v1/nodes/{name} → getNodesName; POST …/cordon → postNodesNameCordon. */
export function operationId(route: Route): string {
  const words = route.path
    .split('/')
    .slice(3)
    .map((s) => s.replace(/[{}]/g, '').replace(/\.json$/, ''))
    .filter(Boolean);
  return route.method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

let cached: Json | undefined;

export function openApiDocument(): Json {
  if (cached) return cached;
  const paths: Record<string, Json> = {};
  for (const route of ROUTES) (paths[route.path] ??= {})[route.method.toLowerCase()] = operation(route);
  cached = {
    openapi: '3.1.0',
    info: { title: 'mlfleet REST API', version: 'v1', description: 'The gRPC API of the mlfleet coordinator over HTTP and JSON: see docs/rest-api.md.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an mlfleet token (mlfleetctl tokens create)' } },
      schemas: { Error: jsonSchema(shapes.error) },
    },
    security: [{ bearer: [] }],
    paths,
  };
  return cached;
}
