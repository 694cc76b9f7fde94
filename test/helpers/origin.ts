/**
 * A local HTTP origin for tests and benchmarks, on 127.0.0.1: `/bytes/<n>` streams n pseudo-random
 * bytes from one preallocated buffer (fast enough never to be the bottleneck), `/hello` a small page.
 */
import { createServer, type Server } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

const BLOCK = randomBytes(1 << 20);

/** The SHA-256 of what `/bytes/<n>` serves. */
export function expectedHash(n: number): string {
  const h = createHash('sha256');
  for (let left = n; left > 0; left -= BLOCK.length)
    h.update(BLOCK.subarray(0, Math.min(left, BLOCK.length)));
  return h.digest('hex');
}

export interface Origin {
  port: number;
  close(): Promise<void>;
}

export async function startOrigin(): Promise<Origin> {
  const server: Server = createServer({ keepAlive: true }, (req, res) => {
    const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    if (m) {
      const n = Number(m[1]);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      let left = n;
      const pump = (): void => {
        while (left > 0) {
          const chunk = BLOCK.subarray(0, Math.min(left, BLOCK.length));
          left -= chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    if (req.url === '/hello') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 6 });
      res.end('hello\n');
      return;
    }
    res.writeHead(404, { 'content-length': 0 });
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
