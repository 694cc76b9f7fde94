/**
 * Sockets that read into recycled memory. By default Node gives every socket read a fresh 64 KiB
 * ArrayBuffer, which V8 frees only when a GC happens to run: at hundreds of MB/s a busy proxy carries
 * a hundred MiB of dead read buffers. A socket made here reads into one buffer again and again
 * (`onread`; one buffer shared by all such sockets), and emits each read as an ordinary 'data' event whose chunk is *borrowed*: valid during
 * the 'data' handler only, which may also use the {@link READ_HEADROOM} bytes of the same memory in
 * front of the chunk as scratch. A consumer that keeps a chunk past its handler (queued in a writable,
 * buffered in a readable) must call {@link holdChunks} on the source before returning; the socket then
 * reads into a new buffer and leaves the held one to its holder. The contract and its types are in
 * core/lent-read.ts.
 *
 * Debug mode ({@link configureLentReads}, or LADDER_DEBUG_LENT_READS=1 in the environment, which the
 * test runner sets): every chunk that was not held is overwritten with {@link POISON_BYTE} as soon
 * as its 'data' handler returns, so a consumer that kept one without holding it sees garbage at once.
 * @module
 */
import { connect, type NetConnectOpts, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { HOLD, KEEPS } from '../core/lent-read.js';

export { HOLD, KEEPS, holdChunks, keepsWrites, lendsChunks } from '../core/lent-read.js';
export type { LendingStream, LentChunk } from '../core/lent-read.js';

/**
 * Bytes of one read: 256 bytes short of 64 KiB, so that a read and the framing every transport adds
 * to it (Mux.Cool's two 8-byte headers, a WebSocket header, four Shadowsocks chunks' 34 bytes each)
 * still fit in four TLS records of 16 KiB. A full 64 KiB read became four full records and a fifth
 * of 16 bytes, which the receiver then passes on as a write of its own: a tiny record per read,
 * costly in CPU per byte (docs/benchmarks.md, "Design measurements").
 */
export const READ_SIZE = 64 * 1024 - 256;

/**
 * Memory in front of every recycled read that its 'data' handler may use as scratch (it is lent
 * with the read): room for one Shadowsocks 2022 frame, so that a decoder can put a frame that spans
 * two reads together in front of the second, contiguous with the rest of it (codec/ss-stream.ts).
 */
export const READ_HEADROOM = 0xffff + 2 * 16 + 2;

/** One reusable buffer, replaced when its holder keeps it. */
export class BufferRecycler {
  readonly #size: number;
  readonly #headroom: number;
  #buf: Buffer | null = null;
  #held = false;

  /** Reads of up to `size` bytes, each with `headroom` bytes of the same memory in front of it. */
  constructor(size = READ_SIZE, headroom = 0) {
    this.#size = size;
    this.#headroom = headroom;
  }

  /** The buffer for the next read: the last one again unless it was held. */
  next = (): Buffer => {
    if (this.#buf === null || this.#held) {
      // Never a slice of Node's shared pool. The headroom is written before it is ever read.
      this.#buf = Buffer.allocUnsafeSlow(this.#headroom + this.#size).subarray(this.#headroom);
      this.#held = false;
    }
    return this.#buf;
  };

  hold = (): void => {
    this.#held = true;
  };

  /** Whether the buffer of the last read was held. */
  get held(): boolean {
    return this.#held;
  }
}

/** What debug mode writes over a chunk that was not held once its handler returned. */
export const POISON_BYTE = 0xdb;

// A debug switch, read once like NODE_DEBUG: the test runner turns it on for every process it starts.
let poison = process.env.LADDER_DEBUG_LENT_READS === '1';

/** Turns the poisoning debug mode on or off for the sockets this module makes from now on. */
export function configureLentReads(options: { readonly poison: boolean }): void {
  poison = options.poison;
}

/** Whether debug mode poisons lent chunks that were not held (for lenders other than sockets). */
export function lentReadsPoisoned(): boolean {
  return poison;
}

/**
 * The recycler every socket made by {@link connectRecycling} reads into: libuv reads one socket at a
 * time and the chunk is consumed (or held) within its 'data' handler, so one buffer serves every
 * connection whose reads are passed on at once, rather than 64 KiB kept per connection.
 */
const sharedRecycler = new BufferRecycler(READ_SIZE, READ_HEADROOM);

/**
 * A copy of `chunk` in memory of its own, with free headroom in front as every chunk of a recycled
 * socket has (a pooled copy would put other buffers' bytes where the handler may write).
 */
function ownCopy(chunk: Buffer): Buffer {
  const b = Buffer.allocUnsafeSlow(READ_HEADROOM + chunk.length).subarray(READ_HEADROOM);
  chunk.copy(b);
  return b;
}

/**
 * net.connect with recycled reads. Until a 'data' listener is attached, reads are copied aside and
 * the socket pauses, so nothing is lost between connect and the consumer taking over.
 */
export function connectRecycling(options: NetConnectOpts): Socket {
  const recycler = sharedRecycler;
  const early: Buffer[] = [];
  const socket: Socket = connect({
    ...options,
    onread: {
      buffer: recycler.next,
      callback: (n: number, buf: Uint8Array): boolean => {
        const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
        if (socket.listenerCount('data') === 0) {
          early.push(ownCopy(chunk)); // the buffer is about to be reused
          return false; // pause until someone listens
        }
        socket.emit('data', chunk);
        if (poison && !recycler.held) chunk.fill(POISON_BYTE); // returned: nobody may read it now
        return true;
      },
    },
  } as NetConnectOpts);
  (socket as unknown as { [HOLD]: () => void })[HOLD] = recycler.hold;
  socket.on('newListener', (event: string | symbol) => {
    if (event !== 'data' || early.length === 0) return;
    process.nextTick(() => {
      // early chunks are owned copies: no hold is needed for them
      for (const c of early.splice(0)) socket.emit('data', c);
      socket.resume();
    });
  });
  return socket;
}

/**
 * Marks a TLS socket as one that is done with a chunk once its write is dispatched: Node's TLS
 * encrypts what `_write` hands it at once (SSL_write into the socket's own output buffer; what
 * OpenSSL cannot take yet is copied aside), so only chunks still queued in the writable (written
 * while an earlier write was in flight, or corked) or parked while the socket connects are
 * referenced. Without the mark, {@link keepsWrites} counts the chunk in flight as kept: a relay
 * then holds every read while the client is slower than the target, and each held read pins a
 * whole read buffer (headroom included) until the TLS bytes reach the kernel.
 */
export function markEncryptsOnWrite<T extends Duplex & { readonly connecting?: boolean }>(
  tls: T,
): T {
  (tls as unknown as { [KEEPS]: () => boolean })[KEEPS] = function (this: T): boolean {
    // writableBuffer: the chunks waiting behind the one in _write (Node's Writable API)
    const queued = (this as unknown as { readonly writableBuffer: readonly unknown[] })
      .writableBuffer;
    return this.connecting === true || queued.length > 0;
  };
  return tls;
}
