// The leader's logs commands on this host: each streams one allocation's output from its driver
// back over the session as LogData chunks carrying the command's id, and ends with one eof
// message (with an error when the output could not be read). A followed stream goes on until
// the task ends, the leader cancels it (cancel_logs), or the agent closes.
import type { Logger } from '../shared/log.js';
import type { LogData } from '../shared/gen/mlfleet/v1/LogData.js';
import type { LogsCommand__Output } from '../shared/gen/mlfleet/v1/LogsCommand.js';
import type { Driver } from './drivers/driver.js';

/** Largest data field of one LogData message. */
export const LOG_CHUNK_BYTES = 64 * 1024;

export interface LogStreamsOptions {
  driver: Driver;
  /** Whether the allocation is this host's (desired here, its task being removed, or a job's stopped task kept for its logs). */
  knows: (allocationId: string) => boolean;
  /** Sends one message to the leader; dropped when there is no session. */
  send: (data: LogData) => void;
  log: Logger;
}

export class LogStreams {
  private readonly streams = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private closed = false;

  constructor(private readonly options: LogStreamsOptions) {}

  /** Starts streaming for `commandId`; a command id already streaming is ignored (a duplicate). */
  open(commandId: string, command: LogsCommand__Output): void {
    if (this.closed || this.streams.has(commandId)) return;
    const controller = new AbortController();
    const done = this.stream(commandId, command, controller.signal).finally(() => this.streams.delete(commandId));
    this.streams.set(commandId, { controller, done });
  }

  /** The caller went away: stops a followed stream (its eof is still sent). */
  cancel(commandId: string): void {
    this.streams.get(commandId)?.controller.abort(new Error('logs cancelled'));
  }

  /** Ends every stream and waits for them. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const open = [...this.streams.values()];
    for (const stream of open) stream.controller.abort(new Error('the agent is closing'));
    await Promise.all(open.map((stream) => stream.done));
  }

  private async stream(commandId: string, command: LogsCommand__Output, signal: AbortSignal): Promise<void> {
    const { driver, send } = this.options;
    const id = command.allocation;
    let error = '';
    if (!this.options.knows(id)) {
      error = `allocation ${id} is not on this node`;
    } else {
      try {
        for await (const buffer of driver.logs(id, { tailBytes: command.tailBytes, follow: command.follow, signal })) {
          for (let at = 0; at < buffer.length; at += LOG_CHUNK_BYTES) {
            send({ commandId, data: buffer.subarray(at, at + LOG_CHUNK_BYTES), eof: false, error: '' });
          }
          if (signal.aborted) break;
        }
      } catch (err) {
        if (!signal.aborted) {
          error = (err as Error).message;
          this.options.log.debug({ allocation: id, err: error }, 'logs could not be read');
        }
      }
    }
    send({ commandId, data: Buffer.alloc(0), eof: true, error });
  }
}
