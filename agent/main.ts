#!/usr/bin/env node
// mlfleet-agent: the per-host daemon. Flags, MLFLEET_* env and --config YAML, see DESIGN.md.
import { runMain } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { handleSignals } from '../shared/signals.js';
import { Agent } from './agent.js';
import { compileAgentOptions } from './options.js';

await runMain('mlfleet-agent', async () => {
  const options = await compileAgentOptions(process.argv.slice(2));
  const log = createLogger({ name: 'mlfleet-agent', level: options.logLevel });
  const agent = await Agent.create(options, { log });
  log.info({ node: options.name, coordinators: options.coordinators, http: agent.httpAddress, gateway: agent.gateway.address, driver: options.driver }, 'agent started');
  handleSignals(() => agent.close(), log);
  await agent.run();
});
