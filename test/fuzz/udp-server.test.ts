/**
 * Hostile datagrams against a real SsServer UDP port (AEAD-2017 and 2022 keys): random bytes of any
 * length, and valid datagrams with one byte changed. Each must be dropped with exactly one counted
 * reason, never reach the target, never throw; afterwards a valid datagram still round-trips.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { SsServer } from '../../src/server/ss-server.js';
import { DirectDialer, DirectPacketDialer } from '../../src/transport/direct.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { decodeUdp2017, encodeUdp2017, encodeUdp2022 } from '../../src/codec/ss-udp.js';

test(
  'UDP server: random and mutated datagrams are dropped, one counted reason each',
  { timeout: 120_000 },
  async (t) => {
    const k2017 = makeCipherKey('aes-128-gcm', 'fuzz-udp');
    const k2022 = makeCipherKey('2022-blake3-aes-128-gcm', randomBytes(16).toString('base64'));
    let probes = 0;
    let waiter: (() => void) | null = null;
    const server = new SsServer({
      keys: [
        { id: 'a', key: k2017 },
        { id: 'b', key: k2022 },
      ],
      dialer: new DirectDialer(),
      packetDialer: new DirectPacketDialer(),
      events: {
        probe: () => {
          probes++;
          waiter?.();
        },
      },
    });
    const { port } = await server.listen('127.0.0.1', 0);
    const target = createSocket('udp4');
    const received: Buffer[] = [];
    target.on('message', (m, r) => {
      received.push(m);
      target.send(m, r.port, r.address);
    });
    target.bind(0, '127.0.0.1');
    await once(target, 'listening');
    const client = createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    t.after(async () => {
      client.close();
      target.close();
      await server.close(0);
    });
    const dest = { host: '127.0.0.1', port: target.address().port };
    const valid = (): Buffer[] => [
      encodeUdp2017(k2017, randomBytes(16), { target: dest, payload: Buffer.from('x') }),
      encodeUdp2022(
        k2022,
        { sessionId: randomBytes(8), packetId: 0n },
        { target: dest, payload: Buffer.from('y') },
        new Uint8Array(0),
        Date.now(),
        randomBytes,
      ),
    ];
    const send = async (d: Uint8Array): Promise<void> => {
      const before = probes;
      const counted = new Promise<void>((resolve) => {
        waiter = () => {
          if (probes > before) resolve();
        };
      });
      client.send(d, port, '127.0.0.1');
      await counted;
      assert.equal(probes, before + 1, 'exactly one reason counted');
    };
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 2_000 }),
          fc
            .tuple(fc.nat(1), fc.nat(10_000), fc.integer({ min: 1, max: 255 }))
            .map(([which, at, x]) => {
              const d = valid()[which]!;
              d[at % d.length]! ^= x;
              return Uint8Array.from(d);
            }),
        ),
        async (d) => {
          // An empty datagram carries nothing to count; it must simply not break the server.
          if (d.length === 0) return;
          await send(d);
        },
      ),
      { numRuns: 300 },
    );
    assert.equal(received.length, 0, 'nothing reached the target');
    // Still serving: a valid AEAD-2017 datagram round-trips.
    const reply = once(client, 'message') as Promise<[Buffer]>;
    client.send(valid()[0]!, port, '127.0.0.1');
    const [r] = await reply;
    assert.deepEqual(decodeUdp2017(k2017, r)?.payload, Buffer.from('x'));
  },
);
