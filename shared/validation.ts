// Validation at the edge (DESIGN principle 8): one zod schema per request message; a failure
// becomes one InvalidArgumentError listing every problem by field path.
import { z } from 'zod';
import { InvalidArgumentError } from './errors.js';
import { truncate } from './truncate.js';
import { argvBytes, envBytes, formatLimit, LIMITS } from './limits.js';

export { z };

/** Set by the server's deserializer when the request bytes are not a valid message. */
export const MALFORMED = Symbol.for('mlfleet.malformed');

/**
 * Set instead of a request by a transport that found the request invalid before it became a
 * message (the REST API: bad JSON, a field of the wrong type), so that the edge answers
 * INVALID_ARGUMENT with these words after it has authenticated and authorized the caller.
 */
export const INVALID = Symbol.for('mlfleet.invalid');

/** Throws INVALID_ARGUMENT when the server could not decode the message's bytes. */
export function assertWellFormed(value: unknown, what: string): void {
  if (value && typeof value === 'object' && INVALID in value) throw new InvalidArgumentError(String((value as Record<symbol, unknown>)[INVALID]));
  if (value && typeof value === 'object' && MALFORMED in value) {
    throw new InvalidArgumentError(`${what}: not a valid protobuf message (${String((value as Record<symbol, unknown>)[MALFORMED])})`);
  }
}

/** An invalid request's error lists at most this many problems, each at most this long. */
const MAX_PROBLEMS = 20;
const PROBLEM_MAX_BYTES = 512;

export function validate<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, value: unknown, what: string): T {
  assertWellFormed(value, what);
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  // A message may quote the value it refused: each is cut, so an error never echoes an input whole.
  const problems = result.error.issues.slice(0, MAX_PROBLEMS).map((issue) => {
    const field = issue.path.length > 0 ? issue.path.join('.') : 'request';
    return truncate(`${field}: ${issue.message}`, PROBLEM_MAX_BYTES);
  });
  if (result.error.issues.length > MAX_PROBLEMS) problems.push(`and ${result.error.issues.length - MAX_PROBLEMS} more`);
  throw new InvalidArgumentError(`invalid ${what}: ${problems.join('; ')}`);
}

/** The longest node name (a DNS name). */
export const MAX_NODE_NAME_CHARS = 253;

/** A node name: a lowercase DNS subdomain, as Kubernetes and Nomad accept. */
export const nodeName = z
  .string()
  .min(1, 'is required')
  .max(MAX_NODE_NAME_CHARS, `must be at most ${MAX_NODE_NAME_CHARS} characters`)
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/, 'must be lowercase letters, digits, "." and "-", starting and ending with a letter or digit');

export const labelMap = z
  .record(
    z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/, 'label keys are letters, digits, . _ - / (max 63)'),
    z.string().max(128, 'label values are at most 128 characters'),
  )
  .superRefine((labels, ctx) => {
    const count = Object.keys(labels).length;
    if (count > LIMITS.labels) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `has ${count} entries, over the limit of ${LIMITS.labels}` });
  });

/** An environment (deployment, job, stack): bounded in count, in each value and in total. */
export const boundedEnv = z
  .record(
    z.string().max(256, 'environment variable names are at most 256 characters').regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _'),
    z.string().max(LIMITS.envValueBytes, `each value is at most ${formatLimit(LIMITS.envValueBytes)}`),
  )
  .superRefine((env, ctx) => {
    const count = Object.keys(env).length;
    if (count > LIMITS.envVars) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `has ${count} variables, over the limit of ${LIMITS.envVars}` });
    const bytes = envBytes(env);
    if (bytes > LIMITS.envTotalBytes) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `is ${bytes} bytes in all, over the limit of ${formatLimit(LIMITS.envTotalBytes)}` });
  });

/** A command line: bounded in arguments, in each argument and in total. */
export const boundedArgv = z
  .array(z.string().max(LIMITS.commandArgBytes, `each argument is at most ${formatLimit(LIMITS.commandArgBytes)}`))
  .max(LIMITS.commandArgs, `at most ${LIMITS.commandArgs} arguments`)
  .superRefine((argv, ctx) => {
    const bytes = argvBytes(argv);
    if (bytes > LIMITS.commandTotalBytes) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `is ${bytes} bytes in all, over the limit of ${formatLimit(LIMITS.commandTotalBytes)}` });
  });

/** A refinement that bounds a whole object by its JSON size (a spec, metadata). */
export function withinJsonBytes(maxBytes: number) {
  return (value: unknown, ctx: z.RefinementCtx) => {
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > maxBytes) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `is ${bytes} bytes as JSON, over the limit of ${formatLimit(maxBytes)}`, path: [] });
  };
}
