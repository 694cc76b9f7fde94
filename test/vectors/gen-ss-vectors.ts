/**
 * Generates test/vectors/ss-aead-2017.json and ss2022.json: Ladder's encoder run on fixed inputs
 * (salts, padding and ids given explicitly through a scripted random source), plus negative cases built
 * with the independent oracle (test/helpers/ss-oracle.ts). Run: node dist/test/vectors/gen-ss-vectors.js
 * test/ss-vectors.test.ts checks that Ladder reproduces every case and that the oracle, built from the
 * specs on @noble/ciphers and @noble/hashes, produces the same bytes.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SS_METHODS, type SsMethod } from '../../src/crypto/methods.js';
import { SsTcpClientSession, SsKeyTable, SsTcpAcceptor } from '../../src/codec/ss-tcp.js';
import { encodeUdp2017, encodeUdp2022 } from '../../src/codec/ss-udp.js';
import { seeded, scripted } from '../helpers/seeded-random.js';
import * as oracle from '../helpers/ss-oracle.js';

export const TIMESTAMP_S = 1_700_000_000;

/**
 * The repository's test/vectors/ folder, wherever the compiled file lives (dist/, or a private
 * --outDir elsewhere): the first ancestor holding test/vectors/ss2022.json, else the working directory.
 */
export function vectorsDir(): string {
  for (let d = dirname(fileURLToPath(import.meta.url)); ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'test/vectors/ss2022.json')))
      return join(d, 'test/vectors/');
    if (dirname(d) === d) break;
  }
  return join(process.cwd(), 'test/vectors/');
}
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
  /**
   * What is fed, at TIMESTAMP_S: tcp-request to the server's SsTcpAcceptor, tcp-response to a client
   * session's decode, udp-request to openUdpRequest, udp-response to decodeUdp2022Response.
   */
  kind: 'tcp-request' | 'tcp-response' | 'udp-request' | 'udp-response';
  /** the key the receiving side holds, when it differs from `password` (SIP023: an unknown user) */
  serverPassword?: string;
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
        // the reply has the same format, addressed with its source (here an IPv6 one)
        const replySalt = seeded(`${method}/udp-reply-salt`, spec.keySize);
        const reply = encodeUdp2017(key, replySalt, {
          target: { host: '2001:2::53', port: 53 },
          payload: dns,
        });
        list.push({
          name: `${tag}: UDP response`,
          kind: 'udp-response',
          method,
          password,
          host: '2001:2::53',
          port: 53,
          payloadHex: hex(dns),
          randomHex: [],
          saltHex: hex(replySalt),
          expectedHex: hex(reply),
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
      negative.push(...negativeCases(method, who, password, salt, req, resp, dns));
    }
  }
  return { v2017, v2022, negative };
}

/**
 * Inputs each receiver must refuse, with the exact code, built with the independent oracle so that
 * only the one thing named is wrong: every other byte is a valid encoding under the right key.
 */
