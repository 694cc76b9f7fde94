/**
 * Fetches a small document (an online key, a key document, a client release) over a given
 * StreamDialer: the tunnel when one is up, or a direct dialer. Everything a remote server controls is
 * capped: one deadline for the whole fetch (connect, TLS, redirects, body), a redirect limit, and a
 * body size limit checked as bytes arrive, so a server that stalls, loops or sends 100 MB costs at
 * most the deadline and the cap. HTTPS is verified against the system's CAs (NODE_EXTRA_CA_CERTS
 * adds more); a plain http:// URL is refused unless allowed, as the answer holds secrets.
 * @module
 */
import { isIP } from 'node:net';
import { request, type IncomingMessage, type RequestOptions } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';
import { LadderError } from '../errors.js';
import { holdChunks, lendsChunks } from '../core/lent-read.js';
import type { StreamDialer } from '../transport/types.js';

export interface CappedFetchOptions {
  readonly dialer: StreamDialer;
  /** Deadline of the whole fetch, redirects included. */
  readonly timeoutMs?: number;
  readonly maxRedirects?: number;
  readonly maxBytes?: number;
  /** The message when the body is over maxBytes (default: says how large it may be). */
  readonly tooLarge?: string;
  /** Accept plain http:// (for a signed document, whose signature is what is trusted). */
  readonly allowHttp?: boolean;
  /** Extra CA certificates (PEM) for HTTPS. */
  readonly ca?: string | readonly string[];
  readonly signal?: AbortSignal;
}

export const FETCH_TIMEOUT_MS = 20_000;
export const FETCH_MAX_REDIRECTS = 5;
export const FETCH_MAX_BYTES = 64 * 1024;

export interface Fetched {
  readonly body: Buffer;
  /** The URL the body came from, after redirects. */
  readonly url: string;
}

function fail(why: string, cause?: unknown): LadderError {
  return new LadderError('ERR_ONLINE_KEY', why, cause === undefined ? undefined : { cause });
}

/** Where a URL is, for messages: scheme and host only (a path may be a secret). */
export function urlOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'an invalid URL';
  }
}

/** GETs `url`, following redirects; resolves the body of a 200 answer. */
export async function cappedFetch(url: string, o: CappedFetchOptions): Promise<Fetched> {
  const timeoutMs = o.timeoutMs ?? FETCH_TIMEOUT_MS;
  const maxRedirects = o.maxRedirects ?? FETCH_MAX_REDIRECTS;
  const maxBytes = o.maxBytes ?? FETCH_MAX_BYTES;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = o.signal ? AbortSignal.any([o.signal, deadline]) : deadline;
  let at = url;
  for (let hop = 0; ; hop++) {
    let u: URL;
    try {
      u = new URL(at);
    } catch {
      throw fail(`'${at.slice(0, 80)}' is not a URL`);
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && o.allowHttp))
      throw fail(
        `${urlOrigin(at)}: only https:// is fetched (the answer holds secrets)${hop > 0 ? ' (a redirect led there)' : ''}`,
      );
    const res = await getOnce(u, o, signal, timeoutMs);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.destroy();
      if (hop >= maxRedirects)
        throw fail(`${urlOrigin(url)}: more than ${maxRedirects} redirects (a redirect loop?)`);
      at = new URL(res.headers.location, u).href;
      continue;
    }
    if (status !== 200) {
      res.destroy();
      throw fail(`${urlOrigin(at)} answered HTTP ${status}, not the document`);
    }
    const body = await readCapped(res, maxBytes, o.tooLarge, at, signal, timeoutMs);
    return { body, url: at };
  }
}

function aborted(signal: AbortSignal, timeoutMs: number, url: URL): LadderError {
  const r: unknown = signal.reason;
  return r instanceof DOMException && r.name === 'TimeoutError'
    ? fail(`${url.origin}: no complete answer within ${timeoutMs / 1000} s`)
    : fail(`${url.origin}: cancelled`);
}

function getOnce(
  u: URL,
  o: CappedFetchOptions,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<IncomingMessage> {
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  return new Promise<IncomingMessage>((resolve, reject) => {
    if (signal.aborted) return reject(aborted(signal, timeoutMs, u));
    const req = request({
      host,
      port,
      path: `${u.pathname}${u.search}`,
      method: 'GET',
      headers: { Host: u.host, Accept: '*/*', 'User-Agent': 'ladder', Connection: 'close' },
      signal,
      createConnection: (_opts: unknown, cb: (err: Error | null, s?: Duplex) => void) => {
        o.dialer.dial({ host, port }, signal).then(
          (raw) => {
            // The body is kept past each 'data' handler: hold lent reads.
            if (lendsChunks(raw)) raw.prependListener('data', () => holdChunks(raw));
            if (u.protocol !== 'https:') return cb(null, raw);
            const tls = tlsConnect({
              socket: raw,
              // RFC 6066: no SNI for an address; the certificate is still checked against it.
              ...(isIP(host) ? {} : { servername: host }),
              ALPNProtocols: ['http/1.1'],
              ...(o.ca ? { ca: [...(Array.isArray(o.ca) ? o.ca : [o.ca])] } : {}),
            });
            tls.once('secureConnect', () => cb(null, tls));
            tls.once('error', (err) => {
              raw.destroy();
              cb(err);
            });
          },
          (err: unknown) => cb(err as Error),
        );
        return undefined;
      },
    } as unknown as RequestOptions);
    req.once('response', resolve);
    req.once('error', (err) =>
      reject(
        signal.aborted
          ? aborted(signal, timeoutMs, u)
          : fail(`${u.origin}: ${(err as Error).message}`, err),
      ),
    );
    req.end();
  });
}

/** A byte count for messages: KiB or MiB when it is a whole number of them. */
function sizeText(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / 1024 / 1024} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

function readCapped(
  res: IncomingMessage,
  maxBytes: number,
  tooLarge: string | undefined,
  url: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const tooBig = () =>
      fail(
        `${urlOrigin(url)}: ${tooLarge ?? `the answer is over ${sizeText(maxBytes)}, more than expected`}`,
      );
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.destroy();
      return reject(tooBig());
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = () => {
      res.destroy();
      reject(aborted(signal, timeoutMs, new URL(url)));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        signal.removeEventListener('abort', onAbort);
        res.destroy();
        return reject(tooBig());
      }
      chunks.push(c);
    });
    res.once('end', () => {
      signal.removeEventListener('abort', onAbort);
      resolve(Buffer.concat(chunks));
    });
    res.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(
        signal.aborted
          ? aborted(signal, timeoutMs, new URL(url))
          : fail(`${urlOrigin(url)}: ${err.message}`, err),
      );
    });
  });
}
