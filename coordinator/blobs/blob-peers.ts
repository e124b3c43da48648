// Blob replication between coordinators, for the filesystem blob store (an S3 bucket is shared
// by every coordinator and needs none of this). The leader copies each pushed blob to a live
// peer before it records the version (replicate), every coordinator fetches the referenced
// blobs it lacks from its peers in a background loop (run), and a download of a blob not held
// here fetches it first (ensureLocal). Every copy is verified against its sha256 and size by
// the blob store's commit, so a peer can never plant other bytes under a digest.
//
// Coordinators find each other under keys.coordinatorsPrefix and authenticate to each other
// with the cluster's peer secret: 32 random bytes kept in the store at keys.peerSecret, made by
// the first coordinator to start on it. Whoever can read the store is already trusted with
// everything (it holds the token table); the secret never appears in a log line or an error.
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { sleep, systemClock, type Clock } from '../../shared/clock.js';
import { InvalidArgumentError, NotFoundError, UnauthenticatedError, UnavailableError, toGrpcError } from '../../shared/errors.js';
import { keys } from '../../shared/keys.js';
import type { Logger } from '../../shared/log.js';
import { mlfleetV1 } from '../../shared/proto.js';
import type { Store } from '../../shared/store/store.js';
import { assertWellFormed } from '../../shared/validation.js';
import { channelCredentials, type TlsMaterial } from '../../shared/tls.js';
import type { ArtifactRecord } from '../registry/artifact-record.js';
import { DIGEST, type BlobStore } from './blob-store.js';
import { missingBlobs, peerOrder, pushVerdict, referencedBlobs, type PeerMember } from './replication.js';

/** Bytes per chunk sent between coordinators. */
const CHUNK_BYTES = 256 << 10;
/** A copy gets this long plus a second per 16 MiB before it is given up. */
const BASE_DEADLINE_MS = 10_000;
const BYTES_PER_SECOND = 16 << 20;

export interface BlobPeersOptions {
  store: Store;
  blobs: BlobStore;
  selfId: string;
  secret: string;
  tls: TlsMaterial | undefined;
  log: Logger;
  /** Between two passes of the convergence loop. */
  intervalMs: number;
  clock?: Clock;
}

/** The cluster's peer secret, made (once, by whichever coordinator gets there first) when absent. */
export async function loadPeerSecret(store: Store): Promise<string> {
  const existing = await store.get(keys.peerSecret);
  if (existing) return existing.value;
  await store.txn([{ key: keys.peerSecret, target: 'createRevision', op: '=', value: 0 }], [{ type: 'put', key: keys.peerSecret, value: randomBytes(32).toString('base64url') }]);
  const made = await store.get(keys.peerSecret);
  if (!made) throw new UnavailableError('the peer secret could not be read back from the store');
  return made.value;
}

export class BlobPeers {
  private readonly clients = new Map<string, grpc.Client & Record<string, (...args: unknown[]) => unknown>>();
  private readonly fetching = new Map<string, Promise<boolean>>();
  private readonly expected: Buffer;
  private turn = 0;
  private readonly clock: Clock;

  constructor(private readonly options: BlobPeersOptions) {
    this.expected = createHash('sha256').update(`Bearer ${options.secret}`).digest();
    this.clock = options.clock ?? systemClock;
  }

  /** Whether blobs are copied at all: only the filesystem store keeps them per coordinator. */
  get active(): boolean {
    return this.options.blobs.kind === 'fs';
  }

  /**
   * Copies a blob held here to one live peer. Resolves when a peer holds it, or at once when
   * this coordinator is alone; throws UnavailableError when peers are registered and none took it.
   */
  async replicate(digest: string, sizeBytes: number): Promise<void> {
    if (!this.active) return;
    const peers = await this.peers();
    const failures: string[] = [];
    let copied = 0;
    for (const peer of peers) {
      try {
        await this.storeOn(peer, digest, sizeBytes);
        copied = 1;
        break;
      } catch (err) {
        failures.push(`${peer.id}: ${(err as Error).message}`);
      }
    }
    if (pushVerdict(peers.length, copied) === 'refuse') {
      this.options.log.warn({ digest, failures }, 'no peer coordinator took a copy of a pushed blob; the push is refused');
      throw new UnavailableError(`the content could not be copied to a second coordinator (${peers.length} registered, none took it); nothing was recorded; push again`);
    }
  }

