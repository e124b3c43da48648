// What a process-driver task's directory (<data-dir>/tasks/<allocation>/) holds. The driver and
// the task's supervisor (process-supervisor.ts) are separate processes that meet only here.

/** The driver's record of the task: its supervisor's pid and start time, and what it runs. */
export const RECORD_FILE = 'task.json';
/** The newest output; the older part is in LOG_FILE + ROTATED_SUFFIX. */
export const LOG_FILE = 'output.log';
export const ROTATED_SUFFIX = '.1';
/** The exit code, written once the task has ended (by the supervisor, so without the agent too). */
export const EXIT_FILE = 'exit';
/**
 * Written by the driver when it stopped a task that has no exit file (its supervisor was killed
 * with it): its mtime is when the task ended, which a kept task's retention is counted from.
 */
export const STOPPED_FILE = 'stopped';
/** The task's working directory: its own files stay apart from the driver's. */
export const WORK_DIR = 'work';
