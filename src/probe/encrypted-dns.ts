/**
 * DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484) through a StreamDialer: the tunnel, for
 * `ladder client --dns-remote tls://…` and `https://…`. The dialer is asked for the resolver's
 * `host:port`, so a host name travels to the far end (the tunnel's server) and is never resolved
 * here. TLS is checked against the CAs Node trusts (its Mozilla list, plus NODE_EXTRA_CA_CERTS), or
 * a given CA; the name checked is the host (sent as SNI, except for an IP address, RFC 6066 §3,
 * whose certificate must name that address).
 *
 * One connection serves successive queries. DoT pipelines them (RFC 7766 §6.2.1.1: two-byte length
 * framing, answers matched by ID, in any order); DoH sends them one after another on an HTTP/1.1
 * keep-alive connection. A connection the server closed is reopened by the next query, and a query
 * that meets a reused connection closing before its answer is sent again once on a new one (a DNS
 * query is idempotent). Each query has its own deadline; at most {@link MAX_PENDING_QUERIES} wait
 * or are under way at once (more fail at once); answers are bounded (a DNS message, 65535 bytes; a
 * DoH response, {@link MAX_DOH_RESPONSE_BYTES}); an idle connection is closed after
 * {@link IDLE_CLOSE_MS}.
 * @module
 */
import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  decodeDnsTcpFrame,
  dnsMessageBytes,
  dnsQuery,
  encodeDnsTcpFrame,
  type DnsMessage,
} from '../codec/dns.js';
import {
  decodeDohResponse,
  dohRequestLength,
  DOH_MEDIA_TYPE,
  encodeDohRequest,
} from '../codec/doh.js';
import { holdChunks, lendsChunks } from '../core/lent-read.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../core/defaults.js';
import { nodeTlsConnect } from '../transport/tls.js';
import { signalWithin } from '../transport/deadline.js';
import type { StreamDialer, Target } from '../transport/types.js';
import {
  answersQuery,
  lookupResult,
  parseDnsMessage,
  type DnsLookup,
  type LookupOptions,
  type Resolver,
} from './dns-client.js';
import { EofFailure, failureOf, TimeoutFailure, type Failure } from './failure.js';

/** Queries waiting or under way on one resolver; more fail at once. */
export const MAX_PENDING_QUERIES = 32;
/** An idle connection (no query under way) is closed after this long. */
export const IDLE_CLOSE_MS = 30_000;
/** Bytes of one DoH response kept while it arrives (head, a 65535-byte body, chunk framing). */
export const MAX_DOH_RESPONSE_BYTES = 128 * 1024;

export interface EncryptedDnsOptions {
  /** How the resolver is reached (the tunnel's dialer). */
  readonly dialer: StreamDialer;
  /** The resolver: a host name is resolved by the dialer's far end. */
  readonly server: Target;
  /** DoH: the request path (and query), e.g. /dns-query. */
  readonly path?: string;
  /** PEM CA certificates to trust instead of Node's (tests); default Node's and NODE_EXTRA_CA_CERTS. */
  readonly ca?: string;
  /** Appended to the address in lookups, e.g. ' (tunnel)'. */
  readonly label?: string;
  readonly maxPending?: number;
  readonly idleMs?: number;
  /** Deadline of opening a connection (dial and TLS handshake). */
  readonly connectTimeoutMs?: number;
}

/** The connection closed before the answer came (a reused connection then gets one retry). */
class ClosedBeforeAnswer extends EofFailure {}

/** A DoH answer that was not 200. */
class HttpStatusFailure extends Error {
  constructor(status: number) {
    super(`DNS over HTTPS: HTTP ${status}`);
  }
}

function formatTarget(t: Target): string {
  return isIPv6(t.host) ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** Rejects with a TimeoutFailure when `signal` aborts first. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  if (signal.aborted) return Promise.reject(new TimeoutFailure(what));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new TimeoutFailure(what));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** The Failure string for an error, looking through a DialError to the TLS error it wraps. */
function failureFrom(err: unknown): Failure {
  if (err instanceof HttpStatusFailure) return 'http_request_failed';
  const direct = failureOf(err);
  const cause = (err as { cause?: unknown } | null)?.cause;
  return direct.startsWith('unknown_failure') && cause !== undefined ? failureOf(cause) : direct;
}

/** Something a resolver connection does: carry queries, say when it has closed. */
interface Connection {
  readonly closed: boolean;
  /** Queries answered on it so far. */
  readonly answered: number;
  /** Queries under way on it. */
  readonly busy: number;
  close(): void;
}

/**
 * The connection handling both resolvers share: one connection at a time, opened on demand by the
 * first query that needs it, shared by the queries that arrive while it opens, closed when idle.
 */
