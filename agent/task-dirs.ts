// A job's writable host directories (/output, /checkpoint): made so that only the task's user
// can write them and no other local user can even reach them, and cleaned of setuid/setgid bits
// once the task has ended. Docker cannot mount a bind's host side nosuid: a setuid file a task
// leaves there would run with the task's uid for any host user who could reach it. So nobody
// but the agent reaches it (the parents are 0700, or 0710 for the process driver's task group),
// and the bits are gone before anything is kept or pushed.
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** The user a driver's tasks run as, for the directories they write. */
export interface TaskOwner {
  uid: number;
  gid: number;
  /**
   * The task reaches its directories by their host path (the process driver), so each parent
   * under the data dir lets the task's group pass (0710) instead of nobody (0700).
   */
  viaHostPath: boolean;
}

/**
 * Makes `dir` (and its missing parents below `root`) for a task of `owner`: the parents
 * 0700 (0710, group `owner.gid`, when the task reaches it by host path), `dir` itself owned by
 * the task's user, 0700. An agent that is not root cannot give a directory away: `dir` is then
 * 0777 within parents no other user can pass.
 */
export async function makeTaskDir(root: string, dir: string, owner: TaskOwner | undefined): Promise<void> {
  const relative = path.relative(root, dir);
  if (relative.startsWith('..') || path.isAbsolute(relative)) throw new Error(`${dir} is not under ${root}`);
  const parts = relative.split(path.sep);
  let at = root;
  for (const [i, part] of parts.entries()) {
    at = path.join(at, part);
    await fs.mkdir(at).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    if (i < parts.length - 1) await secureParent(at, owner);
  }
  const root_ = process.getuid?.() === 0;
  if (!owner || owner.uid === process.getuid?.()) {
    await fs.chmod(dir, 0o700);
  } else if (root_) {
    await fs.chown(dir, owner.uid, owner.gid);
    await fs.chmod(dir, 0o700);
  } else {
    await fs.chmod(dir, 0o777);
  }
}

async function secureParent(dir: string, owner: TaskOwner | undefined): Promise<void> {
  if (owner?.viaHostPath && process.getuid?.() === 0 && owner.uid !== 0) {
    await fs.chown(dir, 0, owner.gid);
    await fs.chmod(dir, 0o710);
  } else {
    await fs.chmod(dir, 0o700);
  }
}

const SET_IDS = 0o6000;

/**
 * Clears setuid and setgid on every file and directory under `dir` (what a task left there).
 * Never follows a link, and changes a file through a handle opened without following links,
 * after checking it is still what was looked at, and walks only into directories whose real path
 * is the one it walked: a task that swaps a file for a link meanwhile cannot turn this on a host
 * file. Call it once the task has ended. Gives the paths it changed.
 */
export async function stripSetIds(dir: string): Promise<string[]> {
  const changed: string[] = [];
  const visit = async (file: string): Promise<void> => {
    const info = await fs.lstat(file).catch(() => undefined);
    if (!info || !(info.isFile() || info.isDirectory())) return;
    if ((info.mode & SET_IDS) !== 0) {
      const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
      if (handle) {
        try {
          const now = await handle.stat();
          if (now.ino === info.ino && now.dev === info.dev && (now.mode & SET_IDS) !== 0) {
            await handle.chmod(now.mode & 0o1777);
            changed.push(file);
          }
        } finally {
          await handle.close();
        }
      }
    }
    // A directory swapped for a link since it was looked at is not walked into.
    if (info.isDirectory() && (await fs.realpath(file).catch(() => '')) === file) {
      for (const name of await fs.readdir(file).catch(() => [] as string[])) await visit(path.join(file, name));
    }
  };
  await visit(await fs.realpath(dir).catch(() => dir));
  return changed;
}
