// Audit events as mlfleetctl shows them: the stable -o json shape and a table, newest first
// as the coordinator sends them. The token is named by its id, never its secret.
import type { AuditEvent } from '../../../shared/proto.js';
import { isoOrNull, table, type Printable } from '../output.js';

export interface AuditEventJson {
  id: number;
  time: string | null;
  tokenId: string;
  role: string;
  tenant: string;
  /** "NodeService.CordonNode" */
  method: string;
  /** "node/gpu-1" */
  target: string;
  /** "OK" or the gRPC status name. */
  result: string;
  /** Why it failed; '' when it did not. */
  message: string;
  peer: string;
}

export function auditEventJson(event: AuditEvent): AuditEventJson {
  return {
    id: event.id,
    time: isoOrNull(event.timeMs),
    tokenId: event.tokenId,
    role: event.role,
    tenant: event.tenant,
    method: event.method,
    target: event.target,
    result: event.result,
    message: event.message,
    peer: event.peer,
  };
}

/** `events --audit`: a JSON array, or one row per event. */
export function auditEventListView(events: readonly AuditEvent[]): Printable {
  const list = events.map(auditEventJson);
  return {
    data: list,
    table: () =>
      table(
        ['TIME', 'TENANT', 'TOKEN', 'ROLE', 'METHOD', 'TARGET', 'RESULT', 'MESSAGE'],
        list.map((e) => [e.time ?? '-', e.tenant || '-', e.tokenId || '-', e.role || '-', e.method, e.target || '-', e.result, e.message]),
      ),
  };
}
