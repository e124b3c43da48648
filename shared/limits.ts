// The sizes mlfleet accepts, in one place: every object a caller creates is bounded at the API
// (as Kubernetes caps an object at about 1.5 MiB), every message between the processes has a
// deliberate ceiling, and anything parsed is measured first. The README's "Limits" section
// lists these for users; keep the two in step.

const KiB = 1024;
const MiB = 1024 * KiB;

export const LIMITS = {
  /** Environment of a deployment, job or stack: variables, each value, all names and values together. */
  envVars: 256,
  envValueBytes: 32 * KiB,
  envTotalBytes: 128 * KiB,
  /** A command (or a stack's train command): arguments, each argument, all together. */
  commandArgs: 256,
  commandArgBytes: 8 * KiB,
  commandTotalBytes: 64 * KiB,
  /** Labels of a node, constraints of a workload, metadata labels of a model version: entries. */
  labels: 64,
  /** A whole deployment, job or stack spec, as JSON. */
  specBytes: 256 * KiB,
  /** A workload file `mlfleetctl apply` reads (many documents). */
  workloadFileBytes: 4 * MiB,
  /** A model or dataset version's metadata, as JSON (its source datasets, entries). */
  metadataBytes: 64 * KiB,
  sourceDatasets: 64,
  /** The largest gRPC message a coordinator accepts (an upload's chunks are far smaller). */
  grpcReceiveBytes: 4 * MiB,
  /** The largest gRPC message an agent or client accepts from a coordinator. */
  grpcClientReceiveBytes: 16 * MiB,
  /** A piece of a node's desired set: far under every receive limit, whatever the node runs. */
  desiredPieceBytes: 1 * MiB,
  /** JSON text mlfleet parses from a caller or a peer (a run spec, a stored record's field). */
  jsonBytes: 1 * MiB,
} as const;

/** UTF-8 bytes of every name and value in an environment. */
export function envBytes(env: Record<string, string>): number {
  let total = 0;
  for (const [name, value] of Object.entries(env)) total += Buffer.byteLength(name) + Buffer.byteLength(value);
  return total;
}

/** UTF-8 bytes of every argument of a command. */
export function argvBytes(argv: readonly string[]): number {
  let total = 0;
  for (const arg of argv) total += Buffer.byteLength(arg);
  return total;
}

/** A size in bytes as a limit reads in a message: 32 KiB, 1 MiB. */
export function formatLimit(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} bytes`;
}

/**
 * JSON.parse of text that came from outside, measured first: text longer than `maxBytes`
 * is refused before the parser allocates anything for it. `what` names the field in the error.
 */
export function parseBoundedJson(text: string, what: string, maxBytes: number = LIMITS.jsonBytes): unknown {
  // A character is at most 3 UTF-8 bytes in a JS string: count bytes only when it could matter.
  if (text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text) > maxBytes)) {
    throw new RangeError(`${what} is ${Buffer.byteLength(text)} bytes, over the limit of ${formatLimit(maxBytes)}`);
  }
  return JSON.parse(text);
}
