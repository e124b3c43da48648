// Container output lives on the hosts (bounded, by the agents' drivers). A logs call asks the
// allocation's agent for it with a command over the session; the agent answers with LogData
// messages carrying the command's id, which the relay hands to the waiting call.
import { FailedPreconditionError } from '../../shared/errors.js';
import type { LogData__Output } from '../../shared/gen/mlfleet/v1/LogData.js';

export interface LogReceiver {
  data(chunk: Buffer): void;
  /** The last call for this command: ended normally, or with the agent's error. */
  end(error?: Error): void;
}

export class LogRelay {
  private readonly open = new Map<string, { node: string; receiver: LogReceiver }>();

  /** Routes the agent's answers to `commandId` to `receiver` until they end; returns the unregister. */
  expect(node: string, commandId: string, receiver: LogReceiver): () => void {
    this.open.set(commandId, { node, receiver });
    return () => this.open.delete(commandId);
  }

  /** LogData from a node's agent (one of another node's command ids is ignored). */
  deliver(node: string, data: LogData__Output): void {
    const waiting = this.open.get(data.commandId);
    if (!waiting || waiting.node !== node) return;
    if (data.data.length > 0) waiting.receiver.data(data.data);
    if (data.eof) {
      this.open.delete(data.commandId);
      waiting.receiver.end(data.error ? new FailedPreconditionError(data.error) : undefined);
    }
  }

  /** The node's session ended: its answers will not come. */
  nodeGone(node: string): void {
    for (const [id, waiting] of [...this.open]) {
      if (waiting.node !== node) continue;
      this.open.delete(id);
      waiting.receiver.end(new FailedPreconditionError(`node ${node} disconnected while sending logs; try again when it is back`));
    }
  }
}
