// The worker side of WorkerPieceHasher (shared/worker-piece-hasher.ts): piece hashes of the
// bytes it is sent, in order, with StreamingPieceHasher, and their whole digest when asked;
// each buffer goes back once hashed, for the sender to fill again.
import { parentPort, workerData } from 'node:worker_threads';
import { StreamingPieceHasher } from './pieces.js';

const { pieceBytes, whole } = workerData as { pieceBytes: number; whole: boolean };
const hasher = new StreamingPieceHasher(pieceBytes, { whole });
parentPort!.on('message', (message: { bytes?: Uint8Array; finish?: true }) => {
  if (message.bytes) {
    hasher.update(Buffer.from(message.bytes.buffer, message.bytes.byteOffset, message.bytes.byteLength));
    const used = message.bytes.buffer as ArrayBuffer;
    parentPort!.postMessage({ used }, [used]);
  }
  if (message.finish) {
    const manifest = hasher.finish();
    parentPort!.postMessage({ sizeBytes: manifest.sizeBytes, hashes: manifest.hashes, digest: manifest.digest });
  }
});
