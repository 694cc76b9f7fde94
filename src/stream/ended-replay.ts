/**
 * A connection whose reading side has already ended, as a fresh stream that reads `head` and then
 * ends: for a hand-over that comes after the peer's end was consumed. A Trojan server that waits for
 * the rest of a request sees the client's end (a FIN, or a TLS close_notify) before it knows the
 * bytes are no request; the decoy that then takes the connection would wait for an 'end' that has
 * already gone by, and keep it open, where the same web site alone answers the bytes and closes.
 * Through this stream the site sees what it would have seen itself: the bytes, then the end.
 *
 * What is written goes to `conn`; ending or destroying this stream ends or destroys `conn`, and
 * `conn` closing destroys this stream.
 * @module
 */
import { Duplex } from 'node:stream';

export function endedReplay(conn: Duplex, head: Buffer): Duplex {
  const replay = new Duplex({
    allowHalfOpen: true,
    read() {},
    write(chunk: Buffer, _enc, cb) {
      if (conn.destroyed || !conn.writable) cb();
      else conn.write(chunk, () => cb());
    },
    final(cb) {
      conn.end();
      cb();
    },
    destroy(err, cb) {
      conn.destroy();
      cb(err);
    },
  });
  conn.once('close', () => replay.destroy());
  conn.on('error', () => {});
  if (head.length > 0) replay.push(head);
  replay.push(null);
  return replay;
}
