/**
 * A client for a Ladder (or Outline) management API, as `ladder keys --api URL --cert-sha256 HEX`
 * uses it: HTTPS with the certificate pinned by its SHA-256, as Outline Manager pins it, so a
 * self-signed server is trusted exactly and nothing else is.
 * @module
 */
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { LadderError } from '../errors.js';

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

  call(method: string, path: string, body?: unknown): Promise<ApiReply> {
    const url = new URL(this.#base.pathname.replace(/\/$/, '') + path, this.#base);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: false,
          timeout: 15_000,
          // The pin replaces CA verification: checked below before any byte of the reply is used.
          rejectUnauthorized: false,
          headers: data
            ? { 'content-type': 'application/json', 'content-length': data.length }
            : {},
        },
        (res) => {
          const fp = (res.socket as TLSSocket)
            .getPeerCertificate()
            .fingerprint256?.replace(/:/g, '');
          if (fp !== this.#pin) {
            res.destroy();
            reject(
              new LadderError(
                'ERR_API',
                `the API's certificate (SHA-256 ${fp ?? 'none'}) is not the one given with --cert-sha256`,
              ),
            );
            return;
          }
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
      req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
      req.on('error', (err) =>
        reject(
          new LadderError(
            'ERR_API',
            `cannot reach the management API at ${url.host}: ${err.message}`,
          ),
        ),
      );
      req.end(data);
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
