#!/usr/bin/env node
// Writes the example ONNX models (scripts/onnx/example-models.ts) into a directory, made on
// this machine without Python or a download:
//
//   npm run build && node dist/scripts/make-example-models.js [DIR]     (default ./example-models)
//
// Then, for instance: `mlfleetctl models push linear DIR/linear.onnx --format onnx`.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { exampleModels } from './onnx/example-models.js';

const args = process.argv.slice(2);
if (args.length > 1 || args.some((a) => a.startsWith('-'))) {
  console.error('usage: node dist/scripts/make-example-models.js [DIR]');
  process.exit(2);
}
const dir = path.resolve(args[0] ?? 'example-models');
mkdirSync(dir, { recursive: true });
for (const [file, bytes] of Object.entries(exampleModels())) {
  writeFileSync(path.join(dir, file), bytes);
  console.log(`${path.join(dir, file)} (${bytes.length} bytes)`);
}
