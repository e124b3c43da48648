// After tsc: make the package's bin entry points executable (tsc keeps the shebang but not the mode).
import { chmodSync, readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
for (const target of Object.values(pkg.bin)) chmodSync(new URL(`../${target}`, import.meta.url), 0o755);
