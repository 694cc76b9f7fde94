/**
 * A TLS relay for one test connection: the client runs over one end of an in-memory pair (the
 * `socket` option of chromeTlsConnect), the relay joins the other end to a real TLS server on
 * loopback. It forwards both ways, splits each direction into records, keeps the client's first
 * ClientHello, and with `holdServerFinish` holds the server's ChangeCipherSpec and everything after
 * it until the client has sent a record after its own Finished: a client that does TLS False Start
 * (RFC 7918) gets them at once; one that waits for the server's Finished first is let go after a
 * bounded number of event-loop turns with nothing more from it (the client side is in memory, so
 * that count, not a time, decides), and the log shows the order.
 *
 * The log: 'client-finished', 'client-data' (its first application record after the Finished,
 * forwarded), 'server-finish' (the server's ChangeCipherSpec forwarded, at once or when released),
 * in the order they happened.
 */
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { decodeClientHello, type ClientHelloInfo } from '../../src/codec/tls-client-hello.js';
import { duplexPair } from './duplex-pair.js';

/** Event-loop turns a client is given to send data after its Finished before the relay gives up. */
const QUIET_TURNS = 50;

export type RelayEvent = 'client-finished' | 'client-data' | 'server-finish';

export interface TlsRelay {
  /** The client's end: hand it to chromeTlsConnect as `socket`. */
  socket: Duplex;
  log: RelayEvent[];
  /** The client's first ClientHello, once it came. */
  hello(): ClientHelloInfo | undefined;
  /** The session id of the server's ServerHello, once it came. */
  serverSessionId(): Buffer | undefined;
  /** Every record the client sent: its content type and length (header excluded). */
  clientRecords: { type: number; length: number }[];
  close(): void;
}

/** Splits a byte stream into TLS records (type, whole record). */
function recordSplitter(onRecord: (type: number, rec: Buffer) => void): (d: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
      const n = 5 + buf.readUInt16BE(3);
      onRecord(buf[0]!, buf.subarray(0, n));
      buf = buf.subarray(n);
    }
  };
}

export async function tlsRelay(
  port: number,
  o: { holdServerFinish?: boolean } = {},
): Promise<TlsRelay> {
  const [client, mine] = duplexPair();
  const server: Socket = connect(port, '127.0.0.1');
  server.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    server.once('connect', resolve);
    server.once('error', reject);
  });
  server.on('error', () => mine.destroy());
  mine.on('error', () => server.destroy());
  const log: RelayEvent[] = [];
  let hello: ClientHelloInfo | undefined;
  const clientRecords: { type: number; length: number }[] = [];
  let serverSessionId: Buffer | undefined;
  let clientCcs = false;
  let clientFinished = false;
  let clientData = false;
  let held: Buffer[] | null = null;
  let released = !o.holdServerFinish;

  const release = (): void => {
    if (released) return;
    released = true;
    if (held) {
      log.push('server-finish');
      mine.write(Buffer.concat(held));
    }
    held = null;
  };
  /** The client finished and the server's finish is held: it gets a bounded wait for data. */
  const waitForData = async (): Promise<void> => {
    for (let i = 0; i < QUIET_TURNS && !released; i++) await turn();
    release();
  };

  mine.on(
    'data',
    recordSplitter((type, rec) => {
      if (!hello && type === 22) hello = decodeClientHello(rec)?.value;
      clientRecords.push({ type, length: rec.length - 5 });
      server.write(rec);
      if (type === 20) clientCcs = true;
      else if (type === 22 && clientCcs && !clientFinished) {
        clientFinished = true;
        log.push('client-finished');
        if (held) void waitForData();
      } else if (type === 23 && clientFinished && !clientData) {
        clientData = true;
        log.push('client-data');
        release();
      }
    }),
  );
  server.on(
    'data',
    recordSplitter((type, rec) => {
      // A ServerHello in its own record start: type, u24 length, version, random, session id.
      if (!serverSessionId && type === 22 && rec[5] === 2 && rec.length >= 5 + 4 + 2 + 32 + 1)
        serverSessionId = Buffer.from(rec.subarray(44, 44 + rec[43]!));
      // Only a full handshake's: the server's ChangeCipherSpec after the client's (an abbreviated
      // handshake's comes first, and the client cannot finish without it).
      if (!released && type === 20 && !held && clientCcs) {
        held = [];
        if (clientFinished) void waitForData();
      }
      if (held) held.push(rec);
      else {
        if (type === 20 && clientCcs && !log.includes('server-finish')) log.push('server-finish');
        mine.write(rec);
      }
    }),
  );
  mine.on('end', () => server.end());
  server.on('end', () => {
    release();
    mine.end();
  });
  return {
    socket: client,
    log,
    hello: () => hello,
    serverSessionId: () => serverSessionId,
    clientRecords,
    close() {
      server.destroy();
      mine.destroy();
      client.destroy();
    },
  };
}
