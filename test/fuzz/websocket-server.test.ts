/**
 * Hostile bytes at a running WebSocket front (the plain --ws-listen kind, in process): random HTTP
 * heads, upgrades followed by random frames, masked garbage inside valid frames, random Mux.Cool
 * framing. Nothing may crash or hang it, and afterwards it still carries Shadowsocks over a
 * WebSocket (plain and with Mux.Cool) end to end.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { SsServer } from '../../src/server/ss-server.js';
import { WsFront, WsListener } from '../../src/server/ws-front.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { trojanPasswordHash } from '../../src/codec/trojan.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { wsConnector } from '../../src/transport/ws-dialer.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import {
  WS_OPCODE,
  applyWsMask,
  encodeWsHeader,
  wsHeaderLength,
} from '../../src/codec/websocket.js';
import { tcpEcho, type Running } from '../helpers/echo.js';

const PATH = '/fuzz-secret';
const key = makeCipherKey('chacha20-ietf-poly1305', 'fuzz-password');
let echo: Running;
let ss: SsServer;
let listener: WsListener;
let decoy: DecoySite;
let port: number;

before(async () => {
  echo = await tcpEcho();
  // Random bytes could happen to form a valid request: only the echo server may ever be dialled.
  const onlyEcho = { allow: (host: string, p: number) => host === '127.0.0.1' && p === echo.port };
  ss = new SsServer({
    keys: [{ id: 'k', key }],
    dialer: new DirectDialer(onlyEcho),
    authTimeoutMs: 300,
  });
  decoy = new DecoySite();
  const trojan = new TrojanHandler({
    users: [{ id: 't', hash: trojanPasswordHash('pw') }],
    dialer: new DirectDialer(onlyEcho),
    fallback: decoy,
    handshakeTimeoutMs: 300,
  });
  listener = new WsListener(
    new WsFront({
      paths: [PATH],
      ss,
      trojan,
      fallback: decoy,
      headTimeoutMs: 300,
      authTimeoutMs: 300,
    }),
  );
  port = (await listener.listen('127.0.0.1', 0)).port;
});
after(async () => {
  await listener.close();
  await ss.close(100);
  decoy.close();
  await echo.close();
});

const UPGRADE = Buffer.from(
  `GET ${PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
);

function frame(opcode: number, payload: Uint8Array, fin = true): Buffer {
  const mask = randomBytes(4);
  const out = Buffer.alloc(wsHeaderLength(payload.length, true) + payload.length);
  const n = encodeWsHeader({ fin, opcode, mask, payloadLength: payload.length }, out, 0);
  out.set(payload, n);
  applyWsMask(out.subarray(n), mask);
  return out;
}

function hit(pieces: Uint8Array[], end: boolean): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const t = setTimeout(() => {
      s.destroy();
      resolve();
    }, 400);
    s.on('connect', () => {
      for (const p of pieces) s.write(p);
      if (end) s.end();
    });
    s.on('data', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve();
    });
    s.on('error', () => {});
  });
}

async function stillServes(): Promise<void> {
  for (const mux of [false, true]) {
    const at = { host: '127.0.0.1', port };
    const d = await new SsStreamDialer(at, key, {
      connect: wsConnector(at, { path: PATH, host: 'x', mux }),
    }).dial({ host: '127.0.0.1', port: echo.port });
    const got = await new Promise<string>((resolve, reject) => {
      d.once('data', (c: Buffer) => resolve(c.toString()));
      d.on('error', reject);
      d.write('still here');
    });
    assert.equal(got, 'still here', `mux=${mux}`);
    d.destroy();
  }
}

test('random bytes and random heads: no crash, still serving', async () => {
  const bytes = fc.array(fc.uint8Array({ minLength: 1, maxLength: 2000 }), {
    minLength: 1,
    maxLength: 4,
  });
  await fc.assert(
    fc.asyncProperty(bytes, fc.boolean(), async (pieces, end) => hit(pieces, end)),
    { numRuns: 25 },
  );
  await stillServes();
});

test('an upgrade, then random frame bytes (raw, or as masked binary frames of any opcode)', async () => {
  const payload = fc.uint8Array({ maxLength: 1500 });
  const framed = fc.array(
    fc
      .tuple(fc.integer({ min: 0, max: 15 }), payload, fc.boolean())
      .map(([op, p, fin]) => frame(op, p, fin)),
    { maxLength: 4 },
  );
  const raw = fc.array(fc.uint8Array({ minLength: 1, maxLength: 1500 }), { maxLength: 3 });
  await fc.assert(
    fc.asyncProperty(fc.oneof(framed, raw), fc.boolean(), async (pieces, end) =>
      hit([UPGRADE, ...pieces], end),
    ),
    { numRuns: 40 },
  );
  await stillServes();
});

test('an upgrade, then Mux.Cool-looking starts with random framing after them', async () => {
  const muxish = fc
    .tuple(fc.integer({ min: 7, max: 600 }), fc.uint8Array({ maxLength: 1200 }))
    .map(([len, rest]) =>
      frame(
        WS_OPCODE.BINARY,
        Buffer.concat([Buffer.from([len >> 8, len & 0xff, 0, 1, 1, 1, 1]), Buffer.from(rest)]),
      ),
    );
  await fc.assert(
    fc.asyncProperty(
      fc.array(muxish, { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      async (pieces, end) => hit([UPGRADE, ...pieces], end),
    ),
    { numRuns: 40 },
  );
  await stillServes();
});
