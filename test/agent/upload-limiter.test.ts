// The peer upload cap's token bucket on a fake clock: the rate held over time by one sender
// and shared by several, the burst after a quiet spell, a refund when a peer leaves, and the
// flag's default from the inventory's NICs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FALLBACK_PEER_UPLOAD_MBPS, UploadLimiter, parsePeerUploadMbps, peerUploadMbps } from '../../agent/delivery/upload-limiter.js';
import { MiB } from '../../shared/pieces.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** Lets promise continuations run between clock steps. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Senders taking MiB chunks in a loop until `untilMs` of fake time has passed; bytes sent by each. */
async function run(limiter: UploadLimiter, clock: FakeClock, senders: number, untilMs: number): Promise<number[]> {
  const sent = new Array<number>(senders).fill(0);
  const start = clock.now();
  let stop = false;
  const loops = sent.map(async (_, i) => {
    while (!stop) {
      await limiter.take(MiB);
      if (stop) break;
      sent[i]! += MiB;
    }
  });
  while (clock.now() - start < untilMs) {
    await settle();
    clock.advance(5);
  }
  stop = true;
  clock.advance(60_000);
  await settle();
  await Promise.all(loops);
  return sent;
}

test('one sender is held to the rate, after one burst', async () => {
  const clock = new FakeClock();
  const limiter = new UploadLimiter(800, clock); // 100 MB/s
  assert.equal(limiter.bytesPerSecond, 100_000_000);
  const [sent] = await run(limiter, clock, 1, 10_000);
  const expected = 10 * limiter.bytesPerSecond + limiter.burstBytes;
  assert.ok(Math.abs(sent! - expected) <= 2 * MiB, `sent ${sent}, expected about ${expected}`);
});

test('concurrent senders share the one rate about evenly', async () => {
  const clock = new FakeClock();
  const limiter = new UploadLimiter(80, clock); // 10 MB/s
  const sent = await run(limiter, clock, 4, 20_000);
  const total = sent.reduce((a, b) => a + b, 0);
  const expected = 20 * limiter.bytesPerSecond + limiter.burstBytes;
  assert.ok(Math.abs(total - expected) <= 5 * MiB, `sent ${total}, expected about ${expected}`);
  for (const each of sent) assert.ok(Math.abs(each - total / 4) <= 2 * MiB, `shares ${sent.join(', ')}`);
});

test('a wait given up (the peer went away) gives its bytes back', async () => {
  const clock = new FakeClock();
  const limiter = new UploadLimiter(8, clock); // 1 MB/s, burst 1 MiB
  assert.equal(limiter.reserve(limiter.burstBytes), 0);
  const gone = new AbortController();
  const waiting = limiter.take(4 * MiB, gone.signal);
  gone.abort(new Error('peer went away'));
  await assert.rejects(waiting, /peer went away/);
  // Without the refund this would wait four seconds more.
  assert.ok(limiter.reserve(1000) <= 2, 'the aborted reservation was refunded');
});

test('the flag: given, or half the fastest NIC, or 1000; bad text is refused', () => {
  assert.equal(peerUploadMbps(0, [{ speedMbps: 10_000 }]), 0);
  assert.equal(peerUploadMbps(300, []), 300);
  assert.equal(peerUploadMbps(undefined, [{ speedMbps: 1000 }, { speedMbps: 25_000 }, { speedMbps: 0 }]), 12_500);
  assert.equal(peerUploadMbps(undefined, [{ speedMbps: 0 }]), FALLBACK_PEER_UPLOAD_MBPS);
  assert.equal(peerUploadMbps(undefined, []), FALLBACK_PEER_UPLOAD_MBPS);
  assert.equal(parsePeerUploadMbps('0'), 0);
  assert.equal(parsePeerUploadMbps('250'), 250);
  for (const bad of ['-1', '1.5', 'fast', '', '1e3']) assert.throws(() => parsePeerUploadMbps(bad), /whole number of megabits/);
  assert.throws(() => new UploadLimiter(0, new FakeClock()), /above 0/);
});

test('the agent takes --peer-upload-mbps (0 included) and refuses a bad one naming the flag', async () => {
  const { compileAgentOptions } = await import('../../agent/options.js');
  const base = ['--name', 'peer-host', '--driver', 'process'];
  assert.equal((await compileAgentOptions([...base, '--peer-upload-mbps', '250'])).peerUploadMbps, 250);
  assert.equal((await compileAgentOptions([...base, '--peer-upload-mbps', '0'])).peerUploadMbps, 0);
  assert.equal((await compileAgentOptions(base)).peerUploadMbps, undefined);
  await assert.rejects(compileAgentOptions([...base, '--peer-upload-mbps', 'fast']), /--peer-upload-mbps: peer upload rate must be a whole number/);
});
