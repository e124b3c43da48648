// The process driver's per-task supervisor: a small detached process that runs the task's
// command, writes its output to a size-capped log and records its exit code, so that both go on
// while the agent is stopped or restarting (DESIGN principle 7). It leads the task's process
// group, so the driver stops the task and everything it started with one signal to the group.
//
//   node process-supervisor.js TASK_DIR LOG_MAX_BYTES [--as UID:GID] -- COMMAND [ARG…]
//
// With --as (the agent runs as root and has a --task-user), the command runs as that user with
// no supplementary groups, while this process stays the agent's: the task cannot touch its log,
// its exit code or the driver's record.
//
// TASK_DIR/output.log holds the newest output; once it would pass LOG_MAX_BYTES it becomes
// output.log.1 (replacing the older one) and a new output.log begins, so at most twice the
// cap is kept (like docker's json-file with max-file=2). TASK_DIR/exit gets the exit code
// (128 + the signal's number for a killed task, 127 when the command cannot be found).
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT_FILE, LOG_FILE, ROTATED_SUFFIX } from './process-task-dir.js';

/** How long the output may stay open after the command exits (a child it left behind holds it). */
const DRAIN_AFTER_EXIT_MS = 1_000;

class RotatingLog {
  private fd: number;
  private size: number;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
  ) {
    this.fd = openSync(file, 'a');
    this.size = fstatSync(this.fd).size;
  }

  write(chunk: Buffer): void {
    let rest = chunk;
    while (rest.length > 0) {
      if (this.size >= this.maxBytes) this.rotate();
      const piece = rest.subarray(0, this.maxBytes - this.size);
      for (let done = 0; done < piece.length; ) done += writeSync(this.fd, piece, done);
      this.size += piece.length;
      rest = rest.subarray(piece.length);
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  private rotate(): void {
    closeSync(this.fd);
    renameSync(this.file, this.file + ROTATED_SUFFIX);
    this.fd = openSync(this.file, 'a');
    this.size = 0;
  }
}

function recordExit(taskDir: string, code: number): void {
  // Written whole, then renamed: a reader sees no exit file or a complete one.
  const file = path.join(taskDir, EXIT_FILE);
  writeFileSync(`${file}.tmp`, `${code}\n`);
  renameSync(`${file}.tmp`, file);
}

function main(): void {
  const args = process.argv.slice(2);
  const [taskDir, maxBytesArg] = args;
  const as = args[2] === '--as' ? /^(\d+):(\d+)$/.exec(args[3] ?? '') : undefined;
  const [separator, ...command] = args.slice(args[2] === '--as' ? 4 : 2);
  const maxBytes = Number(maxBytesArg);
  if (!taskDir || separator !== '--' || command.length === 0 || !(maxBytes > 0) || as === null) {
    process.stderr.write('usage: process-supervisor TASK_DIR LOG_MAX_BYTES [--as UID:GID] -- COMMAND [ARG…]\n');
    process.exit(2);
  }
  const user = as ? { uid: Number(as[1]), gid: Number(as[2]) } : {};
  const log = new RotatingLog(path.join(taskDir, LOG_FILE), maxBytes);
  // The driver signals the whole group: the task decides what SIGTERM means, and this process
  // stays to record how it ended (SIGKILL after the grace period ends it all).
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => undefined);

  let finished = false;
  const finish = (code: number) => {
    if (finished) return;
    finished = true;
    log.close();
    recordExit(taskDir, code);
    process.exit(0);
  };

  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: process.cwd(), env: process.env, ...user });
  child.stdout.on('data', (chunk: Buffer) => log.write(chunk));
  child.stderr.on('data', (chunk: Buffer) => log.write(chunk));
  child.on('error', (err: NodeJS.ErrnoException) => {
    log.write(Buffer.from(`mlfleet: cannot run ${command[0]}: ${err.message}\n`));
    finish(err.code === 'ENOENT' ? 127 : 126);
  });
  let exitCode: number | undefined;
  child.on('exit', (code, signal) => {
    exitCode = code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0);
    // Normally 'close' follows at once; a grandchild holding the output must not keep the
    // exit from being recorded.
    setTimeout(() => finish(exitCode!), DRAIN_AFTER_EXIT_MS);
  });
  child.on('close', () => {
    if (exitCode !== undefined) finish(exitCode);
  });
}

main();
