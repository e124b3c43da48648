// A task driver in memory for reconciler tests: it records what it was asked to start, stop and
// remove, and lets a test play the host: a task exits, vanishes, prints output, or already
// exists when the agent starts (to be adopted). Nothing runs; a test that needs a server on the
// task's port starts one itself.
import type { Driver, LogOptions, StartHooks, Task, TaskStatus } from '../../agent/drivers/driver.js';
import { NotFoundError } from '../../shared/errors.js';

interface FakeTask {
  status: TaskStatus;
  task: Task | undefined;
  output: Buffer[];
  /** Woken when output is added or the task ends. */
  waiters: Set<() => void>;
}

export class FakeDriver implements Driver {
  /** Every start call that created a task, in order. */
  readonly started: Task[] = [];
  /** Every stop call, in order. */
  readonly stopped: { allocationId: string; graceMs: number }[] = [];
  /** Every remove call, in order. */
  readonly removed: { allocationId: string; graceMs: number }[] = [];
  private readonly tasks = new Map<string, FakeTask>();
  private readonly startFailures = new Map<string, Error>();
  private startGate: { promise: Promise<void>; open: () => void } | undefined;
  closed = false;
  /** Called as a start creates its task and as it starts it (a test moves its clock there). */
  during: ((step: 'create' | 'start') => void) | undefined;

  constructor(
    readonly name: 'docker' | 'process' = 'docker',
    private readonly now: () => number = () => Date.now(),
  ) {}

  async start(task: Task, hooks?: StartHooks): Promise<void> {
    if (this.startGate) await this.startGate.promise;
    const failure = this.startFailures.get(task.allocationId);
    if (failure) throw failure;
    if (this.tasks.has(task.allocationId)) return;
    this.during?.('create');
    hooks?.created?.();
    this.during?.('start');
    this.started.push(task);
    this.tasks.set(task.allocationId, {
      status: { allocationId: task.allocationId, kind: task.kind, running: true, exitCode: undefined, startedAtMs: this.now(), finishedAtMs: 0, reason: '' },
      task,
      output: [],
      waiters: new Set(),
    });
  }

  /** A running task ends as SIGTERM ends it (143); it stays, with its output. */
  async stop(allocationId: string, graceMs: number): Promise<void> {
    this.stopped.push({ allocationId, graceMs });
    const task = this.tasks.get(allocationId);
    if (!task?.status.running) return;
    task.status = { ...task.status, running: false, exitCode: 143, finishedAtMs: this.now() };
    wake(task);
  }

  async remove(allocationId: string, graceMs: number): Promise<void> {
    this.removed.push({ allocationId, graceMs });
    const task = this.tasks.get(allocationId);
    this.tasks.delete(allocationId);
    if (task) wake(task);
  }

  async list(): Promise<TaskStatus[]> {
    return [...this.tasks.values()].map((t) => ({ ...t.status }));
  }

  async *logs(allocationId: string, options: LogOptions): AsyncGenerator<Buffer> {
    const task = this.tasks.get(allocationId);
    if (!task) throw new NotFoundError(`allocation ${allocationId} has no task`);
    const kept = Buffer.concat(task.output);
    const tail = options.tailBytes > 0 ? kept.subarray(Math.max(0, kept.length - options.tailBytes)) : kept;
    if (tail.length > 0) yield tail;
    if (!options.follow) return;
    let sent = task.output.length;
    for (;;) {
      while (sent < task.output.length) yield task.output[sent++]!;
      if (!task.status.running || !this.tasks.has(allocationId) || options.signal.aborted) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          task.waiters.delete(done);
          options.signal.removeEventListener('abort', done);
          resolve();
        };
        task.waiters.add(done);
        options.signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // ---- what a test does to the host ------------------------------------------------------

  /** A task that exists before the agent starts (left by the previous agent process); of no known kind unless `status` says. */
  existing(allocationId: string, status: Partial<TaskStatus> = {}): void {
    this.tasks.set(allocationId, {
      status: { allocationId, kind: '', running: true, exitCode: undefined, startedAtMs: this.now(), finishedAtMs: 0, reason: '', ...status },
      task: undefined,
      output: [],
      waiters: new Set(),
    });
  }

  /** The task's process ends with `code`. */
  exit(allocationId: string, code: number, reason = ''): void {
    const task = this.get(allocationId);
    task.status = { ...task.status, running: false, exitCode: code, finishedAtMs: this.now(), reason };
    wake(task);
  }

  /** The task is gone behind the agent's back (docker rm -f by hand). */
  vanish(allocationId: string): void {
    const task = this.get(allocationId);
    this.tasks.delete(allocationId);
    wake(task);
  }

  /** The task prints `data`. */
  print(allocationId: string, data: string | Buffer): void {
    const task = this.get(allocationId);
    task.output.push(Buffer.from(data));
    wake(task);
  }

  /** The next start of `allocationId` fails with `error`. */
  failStart(allocationId: string, error: Error): void {
    this.startFailures.set(allocationId, error);
  }

  /** Starts wait until the returned function is called. */
  holdStarts(): () => void {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.startGate = { promise, open };
    return () => {
      this.startGate = undefined;
      open();
    };
  }

  has(allocationId: string): boolean {
    return this.tasks.has(allocationId);
  }

  private get(allocationId: string): FakeTask {
    const task = this.tasks.get(allocationId);
    if (!task) throw new Error(`the fake driver has no task for ${allocationId}`);
    return task;
  }
}

function wake(task: FakeTask): void {
  for (const waiter of [...task.waiters]) waiter();
}
