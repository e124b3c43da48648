// `mlfleetctl select`: ask for a model by what it must be (type, input and output format) and
// what matters more (latency or accuracy), without naming one; prints the winner, its endpoints
// and why it won.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { withContext } from '../context.js';
import { durationFlag } from '../flags.js';
import { selectionView } from '../views/selection.js';

interface SelectOptions {
  type?: string;
  inputFormat?: string;
  outputFormat?: string;
  prefer?: 'latency' | 'accuracy';
  latencyWeight?: number;
  maxLatency?: number;
  tenant?: string;
}

function weightFlag(text: string): number {
  const value = Number(text.trim());
  if (text.trim() === '' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new InvalidArgumentError(`--latency-weight "${text}" must be a number from 0 (all accuracy) to 1 (all latency)`);
  }
  return value;
}

export function registerSelectCommand(program: Command): void {
  program
    .command('select')
    .description('pick the best ready deployment for what the model must be, weighing latency against accuracy')
    .option('--type <type>', 'the model type, as pushed with --type (classification, regression, …)')
    .option('--input-format <format>', 'what the model takes (text, tensor, image, …)')
    .option('--output-format <format>', 'what the model gives')
    .addOption(new Option('--prefer <what>', 'what matters: latency (the fastest measured) or accuracy (the most accurate)').choices(['latency', 'accuracy']).conflicts('latencyWeight'))
    .addOption(new Option('--latency-weight <w>', 'between the two: 0 all accuracy … 1 all latency (default: 0.5)').argParser(weightFlag))
    .addOption(new Option('--max-latency <duration>', 'only deployments measured at or below this p50 (50ms)').argParser(durationFlag('--max-latency')))
    .option('--tenant <tenant>', "another tenant's (admins)")
    .action((options: SelectOptions, command: Command) => {
      if (!options.type && !options.inputFormat && !options.outputFormat) {
        command.error('say what the model must be: give at least one of --type, --input-format and --output-format');
      }
      return withContext(command, async (ctx) => {
        const selection = await ctx.client().select({
          tenant: options.tenant ?? '',
          type: options.type ?? '',
          inputFormat: options.inputFormat ?? '',
          outputFormat: options.outputFormat ?? '',
          prefer: options.prefer ?? '',
          ...(options.latencyWeight !== undefined ? { latencyWeight: options.latencyWeight } : {}),
          maxLatencyMs: options.maxLatency ?? 0,
        });
        ctx.print(selectionView(selection));
      });
    });
}