  /** Makes sure a blob is held here, fetching it from a peer if not; UnavailableError if none has it. */
  async ensureLocal(digest: string, sizeBytes: number): Promise<void> {
    if (!this.active || (await this.options.blobs.stat(digest))) return;
    if (!(await this.fetch(digest, sizeBytes))) throw new UnavailableError(`blob ${digest} is not stored on this coordinator and no peer coordinator could send it; try again`);
  }

  /** The convergence loop: a pass at once, then one every intervalMs, until `signal`. */
  async run(signal: AbortSignal): Promise<void> {
    if (!this.active) return;
    while (!signal.aborted) {
      try {
        await this.pass(signal);
      } catch (err) {
        if (!signal.aborted) this.options.log.warn({ err: (err as Error).message }, 'a blob replication pass failed');
      }
      await sleep(this.clock, this.options.intervalMs, signal).catch(() => undefined);
    }
  }

  /** One pass: every referenced blob not held here is fetched from a peer. Returns how many were. */
  async pass(signal?: AbortSignal): Promise<number> {
    const records: ArtifactRecord[] = [];
    for (const kind of ['model', 'dataset']) {
      const { kvs } = await this.options.store.range(keys.artifactsPrefix(kind));
      for (const kv of kvs) records.push(JSON.parse(kv.value) as ArtifactRecord);
    }
    const referenced = referencedBlobs(records);
    const held = new Set<string>();
    for (const digest of referenced.keys()) if (await this.options.blobs.stat(digest)) held.add(digest);
    let filled = 0;
    for (const { digest, sizeBytes } of missingBlobs(referenced, (d) => held.has(d))) {
      if (signal?.aborted) break;
      if (await this.fetch(digest, sizeBytes)) filled += 1;
    }
    if (filled > 0) this.options.log.info({ filled }, 'fetched missing blobs from peer coordinators');
    return filled;
  }

