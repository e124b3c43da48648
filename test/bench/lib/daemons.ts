// The coordinator and agent processes a benchmark starts, run as installed (through their
// shebang and the Node flags it names there), and the log lines it waits for.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export class Daemons {
  readonly children: ChildProcess[] = [];

  /** Starts `program` with stderr (the JSON log) piped. */
  start(program: string, args: string[]): ChildProcess {
    const child = spawn(program, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.children.push(child);
    return child;
  }

  /** Stops every daemon started and waits for them. */
  async stop(): Promise<void> {
    for (const child of this.children) if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.all(this.children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((resolve) => c.once('exit', resolve)))));
  }
}

/** The first stderr line of `child` that passes `test`. */
export function line(child: ChildProcess, test: (l: string) => boolean, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for output')), timeoutMs);
    const lines = createInterface({ input: child.stderr! });
    lines.on('line', (l) => {
      if (!test(l)) return;
      clearTimeout(timer);
      lines.close();
      child.stderr!.resume();
      resolve(l);
    });
  });
}

/** The p-th percentile (nearest rank) of `values`. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
