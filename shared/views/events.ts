// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/events.ts, which keeps the table and detail renderings.
import YAML from 'yaml';
import type { AuditEvent, WorkloadEvent } from '../proto.js';
import { isoOrNull } from './json.js';

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

export interface WorkloadEventJson {
  /** Increasing. */
  id: number;
  time: string | null;
  /** '' for node events. */
  tenant: string;
  /** "deployment/NAME", "job/NAME" or "node/NAME" */
  object: string;
  /** The allocation concerned; '' when none. */
  allocation: string;
  node: string;
  /** Scheduled, Pending, Started, Ready, Failed, Completed, Preempted, Stopped, Retrying, … */
  type: string;
  message: string;
}

export function workloadEventJson(event: WorkloadEvent): WorkloadEventJson {
  return {
    id: event.id,
    time: isoOrNull(event.timeMs),
    tenant: event.tenant,
    object: event.object,
    allocation: event.allocation,
    node: event.node,
    type: event.type,
    message: event.message,
  };
}
