// `mlfleetctl jobs …`: training and data-processing jobs — run (flags compiled by
// shared/workload-spec.ts, as `apply -f` does), list, show, logs, cancel.
import { Option, type Command } from 'commander';
import { ARTIFACT_FORMATS, checkName } from '../../../shared/artifact-ref.js';
import { jobLogSources } from '../../../shared/sdk/jobs.js';
import { compileJobSpec, JOB_FLAG_NAMES, jobShapeProblems, MAX_PARTITIONS, type JobOutputInput } from '../../../shared/workload-spec.js';
import { withContext } from '../context.js';
import { countFlag, durationFlag, usageParser } from '../flags.js';
import { jobCancelledView, jobCreatedView, jobDetailView, jobListView } from '../views/jobs.js';
import { addLogOptions, printLogs, type LogOptions } from './allocations.js';
import { accuracyFlag, metaFlag } from './artifacts.js';
import { addWorkloadOptions, commandAfterDashes, refFlag, repeatable, resourcesFrom, runtimeFrom, wholeFlag, workloadNameArgument, type WorkloadOptions } from './deploy.js';

interface RunOptions extends WorkloadOptions {
  workers?: number;
  dataset?: string[];
  retries?: number;
  retryBackoff?: number;
  deadline?: number;
  outputModel?: string;
  outputModelFormat?: string;
  outputModelType?: string;
  outputModelInput?: string;
  outputModelOutput?: string;
  outputModelAccuracy?: number;
  outputModelMeta?: Record<string, string>;
  partitions?: number;
  outputDataset?: string;
}

interface TenantOption {
  tenant?: string;
}

/** The --output-model-* flags; the others need --output-model (a usage error without it). */
function outputFrom(options: RunOptions, command: Command): JobOutputInput | undefined {
  const { outputModel: model, outputModelFormat: format, outputModelType: type, outputModelInput: inputFormat, outputModelOutput: outputFormat, outputModelAccuracy: accuracy, outputModelMeta: labels } = options;
  if (model === undefined) {
    if ([format, type, inputFormat, outputFormat, accuracy, labels].some((v) => v !== undefined)) {
      command.error('the --output-model-* flags describe the output model: give --output-model NAME too');
    }
    return undefined;
  }
  return { model, format, type, inputFormat, outputFormat, accuracy, labels };
}

