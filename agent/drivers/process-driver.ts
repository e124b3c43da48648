// The process driver, for hosts without Docker: runs an allocation's `spec.command` directly on
// the host. The image is not used and nothing is mounted: the reconciler points the task's
// environment at the model and datasets in the host's cache, and sets PORT to the host port the
// task listens on. Each task gets <data-dir>/tasks/<allocation>/ (see process-task-dir.ts) and a
// detached supervisor (process-supervisor.ts) leading its own process group, which keeps the
// output log bounded and records the exit code: the task, its log and its exit code all outlive
// the agent, and a restarted agent adopts the task from its directory (DESIGN principle 7).
//
// Tasks run as --task-user (an unprivileged user of their own, agent/task-user.ts) when the agent
// runs as root: they cannot read the agent's credential or a coordinator's files. This driver
// gives no other isolation: it is for trusted, single-tenant hosts, and only runs when asked for
// (--driver process).
//
// CPU and memory limits are NOT enforced by this driver (that would take cgroups, i.e. root or
// systemd delegation); the scheduler's accounting still reserves them. GPUs are confined with
// CUDA_VISIBLE_DEVICES, which well-behaved CUDA programs honour.
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { TaskOwner } from '../task-dirs.js';
import type { TaskUser } from '../task-user.js';
import type { Driver, LogOptions, StartHooks, Task, TaskStatus } from './driver.js';
import { EXIT_FILE, LOG_FILE, RECORD_FILE, ROTATED_SUFFIX, STOPPED_FILE, WORK_DIR } from './process-task-dir.js';

/** Output kept per task: the live log up to this, plus one rotated file as large. */
export const LOG_MAX_BYTES = 8 * 1024 * 1024;

const SUPERVISOR = fileURLToPath(new URL('./process-supervisor.js', import.meta.url));
/** What a task inherits from the agent's environment; the rest (join tokens…) stays with the agent. */
const INHERITED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'LD_LIBRARY_PATH'];
const KILL_WAIT_MS = 5_000;
const READ_CHUNK = 64 * 1024;

export interface ProcessDriverOptions {
  /** The agent's data dir; tasks live in <dataDir>/tasks/. */
  dataDir: string;
  node: string;
  log: Logger;
  /** Cap on each of the two log files per task (default LOG_MAX_BYTES). */
  logMaxBytes?: number;
  /** How often a followed log looks for new output (default 200 ms). */
  pollMs?: number;
  /** The user tasks run as (the agent must be root); undefined: the agent's own user. */
  taskUser?: TaskUser;
}

/** task.json: what the driver needs to find the task again after a restart. */
interface TaskRecord {
  allocationId: string;
  node: string;
  kind: string;
  workload: string;
  tenant: string;
  command: string[];
  /** The supervisor's pid, which is also the task's process group id. */
  pid: number;
  /** The supervisor's start time (/proc/<pid>/stat, clock ticks since boot) and the boot it was in: a pid alone may have been reused. */
  startTicks: number;
  bootId: string;
  startedAtMs: number;
}

export class ProcessDriver implements Driver {
  readonly name = 'process' as const;
  private readonly tasksDir: string;
  private readonly node: string;
  private readonly log: Logger;
  private readonly logMaxBytes: number;
  private readonly pollMs: number;
  private warnedLimits = false;
  private readonly taskUser: TaskUser | undefined;
  readonly taskOwner: TaskOwner | undefined;

  constructor(options: ProcessDriverOptions) {
    this.tasksDir = path.join(options.dataDir, 'tasks');
    this.node = options.node;
    this.log = options.log.child({ component: 'process-driver' });
    this.logMaxBytes = options.logMaxBytes ?? LOG_MAX_BYTES;
    this.pollMs = options.pollMs ?? 200;
    this.taskUser = options.taskUser;
    this.taskOwner = options.taskUser && { uid: options.taskUser.uid, gid: options.taskUser.gid, viaHostPath: true };
    if (options.taskUser) {
      // Tasks reach the model cache and their directories by host path: the data dir lets the
      // task user's group pass, and list nothing (agent.db is 0600).
      chownSync(options.dataDir, 0, options.taskUser.gid);
      chmodSync(options.dataDir, 0o710);
    }
  }

