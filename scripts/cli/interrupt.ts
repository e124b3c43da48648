// Ctrl-C in mlfleetctl. By default it ends the process at once with exit 130: a read has
// nothing to undo. A command with something to finish first — an upload the coordinator must
// be told to discard, a partial download to close so it can resume — runs that part inside
// `interruptible()`: Ctrl-C then aborts the signal it was given, the command unwinds and throws
// InterruptedError, and mlfleetctl exits 130 once it has. A second Ctrl-C exits at once.

import { InterruptedError } from '../../shared/interrupted-error.js';

/** The command stopped because the user pressed Ctrl-C; the message says what was left behind. */
export { InterruptedError };

let current: AbortController | undefined;

/**
 * Hands a SIGINT to the running interruptible section; false when there is none (the caller
 * exits at once). Each section takes one Ctrl-C: the next one finds none and exits.
 */
export function deliverInterrupt(): boolean {
  const controller = current;
  if (!controller) return false;
  current = undefined;
  controller.abort(new InterruptedError('interrupted'));
  return true;
}

/** Runs `run` with a signal that Ctrl-C aborts (instead of ending the process). */
export async function interruptible<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  current = controller;
  try {
    return await run(controller.signal);
  } finally {
    if (current === controller) current = undefined;
  }
}
