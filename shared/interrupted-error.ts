// The error a cancelled transfer ends with: its AbortSignal was aborted (Ctrl-C in mlfleetctl, a
// caller's signal in the SDK), and the message says what was left behind and how to resume.

export class InterruptedError extends Error {
  override readonly name = 'InterruptedError';
}
