/**
 * TLS 1.3 and TLS 1.2 resumption in the fp=chrome client (RFC 8446 §2.2, §4.2.11, §4.6.1) against Node's TLS
 * server: the first connection's ticket is offered on the next one (psk_dhe_ke, binder, obfuscated
 * age), the server accepts it and skips the certificate, each ticket is offered once, and an
 * impostor at the same address, which cannot open the ticket, gets a full handshake and fails the
 * pin. The hellos are read on the wire by a loopback relay: the resumption hello is the fresh one
 * with pre_shared_key added last. TLS 1.2 (RFC 5077): the ticket goes in session_ticket, the
 * server takes it by echoing the hello's session id, and the session is offered again and again
 * (as Chromium does, see the parity test) until the server refuses or replaces it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createServer as createNetServer,
  connect,
  type AddressInfo,
  type Server as NetServer,
} from 'node:net';
import { createServer, type Server, type TlsOptions } from 'node:tls';
import { TlsReader } from '../../src/codec/tls-wire.js';
import {
  EXT,
  decodeClientHello,
  isGrease,
  type ClientHelloInfo,
} from '../../src/codec/tls-client-hello.js';
import { chromeTlsConnect } from '../../src/transport/chrome-tls.js';
import { ChromeSessionCache } from '../../src/transport/chrome-sessions.js';
import { makeCert, type TestCert } from '../helpers/tls-cert.js';

/** A TLS 1.3 echo server behind a relay that records each connection's ClientHello. */
async function serverWithRelay(
  opts: TlsOptions,
  relayPort = 0,
): Promise<{
  port: number;
  hellos: ClientHelloInfo[];
  close(): Promise<void>;
}> {
  const tlsServer: Server = createServer({ allowHalfOpen: true, ...opts }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  tlsServer.on('tlsClientError', () => {});
  await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
  const backend = (tlsServer.address() as AddressInfo).port;
  const hellos: ClientHelloInfo[] = [];
  const relay: NetServer = createNetServer({ allowHalfOpen: true }, (c) => {
    const up = connect({ host: '127.0.0.1', port: backend, allowHalfOpen: true });
    let head = Buffer.alloc(0);
    let seen = false;
    c.on('data', (d: Buffer) => {
      if (!seen) {
        head = Buffer.concat([head, d]);
        const h = decodeClientHello(head);
        if (h) {
          seen = true;
          hellos.push(h.value);
        }
      }
    });
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
    c.pipe(up).pipe(c);
  });
  await new Promise<void>((r) => relay.listen(relayPort, '127.0.0.1', r));
  return {
    port: (relay.address() as AddressInfo).port,
    hellos,
    close: async () => {
      await new Promise<void>((r) => relay.close(() => r()));
      await new Promise<void>((r) => tlsServer.close(() => r()));
    },
  };
}

/** One connection: echoes `ping`, waits for the server's tickets (they come with the echo). */
async function once(
  port: number,
  o: Parameters<typeof chromeTlsConnect>[1],
): Promise<{ reused: boolean; cert: string | undefined }> {
  const tls = await chromeTlsConnect({ host: '127.0.0.1', port }, { timeoutMs: 5000, ...o });
  const reused = tls.isSessionReused();
  const got: Buffer[] = [];
  const ended = new Promise<void>((r) => tls.on('end', r));
  tls.on('data', (d: Buffer) => got.push(d));
  tls.end('ping');
  await ended;
  tls.destroy();
  assert.equal(Buffer.concat(got).toString(), 'ping');
  return { reused, cert: tls.getPeerX509Certificate()?.fingerprint256 };
}

function psk(h: ClientHelloInfo): { identity: string; age: number } | null {
  const d = h.extensionData.get(EXT.PRE_SHARED_KEY);
  if (!d) return null;
  const ids = new TlsReader(d, 'pre_shared_key').vec(2, 'identities');
  const identity = Buffer.from(ids.vec(2, 'identity').rest()).toString('hex');
  return { identity, age: ids.u32() };
}

describe('fp=chrome TLS 1.3 resumption against Node TLS', () => {
  let a: TestCert;
  let b: TestCert;
  before(() => {
    a = makeCert();
    b = makeCert();
  });
  after(() => {
    a.remove();
    b.remove();
  });

  test('the next connection resumes, each ticket once; the hello is Chrome’s plus pre_shared_key last', async () => {
    const srv = await serverWithRelay({ cert: a.cert, key: a.key });
    const sessions = new ChromeSessionCache();
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const o = { sni: 'localhost', pinSha256: a.pin, sessions, now: () => new Date(clock) };
    try {
      const first = await once(srv.port, o);
      assert.equal(first.reused, false);
      // Peek at the newest ticket (taken and put back) to predict the obfuscated age.
      const key = `TLS server 127.0.0.1:${srv.port}\0localhost\0h2,http/1.1\0${a.pin}\0`;
      const kept = sessions.take(key, clock);
      assert.ok(kept, 'a ticket was kept');
      sessions.add(key, kept);
      clock += 5000;
      const second = await once(srv.port, o);
      assert.equal(second.reused, true, 'resumed');
      assert.equal(
        second.cert,
        first.cert,
        'the resumed connection reports the checked certificate',
      );
      const third = await once(srv.port, o);
      assert.equal(third.reused, true);

      const [h1, h2, h3] = srv.hellos;
      assert.equal(psk(h1!), null, 'nothing offered without a ticket');
      const p2 = psk(h2!)!;
      assert.equal(p2.identity, kept.ticket.toString('hex'));
      assert.equal(p2.age, (5000 + kept.ageAdd) >>> 0, 'age in ms + ticket_age_add mod 2^32');
      assert.notEqual(psk(h3!)!.identity, p2.identity, 'a ticket is offered once');
      // Same extensions as a fresh hello, pre_shared_key added last, psk_dhe_ke the only mode.
      const types = (h: ClientHelloInfo): number[] => h.extensions.filter((t) => !isGrease(t));
      assert.deepEqual(
        types(h2!)
          .filter((t) => t !== EXT.PRE_SHARED_KEY)
          .sort(),
        types(h1!).sort(),
      );
      assert.equal(h2!.extensions.at(-1), EXT.PRE_SHARED_KEY);
      assert.deepEqual([...h2!.extensionData.get(EXT.PSK_KEY_EXCHANGE_MODES)!], [1, 1]);
      assert.deepEqual(
        h2!.ciphers,
        h1!.ciphers.map((c, i) => (i === 0 ? h2!.ciphers[0]! : c)),
      );
    } finally {
      await srv.close();
    }
  });

  test('an impostor at the same address cannot take the session: full handshake, pin fails', async () => {
    const sessions = new ChromeSessionCache();
    const srv = await serverWithRelay({ cert: a.cert, key: a.key });
    const o = { sni: 'localhost', pinSha256: a.pin, sessions };
    await once(srv.port, o);
    const port = srv.port;
    await srv.close();
    // Same relay port, another server behind it with another key and its own ticket keys.
    const impostor = await serverWithRelay({ cert: b.cert, key: b.key }, port);
    try {
      await assert.rejects(
        chromeTlsConnect({ host: '127.0.0.1', port }, { ...o, timeoutMs: 5000 }),
        /does not match the key's pin/,
      );
      assert.ok(psk(impostor.hellos[0]!), 'the ticket was offered, and refused by the impostor');
    } finally {
      await impostor.close();
    }
  });

  test('resume=false (sessions: null): never offered', async () => {
    const srv = await serverWithRelay({ cert: a.cert, key: a.key });
    try {
      for (let i = 0; i < 2; i++)
        assert.equal(
          (await once(srv.port, { sni: 'localhost', pinSha256: a.pin, sessions: null })).reused,
          false,
        );
      assert.ok(srv.hellos.every((h) => psk(h) === null));
    } finally {
      await srv.close();
    }
  });
});

function ticket12(h: ClientHelloInfo): string {
  return Buffer.from(h.extensionData.get(EXT.SESSION_TICKET) ?? []).toString('hex');
}

describe('fp=chrome TLS 1.2 resumption (session tickets) against Node TLS', () => {
  let a: TestCert;
  let b: TestCert;
  before(() => {
    a = makeCert();
    b = makeCert();
  });
  after(() => {
    a.remove();
    b.remove();
  });
  const v12 = { maxVersion: 'TLSv1.2' as const };

  test('the ticket is offered in session_ticket on every later connection and taken', async () => {
    const srv = await serverWithRelay({ cert: a.cert, key: a.key, ...v12 });
    const sessions = new ChromeSessionCache();
    const o = { sni: 'localhost', pinSha256: a.pin, sessions };
    try {
      const first = await once(srv.port, o);
      const second = await once(srv.port, o);
      const third = await once(srv.port, o);
      assert.deepEqual(
        [first.reused, second.reused, third.reused],
        [false, true, true],
        'resumed twice',
      );
      assert.equal(second.cert, first.cert, 'the resumed connection reports the checked chain');
      const [h1, h2, h3] = srv.hellos;
      assert.equal(ticket12(h1!), '', 'an empty session_ticket without a session');
      assert.notEqual(ticket12(h2!), '');
      assert.equal(ticket12(h3!), ticket12(h2!), 'a TLS 1.2 ticket is offered again');
      assert.equal(psk(h2!), null, 'no pre_shared_key for a TLS 1.2 session');
      assert.notDeepEqual(h2!.sessionId, h3!.sessionId, 'a fresh session id each time');
      assert.equal(h2!.sessionId.length, 32);
    } finally {
      await srv.close();
    }
  });

  test('a server that cannot open the ticket: full handshake, pin checked, session dropped', async () => {
    const sessions = new ChromeSessionCache();
    const srv = await serverWithRelay({ cert: a.cert, key: a.key, ...v12 });
    const o = { sni: 'localhost', pinSha256: a.pin, sessions };
    await once(srv.port, o);
    const port = srv.port;
    await srv.close();
    const impostor = await serverWithRelay({ cert: b.cert, key: b.key, ...v12 }, port);
    try {
      await assert.rejects(
        chromeTlsConnect({ host: '127.0.0.1', port }, { ...o, timeoutMs: 5000 }),
        /does not match the key's pin/,
      );
      assert.notEqual(ticket12(impostor.hellos[0]!), '', 'the ticket was offered');
    } finally {
      await impostor.close();
    }
    // The right server again, with new ticket keys (a restart): the refused session was dropped.
    const restarted = await serverWithRelay({ cert: a.cert, key: a.key, ...v12 }, port);
    try {
      assert.equal((await once(port, o)).reused, false);
      assert.equal((await once(port, o)).reused, true);
      assert.equal(ticket12(restarted.hellos[0]!), '', 'the refused ticket is not offered again');
    } finally {
      await restarted.close();
    }
  });

  test('resume=false (sessions: null): session_ticket stays empty', async () => {
    const srv = await serverWithRelay({ cert: a.cert, key: a.key, ...v12 });
    try {
      for (let i = 0; i < 2; i++)
        assert.equal(
          (await once(srv.port, { sni: 'localhost', pinSha256: a.pin, sessions: null })).reused,
          false,
        );
      assert.ok(srv.hellos.every((h) => ticket12(h) === ''));
    } finally {
      await srv.close();
    }
  });
});
