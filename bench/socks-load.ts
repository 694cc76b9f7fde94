/**
 * In-process SOCKS5 load for the latency and concurrency benchmarks: a minimal client (greeting,
 * CONNECT by IPv4, then an HTTP/1.1 GET with Connection: close) that measures each request.
 *
 * A request is done when its response has arrived whole — head and Content-Length bytes of body —
 * as a browser or curl sees it, not when the connection closes: how soon a proxy passes the close on
 * is not what a user waits for (v2ray's servers hold a finished connection for 1 s, policy
 * `uplinkOnly`, before closing it). Without a Content-Length the end of the connection ends it.
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
    // The response: bytes seen, and the total it will have once its head is read (head + length).
    let head: Buffer | null = Buffer.alloc(0);
    let expected = Infinity;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const ms = performance.now() - t0;
      s.destroy();
      resolve([ms, body]);
    };
    const onResponse = (d: Buffer): void => {
      body += d.length;
      if (head !== null) {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end >= 0) {
          const m = /\r\ncontent-length:\s*(\d+)/i.exec(head.subarray(0, end).toString('latin1'));
          if (m) expected = end + 4 + Number(m[1]);
          head = null;
        } else if (head.length > 64 * 1024) head = null;
      }
      if (body >= expected) finish();
    };
    const timer = setTimeout(() => s.destroy(new Error('request timed out')), timeoutMs);
    const get = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
    s.on('connect', () => {
      if (stage === 0) s.write(Buffer.from([5, 1, 0]));
      else s.write(get);
    });
    s.on('data', (d: Buffer) => {
      if (stage === 2) {
        onResponse(d);
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
        stage = 2;
        s.write(get);
        if (pending.length > 10) onResponse(pending.subarray(10));
      }
    });
    s.on('end', finish);
    s.on('error', (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(e);
    });
  });
}
