// How mlfleetctl prints: one result, three formats. A command hands over the stable JSON
// shape (the interface scripts rely on) and a table renderer for people; -o picks one.
// The helpers here are format-level only; each noun's shape lives in cli/views/<noun>.ts.
import YAML from 'yaml';
import { formatDuration } from '../../shared/units.js';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface Printable {
  /** The stable -o json / -o yaml value: camelCase fields, plain JSON types only. */
  data: unknown;
  /** The human rendering, without the trailing newline. */
  table: () => string;
}

export function render(format: OutputFormat, printable: Printable): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(printable.data, null, 2)}\n`;
    case 'yaml':
      return YAML.stringify(printable.data);
    case 'table': {
      const text = printable.table();
      return text.length === 0 || text.endsWith('\n') ? text : `${text}\n`;
    }
  }
}

export function print(format: OutputFormat, printable: Printable): void {
  process.stdout.write(render(format, printable));
}

/** Columns aligned with two spaces between them; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  return all
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

export type KeyValue = readonly [string, string];

/**
 * A "Key:  value" block with the values aligned. `alignWith` lists the keys of other blocks
 * printed with this one (a block split by a nested table), so all values line up.
 */
export function keyValues(pairs: readonly KeyValue[], alignWith: readonly KeyValue[] = []): string {
  const width = Math.max(0, ...[...pairs, ...alignWith].map(([key]) => key.length + 1));
  return pairs.map(([key, value]) => `${`${key}:`.padEnd(width)}  ${value}`.trimEnd()).join('\n');
}

/** Indents every line of a block (a nested table under a key). */
export function indent(text: string, by = 2): string {
  const pad = ' '.repeat(by);
  return text
    .split('\n')
    .map((line) => (line.length > 0 ? pad + line : line))
    .join('\n');
}

/** "3s ago", "2m5s ago"; "never" for 0. */
export function ago(ms: number, now = Date.now()): string {
  if (ms <= 0) return 'never';
  return `${formatDuration(Math.max(0, now - ms))} ago`;
}

/** {b: '2', a: '1'} → "a=1,b=2"; "<none>" when empty. */
export function formatLabels(labels: Record<string, string>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? '<none>' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

export { isoOrNull, sortedRecord } from '../../shared/views/json.js';
