/**
 * The user's side of the path benchmark (bench/path.ts), run inside the lab's client namespace:
 * requests to the lab's site through a local SOCKS5 proxy (the proxy resolves the name), as a
 * browser or a download manager makes them. Prints one JSON line with the result.
 *
 *   --mode ttfb   one fresh connection: SOCKS5 handshake, CONNECT, `GET /bytes/1`; ms from connect()
 *                 to the response's first byte
 *   --mode page   a page load: the HTML document (50 KB), then 30 resources of 2–200 KB over at most
 *                 6 keep-alive connections to the host (the document's connection among them), as a
 *                 browser does over HTTP/1.1; ms to the last byte of the last resource. --https runs
 *                 TLS to the origin inside the tunnel. Also each resource's connection, size and
 *                 request and completion times (`trace`), to tell a stall of one connection from one
 *                 of all.
 *   --mode bulk   one download of --bytes, cut at --bulk-s seconds after the first byte (on a lossy
 *                 path a loss-based sender may need far longer than that); Mbit/s of the body read
 *                 over the time from the first byte to the last one read
 * With --direct <address> instead of --socks (a full-device VPN), it connects to the origin's
 * address itself (its route leads through the tunnel) and sends the name only in Host and SNI.
 * Every operation is bounded by --timeout-s; a failure prints {"error": …} and exits 1.
 * @module
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    socks: { type: 'string' },
    direct: { type: 'string' },
    host: { type: 'string', default: 'allowed.lab' },
    mode: { type: 'string', default: 'ttfb' },
    https: { type: 'boolean', default: false },
    ca: { type: 'string' },
    bytes: { type: 'string', default: String(100 * 1024 * 1024) },
    'bulk-s': { type: 'string', default: '30' },
    'timeout-s': { type: 'string', default: '120' },
  },
});

const HTML_BYTES = 50 * 1024;
const RESOURCES = 30;
const MAX_CONNS_PER_HOST = 6;

/**
 * The page's resources: 30 sizes from 2 to 200 KB, log-uniform from a fixed sequence, so every
 * setup fetches the same page (about 1.5 MB in all, near a median web page's weight).
 */
export function resourceSizes(): number[] {
  const out: number[] = [];
  let x = 0x2545f491;
  for (let i = 0; i < RESOURCES; i++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    x = (x ^ (x >>> 12)) >>> 0;
    const u = x / 2 ** 32;
    out.push(Math.round(2048 * Math.pow(100, u)));
  }
  return out;
}

function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** Reads exactly what the caller asks for from a socket, from a queue of chunks. */
class Reader {
  #chunks: Buffer[] = [];
  #len = 0;
  #wake: (() => void) | undefined;
  #error: Error | undefined;
  #ended = false;
  /** Bytes received so far, and when the last of them came (for an error's detail). */
  received = 0;
  lastByteAt = 0;
  onFirstByte: (() => void) | undefined;

  constructor(s: Socket) {
    s.on('data', (d: Buffer) => {
      this.onFirstByte?.();
      this.onFirstByte = undefined;
      this.#chunks.push(d);
      this.#len += d.length;
      this.received += d.length;
      this.lastByteAt = performance.now();
      this.#wake?.();
    });
    s.on('end', () => {
      this.#ended = true;
      this.#wake?.();
    });
    s.on('error', (e) => {
      this.#error = e;
      this.#wake?.();
    });
  }

  async #more(): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#ended) throw new Error('connection closed early');
    await new Promise<void>((r) => (this.#wake = r));
    this.#wake = undefined;
  }

  async take(n: number): Promise<Buffer> {
    while (this.#len < n) await this.#more();
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = all.length > n ? [all.subarray(n)] : [];
    this.#len -= n;
    return all.subarray(0, n);
  }

  /** Discards n bytes without joining them. */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.#chunks.length === 0) await this.#more();
      const c = this.#chunks[0];
      if (!c) continue;
      if (c.length <= left) {
        this.#chunks.shift();
        left -= c.length;
        this.#len -= c.length;
      } else {
        this.#chunks[0] = c.subarray(left);
        this.#len -= left;
        left = 0;
      }
    }
  }

