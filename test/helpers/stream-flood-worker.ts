// The attacker of test/faults/stream-flood.test.ts, on a thread of its own so that its busy
// event loop does not slow the test's own probes: opens `streams` WatchEvents(replay=1000,
// follow) calls from one token over `connections` connections and, ignoring the retry hint,
// reopens each as soon as it is refused, for `durationMs`; then reports what it saw.
import { parentPort, workerData } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { RETRY_AFTER_METADATA_KEY } from '../../shared/errors.js';
import { method } from './raw-grpc.js';

export interface FloodOrder {
  address: string;
  token: string;
  streams: number;
  connections: number;
  durationMs: number;
}

export interface FloodReport {
  attempts: number;
  refused: number;
  /** Refusals with the retry-after-ms metadata and "retry after N ms" in their message. */
  hinted: number;
  replayedEvents: number;
  /** Answers other than RESOURCE_EXHAUSTED or an open stream (at most 5 shown). */
  other: string[];
}

const order = workerData as FloodOrder;
const WATCH = method('EventService.WatchEvents');
const clients = Array.from({ length: order.connections }, () => new grpc.Client(order.address, grpc.credentials.createInsecure()));
const open = new Set<grpc.ClientReadableStream<unknown>>();
const report: FloodReport = { attempts: 0, refused: 0, hinted: 0, replayedEvents: 0, other: [] };
let flooding = true;

function openOne(slot: number): void {
  if (!flooding) return;
  report.attempts += 1;
  const client = clients[slot % clients.length]!;
  const call = client.makeServerStreamRequest(WATCH.def.path, WATCH.def.requestSerialize, WATCH.def.responseDeserialize, { replay: 1000, follow: true }, setBearer(new grpc.Metadata(), order.token));
  open.add(call);
  call.on('data', () => void (report.replayedEvents += 1));
  call.on('error', (err: grpc.ServiceError) => {
    open.delete(call);
    if (err.code === grpc.status.RESOURCE_EXHAUSTED) {
      report.refused += 1;
      if (err.metadata.get(RETRY_AFTER_METADATA_KEY).length === 1 && /retry after \d+ ms/.test(err.details)) report.hinted += 1;
      setImmediate(() => openOne(slot));
    } else if (err.code !== grpc.status.CANCELLED && report.other.length < 5) {
      report.other.push(`${grpc.status[err.code]}: ${err.details}`);
    }
  });
}

for (let i = 0; i < order.streams; i++) openOne(i);
setTimeout(() => {
  flooding = false;
  for (const call of open) call.cancel();
  for (const client of clients) client.close();
  parentPort!.postMessage(report);
}, order.durationMs);
