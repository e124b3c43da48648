#!/usr/bin/env node
// mlfleet-coordinator: the control plane. Flags, MLFLEET_* env and --config YAML, see DESIGN.md.
import { runMain } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { handleSignals } from '../shared/signals.js';
import { Coordinator } from './coordinator.js';
import { compileCoordinatorOptions } from './options.js';

await runMain('mlfleet-coordinator', async () => {
  const options = compileCoordinatorOptions(process.argv.slice(2));
  const log = createLogger({ name: 'mlfleet-coordinator', level: options.logLevel });
  const coordinator = await Coordinator.create(options, { log });
  log.info({ id: coordinator.id, grpc: coordinator.address, http: coordinator.httpAddress, store: coordinator.store.kind }, 'coordinator started');
  handleSignals(() => coordinator.close(), log);
  await coordinator.run();
});
