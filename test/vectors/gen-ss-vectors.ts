/**
 * Generates test/vectors/ss-aead-2017.json and ss2022.json: Ladder's encoder run on fixed inputs
 * (salts, padding and ids given explicitly through a scripted random source), plus negative cases built
 * with the independent oracle (test/helpers/ss-oracle.ts). Run: node dist/test/vectors/gen-ss-vectors.js
 * test/ss-vectors.test.ts checks that Ladder reproduces every case and that the oracle, built from the
 * specs on @noble/ciphers and @noble/hashes, produces the same bytes.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SS_METHODS, type SsMethod } from '../../src/crypto/methods.js';
import { SsTcpClientSession, SsKeyTable, SsTcpAcceptor } from '../../src/codec/ss-tcp.js';
import { encodeUdp2017, encodeUdp2022 } from '../../src/codec/ss-udp.js';
import { seeded, scripted } from '../helpers/seeded-random.js';
import * as oracle from '../helpers/ss-oracle.js';

export const TIMESTAMP_S = 1_700_000_000;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export interface VectorCase {
  name: string;
  kind: 'tcp-request' | 'tcp-response' | 'udp-request' | 'udp-response';
  method: SsMethod;
  password: string;
  host: string;
  port: number;
  payloadHex: string;
  /** the byte strings the encoder's random source returns, in order */
  randomHex: string[];
  saltHex?: string;
  paddingHex?: string;
  requestSaltHex?: string;
  sessionIdHex?: string;
  packetId?: string;
  clientSessionIdHex?: string;
  nonceHex?: string;
  timestamp?: number;
  expectedHex: string;
}

export interface NegativeCase {
  name: string;
  method: SsMethod;
  password: string;
  /** what is fed to the server's acceptor (tcp) or UDP opener (udp), at TIMESTAMP_S */
  kind: 'tcp-request' | 'udp-request' | 'tcp-response';
  inputHex: string;
  /** for tcp-response: the request salt the client sent */
  requestSaltHex?: string;
  expectedCode: string;
}

function passwordFor(method: SsMethod, label: string): string {
  const spec = SS_METHODS[method];
  return spec.edition === 2017
    ? `vector-password-${method}`
    : seeded(`${label}/psk`, spec.keySize).toString('base64');
}

