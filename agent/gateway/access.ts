// Who may reach which model through a gateway: pure decisions over the routing table, tested
// without a server (test/agent/gateway-access.test.ts). The rules, the same as the API's:
// - a caller's tenant comes from its token; an admin may name another with `mlfleet-tenant`;
// - admin, developer and consumer tokens infer; node credentials only hop between gateways;
// - a caller sees its tenant's models whole, and of other tenants only what is public
//   (`deploy --public`), which is also all an anonymous caller sees;
// - another tenant's private model is 404 exactly like a missing one;
// - selection by criteria chooses among the caller's tenant's models only.
import type { ModelRoute__Output as ModelRoute } from '../../shared/gen/mlfleet/v1/ModelRoute.js';
import type { Caller } from './token-book.js';

/** Requests may name the tenant whose model they mean (admins: any tenant; others: their own, or another's public models). */
export const TENANT_HEADER = 'mlfleet-tenant';

/** The request's sender: a verified token, or none. */
export type Sender = { anonymous: true } | { anonymous: false; caller: Caller };

export class AccessError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const INFER_ROLES = new Set(['admin', 'developer', 'consumer']);

/** Throws 403 unless the sender may infer (anonymous senders reach public models only, checked by routeFor). */
export function checkMayInfer(sender: Sender): void {
  if (sender.anonymous || INFER_ROLES.has(sender.caller.role)) return;
  throw new AccessError(403, `a ${sender.caller.role} token may not infer: use a token of role admin, developer or consumer`);
}

/** The tenant whose models the sender sees whole; undefined for an anonymous sender. */
export function homeTenant(sender: Sender, named: string | undefined): string | undefined {
  if (sender.anonymous) return undefined;
  return sender.caller.role === 'admin' ? (named ?? sender.caller.tenant) : sender.caller.tenant;
}

/** The route as the sender may use it (its own tenant's whole, else its public replicas only); undefined when nothing is left. */
function visible(route: ModelRoute, sender: Sender, named: string | undefined): ModelRoute | undefined {
  if (named !== undefined && route.tenant !== named) return undefined;
  if (route.tenant === homeTenant(sender, named)) return route;
  // A deployment scaled to zero (holds, no endpoints) says itself whether it is public.
  if (route.holds && route.endpoints.length === 0) return route.public ? route : undefined;
  const open = route.endpoints.filter((e) => e.public);
  if (open.length === 0) return undefined;
  return open.length === route.endpoints.length ? route : { ...route, endpoints: open };
}

/** The model a request names, with the replicas the sender may reach; 404 when there is none it may see, 400 when several tenants' public models share the name. */
export function routeFor(routes: readonly ModelRoute[], sender: Sender, name: string, named: string | undefined): ModelRoute {
  const candidates: ModelRoute[] = [];
  for (const route of routes) {
    if (route.model !== name) continue;
    const seen = visible(route, sender, named);
    if (seen) candidates.push(seen);
  }
  if (candidates.length === 0) {
    // Without a token only public models answer: for anything else the caller must say who it is.
    if (sender.anonymous) throw new AccessError(401, `no token: model "${name}" is not public`);
    throw notFound(name);
  }
  const home = homeTenant(sender, named);
  const own = candidates.find((r) => r.tenant === home);
  if (own) return own;
  if (candidates.length > 1) {
    throw new AccessError(400, `model "${name}" is served publicly by several tenants (${candidates.map((r) => r.tenant).join(', ')}): name one in the ${TENANT_HEADER} header`);
  }
  return candidates[0]!;
}

/** The models selection by criteria chooses among: the sender's tenant's (another's for an admin naming it). */
export function selectable(routes: readonly ModelRoute[], sender: Sender, named: string | undefined): ModelRoute[] {
  const home = homeTenant(sender, named);
  return routes.filter((r) => r.tenant === home);
}

/** The same answer for a model that does not exist and one the sender may not see. */
export function notFound(name: string, version?: string): AccessError {
  const what = version === undefined ? `model "${name}"` : `model "${name}" version ${version}`;
  return new AccessError(404, `${what} not found: no ready replica of it serves your tenant (mlfleetctl deployments ls)`);
}
