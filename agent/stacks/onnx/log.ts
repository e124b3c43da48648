// JSON log lines on stderr in pino's shape (level number, ISO time, pid, name, msg, fields), so
// the agent's log relay and `mlfleetctl logs` read them like every other mlfleet process. Not
// pino itself: the serving image carries onnxruntime-node and nothing else from npm.

export interface Log {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const;

export function createLog(name: string, level = process.env.MLFLEET_LOG_LEVEL ?? 'info', write = (line: string) => process.stderr.write(line)): Log {
  const threshold = LEVELS[level as keyof typeof LEVELS] ?? (level === 'silent' ? Infinity : LEVELS.info);
  const at = (lvl: keyof typeof LEVELS) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (LEVELS[lvl] < threshold) return;
    write(`${JSON.stringify({ level: LEVELS[lvl], time: new Date().toISOString(), pid: process.pid, name, ...fields, msg })}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
