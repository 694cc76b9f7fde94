/**
 * Node's own TLS ClientHello, captured on loopback: a throwaway server on 127.0.0.1 reads the first
 * record a `tls.connect` sends it. Used where the lab needs a real client's ClientHello to build
 * from (QUIC Initials, ESNI/ECH variants) and by the tests that parse it. Never leaves loopback.
 * @module
 */
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** The first TLS record (5-byte header and handshake message) Node sends for `servername`. */
export function nodeClientHelloRecord(servername: string): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const srv = createServer((s) =>
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        srv.close();
      }),
    );
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      const c = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
      c.on('error', () => {});
      setTimeout(() => c.destroy(), 200);
    });
    srv.on('error', reject);
  });
}
