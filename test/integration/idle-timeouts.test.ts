/**
 * `--idle-timeout` reaches every authenticated relay of the Trojan handler: a CONNECT relay, a
 * Mux.Cool connection without sessions, and a UDP association. Each is opened by a key holder and
 * left idle; the handler must close it by itself (the test waits for the close, bounded).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import {
  TROJAN_CMD,
  encodeTrojanRequest,
  encodeTrojanUdpPacket,
  trojanPasswordHash,
  trojanRequestLength,
  trojanUdpPacketLength,
} from '../../src/codec/trojan.js';
import { MUX_COOL_TARGET } from '../../src/codec/mux-cool.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import type { PacketDialer, Target } from '../../src/transport/types.js';
import { duplexPair } from '../helpers/duplex-pair.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import { until } from '../helpers/pre-auth-suite.js';

const IDLE_MS = 150;
const password = 'idle-timeouts';
let echo: Running;
before(async () => {
  echo = await tcpEcho();
});
after(() => echo.close());

function request(command: 1 | 3, target: Target): Buffer {
  const out = Buffer.alloc(trojanRequestLength(target));
  encodeTrojanRequest({ hash: trojanPasswordHash(password), command, target }, out, 0);
  return out;
}

function handler(packets: { sent: number; closed: number }): TrojanHandler {
  const packetDialer: PacketDialer = {
    open: () => ({
      send: () => void packets.sent++,
      close: () => void packets.closed++,
    }),
  };
  return new TrojanHandler({
    users: [{ id: 'u', hash: trojanPasswordHash(password) }],
    dialer: new DirectDialer({ allow: (h, p) => h === '127.0.0.1' && p === echo.port }),
    packetDialer,
    fallback: { handle: (c) => c.destroy(), close: () => {} },
    idleTimeoutMs: IDLE_MS,
  });
}

function closedFlag(s: Duplex): () => boolean {
  let closed = false;
  s.on('close', () => (closed = true));
  s.on('error', () => {});
  return () => closed;
}

test('an idle Trojan CONNECT relay is closed at --idle-timeout', async () => {
  const [server, client] = duplexPair();
  const isClosed = closedFlag(server);
  client.on('data', () => {});
  handler({ sent: 0, closed: 0 }).handle(server);
  client.write(
    Buffer.concat([
      request(TROJAN_CMD.CONNECT, { host: '127.0.0.1', port: echo.port }),
      Buffer.from('hi'),
    ]),
  );
  await until(isClosed, 'the idle relay to close');
});

test('a Mux.Cool connection without sessions is closed at --idle-timeout', async () => {
  const [server, client] = duplexPair();
  const isClosed = closedFlag(server);
  let ended = false;
  client.on('data', () => {});
  client.on('end', () => (ended = true));
  handler({ sent: 0, closed: 0 }).handle(server);
  client.write(request(TROJAN_CMD.CONNECT, MUX_COOL_TARGET));
  await until(() => ended || isClosed(), 'the idle Mux.Cool connection to end');
});

test('an idle Trojan UDP association is closed at --idle-timeout, its session with it', async () => {
  const [server, client] = duplexPair();
  const isClosed = closedFlag(server);
  client.on('data', () => {});
  const packets = { sent: 0, closed: 0 };
  handler(packets).handle(server);
  const p = { target: { host: '127.0.0.1', port: 9 }, payload: Buffer.from('x') };
  const frame = Buffer.alloc(trojanUdpPacketLength(p));
  encodeTrojanUdpPacket(p, frame, 0);
  client.write(Buffer.concat([request(TROJAN_CMD.UDP_ASSOCIATE, p.target), frame]));
  await until(() => packets.sent === 1, 'the datagram to be sent');
  await until(isClosed, 'the idle association to close');
  assert.equal(packets.closed, 1);
});
