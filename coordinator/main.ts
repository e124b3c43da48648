#!/usr/bin/env -S node --initial-old-space-size=128
// mlfleet-coordinator: the control plane. Flags, MLFLEET_* env and --config YAML, see DESIGN.md.
//
// --initial-old-space-size: a download hands each chunk to grpc-js, which copies it into a new
// 256 KiB buffer that lives until the socket takes it, long enough, behind a slower agent, to
// reach the old generation. V8 counts those bytes against the old generation's limit, which it
// sets at about 1.1 times the live heap for a process that allocates as little else as this
// one: so it ran a full collection every 10 MiB or so of a download (100 per GiB, over half the
// coordinator's CPU). A limit of at least 128 MB makes it a handful. It is a limit, not memory
// taken: the heap may hold that much garbage before a full collection returns it.
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
