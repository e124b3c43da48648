// SIGINT/SIGTERM handling for the daemons (DESIGN principle 9): the first signal closes
// gracefully, a second one (or the grace period running out) exits at once.
import type { Logger } from './log.js';

export function handleSignals(close: () => Promise<void>, log: Logger, graceMs = 15_000): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    closing = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error({ graceMs }, 'shutdown took too long: exiting');
      process.exit(1);
    }, graceMs);
    force.unref();
    close().then(
      () => {
        clearTimeout(force);
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      },
      (err: unknown) => {
        log.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