  /** A directory of the driver's that the task user may pass through (0710, its group) but not read; 0700 without one. */
  private async passable(dir: string): Promise<void> {
    if (this.taskUser) {
      await chown(dir, 0, this.taskUser.gid);
      await chmod(dir, 0o710);
    } else {
      await chmod(dir, 0o700);
    }
  }

  async start(task: Task, hooks?: StartHooks): Promise<void> {
    const log = this.log.child({ allocation: task.allocationId });
    const { command } = task.spec;
    if (command.length === 0) {
      throw new InvalidArgumentError(
        `allocation ${task.allocationId} has no command: the process driver runs the workload's command on the host and has no image to take one from; give the workload a command, or run this node with --driver docker`,
      );
    }
    const dir = this.taskDir(task.allocationId);
    await mkdir(this.tasksDir, { recursive: true });
    await this.passable(this.tasksDir);
    try {
      await mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (await readRecord(dir)) {
        log.debug('task already exists; leaving it');
        return;
      }
      // A directory without its record: the agent stopped halfway through a start. Start over.
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir);
    }
    if ((task.cpuMillis > 0 || task.memoryBytes > 0) && !this.warnedLimits) {
      this.warnedLimits = true;
      this.log.warn('the process driver does not enforce CPU or memory limits: tasks may use more than they were given (use the docker driver to enforce them)');
    }
    if (task.mounts.length > 0) log.debug({ mounts: task.mounts }, 'no mounts for process tasks: the environment points at the host paths');
    await this.passable(dir);
    const work = path.join(dir, WORK_DIR);
    await mkdir(work, { mode: 0o700 });
    if (this.taskUser) await chown(work, this.taskUser.uid, this.taskUser.gid);

    const env: Record<string, string> = {};
    for (const name of INHERITED_ENV) if (process.env[name] !== undefined) env[name] = process.env[name]!;
    if (this.taskUser) Object.assign(env, { HOME: work, USER: this.taskUser.name, LOGNAME: this.taskUser.name });
    Object.assign(env, task.env);
    // No GPUs assigned means none visible, as in a container without device requests.
    env.CUDA_VISIBLE_DEVICES = task.gpuIndexes.join(',');
    // Created: its directory and environment; starting is spawning the supervisor.
    hooks?.created?.();

