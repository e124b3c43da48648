// Named credentials for model sources, read once at start from --source-credentials: a JSON
// object { "NAME": { "accessKeyId", "secretAccessKey", "sessionToken"? } } in a file no one but
// the coordinator's user may read (mode 0600 or stricter). They stay in memory, are never
// stored, logged or answered; a source only names one.
import { readFileSync, statSync } from 'node:fs';
import { InvalidArgumentError } from '../../shared/errors.js';
import { z } from '../../shared/validation.js';

export interface SourceCredential {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** The tenants whose sources may name it; absent: every tenant. */
  tenants?: string[];
}

export type SourceCredentials = ReadonlyMap<string, SourceCredential>;

const credentialSchema = z
  .object({
    accessKeyId: z.string().min(1).max(256),
    secretAccessKey: z.string().min(1).max(1024),
    sessionToken: z.string().min(1).max(4096).optional(),
    tenants: z.array(z.string().min(1).max(63)).max(1000).optional(),
  })
  .strict();
const fileSchema = z.record(z.string().regex(/^[a-zA-Z0-9._-]{1,64}$/, 'names are 1-64 letters, digits, ".", "_" or "-"'), credentialSchema);

export function loadSourceCredentials(file: string): SourceCredentials {
  let mode: number;
  try {
    mode = statSync(file).mode;
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new InvalidArgumentError(`${file} may be read by others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`${file} is not JSON: ${(err as Error).message}`);
  }
  const result = fileSchema.safeParse(parsed);
  if (!result.success) {
    // Only paths are named: a value may be a secret.
    const where = result.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ');
    throw new InvalidArgumentError(`${file} must be {"NAME": {"accessKeyId": …, "secretAccessKey": …, "sessionToken"?: …, "tenants"?: […]}}: ${where}`);
  }
  return new Map(Object.entries(result.data));
}

/** The credentials `name` for a source of `tenant`, or why not (undefined: a message to show). */
export function credentialFor(credentials: SourceCredentials, name: string, tenant: string): { credential: SourceCredential } | { refusal: string } {
  const credential = credentials.get(name);
  if (!credential || (credential.tenants && !credential.tenants.includes(tenant))) {
    // Not "exists but not yours": another tenant's credential names are not shown either.
    return { refusal: `credentials "${name}" are not known to the coordinator for tenant "${tenant}": add them to its --source-credentials file (with this tenant in "tenants", if it lists any), or leave --credentials out for the default chain` };
  }
  return { credential };
}
