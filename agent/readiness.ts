// HTTP health probes of the servers an agent runs: one GET against the task's host port on
// loopback, answered 200 or not within a timeout. The reconciler probes until a server is
// ready, and then now and then to see that it still answers.
import http from 'node:http';

export type ProbeResult = { ok: true } | { ok: false; reason: string };

export interface ProbeOptions {
  /** How long one probe may take before it counts as not answering. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** GET http://127.0.0.1:<port><path>; never rejects (an aborted probe is a failed one). */
export function probeHttp(port: number, path: string, options: ProbeOptions): Promise<ProbeResult> {
  return new Promise((resolve) => {
    if (options.signal?.aborted) {
      resolve({ ok: false, reason: 'probe cancelled' });
      return;
    }
    let settled = false;
    const finish = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      request.destroy();
      resolve(result);
    };
    const onAbort = () => finish({ ok: false, reason: 'probe cancelled' });
    // No keep-alive agent: a probe leaves no socket open behind it.
    const request = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'close' }, timeout: options.timeoutMs }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      finish(status === 200 ? { ok: true } : { ok: false, reason: `GET ${path} answered ${status}` });
    });
    request.on('timeout', () => finish({ ok: false, reason: `GET ${path} did not answer within ${options.timeoutMs} ms` }));
    request.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, reason: `GET ${path} failed: ${err.code ?? err.message}` }));
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
