// Loopback ports for tests.
import net from 'node:net';

/** A loopback port that was free a moment ago: the OS handed it out and took it back. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** What a throttling proxy carried, and its pace (bytes per second; 0: as fast as they come). */
export interface ProxyState {
  /** Bytes clients sent through it. */
  upstreamBytes: number;
  /** Pace of what clients send (an upload); 0: none. */
  bytesPerSecond: number;
  /** Pace of what flows back to clients (a download); 0: none. */
  downBytesPerSecond: number;
  sockets: Set<net.Socket>;
}

/**
 * A TCP proxy on loopback `port` to `target()` (a loopback port, resolved per connection) that
 * counts the bytes clients send and can hold either direction to a pace: a test can then kill
 * a process mid-upload or mid-download.
 */
export async function throttlingProxy(port: number, target: () => number): Promise<{ state: ProxyState; close(): Promise<void> }> {
  const state: ProxyState = { upstreamBytes: 0, bytesPerSecond: 0, downBytesPerSecond: 0, sockets: new Set() };
  const paced = (from: net.Socket, to: net.Socket, rate: () => number, count: (bytes: number) => void) => {
    let windowStart = Date.now();
    let windowBytes = 0;
    from.on('data', (chunk: Buffer) => {
      count(chunk.length);
      to.write(chunk);
      const bytesPerSecond = rate();
      if (bytesPerSecond === 0) return;
      windowBytes += chunk.length;
      const due = windowStart + (windowBytes / bytesPerSecond) * 1000 - Date.now();
      if (due > 0) {
        from.pause();
        setTimeout(() => from.resume(), due);
      }
      if (Date.now() - windowStart > 1000) {
        windowStart = Date.now();
        windowBytes = 0;
      }
    });
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target(), '127.0.0.1');
    state.sockets.add(client).add(upstream);
    paced(client, upstream, () => state.bytesPerSecond, (bytes) => (state.upstreamBytes += bytes));
    paced(upstream, client, () => state.downBytesPerSecond, () => undefined);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    state,
    close: () => {
      for (const socket of state.sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