function negativeCases(
  method: SsMethod,
  who: string,
  password: string,
  salt: Buffer,
  req: Buffer,
  resp: Buffer,
  dns: Buffer,
): NegativeCase[] {
  const spec = SS_METHODS[method];
  const om = method as oracle.OracleMethod;
  const ts = BigInt(TIMESTAMP_S);
  const out: NegativeCase[] = [];
  const add = (
    name: string,
    kind: NegativeCase['kind'],
    input: Uint8Array,
    expectedCode: string,
    extra: Partial<NegativeCase> = {},
  ): void => {
    out.push({
      name: `${method}: ${name}`,
      method,
      password,
      kind,
      inputHex: hex(input),
      ...extra,
      expectedCode,
    });
  };
  const flip = (b: Uint8Array, at: number): Uint8Array => {
    const c = Uint8Array.from(b);
    c[at < 0 ? c.length + at : at]! ^= 0x01;
    return c;
  };
  const base = {
    method: om,
    password,
    salt,
    host: 'example.com',
    port: 443,
    payload: req,
    timestamp: ts,
  };
  const serverSalt = seeded(`${method}/neg/server-salt`, spec.keySize);
  const response = {
    method: om,
    password,
    salt: serverSalt,
    requestSalt: salt,
    payload: resp,
    timestamp: ts,
  };
  const udp = {
    method: om,
    password,
    host: '198.18.0.53',
    port: 53,
    payload: dns,
    sessionId: seeded('s', 8),
    packetId: 1n,
    timestamp: ts,
    nonce: seeded('n', 24),
    salt: seeded(`${method}/neg/udp-salt`, spec.keySize),
  };

  if (who !== 'single') {
    // SIP023: the identity header names a user PSK the server does not hold.
    const stranger = `${password.split(':')[0]}:${seeded(`${method}/stranger`, spec.keySize).toString('base64')}`;
    add(
      'identity header names an unknown user',
      'tcp-request',
      oracle.tcpRequest({ ...base, password: stranger }),
      'ERR_CIPHER',
      { password: stranger, serverPassword: password },
    );
    return out;
  }

  const good = oracle.tcpRequest(base);
  add(
    'a bit flipped in the first chunk',
    'tcp-request',
    flip(good, spec.keySize + 3),
    'ERR_CIPHER',
  );
  // After the first chunk authenticated, a bad tag is no longer a probe but a broken stream.
  const withMore = oracle.tcpRequest({ ...base, more: Buffer.from('more data') });
  add(
    'a bit flipped after the first authenticated chunk',
    'tcp-request',
    flip(withMore, -1),
    'ERR_SS_BAD_TAG',
  );
  add(
    'a bit flipped in the response',
    'tcp-response',
    flip(oracle.tcpResponse(response), -1),
    'ERR_SS_BAD_TAG',
    {
      requestSaltHex: hex(salt),
    },
  );
  if (spec.edition === 2017) {
    const sub = oracle.tcpSubkey(om, password, salt);
    // a length chunk declaring 0x4000, sealed properly (the spec caps payloads at 0x3FFF)
    add(
      'chunk length 0x4000',
      'tcp-request',
      Buffer.concat([salt, oracle.sealAt(om, sub, 0, Buffer.from([0x40, 0x00]))]),
      'ERR_SS_CHUNK_LENGTH',
    );
    const rsub = oracle.tcpSubkey(om, password, serverSalt);
    add(
      'response chunk length 0xFFFF',
      'tcp-response',
      Buffer.concat([serverSalt, oracle.sealAt(om, rsub, 0, Buffer.from([0xff, 0xff]))]),
      'ERR_SS_CHUNK_LENGTH',
      { requestSaltHex: hex(salt) },
    );
    add(
      'address type 0x05',
      'tcp-request',
      Buffer.concat([
        salt,
        oracle.sealChunks(om, sub, 0, Buffer.from('05c612000101bb', 'hex'), 0x3fff),
      ]),
      'ERR_SOCKS_ADDR',
    );
    return out;
  }
  add(
    'timestamp 31 s in the future',
    'tcp-request',
    oracle.tcpRequest({ ...base, timestamp: ts + 31n }),
    'ERR_SS2022_BAD_TIMESTAMP',
  );
  add(
    'timestamp 31 s old',
    'tcp-request',
    oracle.tcpRequest({ ...base, timestamp: ts - 31n }),
    'ERR_SS2022_BAD_TIMESTAMP',
  );
  add(
    'no payload and no padding',
    'tcp-request',
    oracle.tcpRequest({ ...base, payload: new Uint8Array(0) }),
    'ERR_SS2022_PADDING',
  );
  add(
    'padding length 901',
    'tcp-request',
    oracle.tcpRequest({ ...base, padding: new Uint8Array(901) }),
    'ERR_SS2022_PADDING',
  );
  add(
    'padding declared past the header',
    'tcp-request',
    oracle.tcpRequest({ ...base, padding: new Uint8Array(4), declaredPadding: 800 }),
    'ERR_SS2022_PADDING',
  );
  add(
    'header type 1 (a response replayed as a request)',
    'tcp-request',
    oracle.tcpRequest({ ...base, type: 1 }),
    'ERR_SS2022_BAD_HEADER',
  );
  const sub = oracle.tcpSubkey(om, password, salt);
  // fixed header: type 0, TIMESTAMP_S (0x6553F100), length 3; then 3 bytes of a name that needs 14
  add(
    'variable header that ends inside the address',
    'tcp-request',
    Buffer.concat([
      salt,
      oracle.sealAt(om, sub, 0, Buffer.from([0, ...Buffer.from('000000006553f100', 'hex'), 0, 3])),
      oracle.sealAt(om, sub, 1, Buffer.from([3, 11, 0x65])),
    ]),
    'ERR_SS2022_BAD_HEADER',
  );
  add(
    'a bit flipped in the variable header',
    'tcp-request',
    flip(good, spec.keySize + 11 + 16 + 2),
    'ERR_SS_BAD_TAG',
  );
  add(
    'response bound to another request',
    'tcp-response',
    oracle.tcpResponse({ ...response, requestSalt: seeded('another request', spec.keySize) }),
    'ERR_SS2022_BAD_REQUEST_SALT',
    { requestSaltHex: hex(salt) },
  );
  add(
    'response header type 0 (a request reflected back)',
    'tcp-response',
    oracle.tcpResponse({ ...response, type: 0 }),
    'ERR_SS2022_BAD_HEADER',
    { requestSaltHex: hex(salt) },
  );
  add(
    'response timestamp 31 s old',
    'tcp-response',
    oracle.tcpResponse({ ...response, timestamp: ts - 31n }),
    'ERR_SS2022_BAD_TIMESTAMP',
    { requestSaltHex: hex(salt) },
  );
  add(
    'UDP timestamp 40 s old',
    'udp-request',
    oracle.udpPacket({ ...udp, timestamp: ts - 40n }),
    'ERR_SS2022_BAD_TIMESTAMP',
  );
  add(
    'UDP request of type 1',
    'udp-request',
    oracle.udpPacket({ ...udp, type: 1 }),
    'ERR_SS2022_BAD_HEADER',
  );
  add(
    'UDP padding past the packet',
    'udp-request',
    oracle.udpPacket({ ...udp, padding: new Uint8Array(3), declaredPadding: 1000 }),
    'ERR_SS2022_PADDING',
  );
  // type 0, timestamp, no padding, and then nothing: the address is missing
  const bare = Buffer.from([0, ...Buffer.from('000000006553f100', 'hex'), 0, 0]);
  add(
    'UDP request without an address',
    'udp-request',
    oracle.udp2022Raw(
      om,
      password,
      Buffer.concat([udp.sessionId, Buffer.alloc(8)]),
      bare,
      true,
      udp.nonce,
    ),
    'ERR_SOCKS_ADDR',
  );
  const reply = { ...udp, clientSessionId: seeded('c', 8) };
  add(
    'UDP response timestamp 31 s in the future',
    'udp-response',
    oracle.udpPacket({ ...reply, timestamp: ts + 31n }),
    'ERR_SS2022_BAD_TIMESTAMP',
  );
  add(
    'UDP response of type 0',
    'udp-response',
    oracle.udpPacket({ ...reply, type: 0 }),
    'ERR_SS2022_BAD_HEADER',
  );
  return out;
}

const SOURCE =
  "Generated by test/vectors/gen-ss-vectors.ts: Ladder's encoder on fixed inputs (salts, padding, ids given explicitly through a scripted random source; timestamp 1700000000). No Debian peer speaks 2022, so every case is cross-checked in test/ss-vectors.test.ts against an independent implementation written from the specs on @noble/ciphers and @noble/hashes (test/helpers/ss-oracle.ts). AEAD-2017 is additionally checked against shadowsocks-libev in test/integration/interop-libev.test.ts.";

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { v2017, v2022, negative } = generate();
  const dir = vectorsDir();
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
