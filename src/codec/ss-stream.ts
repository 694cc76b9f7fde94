/**
 * The Shadowsocks AEAD chunk stream, shared by both editions: after the salt (and, in 2022, the
 * header chunks) a stream is a sequence of
 *
 * ```
 * +------------------+-----------+----------------------+-----------+
 * | encrypted length | length tag| encrypted payload    | payload tag|
 * +------------------+-----------+----------------------+-----------+
 * |        2B        |    16B    |  length bytes        |    16B    |
 * +------------------+-----------+----------------------+-----------+
 * ```
 * with a big-endian u16 length: at most 0x3FFF in AEAD-2017 (shadowsocks.org AEAD spec: "the higher
 * two bits are reserved and must be zero"), at most 0xFFFF in 2022 (SIP022 §3.1.2). Every chunk uses
 * the next counter nonce of the direction's {@link CounterAead}.
 *
 * The reader keeps a list of received chunks and hands out views; it copies only a frame that spans
 * two network reads, and decrypts in place (with the native addon), so it takes ownership of the
 * buffers pushed into it. It holds at most one frame plus what the caller pushed, so its memory is bounded
 * by the caller's backpressure.
 * @module
 */
import { AuthError, CodecError } from '../errors.js';
import { TAG_SIZE } from '../crypto/methods.js';
import type { CounterAead } from '../crypto/aead.js';

/** AEAD-2017 payload cap. */
export const MAX_PAYLOAD_2017 = 0x3fff;
/** SIP022 payload cap. */
export const MAX_PAYLOAD_2022 = 0xffff;
/** Sealed length chunk: u16be + tag. */
export const LENGTH_CHUNK_SIZE = 2 + TAG_SIZE;

/** Bytes that `payloadLength` bytes of payload take on the wire when cut into chunks of `maxPayload`. */
export function sealedLength(payloadLength: number, maxPayload: number): number {
  const chunks = Math.ceil(payloadLength / maxPayload);
  return payloadLength + chunks * (LENGTH_CHUNK_SIZE + TAG_SIZE);
}

/** Room for one 64 KiB network read in the larger (2022) chunking. */
const SCRATCH_SIZE = sealedLength(64 * 1024, 0x3fff);

/**
 * One reusable output buffer that many {@link ChunkWriter}s encode into, one at a time. The event
 * loop runs one write at a time, and a socket that takes a write whole (the usual case) leaves
 * nothing referencing it, so one buffer can serve every connection of a server or dialer instead of
 * one per connection. A write that stays queued keeps the buffer it was given; the next encode then
 * takes a fresh one. The owner (a server, a dialer) makes one slot and hands it to its sessions;
 * codec/ keeps no process-wide state.
 */
export class ScratchSlot {
  #buffer: Buffer | null = null;
  #free = false;

  /** A buffer of at least `n` bytes, not referenced by anyone until it is released. */
  take(n: number): Buffer {
    let out = this.#buffer;
    if (out === null || !this.#free || out.length < n) {
      // Unpooled memory: a slice of Node's shared pool must never be reused by us.
      out = Buffer.allocUnsafeSlow(Math.max(n, SCRATCH_SIZE)); // callers write before they read
      this.#buffer = out;
    }
    this.#free = false;
    return out;
  }

  /** `buffer` (from {@link take}) is no longer referenced; the next take may reuse it. */
  release(buffer: Buffer): void {
    if (buffer === this.#buffer) this.#free = true;
  }
}

/** Encrypts payload into length+payload chunks. */
export class ChunkWriter {
  readonly #aead: CounterAead;
  readonly #max: number;
  readonly #len = new Uint8Array(2);
  /** The buffer this writer's last {@link encode} returned a view of, until {@link release}. */
  #last: Buffer | null = null;

  readonly #scratch: ScratchSlot;

  /** @param scratch where {@link encode} writes; shared with the owner's other writers. */
  constructor(aead: CounterAead, maxPayload: number, scratch: ScratchSlot = new ScratchSlot()) {
    this.#aead = aead;
    this.#max = maxPayload;
    this.#scratch = scratch;
  }

