// Request schemas of StackService. A registered stack is checked whole: every field that is
// wrong is named, and nothing is stored.
import { ARTIFACT_FORMATS } from '../../shared/artifact-ref.js';
import { IMAGE_REF } from '../../shared/workload-spec.js';
import { boundedArgv, boundedEnv, withinJsonBytes, z } from '../../shared/validation.js';
import { LIMITS } from '../../shared/limits.js';
import { STACK_PROTOCOLS } from '../workloads/stacks.js';
import { workloadName } from './workload-schemas.js';

const MODEL_FORMATS = ARTIFACT_FORMATS.model;

/** An absolute container path, without "." or ".." segments, and not the root itself. */
const absolutePath = z
  .string()
  .max(1024, 'must be at most 1024 characters')
  .regex(/^(\/[^/\s]+)+$/, 'must be an absolute path like /models (no spaces, no trailing /)')
  .refine((p) => !p.split('/').some((segment) => segment === '.' || segment === '..'), 'must not contain "." or ".." segments');

const argv = boundedArgv;

export const stackSchema = z.object({
  name: workloadName,
  description: z.string().max(1024, 'must be at most 1024 characters'),
  image: z.string().min(1, 'is required').max(512, 'must be at most 512 characters').regex(IMAGE_REF, 'is not an image reference (like tensorflow/serving:2.16.1)'),
  formats: z
    .array(z.string().refine((f) => MODEL_FORMATS.includes(f), { message: `must be one of ${MODEL_FORMATS.join(', ')}` }))
    .min(1, `give at least one model format (${MODEL_FORMATS.join(', ')})`)
    .refine((formats) => new Set(formats).size === formats.length, 'must not repeat a format'),
  modelMount: absolutePath,
  port: z.number().int().min(1, 'must be a port number (1-65535)').max(65_535, 'must be a port number (1-65535)'),
  protocol: z.enum(STACK_PROTOCOLS, { errorMap: () => ({ message: `must be one of ${STACK_PROTOCOLS.join(', ')}` }) }),
  readinessPath: z.string().max(1024, 'must be at most 1024 characters').regex(/^\/\S*$/, 'must be an HTTP path starting with / (the server answers 200 there once ready)'),
  readinessTimeoutMs: z.number().int().nonnegative().max(86_400_000, 'must be at most 24h'),
  command: argv,
  env: boundedEnv,
  gpus: z.boolean(),
  trainCommand: argv,
  builtin: z.literal(false, { errorMap: () => ({ message: 'is set by mlfleet: only the stacks it ships are built in' }) }),
}).superRefine(withinJsonBytes(LIMITS.specBytes));

export const listStacksSchema = z.object({});
export const getStackSchema = z.object({ name: workloadName });
export const registerStackSchema = z.object({
  stack: stackSchema.nullable().refine((s) => s !== null, 'is required'),
});
export const deleteStackSchema = z.object({ name: workloadName });
