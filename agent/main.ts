#!/usr/bin/env -S node --max-semi-space-size=4
// mlfleet-agent: the per-host daemon. Flags, MLFLEET_* env and --config YAML, see DESIGN.md.
//
// --max-semi-space-size=4 (MiB): a model download's chunks make V8 grow the young generation to
// its 16 MiB default, twice over, which a 1 GiB pull held as resident memory: the agent's peak
// was 133-147 MiB. With 4 MiB it is 127-130 MiB, at the same CPU; 1 or 2 MiB pushed chunks into
// the old generation and doubled the agent's CPU now and then.
import { runMain } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { handleSignals } from '../shared/signals.js';
import { Agent } from './agent.js';
import { compileAgentOptions } from './options.js';

await runMain('mlfleet-agent', async () => {
  const options = await compileAgentOptions(process.argv.slice(2));
  const log = createLogger({ name: 'mlfleet-agent', level: options.logLevel });
  for (const warning of options.warnings) log.warn(warning);
  const agent = await Agent.create(options, { log });
  log.info({ node: options.name, coordinators: options.coordinators, http: agent.httpAddress, gateway: agent.gateway.address, gatewayGrpc: agent.gateway.grpcAddress ?? null, driver: options.driver }, 'agent started');
  handleSignals(() => agent.close(), log);
  await agent.run();
});
