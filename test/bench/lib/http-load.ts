// A load generator for the gateway benchmark, in its own process so it does not share an event
// loop with what it measures: `http-load URL CONCURRENCY DURATION_MS BODY_FILE [TOKEN]` POSTs
// the body (with the bearer token, when given) over keep-alive connections, CONCURRENCY requests in flight, and prints one JSON line:
// {requests, errors, rps, p50Ms, p99Ms, cpuMs} (cpuMs: this client's own CPU time, user + system).
import http from 'node:http';
import { readFileSync } from 'node:fs';

const [url, concurrencyText, durationText, bodyFile, token] = process.argv.slice(2);
const target = new URL(url!);
const concurrency = Number(concurrencyText);
const durationMs = Number(durationText);
const body = readFileSync(bodyFile!);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': body.length };
if (token) headers.authorization = `Bearer ${token}`;
const latencies: number[] = [];
let errors = 0;

function once(): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    const req = http.request(
      { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers },
      (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) latencies.push(performance.now() - started);
          else errors += 1;
          resolve();
        });
      },
    );
    req.on('error', () => {
      errors += 1;
      resolve();
    });
    req.end(body);
  });
}

const deadline = performance.now() + durationMs;
const started = performance.now();
const cpuBefore = process.cpuUsage();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (performance.now() < deadline) await once();
  }),
);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
latencies.sort((a, b) => a - b);
const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
agent.destroy();
console.log(JSON.stringify({ requests: latencies.length, errors, rps: Math.round(latencies.length / seconds), p50Ms: Number(at(0.5).toFixed(3)), p99Ms: Number(at(0.99).toFixed(3)), cpuMs: Math.round((cpu.user + cpu.system) / 1000) }));
