/**
 * Shadowsocks vectors (test/vectors/ss-aead-2017.json, ss2022.json; provenance in their `source`):
 *  (a) Ladder reproduces every case byte for byte;
 *  (b) the independent oracle (test/helpers/ss-oracle.ts: the specs on @noble/ciphers + @noble/hashes)
 *      produces the same bytes from the same inputs;
 *  (c) Ladder's decoders read every case back;
 *  (d) every negative case fails with its exact error code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { makeCipherKey } from '../src/crypto/ss-key.js';
import {
  SsKeyTable,
  SsTcpAcceptor,
  SsTcpClientSession,
  type ReplayGuard,
} from '../src/codec/ss-tcp.js';
import { decodeUdp2017, decodeUdp2022Response, openUdpRequest } from '../src/codec/ss-udp.js';
import { hasCode } from '../src/errors.js';
import {
  generate,
  TIMESTAMP_S,
  type NegativeCase,
  type VectorCase,
} from './vectors/gen-ss-vectors.js';
import * as oracle from './helpers/ss-oracle.js';
import { scripted } from './helpers/seeded-random.js';

const dir = fileURLToPath(new URL('../../test/vectors/', import.meta.url));
const files = ['ss-aead-2017.json', 'ss2022.json'].map(
  (f) =>
    JSON.parse(readFileSync(dir + f, 'utf8')) as {
      source: string;
      cases: VectorCase[];
      negative: NegativeCase[];
    },
);
const cases = files.flatMap((f) => f.cases);
const negative = files.flatMap((f) => f.negative);
const NOW = TIMESTAMP_S * 1000;
const b = (h: string | undefined): Buffer => Buffer.from(h ?? '', 'hex');
const guard = (): ReplayGuard => ({ addSalt2017: () => true, addSalt2022: () => true });

test('vector files carry provenance and cover all six methods', () => {
  for (const f of files) assert.match(f.source, /oracle|noble/);
  assert.equal(new Set(cases.map((c) => c.method)).size, 6);
  assert.ok(cases.length >= 30 && negative.length >= 20);
});

test('(a) Ladder regenerates exactly the committed vectors', () => {
  const { v2017, v2022, negative: neg } = generate();
  assert.deepEqual([...v2017, ...v2022], cases);
  assert.deepEqual(neg, negative);
});

for (const c of cases) {
  test(`${c.name}: oracle agrees, Ladder decodes`, () => {
    const om = c.method as oracle.OracleMethod;
    const ts = c.timestamp === undefined ? undefined : BigInt(c.timestamp);
    let fromOracle: Uint8Array;
    if (c.kind === 'tcp-request') {
      fromOracle = oracle.tcpRequest({
        method: om,
        password: c.password,
        salt: b(c.saltHex),
        host: c.host,
        port: c.port,
        payload: b(c.payloadHex),
        ...(c.paddingHex ? { padding: b(c.paddingHex) } : {}),
        ...(ts !== undefined ? { timestamp: ts } : {}),
      });
    } else if (c.kind === 'tcp-response') {
      fromOracle = oracle.tcpResponse({
        method: om,
        password: c.password,
        salt: b(c.saltHex),
        requestSalt: b(c.requestSaltHex),
        payload: b(c.payloadHex),
        ...(ts !== undefined ? { timestamp: ts } : {}),
      });
    } else {
      fromOracle = oracle.udpPacket({
        method: om,
        password: c.password,
        host: c.host,
        port: c.port,
        payload: b(c.payloadHex),
        ...(c.saltHex ? { salt: b(c.saltHex) } : {}),
        ...(c.nonceHex ? { nonce: b(c.nonceHex) } : {}),
        ...(c.sessionIdHex ? { sessionId: b(c.sessionIdHex) } : {}),
        ...(c.packetId ? { packetId: BigInt(c.packetId) } : {}),
        ...(c.clientSessionIdHex ? { clientSessionId: b(c.clientSessionIdHex) } : {}),
        ...(ts !== undefined ? { timestamp: ts } : {}),
      });
    }
    assert.equal(
      Buffer.from(fromOracle).toString('hex'),
      c.expectedHex,
      'the independent implementation produces the same bytes',
    );

    const key = makeCipherKey(c.method, c.password);
    const wire = b(c.expectedHex);
    if (c.kind === 'tcp-request') {
      const got = new SsTcpAcceptor(new SsKeyTable([{ id: 'k', key }]), guard(), randomBytes).push(
        Buffer.from(wire),
        NOW,
      );
      assert.ok(got);
      assert.deepEqual(got.target, { host: c.host, port: c.port });
      assert.equal(got.initialPayload.toString('hex'), c.payloadHex);
    } else if (c.kind === 'tcp-response') {
      // a client that sent the request with this salt
      const client = new SsTcpClientSession(key, scripted([b(c.requestSaltHex)]));
      client.encodeRequest({ host: 'example.com', port: 443 }, Buffer.from('x'), NOW);
      assert.equal(
        Buffer.concat(client.decode(Buffer.from(wire), NOW)).toString('hex'),
        c.payloadHex,
      );
      assert.equal(
        Buffer.from(
          oracle.openTcpResponse(c.method as oracle.OracleMethod, c.password, wire),
        ).toString('hex'),
        c.payloadHex,
      );
    } else if (c.kind === 'udp-request') {
      const got = openUdpRequest(new SsKeyTable([{ id: 'k', key }]), Buffer.from(wire), NOW);
      assert.ok(got);
      assert.equal(got.datagram.payload.toString('hex'), c.payloadHex);
      assert.deepEqual(got.datagram.target, { host: c.host, port: c.port });
      if (c.packetId) assert.equal(got.header?.packetId, BigInt(c.packetId));
    } else {
      const got =
        key.edition === 2017
          ? decodeUdp2017(key, Buffer.from(wire))
          : decodeUdp2022Response(key, Buffer.from(wire), NOW);
      assert.ok(got);
      assert.equal(got.payload.toString('hex'), c.payloadHex);
    }
  });
}

for (const n of negative) {
  test(`negative: ${n.name} → ${n.expectedCode}`, () => {
    const key = makeCipherKey(n.method, n.password);
    const input = b(n.inputHex);
    const table = new SsKeyTable([{ id: 'k', key }]);
    const attempt = (): unknown => {
      if (n.kind === 'tcp-request') {
        const acc = new SsTcpAcceptor(table, guard(), randomBytes);
        return acc.push(Buffer.from(input), NOW);
      }
      if (n.kind === 'udp-request') return openUdpRequest(table, Buffer.from(input), NOW);
      const client = new SsTcpClientSession(key, scripted([b(n.requestSaltHex)]));
      client.encodeRequest({ host: 'example.com', port: 443 }, Buffer.from('x'), NOW);
      return client.decode(Buffer.from(input), NOW);
    };
    assert.throws(
      attempt,
      (e) => hasCode(e, n.expectedCode as never),
      `expected ${n.expectedCode}`,
    );
  });
}
