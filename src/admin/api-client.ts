/**
 * A client for a Ladder (or Outline) management API, as `ladder keys --api URL --cert-sha256 HEX`
 * uses it: HTTPS with the certificate pinned by its SHA-256, as Outline Manager pins it, so a
 * self-signed server is trusted exactly and nothing else is.
 * @module
 */
import { request } from 'node:https';
import { timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { LadderError } from '../errors.js';

/** How long a handshake, and then an answer, may take. */
const TIMEOUT_MS = 15_000;

export interface ApiReply {
  status: number;
  body: unknown;
}

export class ApiClient {
  readonly #base: URL;
  readonly #pin: string;

  constructor(apiUrl: string, certSha256: string) {
    try {
      this.#base = new URL(apiUrl);
    } catch {
      throw new LadderError(
        'ERR_USAGE',
        `--api '${apiUrl}' is not a URL; it looks like https://host:port/SecretPath`,
      );
    }
    if (this.#base.protocol !== 'https:')
      throw new LadderError(
        'ERR_USAGE',
        '--api must be an https:// URL (the management API is served over TLS)',
      );
    const pin = certSha256.replace(/:/g, '').toUpperCase();
    if (!/^[0-9A-F]{64}$/.test(pin))
      throw new LadderError(
        'ERR_USAGE',
        '--cert-sha256 must be the 64 hex digits the server printed as certSha256',
      );
    this.#pin = pin;
  }

  /**
   * Sends one request. The certificate is checked when the TLS handshake completes, before the
   * request line (which carries the secret path) or the body is written: with a wrong pin the server
   * sees a handshake and a close, nothing else.
   */
  async call(method: string, path: string, body?: unknown): Promise<ApiReply> {
    const url = new URL(this.#base.pathname.replace(/\/$/, '') + path, this.#base);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const socket = await this.#connectPinned(url);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          // The verified socket carries this request only; no agent may swap in another one.
          createConnection: () => socket,
          timeout: TIMEOUT_MS,
          headers: data
            ? { 'content-type': 'application/json', 'content-length': data.length }
            : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = text;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)));
      req.on('error', (err) => {
        socket.destroy();
        reject(
          new LadderError(
            'ERR_API',
            `cannot reach the management API at ${url.host}: ${err.message}`,
          ),
        );
      });
      req.end(data);
    });
  }

  /**
   * A TLS connection whose certificate has the pinned SHA-256. The pin replaces CA verification
   * (the API's certificate is self-signed), so chain errors are ignored and the fingerprint decides,
   * on 'secureConnect', while nothing has been written yet.
   */
  #connectPinned(url: URL): Promise<TLSSocket> {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port || 443);
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        host,
        port,
        ...(isIP(host) === 0 ? { servername: host } : {}),
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
      });
      const fail = (err: LadderError): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () =>
          fail(
            new LadderError(
              'ERR_API',
              `cannot reach the management API at ${url.host}: no TLS handshake within ${TIMEOUT_MS / 1000} s`,
            ),
          ),
        TIMEOUT_MS,
      );
      const onError = (err: Error): void =>
        fail(
          new LadderError(
            'ERR_API',
            `cannot reach the management API at ${url.host}: ${err.message}`,
          ),
        );
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        const fp = socket.getPeerCertificate().fingerprint256?.replace(/:/g, '') ?? '';
        const got = Buffer.from(fp.toUpperCase());
        const want = Buffer.from(this.#pin);
        if (got.length !== want.length || !timingSafeEqual(got, want)) {
          fail(
            new LadderError(
              'ERR_API',
              `the API's certificate (SHA-256 ${fp || 'none'}) is not the one given with --cert-sha256; nothing was sent`,
            ),
          );
          return;
        }
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(socket);
      });
    });
  }

  /** Calls and turns an error status into a LadderError with the API's message. */
  async must(method: string, path: string, body?: unknown): Promise<unknown> {
    const r = await this.call(method, path, body);
    if (r.status >= 200 && r.status < 300) return r.body;
    const msg = (r.body as { message?: string } | undefined)?.message ?? `HTTP ${r.status}`;
    const code =
      r.status === 404
        ? 'ERR_NOT_FOUND'
        : r.status === 409
          ? 'ERR_CONFLICT'
          : r.status === 400
            ? 'ERR_USAGE'
            : 'ERR_API';
    throw new LadderError(code, `management API: ${msg} (HTTP ${r.status})`);
  }
}
