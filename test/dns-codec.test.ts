// DNS codec (src/codec/dns.ts): the vectors of test/vectors/dns.json, the codec battery, negative
// cases, and a cross-check with an independent implementation: c-ares (node:dns) sends its queries
// to a loopback server that our decoder reads, and reads the vector answers our server sends back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { fileURLToPath } from 'node:url';
import { CodecError } from '../src/errors.js';
import {
  decodeDnsMessage,
  decodeDnsTcpFrame,
  dnsMessageBytes,
  dnsMessageLength,
  dnsQuery,
  dnsTcpFrameLength,
  encodeDnsMessage,
  encodeDnsTcpFrame,
  DNS_TYPE,
  type DnsMessage,
} from '../src/codec/dns.js';
import { checkCodec } from './helpers/codec-battery.js';

interface Case {
  name: string;
  hex: string;
  value: DnsMessage;
  roundTrip: boolean;
  caresA?: string[];
  caresAAAA?: string[];
  caresError?: string;
  caresName?: string;
}
const vectors = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../test/vectors/dns.json', import.meta.url)), 'utf8'),
) as { cases: Case[]; negative: { name: string; hex: string; code: string }[] };

const messageCodec = {
  encode: encodeDnsMessage,
  length: dnsMessageLength,
  decode: decodeDnsMessage,
};

for (const c of vectors.cases) {
  test(`dns vector: ${c.name}`, () => {
    const bytes = Buffer.from(c.hex, 'hex');
    const d = decodeDnsMessage(bytes, 0);
    assert.ok(d);
    assert.deepEqual(d.value, c.value);
    assert.equal(d.bytesRead, bytes.length);
    if (c.roundTrip) checkCodec(messageCodec, c.value, bytes);
    else
      for (let i = 0; i < bytes.length; i++)
        assert.equal(decodeDnsMessage(bytes.subarray(0, i), 0), null, `prefix ${i} needs more`);
  });
}

for (const n of vectors.negative) {
  test(`dns negative vector: ${n.name}`, () => {
    assert.throws(
      () => decodeDnsMessage(Buffer.from(n.hex, 'hex'), 0),
      (e: unknown) => e instanceof CodecError && e.code === n.code,
    );
  });
}

test('dns: the encoder refuses what it cannot write', () => {
  const bad = (m: DnsMessage) => assert.throws(() => dnsMessageBytes(m), CodecError);
  bad(dnsQuery(1, `${'a'.repeat(64)}.example`, DNS_TYPE.A));
  bad(dnsQuery(1, Array.from({ length: 5 }, () => 'b'.repeat(63)).join('.'), DNS_TYPE.A));
  bad(dnsQuery(1, 'a..example', DNS_TYPE.A));
  const q = dnsQuery(1, 'example.com', DNS_TYPE.A);
  bad({
    ...q,
    answers: [{ name: 'example.com', type: DNS_TYPE.A, class: 1, ttl: 1, data: 'nope' }],
  });
  bad({
    ...q,
    answers: [{ name: 'example.com', type: DNS_TYPE.AAAA, class: 1, ttl: 1, data: '198.18.0.1' }],
  });
  bad({
    ...q,
    answers: [{ name: 'example.com', type: DNS_TYPE.TXT, class: 1, ttl: 1, data: 'text' }],
  });
});

test('dns: a trailing dot and the root name', () => {
  const a = dnsMessageBytes(dnsQuery(9, 'example.com.', DNS_TYPE.A));
  const b = dnsMessageBytes(dnsQuery(9, 'example.com', DNS_TYPE.A));
  assert.deepEqual(a, b);
  const root = dnsMessageBytes(dnsQuery(9, '', DNS_TYPE.NS));
  assert.equal(decodeDnsMessage(root, 0)!.value.questions[0]!.name, '');
});

test('dns: records of other types keep their raw RDATA, OPT included', () => {
  const m: DnsMessage = {
    ...dnsQuery(3, 'example.com', DNS_TYPE.TXT),
    flags: 0x8180,
    answers: [
      {
        name: 'example.com',
        type: DNS_TYPE.TXT,
        class: 1,
        ttl: 5,
        data: Uint8Array.from([4, 0x61, 0x62, 0x63, 0x64]),
      },
    ],
    additionals: [{ name: '', type: DNS_TYPE.OPT, class: 1232, ttl: 0, data: new Uint8Array(0) }],
  };
  checkCodec(messageCodec, m, dnsMessageBytes(m));
});

test('dns over TCP: frame battery', () => {
  const msg = dnsMessageBytes(dnsQuery(0x1234, 'example.com', DNS_TYPE.AAAA));
  const frame = Buffer.concat([Buffer.from([0, msg.length]), msg]);
  checkCodec(
    {
      encode: encodeDnsTcpFrame,
      length: dnsTcpFrameLength,
      decode: (b, o) => {
        const d = decodeDnsTcpFrame(b, o);
        return d && { value: Uint8Array.from(d.value), bytesRead: d.bytesRead };
      },
    },
    Uint8Array.from(msg),
    frame,
  );
});

/** A loopback UDP server answering each query with `answer(query)`. */
async function loopbackDns(answer: (query: Buffer) => Buffer | undefined) {
  const sock = createSocket('udp4');
  const seen: DnsMessage[] = [];
  sock.on('message', (msg, rinfo) => {
    const d = decodeDnsMessage(msg, 0);
    if (d) seen.push(d.value);
    const out = answer(msg);
    if (out) sock.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, seen, close: () => sock.close() };
}

test('dns: c-ares reads the vector answers and our decoder reads c-ares queries', async () => {
  for (const c of vectors.cases.filter((x) => x.caresA || x.caresAAAA || x.caresError)) {
    const vector = Buffer.from(c.hex, 'hex');
    const server = await loopbackDns((q) => {
      const out = Buffer.from(vector);
      q.copy(out, 0, 0, 2); // c-ares picks the ID
      return out;
    });
    try {
      const r = new Resolver({ timeout: 2000, tries: 1 });
      r.setServers([`127.0.0.1:${server.port}`]);
      const name = c.caresName ?? 'example.com';
      if (c.caresA) assert.deepEqual(await r.resolve4(name), c.caresA, c.name);
      if (c.caresAAAA) assert.deepEqual(await r.resolve6(name), c.caresAAAA, c.name);
      if (c.caresError)
        await assert.rejects(
          r.resolve4(name),
          (e: NodeJS.ErrnoException) => e.code === c.caresError,
        );
      assert.ok(server.seen.length >= 1, 'our decoder read the c-ares query');
      const q = server.seen[0]!.questions[0]!;
      assert.equal(q.name.toLowerCase(), name);
      assert.equal(q.type, c.caresAAAA ? DNS_TYPE.AAAA : DNS_TYPE.A);
    } finally {
      server.close();
    }
  }
});
