// The order in which a download's pieces enter its whole-digest hash (docs/delivery.md). The
// hashing worker takes a verified piece into the whole digest straight from its buffer when the
// piece is the next one in file order; a piece verified out of order is written and left, and
// once the pieces before it are in, it is read back from the file (a resumed download's
// recorded pieces too). Pure: this says what to read back, the worker (hash-worker.ts), which
// keeps one per download, does it at once. `next` is the count of leading pieces in the whole
// digest once every read-back asked for so far is done.

/** Pieces [from, to) to read back from the file into the whole digest, in order. */
export interface ReadBack {
  from: number;
  to: number;
}

export class DigestOrder {
  private at = 0;
  /** Verified, on disk, not yet in the whole digest. */
  private readonly onDisk = new Set<number>();
  private broken: string | undefined;

  constructor(readonly pieceCount: number) {
    if (!Number.isInteger(pieceCount) || pieceCount < 0) throw new RangeError(`a blob of ${pieceCount} pieces`);
  }

  /** Pieces in the whole digest, from the first. */
  get next(): number {
    return this.at;
  }

  /** Every piece is in (or will be, once the read-backs asked for are done). */
  get complete(): boolean {
    return this.broken === undefined && this.at === this.pieceCount;
  }

  /** Why the whole digest cannot be trusted to follow the file (then the file is hashed again); undefined while it can. */
  get failure(): string | undefined {
    return this.broken;
  }

  /** Pieces held at the start (a resumed download): read back what leads the file. */
  resumed(held: (piece: number) => boolean): ReadBack | undefined {
    for (let piece = 0; piece < this.pieceCount; piece += 1) if (held(piece)) this.onDisk.add(piece);
    return this.drain();
  }

  /**
   * A piece was verified; `fed`: the worker took it into the whole digest from its buffer (it
   * does so only for the next piece in order). Answers the pieces to read back now, if any.
   */
  verified(piece: number, fed: boolean): ReadBack | undefined {
    if (this.broken !== undefined) return undefined;
    if (!Number.isInteger(piece) || piece < 0 || piece >= this.pieceCount) return this.fail(`piece ${piece} is not one of the ${this.pieceCount}`);
    if (piece < this.at || this.onDisk.has(piece)) return this.fail(`piece ${piece} was verified twice`);
    if (fed) {
      if (piece !== this.at) return this.fail(`the worker took piece ${piece} while piece ${this.at} was next`);
      this.at += 1;
    } else {
      this.onDisk.add(piece);
    }
    return this.drain();
  }

  /** The whole digest cannot follow the file any more (a worker stopped, a read failed). */
  fail(reason: string): undefined {
    this.broken ??= reason;
    return undefined;
  }

  private drain(): ReadBack | undefined {
    let to = this.at;
    while (this.onDisk.delete(to)) to += 1;
    if (to === this.at) return undefined;
    const range = { from: this.at, to };
    this.at = to;
    return range;
  }
}