  /** The gRPC service peers call (BlobPeerService). */
  service(): grpc.UntypedServiceImplementation {
    const fetch = async (call: grpc.ServerWritableStream<{ digest: string }, unknown>) => {
      try {
        assertWellFormed(call.request, 'peer fetch request');
        const digest = call.request.digest;
        if (!DIGEST.test(digest)) throw new InvalidArgumentError('invalid peer fetch request: digest: must be sha256:<64 lowercase hex>');
        this.authenticate(call.metadata);
        if (!(await this.options.blobs.stat(digest))) throw new NotFoundError(`blob ${digest} is not stored on this coordinator`);
        const stream = await this.options.blobs.read(digest);
        try {
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            if (call.cancelled) return;
            for (let at = 0; at < chunk.length; at += CHUNK_BYTES) {
              if (!call.write({ chunk: chunk.subarray(at, at + CHUNK_BYTES) })) await Promise.race([once(call, 'drain'), once(call, 'cancelled')]);
            }
          }
        } finally {
          stream.destroy();
        }
        call.end();
      } catch (err) {
        call.emit('error', toGrpcError(err));
      }
    };
    const store = (call: grpc.ServerReadableStream<{ msg?: string; header?: { digest?: string; sizeBytes?: number }; chunk?: Buffer }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      this.receive(call).then(
        (stored) => callback(null, stored),
        (err: unknown) => callback(toGrpcError(err) as grpc.ServiceError),
      );
    };
    return { Fetch: fetch, Store: store } as unknown as grpc.UntypedServiceImplementation;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private async receive(call: grpc.ServerReadableStream<{ msg?: string; header?: { digest?: string; sizeBytes?: number }; chunk?: Buffer }, unknown>): Promise<{ digest: string; sizeBytes: number }> {
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<{ msg?: string; header?: { digest?: string; sizeBytes?: number }; chunk?: Buffer }>;
    const first = await messages.next();
    if (!first.done) assertWellFormed(first.value, 'peer store message');
    const header = first.done ? undefined : first.value.header;
    const digest = header?.digest ?? '';
    const sizeBytes = Number(header?.sizeBytes ?? -1);
    if (first.done || first.value.msg !== 'header' || !DIGEST.test(digest) || !Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
      throw new InvalidArgumentError('invalid peer store: header: the first message must be a header naming digest and size_bytes');
    }
    // Only the shape of one message is looked at before the caller is known.
    this.authenticate(call.metadata);
    const known = await this.options.blobs.stat(digest);
    const writer = await this.options.blobs.create();
    try {
      for (;;) {
        const next = await messages.next();
        if (next.done) break;
        assertWellFormed(next.value, 'peer store message');
        const chunk = next.value.chunk;
        if (next.value.msg !== 'chunk' || !chunk) throw new InvalidArgumentError('after its header a peer store sends only chunks');
        if (writer.bytesWritten + chunk.length > sizeBytes) throw new InvalidArgumentError(`the peer declared ${sizeBytes} bytes but sent more`);
        if (!known) await writer.write(chunk); // already held: the bytes are read and dropped
      }
      if (known) {
        await writer.abort();
        return { digest, sizeBytes: known.sizeBytes };
      }
      return await writer.commit({ digest, sizeBytes });
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  private authenticate(metadata: grpc.Metadata): void {
    const given = metadata.get('authorization')[0];
    const hash = createHash('sha256').update(typeof given === 'string' ? given : '').digest();
    if (!timingSafeEqual(hash, this.expected)) throw new UnauthenticatedError('peer calls need the cluster peer secret');
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.options.secret}`);
    return metadata;
  }

  private deadline(sizeBytes: number): Date {
    return new Date(Date.now() + BASE_DEADLINE_MS + Math.ceil((sizeBytes / BYTES_PER_SECOND) * 1000));
  }

  private async peers(): Promise<PeerMember[]> {
    const { kvs } = await this.options.store.range(keys.coordinatorsPrefix);
    const members = kvs.map((kv) => JSON.parse(kv.value) as PeerMember);
    return peerOrder(members, this.options.selfId, this.turn++);
  }

  private client(address: string) {
    let client = this.clients.get(address);
    if (!client) {
      const Service = mlfleetV1().BlobPeerService as unknown as new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client & Record<string, (...args: unknown[]) => unknown>;
      client = new Service(address, channelCredentials(this.options.tls));
      this.clients.set(address, client);
    }
    return client;
  }

  /** Sends a blob held here to `peer`; resolves once the peer has verified and stored it. */
  private async storeOn(peer: PeerMember, digest: string, sizeBytes: number): Promise<void> {
    const client = this.client(peer.address);
    let settle!: (err: Error | null) => void;
    const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
    // The answer may come (a refusal, a refused connection) while the bytes are still being read.
    done.catch(() => undefined);
    const call = client['store']!(this.metadata(), { deadline: this.deadline(sizeBytes) }, (err: grpc.ServiceError | null) => settle(err)) as grpc.ClientWritableStream<unknown>;
    const source = await this.options.blobs.read(digest);
    try {
      call.write({ header: { digest, sizeBytes } });
      for await (const chunk of source as AsyncIterable<Buffer>) {
        for (let at = 0; at < chunk.length; at += CHUNK_BYTES) {
          if (!call.write({ chunk: chunk.subarray(at, at + CHUNK_BYTES) })) await Promise.race([once(call, 'drain'), done]);
        }
      }
      call.end();
    } catch (err) {
      call.cancel();
      throw err;
    } finally {
      source.destroy();
    }
    await done;
  }

  /** Fetches a blob from the first peer that has it; false when none could. One fetch per digest at a time. */
  private fetch(digest: string, sizeBytes: number): Promise<boolean> {
    let running = this.fetching.get(digest);
    if (!running) {
      running = this.fetchFromPeers(digest, sizeBytes).finally(() => this.fetching.delete(digest));
      this.fetching.set(digest, running);
    }
    return running;
  }

  private async fetchFromPeers(digest: string, sizeBytes: number): Promise<boolean> {
    for (const peer of await this.peers()) {
      try {
        await this.fetchFrom(peer, digest, sizeBytes);
        this.options.log.info({ digest, from: peer.id, bytes: sizeBytes }, 'fetched a blob from a peer coordinator');
        return true;
      } catch (err) {
        this.options.log.debug({ digest, from: peer.id, err: (err as Error).message }, 'a peer coordinator could not send a blob');
      }
    }
    return false;
  }

  private async fetchFrom(peer: PeerMember, digest: string, sizeBytes: number): Promise<void> {
    const client = this.client(peer.address);
    const call = client['fetch']!({ digest }, this.metadata(), { deadline: this.deadline(sizeBytes) }) as grpc.ClientReadableStream<{ chunk?: Buffer }>;
    const writer = await this.options.blobs.create();
    try {
      for await (const message of call as AsyncIterable<{ chunk?: Buffer }>) {
        if (!message.chunk || message.chunk.length === 0) continue;
        if (writer.bytesWritten + message.chunk.length > sizeBytes) throw new InvalidArgumentError(`peer ${peer.id} sent more than the ${sizeBytes} bytes of ${digest}`);
        await writer.write(message.chunk);
      }
      // Verified here: bytes that do not hash to the digest are not kept.
      await writer.commit({ digest, sizeBytes });
    } catch (err) {
      call.cancel();
      await writer.abort();
      throw err;
    }
  }
}