abstract class PersistentResolver<C extends Connection> implements Resolver {
  readonly engine = 'tcp' as const;
  readonly address: string;
  protected readonly o: EncryptedDnsOptions;
  #conn: C | undefined;
  #opening: Promise<C> | undefined;
  #inFlight = 0;
  #idle: NodeJS.Timeout | undefined;

  constructor(scheme: string, o: EncryptedDnsOptions) {
    this.o = o;
    this.address = `${scheme}://${formatTarget(o.server)}${o.path ?? ''}${o.label ?? ''}`;
  }

  protected abstract readonly alpn: string[];
  protected abstract wrap(tls: Duplex, onClosed: () => void): C;
  /** Sends `query` on `conn` and resolves its answer. */
  protected abstract ask(
    conn: C,
    query: DnsMessage,
    signal: AbortSignal,
  ): Promise<{ m: DnsMessage; raw: Buffer }>;
  /** The query ID to use (DoT: random and unused; DoH: 0, RFC 8484 §4.1). */
  protected abstract queryId(conn: C | undefined): number;
  /** Waits for the query's turn (DoH: one at a time); `end` gives the turn back. */
  protected begin(_signal: AbortSignal): Promise<void> {
    return Promise.resolve();
  }
  protected end(): void {}

  /** Closes the open connection, if any (queries under way fail). */
  close(): void {
    this.#stopIdle();
    this.#conn?.close();
  }

