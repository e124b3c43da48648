// Events as mlfleetctl shows them. Audit events: the stable -o json shape and a table, newest
// first as the coordinator sends them; the token is named by its id, never its secret. Workload
// events: a live stream, so one line per event as it comes (columns cannot be sized to the
// widest value of a list that never ends), or one compact JSON object per line with -o json.
import YAML from 'yaml';
import type { AuditEvent, WorkloadEvent } from '../../../shared/proto.js';
import { render, table, type OutputFormat, type Printable } from '../output.js';
import { auditEventJson, workloadEventJson, type AuditEventJson, type WorkloadEventJson } from '../../../shared/views/events.js';

export { auditEventJson, workloadEventJson, type AuditEventJson, type WorkloadEventJson };

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

/**
 * `events --audit` printed page by page as pages come: -o json and -o yaml write exactly what
 * auditEventListView would for the whole list; a table needs every row to size its columns.
 */
export function auditEventWriter(format: OutputFormat, write: (text: string) => void): { page(events: readonly AuditEvent[]): void; end(): void } {
  let count = 0;
  const rows: AuditEvent[] = [];
  return {
    page(events) {
      for (const event of events) {
        const e = auditEventJson(event);
        if (format === 'json') write(`${count === 0 ? '[\n' : ',\n'}${JSON.stringify(e, null, 2).replace(/^/gm, '  ')}`);
        else if (format === 'yaml') write(YAML.stringify([e]));
        else rows.push(event);
        count++;
      }
    },
    end() {
      if (format === 'table') write(render(format, auditEventListView(rows)));
      else if (count === 0) write(format === 'json' ? '[]\n' : YAML.stringify([]));
      else if (format === 'json') write('\n]\n');
    },
  };
}

/** Widths that keep most lines aligned; a longer value just pushes its line's rest along. */
const OBJECT_WIDTH = 24;
const TYPE_WIDTH = 12;

/** One event as the `events` stream prints it, with its newline. */
export function workloadEventLine(event: WorkloadEvent, format: OutputFormat): string {
  const e = workloadEventJson(event);
  switch (format) {
    case 'json':
      return `${JSON.stringify(e)}\n`;
    case 'yaml':
      return `---\n${YAML.stringify(e)}`;
    case 'table': {
      // Several replicas of one object report alike ("Started running"): say which one.
      const message = e.allocation ? `[${e.allocation.slice(0, 8)}] ${e.message}` : e.message;
      return `${[e.time ?? '-', e.object.padEnd(OBJECT_WIDTH), e.type.padEnd(TYPE_WIDTH), message].join('  ').trimEnd()}\n`;
    }
  }
}
