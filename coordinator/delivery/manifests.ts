// The leader's piece manifests (shared/pieces.ts): saved beside each blob when it is pushed,
// and, for a blob stored before pieces existed (or replicated without its manifest), computed
// once from the blob's bytes, verified against its digest, and saved. Recently used manifests
// stay in memory: every agent pulling a blob asks for its manifest.
import { DataLossError } from '../../shared/errors.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import { StreamingPieceHasher, decodeManifest, encodeManifest, pieceBytesFor, type PieceManifest } from '../../shared/pieces.js';
import type { BlobStore } from '../blobs/blob-store.js';

/** Manifests kept in memory (a 1 GiB blob's is 4 KiB, a 78 GiB blob's 320 KiB). */
const CACHED = 256;
const READ_BYTES = 1 << 20;

export class PieceManifests {
  private readonly cached = new Map<string, PieceManifest>();
  private readonly computing = new Map<string, Promise<PieceManifest>>();

  constructor(
    private readonly blobs: BlobStore,
    private readonly log: Logger = silentLogger(),
  ) {}

  /** The manifest of a stored blob of `sizeBytes`; computed and saved when it has none. */
  async get(digest: string, sizeBytes: number): Promise<PieceManifest> {
    const hit = this.cached.get(digest);
    if (hit) {
      this.cached.delete(digest);
      this.cached.set(digest, hit);
      return hit;
    }
    let pending = this.computing.get(digest);
    if (!pending) {
      pending = this.load(digest, sizeBytes).finally(() => this.computing.delete(digest));
      this.computing.set(digest, pending);
    }
    const manifest = await pending;
    this.remember(manifest);
    return manifest;
  }

  /** Saves a manifest computed from bytes verified against its digest (a push). */
  async save(manifest: PieceManifest): Promise<void> {
    await this.blobs.writePieces(manifest.digest, encodeManifest(manifest));
    this.remember(manifest);
  }

  private async load(digest: string, sizeBytes: number): Promise<PieceManifest> {
    const saved = await this.blobs.readPieces(digest);
    if (saved) {
      try {
        const manifest = decodeManifest(saved);
        if (manifest.digest === digest && manifest.sizeBytes === sizeBytes) return manifest;
        this.log.warn({ digest }, 'a saved piece manifest names other content; computing it again');
      } catch (err) {
        this.log.warn({ digest, err: (err as Error).message }, 'a saved piece manifest is unreadable; computing it again');
      }
    }
    const manifest = await this.compute(digest);
    if (manifest.digest !== digest || manifest.sizeBytes !== sizeBytes) {
      throw new DataLossError(`the stored bytes of ${digest} hash to ${manifest.digest} (${manifest.sizeBytes} bytes): the blob store is damaged`);
    }
    await this.blobs.writePieces(digest, encodeManifest(manifest));
    this.log.info({ digest, pieces: manifest.hashes.length / 32 }, 'computed the piece manifest of a blob stored without one');
    return manifest;
  }

  private async compute(digest: string): Promise<PieceManifest> {
    const stat = await this.blobs.stat(digest);
    const hasher = new StreamingPieceHasher(pieceBytesFor(stat?.sizeBytes ?? 0));
    const reader = await this.blobs.openReader(digest);
    try {
      const buffer = Buffer.allocUnsafe(READ_BYTES);
      for (;;) {
        const read = await reader.read(buffer, 0, READ_BYTES);
        if (read === 0) break;
        hasher.update(buffer.subarray(0, read));
      }
    } finally {
      await reader.close();
    }
    return hasher.finish();
  }

  /** Keeps a manifest already saved in the blob store (a direct upload's, which s3-direct.ts saved). */
  remember(manifest: PieceManifest): void {
    this.cached.delete(manifest.digest);
    this.cached.set(manifest.digest, manifest);
    while (this.cached.size > CACHED) this.cached.delete(this.cached.keys().next().value!);
  }
}
