// The one logger factory: pino, JSON lines to stderr, a child per component.
import { pino, destination, stdTimeFunctions, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
  /** Where lines go; default stderr. Tests pass a stream to read what was logged. */
  destination?: DestinationStream;
}

const REDACTED = ['token', 'authorization', 'secret', 'nodeCredential', 'joinToken', 'adminToken', '*.token', '*.authorization', '*.secret', '*.nodeCredential', '*.joinToken', '*.adminToken'];

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino({
    name: options.name ?? 'mlfleet',
    level: options.level ?? process.env.MLFLEET_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: stdTimeFunctions.isoTime,
    // Defence in depth: code never logs a secret, and these fields are masked if one slips in.
    redact: { paths: REDACTED, censor: '[redacted]' },
  }, options.destination ?? destination({ fd: 2, sync: true }));
}

/** A logger that drops everything: the default for tests and library callers. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