export function generate(): { v2017: VectorCase[]; v2022: VectorCase[]; negative: NegativeCase[] } {
  const v2017: VectorCase[] = [];
  const v2022: VectorCase[] = [];
  const negative: NegativeCase[] = [];
  const now = TIMESTAMP_S * 1000;
  const req = Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n');
  const resp = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
  for (const method of Object.keys(SS_METHODS) as SsMethod[]) {
    const spec = SS_METHODS[method];
    const list = spec.edition === 2017 ? v2017 : v2022;
    const users: [string, string][] = [['single', passwordFor(method, method)]];
    if (spec.edition === 2022 && spec.cipher !== 'chacha20-poly1305') {
      users.push([
        'multi-user',
        `${seeded(`${method}/ipsk`, spec.keySize).toString('base64')}:${passwordFor(method, `${method}/user`)}`,
      ]);
    }
    for (const [who, password] of users) {
      const key = makeCipherKey(method, password);
      const salt = seeded(`${method}/${who}/salt`, spec.keySize);
      const tag = `${method} ${who}`;
      // TCP request with payload
      {
        const out = new SsTcpClientSession(key, scripted([salt])).encodeRequest(
          { host: 'example.com', port: 443 },
          req,
          now,
        );
        list.push({
          name: `${tag}: TCP request`,
          kind: 'tcp-request',
          method,
          password,
          host: 'example.com',
          port: 443,
          payloadHex: hex(req),
          randomHex: [hex(salt)],
          saltHex: hex(salt),
          ...(spec.edition === 2022 ? { timestamp: TIMESTAMP_S } : {}),
          expectedHex: hex(out),
        });
      }
      // 2022: TCP request with no payload gets padding: 2 bytes pick its length (1 + n mod 900), then the padding
      if (spec.edition === 2022) {
        const lenBytes = Buffer.from([0x00, 0x09]);
        const padding = seeded(`${method}/${who}/padding`, 10);
        const out = new SsTcpClientSession(key, scripted([salt, lenBytes, padding])).encodeRequest(
          { host: '198.18.0.1', port: 80 },
          Buffer.alloc(0),
          now,
        );
        list.push({
          name: `${tag}: TCP request without payload (padded)`,
          kind: 'tcp-request',
          method,
          password,
          host: '198.18.0.1',
          port: 80,
          payloadHex: '',
          randomHex: [hex(salt), hex(lenBytes), hex(padding)],
          saltHex: hex(salt),
          paddingHex: hex(padding),
          timestamp: TIMESTAMP_S,
          expectedHex: hex(out),
        });
      }
      // TCP response to that request
      {
        const request = new SsTcpClientSession(key, scripted([salt])).encodeRequest(
          { host: 'example.com', port: 443 },
          req,
          now,
        );
        const guard = { addSalt2017: () => true, addSalt2022: () => true };
        const serverSalt = seeded(`${method}/${who}/server-salt`, spec.keySize);
        const accepted = new SsTcpAcceptor(
          new SsKeyTable([{ id: 'k', key }]),
          guard,
          scripted([serverSalt]),
        ).push(Buffer.from(request), now)!;
        const out = accepted.stream.encode(resp, now);
        list.push({
          name: `${tag}: TCP response`,
          kind: 'tcp-response',
          method,
          password,
          host: '',
          port: 0,
          payloadHex: hex(resp),
          randomHex: [hex(serverSalt)],
          saltHex: hex(serverSalt),
          requestSaltHex: hex(salt),
          ...(spec.edition === 2022 ? { timestamp: TIMESTAMP_S } : {}),
          expectedHex: hex(out),
        });
      }
      // UDP, both directions
      const dns = seeded(`${method}/${who}/dns`, 29);
      if (spec.edition === 2017) {
        const udpSalt = seeded(`${method}/udp-salt`, spec.keySize);
        const out = encodeUdp2017(key, udpSalt, {
          target: { host: '198.18.0.53', port: 53 },
          payload: dns,
        });
        list.push({
          name: `${tag}: UDP packet`,
          kind: 'udp-request',
          method,
          password,
          host: '198.18.0.53',
          port: 53,
          payloadHex: hex(dns),
          randomHex: [],
          saltHex: hex(udpSalt),
          expectedHex: hex(out),
        });
      } else {
        const sessionId = seeded(`${method}/${who}/session`, 8);
        const nonce = seeded(`${method}/${who}/xnonce`, 24);
        const random = spec.cipher === 'chacha20-poly1305' ? [nonce] : [];
        const out = encodeUdp2022(
          key,
          { sessionId, packetId: 7n },
          { target: { host: '198.18.0.53', port: 53 }, payload: dns },
          new Uint8Array(0),
          now,
          scripted(random),
        );
        list.push({
          name: `${tag}: UDP request`,
          kind: 'udp-request',
          method,
          password,
          host: '198.18.0.53',
          port: 53,
          payloadHex: hex(dns),
          randomHex: random.map(hex),
          sessionIdHex: hex(sessionId),
          packetId: '7',
          ...(random.length ? { nonceHex: hex(nonce) } : {}),
          timestamp: TIMESTAMP_S,
          expectedHex: hex(out),
        });
        if (who === 'single') {
          const serverSession = seeded(`${method}/server-session`, 8);
          const rnonce = seeded(`${method}/server-xnonce`, 24);
          const rrandom = spec.cipher === 'chacha20-poly1305' ? [rnonce] : [];
          const rout = encodeUdp2022(
            key,
            { sessionId: serverSession, packetId: 3n, clientSessionId: sessionId },
            { target: { host: '198.18.0.53', port: 53 }, payload: dns },
            new Uint8Array(0),
            now,
            scripted(rrandom),
          );
          list.push({
            name: `${tag}: UDP response`,
            kind: 'udp-response',
            method,
            password,
            host: '198.18.0.53',
            port: 53,
            payloadHex: hex(dns),
            randomHex: rrandom.map(hex),
            sessionIdHex: hex(serverSession),
            packetId: '3',
            clientSessionIdHex: hex(sessionId),
            ...(rrandom.length ? { nonceHex: hex(rnonce) } : {}),
            timestamp: TIMESTAMP_S,
            expectedHex: hex(rout),
          });
        }
      }
      if (who !== 'single') continue;
      // Negative vectors, made with the oracle.
      const om = method as oracle.OracleMethod;
      const good = oracle.tcpRequest({
        method: om,
        password,
        salt,
        host: 'example.com',
        port: 443,
        payload: req,
        timestamp: BigInt(TIMESTAMP_S),
      });
      const flipped = Uint8Array.from(good);
      flipped[spec.keySize + 3]! ^= 0x01; // inside the first sealed chunk
      negative.push({
        name: `${method}: a bit flipped in the first chunk`,
        method,
        password,
        kind: 'tcp-request',
        inputHex: hex(flipped),
        expectedCode: 'ERR_CIPHER',
      });
      if (spec.edition === 2017) {
        // a length chunk declaring 0x4000, sealed properly (the spec caps payloads at 0x3FFF)
        const sub = oracle.subkey2017(oracle.evpBytesToKey(password, spec.keySize), salt);
        const over =
          spec.cipher === 'chacha20-poly1305'
            ? sealChacha(sub, 0, Buffer.from([0x40, 0x00]))
            : sealGcm(sub, 0, Buffer.from([0x40, 0x00]));
        negative.push({
          name: `${method}: chunk length 0x4000`,
          method,
          password,
          kind: 'tcp-request',
          inputHex: hex(Buffer.concat([salt, over])),
          expectedCode: 'ERR_SS_CHUNK_LENGTH',
        });
      } else {
        const base = { method: om, password, salt, host: 'example.com', port: 443, payload: req };
        negative.push({
          name: `${method}: timestamp 31 s in the future`,
          method,
          password,
          kind: 'tcp-request',
          inputHex: hex(oracle.tcpRequest({ ...base, timestamp: BigInt(TIMESTAMP_S + 31) })),
          expectedCode: 'ERR_SS2022_BAD_TIMESTAMP',
        });
        negative.push({
          name: `${method}: no payload and no padding`,
          method,
          password,
          kind: 'tcp-request',
          inputHex: hex(
            oracle.tcpRequest({
              ...base,
              payload: new Uint8Array(0),
              timestamp: BigInt(TIMESTAMP_S),
            }),
          ),
          expectedCode: 'ERR_SS2022_PADDING',
        });
        negative.push({
          name: `${method}: padding length 901`,
          method,
          password,
          kind: 'tcp-request',
          inputHex: hex(
            oracle.tcpRequest({
              ...base,
              padding: new Uint8Array(901),
              timestamp: BigInt(TIMESTAMP_S),
            }),
          ),
          expectedCode: 'ERR_SS2022_PADDING',
        });
        negative.push({
          name: `${method}: padding declared past the header`,
          method,
          password,
          kind: 'tcp-request',
          inputHex: hex(
            oracle.tcpRequest({
              ...base,
              padding: new Uint8Array(4),
              declaredPadding: 800,
              timestamp: BigInt(TIMESTAMP_S),
            }),
          ),
          expectedCode: 'ERR_SS2022_PADDING',
        });
        negative.push({
          name: `${method}: header type 1 (a response replayed as a request)`,
          method,
          password,
          kind: 'tcp-request',
          inputHex: hex(oracle.tcpRequest({ ...base, type: 1, timestamp: BigInt(TIMESTAMP_S) })),
          expectedCode: 'ERR_SS2022_BAD_HEADER',
        });
        const serverSalt = seeded(`${method}/neg/server-salt`, spec.keySize);
        negative.push({
          name: `${method}: response bound to another request`,
          method,
          password,
          kind: 'tcp-response',
          inputHex: hex(
            oracle.tcpResponse({
              method: om,
              password,
              salt: serverSalt,
              requestSalt: seeded('another request', spec.keySize),
              payload: resp,
              timestamp: BigInt(TIMESTAMP_S),
            }),
          ),
          requestSaltHex: hex(salt),
          expectedCode: 'ERR_SS2022_BAD_REQUEST_SALT',
        });
        negative.push({
          name: `${method}: UDP timestamp 40 s old`,
          method,
          password,
          kind: 'udp-request',
          inputHex: hex(
            oracle.udpPacket({
              method: om,
              password,
              host: '198.18.0.53',
              port: 53,
              payload: dns,
              sessionId: seeded('s', 8),
              packetId: 1n,
              timestamp: BigInt(TIMESTAMP_S - 40),
              nonce: seeded('n', 24),
            }),
          ),
          expectedCode: 'ERR_SS2022_BAD_TIMESTAMP',
        });
      }
    }
  }
  return { v2017, v2022, negative };
}

