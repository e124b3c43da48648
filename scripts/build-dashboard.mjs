// Bundles the web dashboard (coordinator/dashboard/ui/, preact + TSX) with esbuild into
// dist/dashboard/: content-hashed script and style files and an index.html that names them.
// Run by `npm run build` after the UI's own typecheck; nothing is fetched at run time, so the
// coordinator serves the whole dashboard from this folder (coordinator/dashboard/static.ts).
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ui = path.join(root, 'coordinator', 'dashboard', 'ui');
const out = path.join(root, 'dist', 'dashboard');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const result = await esbuild.build({
  entryPoints: [path.join(ui, 'main.tsx'), path.join(ui, 'style.css')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  entryNames: '[name]-[hash]',
  outdir: out,
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs).map((file) => path.basename(file));
const script = outputs.find((f) => f.endsWith('.js'));
const style = outputs.find((f) => f.endsWith('.css'));
if (!script || !style) throw new Error(`esbuild wrote ${outputs.join(', ')}: expected one .js and one .css`);
const html = readFileSync(path.join(ui, 'index.html'), 'utf8').replace('%SCRIPT%', `/${script}`).replace('%STYLE%', `/${style}`);
writeFileSync(path.join(out, 'index.html'), html);
