// Loaded into every test process (scripts/run-tests.mjs passes --import): when the runner ends a
// test file with SIGTERM (its time is up), whatever that file started — daemons, simulated
// agents, a browser — is killed with it. Without this they outlive the file, hold the runner's
// output pipes open, and the runner waits on them for ever after printing its summary. Docker
// containers are not processes of ours; the Docker tests remove theirs by label.
import { readdirSync, readFileSync } from 'node:fs';

/** Every process below `pid`, from /proc (Linux), children before their own children. */
function descendants(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (text) children.push(...text.split(/\s+/).map(Number));
    }
  } catch {
    // Gone already, or no /proc: nothing to reap.
  }
  return children.flatMap((child) => [child, ...descendants(child)]);
}

process.once('SIGTERM', () => {
  for (const pid of descendants(process.pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Exited meanwhile.
    }
  }
  process.exit(143);
});