import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
function nonce(n: number): Uint8Array {
  const b = new Uint8Array(12);
  b[0] = n;
  return b;
}
function sealGcm(key: Uint8Array, n: number, pt: Uint8Array): Uint8Array {
  return gcm(key, nonce(n)).encrypt(pt);
}
function sealChacha(key: Uint8Array, n: number, pt: Uint8Array): Uint8Array {
  return chacha20poly1305(key, nonce(n)).encrypt(pt);
}

const SOURCE =
  "Generated by test/vectors/gen-ss-vectors.ts: Ladder's encoder on fixed inputs (salts, padding, ids given explicitly through a scripted random source; timestamp 1700000000). No Debian peer speaks 2022, so every case is cross-checked in test/ss-vectors.test.ts against an independent implementation written from the specs on @noble/ciphers and @noble/hashes (test/helpers/ss-oracle.ts). AEAD-2017 is additionally checked against shadowsocks-libev in test/integration/interop-libev.test.ts.";

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { v2017, v2022, negative } = generate();
  const dir = fileURLToPath(new URL('../../../test/vectors/', import.meta.url));
  const write = (name: string, spec: string, cases: unknown[], neg: unknown[]): void =>
    writeFileSync(
      `${dir}${name}`,
      JSON.stringify(
        {
          source: SOURCE,
          spec,
          crossCheckedWith:
            '@noble/ciphers 2.4.0 + @noble/hashes 2.4.0 (test/helpers/ss-oracle.ts)',
          cases,
          negative: neg,
        },
        null,
        2,
      ) + '\n',
    );
  write(
    'ss-aead-2017.json',
    'shadowsocks.org, AEAD ciphers (2017)',
    v2017,
    negative.filter((n) => !n.method.startsWith('2022')),
  );
  write(
    'ss2022.json',
    'SIP022 Shadowsocks 2022 Edition; SIP023 Extensible Identity Headers',
    v2022,
    negative.filter((n) => n.method.startsWith('2022')),
  );
  console.log(
    `wrote ${v2017.length + v2022.length} cases and ${negative.length} negative cases to ${dir}`,
  );
}
