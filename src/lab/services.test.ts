// The lab's ISP resolver on loopback: answers go back to whoever asked, by
// the ID they used, even when two clients use the same one; garbage, answers nobody waits for,
// and queries beyond the cap are dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { IspResolver, ISP_RESOLVER_MAX_PENDING } from './services.js';

async function bound(): Promise<Socket> {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

/** A 12-byte DNS header with `id` and a tag byte after it, so answers can be told apart. */
function query(id: number, tag: number): Buffer {
  const b = Buffer.alloc(13);
  b.writeUInt16BE(id, 0);
  b[12] = tag;
  return b;
}

test('the ISP resolver forwards each query and returns each answer to its asker with its ID', async () => {
  const upstream = await bound();
  const held: { msg: Buffer; port: number }[] = [];
  let answerNow = true;
  upstream.on('message', (msg, from) => {
    if (answerNow) upstream.send(msg, from.port, from.address);
    else held.push({ msg, port: from.port });
  });
  // A free port for the resolver (it binds its own sockets).
  const probe = await bound();
  const port = probe.address().port;
  probe.close();
  const r = new IspResolver(
    { address: '127.0.0.1', port },
    { address: '127.0.0.1', port: upstream.address().port },
  );
  await r.start();
  const a = await bound();
  const b = await bound();
  try {
    const got = (s: Socket) => once(s, 'message').then(([m]) => m as Buffer);
    const ga = got(a);
    const gb = got(b);
    a.send(query(7, 0xaa), port, '127.0.0.1');
    b.send(query(7, 0xbb), port, '127.0.0.1');
    const [ma, mb] = await Promise.all([ga, gb]);
    assert.equal(ma.readUInt16BE(0), 7);
    assert.equal(ma[12], 0xaa);
    assert.equal(mb.readUInt16BE(0), 7);
    assert.equal(mb[12], 0xbb);

    // Beyond the cap, queries are dropped, not queued: hold the upstream answers.
    answerNow = false;
    for (let i = 0; i < ISP_RESOLVER_MAX_PENDING + 10; i++) a.send(query(i, 1), port, '127.0.0.1');
    a.send(Buffer.from('short'), port, '127.0.0.1'); // not a DNS header: dropped
    while (held.length < ISP_RESOLVER_MAX_PENDING) await once(upstream, 'message');
    // An answer whose ID nobody waits for is dropped; a held one reaches its asker with its ID.
    upstream.send(query(0xfffe, 3), held[0]!.port, '127.0.0.1');
    const back = got(a);
    upstream.send(held[5]!.msg, held[5]!.port, '127.0.0.1');
    const m = await back;
    assert.equal(m.readUInt16BE(0), 5);
    assert.equal(m[12], 1);
    // A slot is free now: the next query is forwarded, and it is the next thing upstream sees
    // (the resolver forwards in order from one socket, so a forwarded extra would come first).
    const next = once(upstream, 'message').then(([x]) => x as Buffer);
    a.send(query(999, 2), port, '127.0.0.1');
    assert.equal((await next)[12], 2);
    assert.equal(held.length, ISP_RESOLVER_MAX_PENDING + 1);
  } finally {
    r.close();
    for (const s of [upstream, a, b]) s.close();
  }
});
