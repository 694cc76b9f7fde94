/**
 * In-process SOCKS5 load for the latency and concurrency benchmarks: a minimal client (greeting,
 * CONNECT by IPv4, then an HTTP/1.1 GET with Connection: close) that measures each request.
 */
import { connect } from 'node:net';

/** One fresh connection through the proxy (or straight to the origin when proxyPort is null): GET path, read to the end. Returns [ms, bytes]. */
export function fetchOnce(
  proxyPort: number | null,
  originPort: number,
  path: string,
  timeoutMs = 30_000,
): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect(proxyPort ?? originPort, '127.0.0.1');
    s.setNoDelay(true);
    let stage = proxyPort === null ? 2 : 0;
    let pending: Buffer = Buffer.alloc(0);
    let body = 0;
    const timer = setTimeout(() => s.destroy(new Error('request timed out')), timeoutMs);
    const get = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
    s.on('connect', () => {
      if (stage === 0) s.write(Buffer.from([5, 1, 0]));
      else s.write(get);
    });
    s.on('data', (d: Buffer) => {
      if (stage === 2) {
        body += d.length;
        return;
      }
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      if (stage === 0 && pending.length >= 2) {
        pending = pending.subarray(2);
        stage = 1;
        // CONNECT 127.0.0.1:originPort, and the request right behind it (as curl does after the reply)
        s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, originPort >> 8, originPort & 0xff]));
      }
      if (stage === 1 && pending.length >= 10) {
        if (pending[1] !== 0) {
          s.destroy(new Error(`SOCKS5 reply ${pending[1]}`));
          return;
        }
        body += pending.length - 10;
        stage = 2;
        s.write(get);
      }
    });
    s.on('end', () => {
      clearTimeout(timer);
      s.destroy();
      resolve([performance.now() - t0, body]);
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
