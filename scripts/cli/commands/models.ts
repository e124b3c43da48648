// `mlfleetctl models …`: push, ls, show, pull, alias, rm (scripts/cli/commands/artifacts.ts).
import type { Command } from 'commander';
import { registerArtifactCommands } from './artifacts.js';

export function registerModelCommands(program: Command): void {
  registerArtifactCommands(program, 'model');
}
