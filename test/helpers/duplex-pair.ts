/**
 * Two connected in-memory Duplex streams: what one writes, the other reads. Node 20 lacks
 * `stream.duplexPair` (added in 22.6), so tests use this.
 */
import { Duplex } from 'node:stream';

export function duplexPair(): [Duplex, Duplex] {
  const make = (other: () => Duplex): Duplex =>
    new Duplex({
      read() {
        /* data is pushed by the peer's write */
      },
      write(chunk: Buffer, _enc, cb) {
        other().push(chunk);
        cb();
      },
      final(cb) {
        other().push(null);
        cb();
      },
    });
  const pair: Duplex[] = [];
  pair.push(
    make(() => pair[1]!),
    make(() => pair[0]!),
  );
  return [pair[0]!, pair[1]!];
}
