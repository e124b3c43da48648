// Request schemas of SourceService. A source spec is checked whole at the edge: the URL is
// parsed (only s3://, a bucket, an optional prefix, an http(s) endpoint), the interval bounded,
// and nothing is stored when any field is wrong.
import { ARTIFACT_NAME, NAME_RULE } from '../../shared/artifact-ref.js';
import { MlfleetError } from '../../shared/errors.js';
import { z } from '../../shared/validation.js';
import { DEFAULT_SOURCE_EVERY_MS, MIN_SOURCE_EVERY_MS } from '../sources/source-record.js';
import { MAX_SOURCE_URL, parseSourceUrl } from '../sources/source-url.js';
import { artifactName, optionalTenant } from './schemas.js';

const MAX_SOURCE_EVERY_MS = 7 * 86_400_000;

export const sourceSpecSchema = z.object({
  name: artifactName,
  model: z.string().regex(ARTIFACT_NAME, `must be a model name: ${NAME_RULE}`),
  url: z
    .string()
    .min(1, 'is required (like s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1)')
    .max(MAX_SOURCE_URL, `must be at most ${MAX_SOURCE_URL} characters`)
    .superRefine((url, ctx) => {
      try {
        parseSourceUrl(url);
      } catch (err) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: err instanceof MlfleetError ? err.message : String(err) });
      }
    }),
  alias: z.string().max(100).refine((a) => a === '' || ARTIFACT_NAME.test(a), `must be an alias name: ${NAME_RULE}`),
  everyMs: z
    .number()
    .int()
    .nonnegative()
    .transform((ms) => ms || DEFAULT_SOURCE_EVERY_MS)
    .refine((ms) => ms >= MIN_SOURCE_EVERY_MS, `must be at least ${MIN_SOURCE_EVERY_MS / 1000}s (a bucket is not polled more often)`)
    .refine((ms) => ms <= MAX_SOURCE_EVERY_MS, 'must be at most 7 days'),
  layout: z
    .string()
    .transform((l) => l || 'files')
    .refine((l): l is 'files' | 'version-dirs' => l === 'files' || l === 'version-dirs', 'must be files or version-dirs'),
  credentials: z.string().max(64).regex(/^[a-zA-Z0-9._-]*$/, 'must be a credentials name from --source-credentials (letters, digits, ".", "_", "-")'),
});

export const createSourceSchema = z.object({
  spec: sourceSpecSchema.nullable().refine((s) => s !== null, 'is required'),
  tenant: optionalTenant,
});
export const listSourcesSchema = z.object({ tenant: optionalTenant });
export const sourceNameSchema = z.object({ name: artifactName, tenant: optionalTenant });