export function registerJobCommands(program: Command): void {
  const jobs = program.command('jobs').description('training and data-processing jobs');
  const tenantOption = (command: Command) => command.option('--tenant <tenant>', "another tenant's (admins)");

  const run = jobs
    .command('run')
    .description('submit a job: WORKERS workers run the command together (a gang: all placed or none), or K partitions each run it on their share, until it exits')
    .addArgument(workloadNameArgument('job'))
    .argument('[command...]', "after --: with --image, the command each worker runs; with --stack, the arguments of the stack's train command (onnx: the script, e.g. /data/trainer/train.mjs)")
    .addOption(new Option('--workers <n>', 'workers in the gang; each gets MLFLEET_RANK and MLFLEET_WORLD_SIZE (default: 1)').argParser(countFlag('--workers')))
    .addOption(new Option('--dataset <ref>', 'a dataset mounted read-only at /data/NAME (repeat for more)').argParser(repeatable(refFlag)))
    .addOption(new Option('--retries <n>', 'attempts after the first that fails (default: 0)').argParser(wholeFlag('--retries', 0, 2 ** 32 - 1)))
    .addOption(new Option('--retry-backoff <duration>', 'wait before a retry, doubled each time (default: 1s)').argParser(durationFlag('--retry-backoff')))
    .addOption(new Option('--deadline <duration>', 'an attempt still running after this fails the job (default: none)').argParser(durationFlag('--deadline', 'leave it out for no deadline')))
    .addOption(
      new Option('--output-model <name>', "on success, rank 0's /output (MLFLEET_OUTPUT_PATH) is pushed as the next version of this model").argParser(
        usageParser((text: string) => checkName(text, 'output model')),
      ),
    )
    .addOption(new Option('--output-model-format <format>', "the output's format (default: from the file extension, or saved_model.pb in a directory)").choices(ARTIFACT_FORMATS.model))
    .option('--output-model-type <type>', 'what the output model does (as models push --type)')
    .option('--output-model-input <format>', 'what it takes (as models push --input-format)')
    .option('--output-model-output <format>', 'what it gives (as models push --output-format)')
    .addOption(new Option('--output-model-accuracy <a>', 'its accuracy, 0.978 or 97.8% (as models push --accuracy)').argParser(accuracyFlag))
    .addOption(new Option('--output-model-meta <key=value>', 'a free key/value of the output version (repeat for more)').argParser(metaFlag))
    .addOption(
      new Option('--partitions <k>', `K workers, each given its partition (MLFLEET_PARTITION 0..K-1, MLFLEET_PARTITIONS K) and placed as soon as it fits (not a gang); at most ${MAX_PARTITIONS}`).argParser(
        countFlag('--partitions', MAX_PARTITIONS, 'leave it out for a job that is not partitioned'),
      ),
    )
    .addOption(
      new Option('--output-dataset <name>', "with --partitions: once every partition exited 0, the union of their /output files is the next version of this dataset").argParser(
        usageParser((text: string) => checkName(text, 'output dataset')),
      ),
    );
  addWorkloadOptions(run, 'worker').action((name: string, operands: string[], options: RunOptions, command: Command) => {
    const shape = { workers: options.workers ?? 1, partitions: options.partitions ?? 0, outputModel: options.outputModel !== undefined, outputDataset: options.outputDataset ?? '' };
    const [problem] = jobShapeProblems(shape, JOB_FLAG_NAMES);
    if (problem) command.error(problem.message);
    const spec = compileJobSpec({
      name,
      ...runtimeFrom(options, command),
      command: commandAfterDashes(command, operands),
      env: options.env,
      datasets: options.dataset,
      resources: resourcesFrom(options),
      workers: options.workers,
      retries: options.retries,
      retryBackoffMs: options.retryBackoff,
      deadlineMs: options.deadline,
      constraints: options.constraint,
      priority: options.priority,
      output: outputFrom(options, command),
      partitions: options.partitions,
      outputDataset: options.outputDataset,
    });
    return withContext(command, async (ctx) => ctx.print(jobCreatedView(await ctx.client().runJob(spec, options.tenant))));
  });

  tenantOption(jobs.command('ls').description('list jobs: status, workers, attempts, how long they ran')).action((options: TenantOption, command: Command) =>
    withContext(command, async (ctx) => ctx.print(jobListView((await ctx.client().listJobs(options.tenant)).jobs))),
  );

  tenantOption(jobs.command('show').description("show a job: its spec, status and message, and its current attempt's workers").addArgument(workloadNameArgument('job'))).action(
    (name: string, options: TenantOption, command: Command) => withContext(command, async (ctx) => ctx.print(jobDetailView(await ctx.client().getJob(name, options.tenant)))),
  );

  tenantOption(
    addLogOptions(
      jobs
        .command('logs')
        .description("print the output of the job's current (or last) attempt; with several workers each line starts with [rank N] ([partition N] for a partitioned job)")
        .addArgument(workloadNameArgument('job')),
    ),
  ).action((name: string, options: LogOptions & TenantOption, command: Command) =>
    withContext(command, async (ctx) => {
      const job = await ctx.client().getJob(name, options.tenant);
      await printLogs(ctx.client(), jobLogSources(job), options);
    }),
  );

  tenantOption(jobs.command('cancel').description("stop the job's workers; it ends cancelled").addArgument(workloadNameArgument('job'))).action(
    (name: string, options: TenantOption, command: Command) => withContext(command, async (ctx) => ctx.print(jobCancelledView(await ctx.client().cancelJob(name, options.tenant)))),
  );
}
