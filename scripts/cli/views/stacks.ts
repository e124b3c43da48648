// Stacks as mlfleetctl shows them: the stable -o json shape (every Stack field, camelCase, the
// same fields `stacks register -f` reads), the list table and the detail block.
import type { Stack } from '../../../shared/proto.js';
import { formatDuration } from '../../../shared/units.js';
import { formatLabels, keyValues, sortedRecord, table, type Printable } from '../output.js';

export interface StackJson {
  name: string;
  description: string;
  image: string;
  formats: string[];
  modelMount: string;
  port: number;
  /** v2 | tfserving-rest | http */
  protocol: string;
  readinessPath: string;
  readinessTimeoutMs: number;
  /** []: the image's own. */
  command: string[];
  env: Record<string, string>;
  gpus: boolean;
  /** []: it does not train. */
  trainCommand: string[];
  builtin: boolean;
}

export function stackJson(s: Stack): StackJson {
  return {
    name: s.name,
    description: s.description,
    image: s.image,
    formats: [...s.formats],
    modelMount: s.modelMount,
    port: s.port,
    protocol: s.protocol,
    readinessPath: s.readinessPath,
    readinessTimeoutMs: s.readinessTimeoutMs,
    command: [...s.command],
    env: sortedRecord(s.env),
    gpus: s.gpus,
    trainCommand: [...s.trainCommand],
    builtin: s.builtin,
  };
}

const yesNo = (value: boolean) => (value ? 'yes' : 'no');

/** `stacks ls`: a JSON array, or one row per stack. */
export function stackListView(stacks: readonly Stack[]): Printable {
  const list = stacks.map(stackJson);
  return {
    data: list,
    table: () =>
      table(
        ['NAME', 'IMAGE', 'FORMATS', 'PORT', 'PROTOCOL', 'BUILTIN'],
        list.map((s) => [s.name, s.image, s.formats.join(','), String(s.port), s.protocol, yesNo(s.builtin)]),
      ),
  };
}

/** `stacks show`: the stack, or a key: value block. */
export function stackDetailView(stack: Stack): Printable {
  const s = stackJson(stack);
  return {
    data: s,
    table: () =>
      keyValues([
        ['Name', s.name],
        ['Description', s.description || '-'],
        ['Image', s.image],
        ['Formats', s.formats.join(', ')],
        ['Model mount', `${s.modelMount} (read-only)`],
        ['Port', String(s.port)],
        ['Protocol', s.protocol],
        ['Readiness', `GET ${s.readinessPath} within ${formatDuration(s.readinessTimeoutMs)}`],
        ['Command', s.command.length > 0 ? s.command.join(' ') : "the image's own"],
        ['Env', formatLabels(s.env)],
        ['GPUs', yesNo(s.gpus)],
        ['Trains', s.trainCommand.length > 0 ? s.trainCommand.join(' ') : 'no'],
        ['Built in', yesNo(s.builtin)],
      ]),
  };
}

/** `stacks register`: the stack, or one line. */
export function stackRegisteredView(stack: Stack): Printable {
  return { data: stackJson(stack), table: () => `stack ${stack.name} registered` };
}

/** `stacks rm`: what was removed. */
export function stackDeletedView(name: string): Printable {
  return { data: { kind: 'stack', name, action: 'deleted' }, table: () => `stack ${name} deleted` };
}
