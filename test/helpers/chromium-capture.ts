/**
 * Captures the ClientHellos of Debian's Chromium on loopback: a TCP listener on 127.0.0.1 takes each
 * connection's first TLS record (the ClientHello, whatever its TCP segmentation) and hangs up, while
 * a headless Chromium (playwright-core, `/usr/bin/chromium`) fetches `https://<n>.hello.test:<port>/`
 * (or opens `wss://` WebSockets to them) for distinct names n, each a new connection (`--host-resolver-rules` maps them to 127.0.0.1, so
 * nothing leaves the machine). playwright gives the browser a fresh temporary profile and removes it. The records are returned raw, with the sizes of the TCP reads that
 * carried them, for the parity test (tls-chrome-parity.test.ts) to parse and compare.
 */
import { constants } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { chromiumMissing as missing, launchChromium } from './chromium.js';

export { CHROMIUM } from './chromium.js';

/** Why Chromium cannot run here, or null. */
export function chromiumMissing(): string | null {
  return missing ?? null;
}

export interface CapturedHello {
  /** The first TLS record of the connection (header included). */
  record: Buffer;
  /** The SNI the fetch named (also in the record). */
  name: string;
}

/** The largest first record a capture keeps: a ClientHello is one record of at most 2^14 bytes. */
const MAX_RECORD = 5 + 16384;

/**
 * Starts a loopback listener that records first records and closes; returns it with a `take(n)`
 * that resolves once n records are in (or rejects after `timeoutMs`).
 */
export async function helloSink(): Promise<{
  port: number;
  records: Buffer[];
  take(n: number, timeoutMs: number): Promise<Buffer[]>;
  close(): Promise<void>;
}> {
  const records: Buffer[] = [];
  const waiters: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    const chunks: Buffer[] = [];
    let have = 0;
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      have += d.length;
      const head = chunks.length === 1 ? d : Buffer.concat(chunks);
      if (have >= 5) {
        const need = 5 + head.readUInt16BE(3);
        if (need > MAX_RECORD) return void s.destroy();
        if (have >= need) {
          records.push(Buffer.from(head.subarray(0, need)));
          for (const w of waiters.splice(0)) w();
          s.destroy();
        }
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    records,
    async take(n, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (records.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`only ${records.length} of ${n} ClientHellos captured`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return records.slice(0, n);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Runs headless Chromium and captures `count` ClientHellos (one per fetch, each to a fresh name so
 * every one is a new connection). Bounded: `count` fetches, in batches, within `timeoutMs`.
 */
/** Beyond launchChromium's own: no QUIC, and every *.hello.test name on loopback. */
const CHROMIUM_ARGS = [
  '--disable-quic',
  '--host-resolver-rules=MAP *.hello.test 127.0.0.1, EXCLUDE localhost',
];

/**
 * An HTTPS server of Node's (TLS 1.3, two session tickets per connection, as OpenSSL issues them)
 * that answers every request with `Connection: close`, behind a loopback relay that keeps each
 * connection's first record (the ClientHello). Every connection after the first to the same name
 * is then a resumption attempt. With `tickets: false` (TLS 1.2) it issues no ticket and keeps its
 * sessions by id instead (Node's newSession and resumeSession events over a Map); `sessionsMade`
 * counts the sessions it kept.
 */
export async function ticketServer(
  cert: string,
  key: string,
  version: 'TLSv1.3' | 'TLSv1.2' = 'TLSv1.3',
  tickets = true,
): Promise<{ port: number; records: Buffer[]; sessionsMade(): number; close(): Promise<void> }> {
  const https = createHttpsServer(
    {
      cert,
      key,
      minVersion: version,
      maxVersion: version,
      ...(tickets ? {} : { secureOptions: constants.SSL_OP_NO_TICKET }),
    },
    (req, res) => {
      req.resume();
      res.writeHead(200, {
        connection: 'close',
        'access-control-allow-origin': '*',
        'content-type': 'text/plain',
      });
      res.end('ok');
    },
  );
  https.on('tlsClientError', () => {});
  const kept = new Map<string, Buffer>();
  if (!tickets) {
    https.on('newSession', (id: Buffer, data: Buffer, cb: () => void) => {
      if (kept.size < 64) kept.set(id.toString('hex'), data);
      cb();
    });
    https.on('resumeSession', (id: Buffer, cb: (e: null, d: Buffer | null) => void) =>
      cb(null, kept.get(id.toString('hex')) ?? null),
    );
  }
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  const backend = (https.address() as AddressInfo).port;
  const records: Buffer[] = [];
  const sockets = new Set<Socket>();
  const relay = createServer((c) => {
    const up = connect({ host: '127.0.0.1', port: backend });
    for (const s of [c, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    let head = Buffer.alloc(0);
    const first = (d: Buffer): void => {
      head = Buffer.concat([head, d]);
      if (head.length >= 5 && head.length >= 5 + head.readUInt16BE(3)) {
        records.push(Buffer.from(head.subarray(0, 5 + head.readUInt16BE(3))));
        c.off('data', first);
      } else if (head.length > MAX_RECORD) c.off('data', first);
    };
    c.on('data', first);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
    c.pipe(up).pipe(c);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  return {
    port: (relay.address() as AddressInfo).port,
    records,
    sessionsMade: () => kept.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => relay.close(() => r()));
      https.closeAllConnections();
      await new Promise<void>((r) => https.close(() => r()));
    },
  };
}

/**
 * Has headless Chromium fetch `https://<name>:<port>/` `count` times, one after the other, each on
 * a new connection (the server closes every one), so that every fetch after the first resumes the
 * session the one before left. The certificate's errors are ignored (the relay's certificate is
 * self-signed); Chromium still keeps and offers its sessions then.
 */
export async function chromeSequentialFetches(
  name: string,
  port: number,
  count: number,
  timeoutMs = 60_000,
): Promise<void> {
  const browser = await launchChromium([...CHROMIUM_ARGS, '--ignore-certificate-errors']);
  try {
    const page = await browser.newPage();
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < count && Date.now() < deadline; i++)
      await page.evaluate(async (url) => {
        await (await fetch(url)).text();
      }, `https://${name}:${port}/`);
  } finally {
    await browser.close();
  }
}

export async function captureChromeHellos(
  count: number,
  timeoutMs = 60_000,
  kind: 'fetch' | 'websocket' = 'fetch',
): Promise<Buffer[]> {
  const sink = await helloSink();
  const browser = await launchChromium(CHROMIUM_ARGS);
  try {
    const page = await browser.newPage();
    const deadline = Date.now() + timeoutMs;
    const BATCH = 20;
    let asked = 0;
    while (sink.records.length < count && Date.now() < deadline) {
      const from = asked;
      asked += BATCH;
      await page.evaluate(
        async ([port, from, n, ws]) => {
          await Promise.allSettled(
            Array.from({ length: n }, (_, i) =>
              ws
                ? new Promise((done) => {
                    const w = new WebSocket(`wss://h${from + i}.hello.test:${port}/`);
                    w.onerror = w.onclose = done;
                  })
                : fetch(`https://h${from + i}.hello.test:${port}/`, { mode: 'no-cors' }),
            ),
          );
        },
        [sink.port, from, BATCH, kind === 'websocket'] as const,
      );
      if (asked > count * 3) break;
    }
    return await sink.take(count, Math.max(1, deadline - Date.now()));
  } finally {
    await browser.close();
    await sink.close();
  }
}
