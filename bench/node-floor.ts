/**
 * The floor of a proxy in Node on this machine: the shape of Ladder's client and server, with no
 * crypto, no codec and no checks. `npm run bench` runs it as the "node floor" row, so that the
 * figures of Ladder and ss-libev can be read against what Node itself costs for the same hops.
 *
 *   node dist/bench/node-floor.js server            → relays: reads [IPv4 (4) | port (2)] then pipes
 *   node dist/bench/node-floor.js client <port>     → SOCKS5 (no auth, CONNECT to an IPv4 address):
 *                                                     connects to the relay, replies, then pipes
 *
 * Each prints `listening <port>` on 127.0.0.1. Both only ever connect to 127.0.0.1 (the relay, and
 * the origin the benchmark names in its CONNECT, which is loopback). Not a product: no timeouts, no
 * error replies beyond closing the connection.
 * @module
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

function join(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
}

function relayServer(): void {
  const server = createServer({ noDelay: true }, (s) => {
    s.once('data', (head: Buffer) => {
      if (head.length < 6) return void s.destroy();
      const up = connect({ host: '127.0.0.1', port: head.readUInt16BE(4), noDelay: true });
      up.once('connect', () => {
        if (head.length > 6) up.write(head.subarray(6));
        join(s, up);
      });
      up.once('error', () => s.destroy());
    });
    s.on('error', () => s.destroy());
  });
  server.listen(0, '127.0.0.1', () =>
    console.log(`listening ${(server.address() as AddressInfo).port}`),
  );
}

function socksClient(relayPort: number): void {
  const server = createServer({ noDelay: true }, (s) => {
    let greeted = false;
    const onData = (d: Buffer): void => {
      if (!greeted) {
        greeted = true;
        s.write(Buffer.from([5, 0]));
        return;
      }
      s.off('data', onData);
      s.pause();
      if (d.length < 10 || d[3] !== 1) return void s.destroy(); // CONNECT to an IPv4 address only
      const header = d.subarray(4); // IPv4 address and port, and anything sent behind the request
      const up = connect({ host: '127.0.0.1', port: relayPort, noDelay: true });
      up.once('connect', () => {
        s.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
        // As Ladder does: the header leaves with the first payload the application sends.
        s.once('data', (first: Buffer) => {
          up.write(Buffer.concat([header, first]));
          join(s, up);
        });
        s.resume();
      });
      up.once('error', () => s.destroy());
    };
    s.on('data', onData);
    s.on('error', () => s.destroy());
  });
  server.listen(0, '127.0.0.1', () =>
    console.log(`listening ${(server.address() as AddressInfo).port}`),
  );
}

const [role, port] = process.argv.slice(2);
if (role === 'server') relayServer();
else if (role === 'client' && port) socksClient(Number(port));
else {
  console.error('usage: node-floor.js server | client <relay-port>');
  process.exitCode = 2;
}
