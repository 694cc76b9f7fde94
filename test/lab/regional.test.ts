// Pure tests (no root) of the ESNI/ECH modes (§7) and the Henan regional firewall (§9) in the
// engine: what triggers them and what must not, on ClientHellos built from Node's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CensorEngine } from '../../src/lab/censor/engine.js';
import { buildTcpPacket, decodeTcpHeader, TCP_FLAG } from '../../src/lab/packet/l4.js';
import { decodeIpHeader } from '../../src/lab/packet/ip.js';
import { parseClientHello, withExtension } from '../../src/lab/packet/tls-client-hello.js';
import {
  EchModule,
  echTrigger,
  EsniModule,
  esniTrigger,
  EXT_ECH,
  EXT_ESNI,
} from '../../src/lab/modules/esni.js';
import { HenanModule, henanName, HENAN_RST_PAYLOAD } from '../../src/lab/modules/henan.js';
import { buildModules, profilePolicy } from '../../src/lab/policy.js';
import { planLab } from '../../src/lab/topology.js';
import type { CensorModule } from '../../src/lab/censor/types.js';
import { nodeClientHelloRecord } from '../../src/lab/packet/node-hello.js';

const C = '198.18.1.2';
const S = '198.19.2.11';

const nodeHello = nodeClientHelloRecord;

test('withExtension appends an extension and keeps the ClientHello well formed', async () => {
  const hello = await nodeHello('allowed.lab');
  const before = parseClientHello(hello)!;
  const ext = withExtension(hello, EXT_ESNI, randomBytes(40))!;
  assert.equal(ext.length, hello.length + 44);
  const after = parseClientHello(ext)!;
  assert.equal(after.truncated, false);
  assert.equal(after.sni, 'allowed.lab');
  assert.deepEqual(after.extensions, [...before.extensions, EXT_ESNI]);
  assert.deepEqual(after.cipherSuites, before.cipherSuites);
  assert.equal(withExtension(hello.subarray(0, 100), EXT_ESNI), undefined);
});

/** A TCP flow through the engine; `opts` shapes the data segment. Returns what got through. */
function run(
  modules: CensorModule[],
  payload: Buffer,
  opts: { tcpOptions?: boolean; handshake?: boolean } = {},
) {
  const out: Buffer[] = [];
  const events: string[] = [];
  const engine = new CensorEngine({
    modules,
    send: (p) => out.push(p),
    inside: ['198.18.0.0/16'],
    onEvent: (e) => events.push(`${e.module}/${e.action}`),
  });
  const seg = (c2s: boolean, seq: number, ack: number, flags: number, data?: Buffer) =>
    buildTcpPacket({
      ip: { src: c2s ? C : S, dst: c2s ? S : C, protocol: 6, ttl: 64 },
      srcPort: c2s ? 40000 : 443,
      dstPort: c2s ? 443 : 40000,
      seq,
      ack,
      flags,
      payload: data,
    });
  if (opts.handshake !== false) {
    engine.handle(seg(true, 1000, 0, TCP_FLAG.SYN));
    engine.handle(seg(false, 5000, 1001, TCP_FLAG.SYN | TCP_FLAG.ACK));
    engine.handle(seg(true, 1001, 5001, TCP_FLAG.ACK));
  }
  let data = seg(true, 1001, 5001, TCP_FLAG.ACK | TCP_FLAG.PSH, payload);
  if (opts.tcpOptions) data = withTcpTimestamps(data);
  const n0 = out.length;
  engine.handle(data);
  const delivered = out.slice(n0).some((p) => p.equals(data));
  const injected = out.slice(n0).filter((p) => !p.equals(data));
  const n1 = out.length;
  engine.handle(seg(false, 5001, 1001 + payload.length, TCP_FLAG.ACK, Buffer.alloc(50)));
  engine.handle(seg(true, 1001 + payload.length, 5051, TCP_FLAG.ACK, Buffer.alloc(10)));
  return { delivered, injected, later: out.length - n1, events };
}

/** The same segment with a 12-byte timestamp option (data offset 8); checksum redone. */
function withTcpTimestamps(pkt: Buffer): Buffer {
  const ip = decodeIpHeader(pkt, 0)!.value;
  const tcp = decodeTcpHeader(pkt, ip.headerLength, pkt.length)!.value;
  const payload = pkt.subarray(ip.headerLength + tcp.headerLength);
  const rebuilt = buildTcpPacket({
    ip: { src: ip.src, dst: ip.dst, protocol: 6, ttl: 64 },
    srcPort: tcp.srcPort,
    dstPort: tcp.dstPort,
    seq: tcp.seq,
    ack: tcp.ack,
    flags: tcp.flags,
    payload: Buffer.concat([Buffer.alloc(12), payload]),
  });
  // turn the first 12 payload bytes into options: NOP NOP TS(10)
  const o = ip.headerLength;
  rebuilt.set(Buffer.from('0101080a0000000100000000', 'hex'), o + 20);
  rebuilt[o + 12] = 8 << 4;
  rebuilt.writeUInt16BE(0, o + 16);
  return fixTcpChecksum(rebuilt, o);
}