  async until(sep: string, max = 64 * 1024): Promise<Buffer> {
    for (;;) {
      const all = Buffer.concat(this.#chunks);
      this.#chunks = all.length ? [all] : [];
      const i = all.indexOf(sep);
      if (i >= 0) return this.take(i + sep.length);
      if (all.length > max) throw new Error(`no '${JSON.stringify(sep)}' in ${max} bytes`);
      await this.#more();
    }
  }
}

interface Conn {
  socket: Socket;
  reader: Reader;
  /** Requests sent on it so far. */
  requests?: number;
}

/**
 * A TCP connection through the SOCKS5 proxy to host:port (the name resolved by the proxy), or with
 * --direct straight to that address and port.
 */
async function socksConnect(host: string, port: number): Promise<Conn> {
  const [ph, pp] = values.direct ? [values.direct, String(port)] : values.socks!.split(':');
  const s = connect({ host: ph, port: Number(pp), noDelay: true });
  const r = new Reader(s);
  await new Promise<void>((res, rej) => {
    s.once('connect', res);
    s.once('error', rej);
  });
  if (values.direct) return { socket: s, reader: r };
  const name = Buffer.from(host);
  // greeting, then the request (the proxy answers the greeting on loopback: no path round trip)
  s.write(Buffer.from([5, 1, 0]));
  const greet = await r.take(2);
  if (greet[1] !== 0) throw new Error('SOCKS5 proxy refused no-auth');
  s.write(
    Buffer.concat([
      Buffer.from([5, 1, 0, 3, name.length]),
      name,
      Buffer.from([port >> 8, port & 0xff]),
    ]),
  );
  const head = await r.take(4);
  if (head[1] !== 0) throw new Error(`SOCKS5 CONNECT failed with reply ${head[1]}`);
  const alen = head[3] === 1 ? 4 : head[3] === 4 ? 16 : (await r.take(1))[0]!;
  await r.take(alen + 2);
  return { socket: s, reader: r };
}

async function originConn(): Promise<Conn> {
  const host = values.host!;
  const c = await socksConnect(host, values.https ? 443 : 80);
  if (!values.https) return c;
  // the plain reader let go of the socket: TLS takes it from here
  c.socket.removeAllListeners('data');
  const t = tlsConnect({
    socket: c.socket,
    servername: host,
    ca: values.ca ? readFileSync(values.ca) : undefined,
  });
  const r = new Reader(t);
  await new Promise<void>((res, rej) => {
    t.once('secureConnect', res);
    t.once('error', rej);
  });
  return { socket: t as unknown as Socket, reader: r };
}

/**
 * One request on a keep-alive connection; resolves when the whole body is read. A failure says
 * which request of the connection it was, how much of its response had come and when the
 * connection last delivered a byte, so that a stall can be told from a close.
 */
async function get(c: Conn, path: string): Promise<number> {
  const n = (c.requests = (c.requests ?? 0) + 1);
  const sent = performance.now();
  const before = c.reader.received;
  const lastBefore = c.reader.lastByteAt;
  try {
    c.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${values.host}\r\nAccept: */*\r\n\r\n`);
    const head = (await c.reader.until('\r\n\r\n')).toString('latin1');
    if (!/^HTTP\/1\.1 200/.test(head)) throw new Error(`origin said ${head.split('\r\n')[0]}`);
    const len = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN);
    if (!Number.isFinite(len)) throw new Error('origin sent no Content-Length');
    await c.reader.skip(len);
    return len;
  } catch (err) {
    const now = performance.now();
    const r = c.reader;
    throw new Error(
      `${(err as Error).message} (request ${n} of its connection, ${path}: ` +
        `${r.received - before} bytes of the response in ${(now - sent).toFixed(0)} ms; ` +
        `the connection's previous byte ${lastBefore ? (sent - lastBefore).toFixed(0) : '-'} ms ` +
        `before the request, its last ${r.lastByteAt ? (now - r.lastByteAt).toFixed(0) : '-'} ms before this)`,
      { cause: err },
    );
  }
}

async function ttfb(): Promise<Record<string, number>> {
  const t0 = performance.now();
  const c = await socksConnect(values.host!, 80);
  const socksMs = performance.now() - t0;
  let first = 0;
  c.reader.onFirstByte = () => (first = performance.now());
  await get(c, '/bytes/1');
  c.socket.destroy();
  return { ttfbMs: first - t0, socksMs };
}

async function page(): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const conns: Conn[] = [await originConn()];
  await get(conns[0]!, `/bytes/${HTML_BYTES}`);
  const docMs = performance.now() - t0;
  const queue = resourceSizes();
  let bytes = HTML_BYTES;
  // Per resource: [connection, size, ms from the page's start to its request, to its last byte].
  const trace: [number, number, number, number][] = [];
  const worker = async (c: Conn | undefined): Promise<void> => {
    if (queue.length === 0) return;
    const conn = c ?? (await originConn());
    if (!c) conns.push(conn);
    const k = conns.indexOf(conn);
    for (let size = queue.shift(); size !== undefined; size = queue.shift()) {
      const sent = performance.now() - t0;
      bytes += await get(conn, `/bytes/${size}`);
      trace.push([k, size, Math.round(sent), Math.round(performance.now() - t0)]);
    }
  };
  await Promise.all([
    worker(conns[0]),
    ...Array.from({ length: MAX_CONNS_PER_HOST - 1 }, () => worker(undefined)),
  ]);
  const ms = performance.now() - t0;
  for (const c of conns) c.socket.destroy();
  return { pageMs: ms, bytes, connections: conns.length, docMs: Math.round(docMs), trace };
}

async function bulk(): Promise<Record<string, number>> {
  const n = Number(values.bytes);
  const capMs = Number(values['bulk-s']) * 1000;
  const c = await socksConnect(values.host!, 80);
  let first = 0;
  let last = 0;
  let got = 0;
  c.socket.write(`GET /bytes/${n} HTTP/1.1\r\nHost: ${values.host}\r\nConnection: close\r\n\r\n`);
  c.socket.removeAllListeners('data');
  await new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    c.socket.on('data', (d: Buffer) => {
      last = performance.now();
      if (first === 0) {
        first = last;
        timer = setTimeout(resolve, capMs);
      }
      got += d.length;
    });
    c.socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    c.socket.once('error', reject);
  });
  c.socket.destroy();
  const s = (last - first) / 1000;
  return { mbps: (got * 8) / s / 1e6, seconds: s, bytes: got, complete: got >= n ? 1 : 0 };
}

async function main(): Promise<void> {
  const ms = Number(values['timeout-s']) * 1000;
  const work: () => Promise<Record<string, unknown>> =
    values.mode === 'page' ? page : values.mode === 'bulk' ? bulk : ttfb;
  try {
    const r = await deadline(work(), ms, values.mode!);
    console.log(JSON.stringify(r));
    process.exit(0);
  } catch (err) {
    console.log(JSON.stringify({ error: (err as Error).message }));
    process.exit(1);
  }
}

if (values.socks || values.direct) void main();
