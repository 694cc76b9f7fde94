/**
 * Sockets that read into recycled memory. By default Node gives every socket read a fresh 64 KiB
 * ArrayBuffer, which V8 frees only when a GC happens to run: at hundreds of MB/s a busy proxy carries
 * a hundred MiB of dead read buffers. A socket made here reads into one buffer again and again
 * (`onread`; one buffer shared by all such sockets), and emits each read as an ordinary 'data' event whose chunk is *borrowed*: valid during
 * the 'data' handler only, which may also use the {@link READ_HEADROOM} bytes of the same memory in
 * front of the chunk as scratch. A consumer that keeps a chunk past its handler (queued in a writable,
 * buffered in a readable) must call {@link holdChunks} on the source before returning; the socket then
 * reads into a new buffer and leaves the held one to its holder.
 * @module
 */
import { connect, type NetConnectOpts, type Socket } from 'node:net';

/** The symbol under which a borrowing source exposes its hold function. */
export const HOLD = Symbol.for('ladder.holdChunks');

/** Whether `source` emits borrowed chunks (a socket made here). */
export function lendsChunks(source: unknown): boolean {
  return typeof (source as { [HOLD]?: unknown } | null)?.[HOLD] === 'function';
}

/** Tells a source that emits borrowed chunks that the chunk just received is still referenced. */
export function holdChunks(source: unknown): void {
  const f = (source as { [HOLD]?: () => void } | null)?.[HOLD];
  if (f) f();
}

/**
 * Bytes of one read: 256 bytes short of 64 KiB, so that a read and the framing every transport adds
 * to it (Mux.Cool's two 8-byte headers, a WebSocket header, four Shadowsocks chunks' 34 bytes each)
 * still fit in four TLS records of 16 KiB. A full 64 KiB read became four full records and a fifth
 * of 16 bytes, which the receiver then passed on as a write of its own: that tiny record cost the
 * Mux.Cool client about 40% more CPU per byte in a bulk download (docs/benchmarks.md).
 */
export const READ_SIZE = 64 * 1024 - 256;

/**
 * Memory in front of every recycled read that its 'data' handler may use as scratch (it is lent
 * with the read): room for one Shadowsocks 2022 frame, so that a decoder can put a frame that spans
 * two reads together in front of the second, contiguous with the rest of it (codec/ss-stream.ts).
 */
export const READ_HEADROOM = 0xffff + 2 * 16 + 2;

/** The symbol under which a writable tells whether it still references what was written to it. */
export const KEEPS = Symbol.for('ladder.keepsWrites');

/**
 * Whether `dest` still references a chunk written to it, after write() returned: by default while
 * anything is queued (`writableLength > 0`). A writable that copies what it takes (an encoding
 * Duplex, a Mux.Cool session) answers exactly through {@link KEEPS}: a chunk it has copied and whose
 * callback only waits for the socket below is not referenced, so the read it came from need not be
 * held (which made every read a fresh buffer while the socket below was full).
 */
export function keepsWrites(dest: { readonly writableLength: number }): boolean {
  const f = (dest as { [KEEPS]?: () => boolean })[KEEPS];
  return f ? f.call(dest) : dest.writableLength > 0;
}

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
