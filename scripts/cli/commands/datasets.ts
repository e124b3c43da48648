// `mlfleetctl datasets …`: push, ls, show, pull, alias, rm (scripts/cli/commands/artifacts.ts).
import type { Command } from 'commander';
import { registerArtifactCommands } from './artifacts.js';

export function registerDatasetCommands(program: Command): void {
  registerArtifactCommands(program, 'dataset');
}