  async lookup(hostname: string, qtype: number, o: LookupOptions): Promise<DnsLookup> {
    const now = o.now ?? (() => performance.now());
    const base = { hostname, qtype, engine: this.engine, resolverAddress: this.address, t0: now() };
    const max = this.o.maxPending ?? MAX_PENDING_QUERIES;
    if (this.#inFlight >= max)
      return lookupResult(base, now(), undefined, `unknown_failure: over ${max} queries pending`);
    this.#inFlight++;
    this.#stopIdle();
    const step = signalWithin(o.timeoutMs, o.signal);
    let began = false;
    try {
      await this.begin(step.signal);
      began = true;
      for (let attempt = 0; ; attempt++) {
        const conn = await untilAborted(this.#connection(), step.signal, 'DNS connection');
        const reused = conn.answered > 0;
        const query = dnsQuery(this.queryId(conn), hostname, qtype);
        try {
          const a = await this.ask(conn, query, step.signal);
          return lookupResult(base, now(), a, null);
        } catch (err) {
          if (attempt === 0 && reused && err instanceof ClosedBeforeAnswer && !step.signal.aborted)
            continue;
          throw err;
        }
      }
    } catch (err) {
      const f: Failure = step.timedOut() ? 'generic_timeout_error' : failureFrom(err);
      return lookupResult(base, now(), undefined, f);
    } finally {
      if (began) this.end();
      step.clear();
      this.#inFlight--;
      this.#armIdle();
    }
  }

  #connection(): Promise<C> {
    if (this.#conn && !this.#conn.closed) return Promise.resolve(this.#conn);
    if (!this.#opening) {
      const opening = this.#open().then(
        (c) => {
          if (this.#opening === opening) this.#opening = undefined;
          this.#conn = c;
          this.#armIdle();
          return c;
        },
        (err: unknown) => {
          if (this.#opening === opening) this.#opening = undefined;
          throw err;
        },
      );
      // every waiting query may have given up by the time it fails: never an unhandled rejection
      opening.catch(() => undefined);
      this.#opening = opening;
    }
    return this.#opening;
  }

  async #open(): Promise<C> {
    const timeoutMs = this.o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const step = signalWithin(timeoutMs, undefined, { unref: true });
    let raw: Duplex | undefined;
    try {
      raw = await this.o.dialer.dial(this.o.server, step.signal);
      // An error below ends the TLS connection above, which reports it to the queries.
      raw.on('error', () => undefined);
      // Node's TLS copies each chunk of a JS stream as it arrives; holding lent reads anyway keeps
      // this control connection correct whatever TLS does with them, at a few buffers a query.
      if (lendsChunks(raw)) {
        const r = raw;
        r.prependListener('data', () => holdChunks(r));
      }
      const tls = await nodeTlsConnect(
        this.o.server,
        {
          sni: this.o.server.host,
          alpn: this.alpn,
          socket: raw,
          timeoutMs,
          ...(this.o.ca !== undefined ? { ca: this.o.ca } : {}),
        },
        step.signal,
      );
      const under = raw;
      let c: C | undefined = undefined;
      const conn = this.wrap(tls, () => {
        under.destroy();
        if (this.#conn === c) this.#conn = undefined;
      });
      c = conn;
      return conn;
    } catch (err) {
      raw?.destroy();
      throw step.timedOut() ? new TimeoutFailure('DNS connection') : err;
    } finally {
      step.clear();
    }
  }

  #stopIdle(): void {
    if (this.#idle) clearTimeout(this.#idle);
    this.#idle = undefined;
  }

  #armIdle(): void {
    this.#stopIdle();
    const c = this.#conn;
    if (!c || c.closed || this.#inFlight > 0 || c.busy > 0) return;
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      if (this.#conn === c && this.#inFlight === 0 && c.busy === 0) c.close();
    }, this.o.idleMs ?? IDLE_CLOSE_MS);
    this.#idle.unref();
  }
}

interface PendingQuery {
  readonly query: DnsMessage;
  resolve(a: { m: DnsMessage; raw: Buffer }): void;
  reject(err: Error): void;
}

/** One DoT connection: framed queries out, framed answers in, matched by ID. */
class DotConnection implements Connection {
  readonly pending = new Map<number, PendingQuery>();
  closed = false;
  answered = 0;
  readonly #tls: Duplex;
  readonly #onClosed: () => void;
  #buf: Buffer = Buffer.alloc(0);

  constructor(tls: Duplex, onClosed: () => void) {
    this.#tls = tls;
    this.#onClosed = onClosed;
    tls.on('data', (c: Buffer) => this.#onData(c));
    tls.once('end', () =>
      this.#fail(new ClosedBeforeAnswer('DNS over TLS: closed before the answer')),
    );
    tls.once('close', () =>
      this.#fail(new ClosedBeforeAnswer('DNS over TLS: closed before the answer')),
    );
    tls.on('error', (err) => this.#fail(err));
  }

  get busy(): number {
    return this.pending.size;
  }

  send(p: PendingQuery): void {
    this.pending.set(p.query.id, p);
    const q = dnsMessageBytes(p.query);
    const frame = Buffer.alloc(q.length + 2);
    encodeDnsTcpFrame(q, frame, 0);
    this.#tls.write(frame);
  }

  close(): void {
    this.#fail(new ClosedBeforeAnswer('DNS over TLS: closed'));
  }

  #onData(c: Buffer): void {
    // At most one partial frame (≤ 65537 bytes) stays between reads.
    this.#buf = this.#buf.length === 0 ? c : Buffer.concat([this.#buf, c]);
    for (;;) {
      const f = decodeDnsTcpFrame(this.#buf, 0);
      if (f === null) return;
      this.#buf = this.#buf.subarray(f.bytesRead);
      const m = parseDnsMessage(f.value);
      if (!m) return this.#fail(new Error('DNS over TLS: an answer that does not decode'));
      const p = this.pending.get(m.id);
      // an ID nobody waits for: the late answer to a query that timed out
      if (!p || !answersQuery(m, p.query)) continue;
      this.pending.delete(m.id);
      this.answered++;
      p.resolve({ m, raw: Buffer.from(f.value) });
    }
  }

  #fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.#tls.destroy();
    this.#onClosed();
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** DNS over TLS (RFC 7858) through a StreamDialer, queries pipelined on one connection. */
export class DotResolver extends PersistentResolver<DotConnection> {
  protected readonly alpn = ['dot'];

  constructor(o: EncryptedDnsOptions) {
    super('tls', o);
  }

  protected wrap(tls: Duplex, onClosed: () => void): DotConnection {
    return new DotConnection(tls, onClosed);
  }

  protected queryId(conn: DotConnection | undefined): number {
    for (;;) {
      const id = randomInt(0x10000);
      if (!conn?.pending.has(id)) return id;
    }
  }

  protected ask(
    conn: DotConnection,
    query: DnsMessage,
    signal: AbortSignal,
  ): Promise<{ m: DnsMessage; raw: Buffer }> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        // the answer may still come; it is dropped as an unknown ID
        if (conn.pending.get(query.id) === p) conn.pending.delete(query.id);
        reject(new TimeoutFailure('DNS over TLS'));
      };
      const p: PendingQuery = {
        query,
        resolve: (a) => {
          signal.removeEventListener('abort', onAbort);
          resolve(a);
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      if (signal.aborted) return reject(new TimeoutFailure('DNS over TLS'));
      if (conn.closed) return reject(new ClosedBeforeAnswer('DNS over TLS: closed'));
      signal.addEventListener('abort', onAbort, { once: true });
      conn.send(p);
    });
  }
}

/** One DoH connection: one request at a time, its response read whole. */
class DohConnection implements Connection {
  closed = false;
  answered = 0;
  busy = 0;
  readonly #tls: Duplex;
  readonly #onClosed: () => void;
  #chunks: Buffer[] = [];
  #size = 0;
  #current: ((ended: boolean, err?: Error) => void) | undefined;

  constructor(tls: Duplex, onClosed: () => void) {
    this.#tls = tls;
    this.#onClosed = onClosed;
    tls.on('data', (c: Buffer) => {
      this.#chunks.push(c);
      this.#size += c.length;
      if (this.#current) this.#current(false);
      else this.#fail(new Error('DNS over HTTPS: bytes nobody asked for'));
    });
    tls.once('end', () => this.#end());
    tls.once('close', () => this.#end());
    tls.on('error', (err) => this.#fail(err));
  }

  close(): void {
    this.#fail(new ClosedBeforeAnswer('DNS over HTTPS: closed'));
  }

  /** Sends one request; resolves the response's DNS message bytes and whether it was a 200. */
  exchange(
    request: Buffer,
    signal: AbortSignal,
  ): Promise<{ status: number; mediaType: string; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.#current = undefined;
        this.busy = 0;
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        // a response may be under way: this connection cannot carry the next request
        this.#fail(new TimeoutFailure('DNS over HTTPS'));
        reject(new TimeoutFailure('DNS over HTTPS'));
      };
      this.#current = (ended, err) => {
        if (err) {
          done();
          return reject(err);
        }
        const buf =
          this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#size);
        this.#chunks = buf.length > 0 ? [buf] : [];
        let r;
        try {
          if (this.#size > MAX_DOH_RESPONSE_BYTES)
            throw new Error(`DNS over HTTPS: a response over ${MAX_DOH_RESPONSE_BYTES} bytes`);
          r = decodeDohResponse(buf, 0, ended);
        } catch (e) {
          done();
          this.#fail(e as Error);
          return reject(e as Error);
        }
        if (r === null) {
          if (ended) {
            done();
            reject(new ClosedBeforeAnswer('DNS over HTTPS: closed before the answer'));
          }
          return;
        }
        done();
        this.answered++;
        const rest = buf.length - r.bytesRead;
        const body = Buffer.from(r.value.body);
        this.#chunks = [];
        this.#size = 0;
        if (!r.value.keepAlive || rest > 0) this.close();
        resolve({ status: r.value.status, mediaType: r.value.mediaType, body });
      };
      if (this.closed) return reject(new ClosedBeforeAnswer('DNS over HTTPS: closed'));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.busy = 1;
      this.#tls.write(request);
    });
  }

  #end(): void {
    if (this.closed) return;
    if (this.#current) this.#current(true);
    this.#fail(new ClosedBeforeAnswer('DNS over HTTPS: closed before the answer'));
  }

  #fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.#tls.destroy();
    this.#onClosed();
    const c = this.#current;
    this.#current = undefined;
    this.#chunks = [];
    c?.(false, err);
  }
}

/** DNS over HTTPS (RFC 8484): POST over HTTP/1.1, one request at a time on a kept-alive connection. */
export class DohResolver extends PersistentResolver<DohConnection> {
  protected readonly alpn = ['http/1.1'];
  readonly #authority: string;
  readonly #path: string;
  /** Queries waiting for the connection, in order. */
  readonly #waiting: (() => void)[] = [];
  #busy = false;

  constructor(o: EncryptedDnsOptions) {
    super('https', o);
    const host = isIPv6(o.server.host) ? `[${o.server.host}]` : o.server.host;
    this.#authority = o.server.port === 443 ? host : `${host}:${o.server.port}`;
    this.#path = o.path ?? '/dns-query';
  }

  protected wrap(tls: Duplex, onClosed: () => void): DohConnection {
    return new DohConnection(tls, onClosed);
  }

  protected queryId(): number {
    return 0; // RFC 8484 §4.1: ID 0, for HTTP caches
  }

  protected async ask(
    conn: DohConnection,
    query: DnsMessage,
    signal: AbortSignal,
  ): Promise<{ m: DnsMessage; raw: Buffer }> {
    const message = dnsMessageBytes(query);
    const request = Buffer.alloc(dohRequestLength(this.#authority, this.#path, message));
    encodeDohRequest(this.#authority, this.#path, message, request, 0);
    const r = await conn.exchange(request, signal);
    if (r.status !== 200) throw new HttpStatusFailure(r.status);
    if (r.mediaType !== DOH_MEDIA_TYPE)
      throw new Error(
        `DNS over HTTPS: a '${r.mediaType.slice(0, 40)}' answer, not ${DOH_MEDIA_TYPE}`,
      );
    const m = parseDnsMessage(r.body);
    if (!m || !answersQuery(m, query))
      throw new Error('DNS over HTTPS: the answer is not a DNS answer to the query');
    return { m, raw: r.body };
  }

  /** Waits for this query's turn on the connection (first come, first served). */
  protected override begin(signal: AbortSignal): Promise<void> {
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const go = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(go);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(new TimeoutFailure('DNS over HTTPS'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(go);
    });
  }

  protected override end(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#busy = false;
  }
}