function fixTcpChecksum(p: Buffer, o: number): Buffer {
  let sum = 0;
  const add16 = (b: Buffer, from: number, to: number) => {
    for (let i = from; i < to; i += 2) sum += (b[i]! << 8) | (i + 1 < to ? b[i + 1]! : 0);
  };
  add16(p, 12, 20); // IPv4 src and dst
  sum += 6 + (p.length - o);
  add16(p, o, p.length);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p.writeUInt16BE(~sum & 0xffff, o + 16);
  return p;
}

test('esni (§7): a ClientHello with extension 0xffce: C→S dropped, no RST, 3-tuple residual; without it untouched', async () => {
  const hello = await nodeHello('allowed.lab');
  const esni = withExtension(hello, EXT_ESNI, randomBytes(40))!;
  assert.ok(esniTrigger(parseClientHello(esni)!));
  assert.ok(!esniTrigger(parseClientHello(hello)!));
  const hit = run([new EsniModule()], esni);
  assert.equal(hit.delivered, false);
  assert.equal(hit.injected.length, 0, 'no RST');
  assert.equal(hit.later, 1, 'S→C still passes; the later C→S packet is dropped');
  assert.deepEqual(hit.events, ['esni/block']);
  const miss = run([new EsniModule()], hello);
  assert.equal(miss.delivered, true);
  assert.equal(miss.later, 2);
  assert.equal(miss.events.length, 0);
});

test('ech (§7, TSPU mode): SNI cloudflare-ech.com with extension 0xfe0d freezes the flow; either alone, or mode gfw, passes', async () => {
  const outer = await nodeHello('cloudflare-ech.com');
  const other = await nodeHello('allowed.lab');
  const both = withExtension(outer, EXT_ECH, randomBytes(64))!;
  assert.ok(echTrigger(parseClientHello(both)!));
  const frozen = run([new EchModule()], both);
  assert.equal(frozen.delivered, false);
  assert.equal(frozen.injected.length, 0);
  assert.equal(frozen.later, 0, 'both directions dropped');
  assert.deepEqual(frozen.events, ['ech/freeze']);
  assert.equal(run([new EchModule()], outer).later, 2, 'SNI alone');
  assert.equal(run([new EchModule()], withExtension(other, EXT_ECH)!).later, 2, 'ECH alone');
  assert.equal(run([new EchModule({ mode: 'gfw' })], both).later, 2, 'the GFW does not');
});

test('henan (§9): one segment without TCP options holding a blocked SNI or Host draws one RST+ACK to the client with the 10-byte payload; options, another name, or a region-internal flow do not', async () => {
  const region = ['198.18.1.0/24'];
  const henan = () => new HenanModule({ blocklist: ['blocked.lab'], region });
  const blocked = await nodeHello('www.blocked.lab');
  const hit = run([henan()], blocked, { handshake: false });
  assert.equal(hit.delivered, true, 'the segment itself passes');
  assert.equal(hit.injected.length, 1);
  const rst = hit.injected[0]!;
  const ip = decodeIpHeader(rst, 0)!.value;
  const tcp = decodeTcpHeader(rst, ip.headerLength, rst.length)!.value;
  assert.deepEqual([ip.src, ip.dst, ip.id, ip.ttl, ip.df], [S, C, 1, 58, false]);
  assert.equal(tcp.flags, TCP_FLAG.RST | TCP_FLAG.ACK);
  assert.equal(tcp.seq, 5001, "the client's rcv_nxt");
  assert.deepEqual(rst.subarray(ip.headerLength + tcp.headerLength), HENAN_RST_PAYLOAD);
  assert.deepEqual(hit.events, ['henan/reset']);
  assert.equal(hit.later, 2, 'no residual');
  const http = Buffer.from('GET / HTTP/1.1\r\nHost: blocked.lab\r\n\r\n');
  assert.equal(run([henan()], http).injected.length, 1, 'HTTP Host');
  assert.equal(run([henan()], blocked, { tcpOptions: true }).injected.length, 0, 'TCP options');
  assert.equal(run([henan()], await nodeHello('allowed.lab')).injected.length, 0, 'allowed');
  assert.equal(
    run([new HenanModule({ blocklist: ['blocked.lab'], region: ['198.19.0.0/16'] })], blocked)
      .injected.length,
    0,
    'traffic entering the region is not censored',
  );
  assert.equal(henanName({ tcp: undefined, payload: blocked }), undefined);
  assert.equal(
    henanName({
      tcp: { srcPort: 1, dstPort: 2, seq: 0, ack: 0, headerLength: 20, flags: 0, window: 0 },
      payload: blocked.subarray(0, 100),
    }),
    undefined,
    'no TCP reassembly: a partial ClientHello shows nothing',
  );
});

test('profile henan-2024 is gfw-2025 behind the regional firewall', () => {
  const plan = planLab('ldrx-');
  const names = buildModules(profilePolicy('henan-2024', plan)).map((m) => m.name);
  assert.ok(names.includes('henan'));
  assert.deepEqual(
    names.filter((n) => n !== 'henan'),
    buildModules(profilePolicy('gfw-2025', plan)).map((m) => m.name),
  );
});