    const startedAtMs = Date.now();
    const as = this.taskUser ? ['--as', `${this.taskUser.uid}:${this.taskUser.gid}`] : [];
    const child = spawn(process.execPath, [SUPERVISOR, dir, String(this.logMaxBytes), ...as, '--', ...command], {
      cwd: work,
      env,
      detached: true, // its own session and process group: it outlives the agent and is signalled as one
      stdio: 'ignore',
    });
    child.on('error', (err) => log.error({ err }, 'task supervisor failed'));
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start the supervisor for allocation ${task.allocationId} (${process.execPath} ${SUPERVISOR})`);
    const record: TaskRecord = {
      allocationId: task.allocationId,
      node: this.node,
      kind: task.kind,
      workload: task.workload,
      tenant: task.tenant,
      command,
      pid: child.pid,
      startTicks: procStat(child.pid)?.startTicks ?? 0,
      bootId: bootId(),
      startedAtMs,
    };
    await writeAtomically(path.join(dir, RECORD_FILE), JSON.stringify(record, null, 2) + '\n');
    log.info({ pid: child.pid, command, hostPort: task.hostPort, gpus: task.gpuIndexes, user: this.taskUser?.name }, 'process started');
  }

  async stop(allocationId: string, graceMs: number): Promise<void> {
    const dir = this.taskDir(allocationId);
    const record = await readRecord(dir);
    if (!record) return;
    await this.stopGroup(record, graceMs);
    // Killed along with its supervisor, it has no exit file to say when it ended: say it here,
    // once (stopping it again must not make a kept task younger).
    if (!(await readExit(dir)) && !(await mtimeMs(path.join(dir, STOPPED_FILE)))) await writeFile(path.join(dir, STOPPED_FILE), '');
    this.log.info({ allocation: allocationId, pid: record.pid }, 'process stopped; kept with its log');
  }

  async remove(allocationId: string, graceMs: number): Promise<void> {
    const dir = this.taskDir(allocationId);
    const record = await readRecord(dir);
    if (record) await this.stopGroup(record, graceMs);
    await rm(dir, { recursive: true, force: true });
    if (record) this.log.info({ allocation: allocationId, pid: record.pid }, 'process removed');
  }

  async list(): Promise<TaskStatus[]> {
    let names: string[];
    try {
      names = await readdir(this.tasksDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const statuses = await Promise.all(
      names.map(async (name) => {
        const dir = path.join(this.tasksDir, name);
        const record = await readRecord(dir);
        if (!record || record.node !== this.node) return undefined;
        return this.status(dir, record);
      }),
    );
    return statuses.filter((s): s is TaskStatus => s !== undefined);
  }

  async *logs(allocationId: string, options: LogOptions): AsyncGenerator<Buffer> {
    const dir = this.taskDir(allocationId);
    const record = await readRecord(dir);
    if (!record) throw new NotFoundError(`allocation ${allocationId} has no process on node ${this.node}`);
    const { signal } = options;
    const live = path.join(dir, LOG_FILE);
    let file = await openIfExists(live);
    try {
      // What is kept: the rotated file, then the live one (opened first, so a rotation in
      // between shows as the rotated file being the one already open).
      const rotated = await readIfExists(live + ROTATED_SUFFIX, file);
      const current = file ? await readFrom(file.handle, 0) : Buffer.alloc(0);
      let offset = current.length;
      const kept = Buffer.concat([rotated, current]);
      const tail = options.tailBytes > 0 && kept.length > options.tailBytes ? kept.subarray(kept.length - options.tailBytes) : kept;
      if (tail.length > 0) yield tail;
      if (!options.follow) return;

      for (;;) {
        // Read the finished state before the file: output written before the exit is then read below.
        const ended = (await this.status(dir, record)).running === false;
        if (file) {
          const more = await readFrom(file.handle, offset);
          offset += more.length;
          if (more.length > 0) yield more;
        }
        const now = await inode(live);
        if (now !== undefined && now !== file?.ino) {
          // Rotated: the supervisor writes only to the new file from now on, and the old one has been read to its end.
          await file?.handle.close();
          file = await openIfExists(live);
          offset = 0;
          continue;
        }
        if (ended || signal.aborted) return;
        try {
          await delay(this.pollMs, undefined, { signal });
        } catch {
          return; // aborted
        }
      }
    } finally {
      await file?.handle.close();
    }
  }

  async close(): Promise<void> {
    // Tasks outlive the agent by design, and followed logs end with their own signals.
  }

  private taskDir(allocationId: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(allocationId) || allocationId.startsWith('.')) {
      throw new InvalidArgumentError(`allocation id ${JSON.stringify(allocationId)} cannot name a task directory`);
    }
    return path.join(this.tasksDir, allocationId);
  }

  private async status(dir: string, record: TaskRecord): Promise<TaskStatus> {
    const base = { allocationId: record.allocationId, kind: record.kind, startedAtMs: record.startedAtMs };
    const exit = await readExit(dir);
    if (exit) return { ...base, running: false, exitCode: exit.code, finishedAtMs: exit.atMs, reason: '' };
    if (leaderState(record) === 'running') return { ...base, running: true, exitCode: undefined, finishedAtMs: 0, reason: '' };
    // The supervisor would have recorded an exit: it was killed, or the host restarted.
    return {
      ...base,
      running: false,
      exitCode: undefined,
      finishedAtMs: (await mtimeMs(path.join(dir, STOPPED_FILE))) ?? 0,
      reason: 'the task is gone without an exit code (its supervisor was killed, or the host restarted)',
    };
  }

  /** SIGTERM to the task's process group, SIGKILL to what is left after `graceMs`. */
  private async stopGroup(record: TaskRecord, graceMs: number): Promise<void> {
    // A live leader that is another process means the pid was reused: the group is not ours.
    // A dead leader leaves its pid reserved while its group has members, so the group is.
    if (leaderState(record) === 'reused') return;
    const pgid = record.pid;
    if (!signalGroup(pgid, 'SIGTERM')) return;
    if (await this.groupGone(pgid, graceMs)) return;
    signalGroup(pgid, 'SIGKILL');
    if (!(await this.groupGone(pgid, KILL_WAIT_MS))) {
      this.log.warn({ allocation: record.allocationId, pgid }, 'processes of the task survived SIGKILL');
    }
  }

  private async groupGone(pgid: number, withinMs: number): Promise<boolean> {
    const deadline = Date.now() + withinMs;
    for (;;) {
      if (!(await groupHasLiveMembers(pgid))) return true;
      if (Date.now() >= deadline) return false;
      await delay(Math.min(50, Math.max(1, deadline - Date.now())));
    }
  }
}

interface ProcStat {
  state: string;
  pgrp: number;
  startTicks: number;
}

/** Fields of /proc/<pid>/stat; the command name (in parentheses) may hold spaces and parentheses. */
function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // After the name: state (3rd field of the file), ppid, pgrp (5th) … starttime (22nd).
    return { state: fields[0]!, pgrp: Number(fields[2]), startTicks: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

function isDead(state: string): boolean {
  return state === 'Z' || state === 'X' || state === 'x';
}

let cachedBootId: string | undefined;
function bootId(): string {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      cachedBootId = '';
    }
  }
  return cachedBootId;
}

/** Is the task's supervisor still the process the record names? */
function leaderState(record: TaskRecord): 'running' | 'gone' | 'reused' {
  const stat = procStat(record.pid);
  if (!stat || isDead(stat.state)) return 'gone';
  // startTicks 0: /proc could not be read at start (it always can on Linux); trust the pid.
  if (record.bootId !== bootId() || (record.startTicks !== 0 && stat.startTicks !== record.startTicks)) return 'reused';
  return 'running';
}

/** False when no process is in the group. */
function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** Zombies (exited, not yet reaped by their parent) do not count: they run nothing. */
async function groupHasLiveMembers(pgid: number): Promise<boolean> {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(Number(name));
    if (stat && stat.pgrp === pgid && !isDead(stat.state)) return true;
  }
  return false;
}

async function readRecord(dir: string): Promise<TaskRecord | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, RECORD_FILE), 'utf8')) as TaskRecord;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

async function readExit(dir: string): Promise<{ code: number; atMs: number } | undefined> {
  const file = path.join(dir, EXIT_FILE);
  try {
    const [text, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    const code = Number.parseInt(text, 10);
    return Number.isInteger(code) ? { code, atMs: info.mtimeMs } : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function writeAtomically(file: string, content: string): Promise<void> {
  await writeFile(`${file}.tmp`, content);
  await rename(`${file}.tmp`, file);
}

interface OpenLog {
  handle: FileHandle;
  ino: number;
}

async function openIfExists(file: string): Promise<OpenLog | undefined> {
  try {
    const handle = await open(file, 'r');
    return { handle, ino: (await handle.stat()).ino };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The rotated log, unless it is the file already open as the live one (it rotated meanwhile). */
async function readIfExists(file: string, live: OpenLog | undefined): Promise<Buffer> {
  const rotated = await openIfExists(file);
  if (!rotated) return Buffer.alloc(0);
  try {
    return rotated.ino === live?.ino ? Buffer.alloc(0) : await readFrom(rotated.handle, 0);
  } finally {
    await rotated.handle.close();
  }
}

async function readFrom(handle: FileHandle, offset: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let position = offset; ; ) {
    const buffer = Buffer.alloc(READ_CHUNK);
    const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, position);
    if (bytesRead === 0) break;
    parts.push(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return Buffer.concat(parts);
}

async function mtimeMs(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).mtimeMs;
  } catch {
    return undefined;
  }
}

async function inode(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).ino;
  } catch {
    return undefined;
  }
}
