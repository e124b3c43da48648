// `mlfleetctl apply -f FILE.yaml` (or `-f -` for stdin): deployments and jobs from YAML. The
// whole file is checked first (shared/workload-spec.ts) and an invalid one is bad usage (exit 2)
// with every problem listed and nothing sent. Then each object is sent in file order: a
// deployment is created or updated, a job submitted (one that exists is refused by the
// coordinator). An object that fails does not stop the others; any failure makes the exit 1.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseWorkloadFile, WorkloadFileError, type WorkloadObject } from '../../../shared/workload-spec.js';
import { withContext, type CliContext } from '../context.js';
import { badFile } from '../flags.js';
import { wasCreated } from '../views/deployments.js';

interface ApplyOptions {
  filename: string;
  tenant?: string;
}

/** What happened to one object: the -o json element, and the line people read. */
export interface AppliedJson {
  /** deployment | job */
  kind: string;
  name: string;
  tenant: string;
  /** created | configured | failed */
  action: string;
  /** Why it failed; absent otherwise. */
  error?: string;
}

async function readSource(filename: string): Promise<{ content: string; source: string }> {
  if (filename === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return { content: Buffer.concat(chunks).toString('utf8'), source: 'stdin' };
  }
  return { content: await readFile(filename, 'utf8'), source: filename };
}

async function applyOne(ctx: CliContext, object: WorkloadObject, tenant: string): Promise<AppliedJson> {
  const client = ctx.client();
  if (object.kind === 'Deployment') {
    const deployment = await client.applyDeployment(object.spec, tenant);
    return { kind: 'deployment', name: object.name, tenant: deployment.tenant, action: wasCreated(deployment) ? 'created' : 'configured' };
  }
  const job = await client.runJob(object.spec, tenant);
  return { kind: 'job', name: object.name, tenant: job.tenant, action: 'created' };
}

export function registerApplyCommand(program: Command): void {
  program
    .command('apply')
    .description('create or update the deployments, and submit the jobs, of a YAML file (see docs/workloads.md)')
    .requiredOption('-f, --filename <file>', 'the YAML file: one or more documents separated by ---; "-" reads stdin')
    .option('--tenant <tenant>', 'the tenant of documents that name none (admins)')
    .action(async (options: ApplyOptions, command: Command) => {
      let objects: WorkloadObject[];
      try {
        const { content, source } = await readSource(options.filename);
        objects = parseWorkloadFile(content, source);
      } catch (err) {
        if (err instanceof WorkloadFileError) badFile(err.message);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') badFile(`cannot read ${options.filename}: ${(err as Error).message.replace(/^[A-Z]+: /, '')}`);
        throw err;
      }
      return withContext(command, async (ctx) => {
        const results: AppliedJson[] = [];
        for (const object of objects) {
          const kind = object.kind === 'Deployment' ? 'deployment' : 'job';
          let result: AppliedJson;
          try {
            result = await applyOne(ctx, object, object.tenant || (options.tenant ?? ''));
          } catch (err) {
            const message = err instanceof Error ? err.message : String(err);
            result = { kind, name: object.name, tenant: object.tenant || (options.tenant ?? ''), action: 'failed', error: message };
            process.stderr.write(`mlfleetctl: ${kind}/${object.name}: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
          }
          results.push(result);
          if (ctx.output === 'table' && result.action !== 'failed') process.stdout.write(`${kind}/${result.name} ${result.action}\n`);
        }
        if (ctx.output !== 'table') ctx.print({ data: results, table: () => '' });
        const failed = results.filter((r) => r.action === 'failed').length;
        if (failed > 0) throw new Error(`${failed} of ${results.length} object${results.length === 1 ? '' : 's'} failed (see above)`);
      });
    });
}
