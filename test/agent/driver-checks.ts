// What the docker and the process driver's tests check alike: reading a task's kept log, GET on
// a task's host port, and a log's tail followed by what the task writes after the call.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Driver } from '../../agent/drivers/driver.js';

export async function text(iterable: AsyncIterable<Buffer>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of iterable) parts.push(chunk);
  return Buffer.concat(parts).toString();
}

/** The task's kept log (its last `tailBytes`; 0: all of it), not followed. */
export function logs(driver: Driver, allocationId: string, tailBytes = 0): Promise<string> {
  return text(driver.logs(allocationId, { tailBytes, follow: false, signal: new AbortController().signal }));
}

/**
 * GET / on a loopback port. Not fetch: when docker's port proxy resets a connection because the
 * server in the container is not listening yet, undici's promise never settles.
 */
export function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 2_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
  });
}

/**
 * A task's script: it prints line-000 … line-099, then polls (every `pollMs`) for `trigger` (a
 * path as the task sees it) and, once it exists, writes "after the call" to stderr and exits.
 */
export function linesThenAfterTheCall(trigger: string, pollMs: number): string {
  return `
    for (let i = 0; i < 100; i++) console.log('line-' + String(i).padStart(3, '0'));
    const timer = setInterval(() => {
      if (require('fs').existsSync(${JSON.stringify(trigger)})) { console.error('after the call'); clearInterval(timer); }
    }, ${pollMs});`;
}

/**
 * For a task running linesThenAfterTheCall that has printed its hundred lines: the last bytes of
 * its log are its last lines, and a log followed from its tail goes on with what the task writes
 * once `release` makes its trigger exist, and ends when the task does.
 */
export async function assertTailThenFollow(driver: Driver, allocationId: string, release: () => void): Promise<void> {
  assert.equal(await logs(driver, allocationId, 18), 'line-098\nline-099\n');
  assert.equal((await logs(driver, allocationId)).split('\n').length, 101);

  const followed = driver.logs(allocationId, { tailBytes: 9, follow: true, signal: new AbortController().signal })[Symbol.asyncIterator]();
  assert.equal((await followed.next()).value?.toString(), 'line-099\n');
  release();
  // The task exits after its line, which ends the follow.
  const rest: Buffer[] = [];
  for (let next = await followed.next(); !next.done; next = await followed.next()) rest.push(next.value);
  assert.equal(Buffer.concat(rest).toString(), 'after the call\n');
}
