// The one logger factory: pino, JSON lines to stderr, a child per component.
import { pino, destination, stdTimeFunctions, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino({
    name: options.name ?? 'mlfleet',
    level: options.level ?? process.env.MLFLEET_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: stdTimeFunctions.isoTime,
  }, destination({ fd: 2, sync: true }));
}

/** A logger that drops everything: the default for tests and library callers. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
