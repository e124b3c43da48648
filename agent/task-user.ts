// The user the process driver runs tasks as (--task-user, default mlfleet-task): unprivileged,
// of its own, so a task cannot read the agent's credential or a coordinator's admin token. Only
// root can start a process as another user; an agent that is not root runs tasks as itself only
// when told so (--task-user naming its own user), and says loudly what that means.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { FailedPreconditionError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';

export const DEFAULT_TASK_USER = 'mlfleet-task';

export interface TaskUser {
  name: string;
  uid: number;
  gid: number;
}

/** The user's passwd entry (through NSS: getent), or undefined when there is none. */
export function lookupUser(name: string): TaskUser | undefined {
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
  const fields = line.split(':');
  const uid = Number(fields[2]);
  const gid = Number(fields[3]);
  return fields[0] === name && Number.isInteger(uid) && Number.isInteger(gid) ? { name, uid, gid } : undefined;
}

/**
 * Who the process driver's tasks run as: `name`, to switch to (the agent is root), or undefined
 * when `name` is the agent's own user (no switch; warned loudly). Refuses, saying what to do,
 * when the user does not exist, is root while the agent is not, or cannot be switched to.
 */
export function processTaskUser(name: string, log: Logger): TaskUser | undefined {
  const self = os.userInfo().username;
  if (name === self) {
    log.warn(
      { taskUser: name },
      `the process driver runs tasks as the agent's own user (${name}): every task can read what the agent can, its node credential included, and other tasks' files; use it on a trusted, single-tenant host only`,
    );
    return undefined;
  }
  if (process.getuid?.() !== 0) {
    throw new FailedPreconditionError(
      `--driver process runs tasks as --task-user ${name}, and only an agent running as root can start them as another user; run the agent as root (the systemd unit does), or pass --task-user ${self} to run tasks as the agent's own user (they can then read everything the agent can, its credential included)`,
    );
  }
  const user = lookupUser(name);
  if (!user) {
    throw new FailedPreconditionError(
      `task user ${name} does not exist: create it with \`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${name}\` (systemd/README.md), or name another with --task-user`,
    );
  }
  if (user.uid === 0) throw new FailedPreconditionError(`task user ${name} is root (uid 0): name an unprivileged user with --task-user`);
  return user;
}
