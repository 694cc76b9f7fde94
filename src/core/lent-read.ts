/**
 * The lent-read contract, the one seam between sockets that read into recycled memory
 * (stream/recycled-reads.ts) and the code that consumes their reads (transport/relay.ts, the proxy
 * front ends' message reader).
 *
 * A {@link LendingStream} emits each 'data' chunk as a {@link LentChunk}: memory that is valid during
 * the 'data' handler only, because the next read goes into the same memory. A handler that keeps the
 * chunk past its return (queued in a writable, buffered for later) must call {@link holdChunks} on the
 * source before it returns; the source then reads into new memory and leaves the held chunk to its
 * holder. One missed hold lets one connection's next read overwrite bytes another connection is
 * still sending: one user's data leaking to another.
 *
 * The types keep the contract visible: {@link lendsChunks} narrows a stream to a `LendingStream`,
 * and the handlers that receive its reads take a `LentChunk` (a branded Buffer: a plain Buffer is
 * not one, so code that stores chunks for later cannot be handed a lent one without a cast that
 * says so). The relay (transport/relay.ts) and the front ends' message reader are the only
 * consumers; everything else sees ordinary streams. A debug mode poisons every chunk that was not held as soon as its handler returns
 * (stream/recycled-reads.ts `configureLentReads`), so a missed hold shows up as corrupted bytes in
 * a test instead of a rare leak in production; the test suite runs with it on.
 * @module
 */
import type { Duplex } from 'node:stream';

/** The symbol under which a lending source exposes its hold function. */
export const HOLD = Symbol.for('ladder.holdChunks');

/** The symbol under which a writable tells whether it still references what was written to it. */
export const KEEPS = Symbol.for('ladder.keepsWrites');

declare const lent: unique symbol;

/** A 'data' chunk that is valid during its handler only (see the module comment). */
export type LentChunk = Buffer & { readonly [lent]: true };

/** A stream whose 'data' chunks are lent: hold them (see {@link holdChunks}) to keep them. */
export interface LendingStream extends Duplex {
  readonly [HOLD]: () => void;
}

/** Whether `source` lends its 'data' chunks (a socket from stream/recycled-reads.ts, or a wrapper). */
export function lendsChunks(source: unknown): source is LendingStream {
  return typeof (source as { [HOLD]?: unknown } | null)?.[HOLD] === 'function';
}

/** Tells a lending source that the chunk just received is still referenced; a no-op otherwise. */
export function holdChunks(source: unknown): void {
  const f = (source as { [HOLD]?: () => void } | null)?.[HOLD];
  if (f) f();
}

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