  /** Bytes {@link encodeInto} writes for `n` payload bytes. */
  encodedLength(n: number): number {
    return sealedLength(n, this.#max);
  }

  /** Seals `payload` (may be empty: then nothing is written) into `out` at `offset`; returns bytes written. */
  encodeInto(payload: Uint8Array, out: Uint8Array, offset: number): number {
    let p = offset;
    for (let i = 0; i < payload.length; i += this.#max) {
      const piece = payload.subarray(i, Math.min(i + this.#max, payload.length));
      this.#len[0] = piece.length >>> 8;
      this.#len[1] = piece.length & 0xff;
      p += this.#aead.seal(this.#len, out, p);
      p += this.#aead.seal(piece, out, p);
    }
    return p - offset;
  }

  /**
   * Seals `payload` and returns the wire bytes. They live in the writer's {@link ScratchSlot}
   * buffer, which is reused only after {@link release}: call it once nothing references the
   * returned bytes any more (the socket took them whole). Without release the bytes stay valid
   * for as long as they are referenced, and later calls get other memory.
   */
  encode(payload: Uint8Array): Buffer {
    const n = this.encodedLength(payload.length);
    const out = this.#scratch.take(n); // fully written below, up to n
    this.#last = out;
    this.encodeInto(payload, out, 0);
    return out.subarray(0, n);
  }

  /** The bytes the last {@link encode} returned are no longer referenced; their memory may be reused. */
  release(): void {
    if (this.#last !== null) this.#scratch.release(this.#last);
    this.#last = null;
  }
}

/** A carry of this size serves a 2017 frame (most reads) without growing. */
const MIN_CARRY = 0x3fff + TAG_SIZE;

/**
 * A FIFO of received buffers, handing out views and copying only across buffer boundaries.
 *
 * Lent reads (stream/recycled-reads.ts): a chunk pushed with `lent` is memory the queue may use only
 * until {@link detach}, which the caller runs before the read buffer is reused; the lender also
 * leaves the memory in front of the chunk (its headroom) free for that time. A unit that spans the
 * bytes kept from the previous read and a lent read is then put together in that headroom: a view
 * of the read, adjacent to the rest of it, instead of a fresh copy. What is left unfinished at the
 * end goes to a carry buffer of the queue's own, reused from read to read.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #head = 0; // index of the first live chunk in #chunks
  #length = 0;
  /** The memory of the lent chunk being pushed now (headroom included), until detach(). */
  #lent: ArrayBufferLike | null = null;
  /** Where detach() keeps an unfinished unit; dropped once a view of it has been handed out. */
  #carry: Buffer | null = null;

  get length(): number {
    return this.#length;
  }

  get chunkCount(): number {
    return this.#chunks.length - this.#head;
  }

  /** Adds `chunk`; with `lent`, see the class notes (call {@link detach} before the memory is reused). */
  push(chunk: Buffer, lent = false): void {
    if (lent) this.#lent = chunk.buffer;
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Removes and returns the first `n` bytes (n ≤ length): a view when they lie in one chunk. */
  take(n: number): Buffer {
    const first = this.#chunks[this.#head]!;
    let out: Buffer;
    const second = this.#chunks[this.#head + 1];
    if (first.length >= n) {
      out = first.length === n ? first : first.subarray(0, n);
      if (first.length === n) this.#shift();
      else this.#chunks[this.#head] = first.subarray(n);
      // Handed out, maybe to be kept: the carry is no longer ours to reuse.
      if (this.#carry !== null && out.buffer === this.#carry.buffer) this.#carry = null;
    } else if (
      second !== undefined &&
      second.buffer === this.#lent &&
      first.buffer !== second.buffer &&
      second.byteOffset >= first.length &&
      second.length >= n - first.length
    ) {
      // The lent read's headroom takes the first bytes: the unit is then a view of the read.
      const k = first.length;
      const start = second.byteOffset - k;
      first.copy(new Uint8Array(second.buffer, start, k));
      out = Buffer.from(second.buffer, start, n);
      this.#shift();
      if (second.length === n - k) this.#shift();
      else this.#chunks[this.#head] = second.subarray(n - k);
    } else {
      out = Buffer.allocUnsafe(n); // every byte is copied in below
      let filled = 0;
      while (filled < n) {
        const c = this.#chunks[this.#head]!;
        const want = n - filled;
        if (c.length <= want) {
          c.copy(out, filled);
          filled += c.length;
          this.#shift();
        } else {
          c.copy(out, filled, 0, want);
          this.#chunks[this.#head] = c.subarray(want);
          filled += want;
        }
      }
    }
    this.#length -= n;
    return out;
  }

  /** Removes and returns up to `max` bytes from the front, never copying: a view of one chunk. */
  takeFront(max: number): Buffer {
    if (this.#length === 0 || max <= 0) return Buffer.alloc(0);
    const first = this.#chunks[this.#head]!;
    return this.take(Math.min(max, first.length));
  }

  /**
   * Ends a lent push: no queued byte is left in the lent memory (they move to the carry), so the
   * lender may reuse it. After a decoder has drained what it could, what is left is one unfinished
   * unit: at most one frame is copied.
   */
  detach(): void {
    const lent = this.#lent;
    this.#lent = null;
    if (lent === null) return;
    const chunks = this.#chunks;
    let inLent = false;
    for (let i = this.#head; i < chunks.length && !inLent; i++) inLent = chunks[i]!.buffer === lent;
    if (!inLent) return;
    // Everything queued goes to the carry, in order. A new carry is fresh memory; within the same
    // carry, bytes only move down (copyWithin is a memmove), so none is overwritten before it moved.
    const total = this.#length;
    let carry = this.#carry;
    if (carry === null || carry.length < total)
      carry = Buffer.allocUnsafeSlow(Math.max(total, MIN_CARRY)); // written up to `total` below
    let filled = 0;
    for (let i = this.#head; i < chunks.length; i++) {
      const c = chunks[i]!;
      if (c.buffer === carry.buffer) {
        const from = c.byteOffset - carry.byteOffset;
        carry.copyWithin(filled, from, from + c.length);
      } else c.copy(carry, filled);
      filled += c.length;
    }
    this.#carry = carry;
    this.#chunks = [carry.subarray(0, total)];
    this.#head = 0;
  }

  /** Returns the first `n` bytes without removing them (copies if they span chunks). */
  peek(n: number): Buffer {
    const first = this.#chunks[this.#head]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (let i = this.#head; filled < n; i++) {
      const c = this.#chunks[i]!;
      filled += c.copy(out, filled, 0, Math.min(c.length, n - filled));
    }
    return out;
  }

  /** Removes everything and returns it as one buffer. */
  takeAll(): Buffer {
    return this.#length === 0 ? Buffer.alloc(0) : this.take(this.#length);
  }

  #shift(): void {
    this.#head++;
    if (this.#head > 64 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }
}

const STATE_LENGTH = 0;
const STATE_PAYLOAD = 1;

/** Decrypts length+payload chunks from a byte stream. */
export class ChunkReader {
  readonly #aead: CounterAead;
  readonly #max: number;
  readonly #queue: ByteQueue;
  #state = STATE_LENGTH;
  #payloadLength = 0;

  /** `queue` may already hold bytes that follow the header (the server's acceptor hands them over). */
  constructor(aead: CounterAead, maxPayload: number, queue = new ByteQueue()) {
    this.#aead = aead;
    this.#max = maxPayload;
    this.#queue = queue;
  }

  /** The next chunk is a payload of `n` bytes with no length chunk before it (SIP022 response header). */
  expectPayload(n: number): void {
    this.#payloadLength = n;
    this.#state = STATE_PAYLOAD;
  }

  /** Bytes received but not yet decrypted. */
  get buffered(): number {
    return this.#queue.length;
  }

  /**
   * Adds received bytes and returns every payload that is now complete (possibly none). Takes
   * ownership of `chunk`: payloads are decrypted in place, so its bytes are overwritten.
   * Throws AuthError('ERR_SS_BAD_TAG') on a wrong tag and CodecError on an over-long length.
   *
   * `borrowed`: `chunk`'s memory, and the headroom in front of it, is lent until the call returns (a
   * recycled read, stream/recycled-reads.ts). The reader then keeps none of it: an unfinished frame
   * at its end is copied. The payloads returned may still be views of it; the caller keeps them only
   * by holding the source (holdChunks).
   */
  push(chunk: Buffer, borrowed = false): Buffer[] {
    this.#queue.push(chunk, borrowed);
    const out: Buffer[] = [];
    try {
      this.drainInto(out);
    } finally {
      this.#queue.detach();
    }
    return out;
  }

  /** Decrypts whatever complete chunks the queue holds into `out`. */
  drainInto(out: Buffer[]): void {
    const q = this.#queue;
    // Where the last payload of this call ended before any move, to prove adjacency (see below).
    let lastEnd = -1;
    let lastBuffer: ArrayBufferLike | null = null;
    for (;;) {
      if (this.#state === STATE_LENGTH) {
        if (q.length < LENGTH_CHUNK_SIZE) return;
        const len = this.#aead.openInPlace(q.take(LENGTH_CHUNK_SIZE));
        if (len === null)
          throw new AuthError('ERR_SS_BAD_TAG', 'length chunk failed authentication');
        const n = (len[0]! << 8) | len[1]!;
        if (n > this.#max) {
          throw new CodecError(
            'ERR_SS_CHUNK_LENGTH',
            `chunk length ${n} is over the limit ${this.#max}`,
          );
        }
        this.#payloadLength = n;
        this.#state = STATE_PAYLOAD;
      }
      const sealed = this.#payloadLength + TAG_SIZE;
      if (q.length < sealed) return;
      const pt = this.#aead.openInPlace(q.take(sealed));
      if (pt === null) throw new AuthError('ERR_SS_BAD_TAG', 'payload chunk failed authentication');
      this.#state = STATE_LENGTH;
      if (pt.length === 0) continue;
      // Chunks decrypted in place in one received buffer lie apart by exactly the previous tag and
      // this chunk's length chunk, bytes of this stream already consumed. Slide the payload down over
      // them so a read of several chunks yields one contiguous payload (one write downstream, not
      // one per chunk). The exact-gap test rules out buffers that merely share Node's pool.
      const prev = out[out.length - 1];
      if (
        prev !== undefined &&
        pt.buffer === lastBuffer &&
        pt.byteOffset === lastEnd + TAG_SIZE + LENGTH_CHUNK_SIZE
      ) {
        const base = prev.byteOffset;
        new Uint8Array(pt.buffer, base, pt.byteOffset + pt.length - base).copyWithin(
          prev.length,
          pt.byteOffset - base,
        );
        out[out.length - 1] = Buffer.from(prev.buffer, base, prev.length + pt.length);
      } else out.push(pt);
      lastBuffer = pt.buffer;
      lastEnd = pt.byteOffset + pt.length;
    }
  }
}
