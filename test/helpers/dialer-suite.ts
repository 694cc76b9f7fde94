/**
 * The conformance suite every StreamDialer/PacketDialer passes (STYLE.md habit 9): direct, and
 * Shadowsocks with every method. A new transport is done when it passes this.
 */
import { test, before, after } from 'node:test';
import { streamOutcome } from './outcome.js';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { PacketDialer, StreamDialer } from '../../src/transport/types.js';
import { closedPort, tcpEcho, udpEcho, type Running } from './echo.js';

export interface DialerUnderTest {
  dialer: StreamDialer;
  packetDialer?: PacketDialer;
  close(): Promise<void>;
}

function readAll(d: Duplex, limitMs = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`no end within ${limitMs} ms`)), limitMs);
    d.on('data', (c: Buffer) => parts.push(c));
    d.on('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts));
    });
    d.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Reads until `n` bytes came (then ends our side), or the stream ends or fails. */
function readN(d: Duplex, n: number, limitMs = 20_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(
      () => reject(new Error(`${got} of ${n} bytes in ${limitMs} ms`)),
      limitMs,
    );
    const done = (): void => {
      clearTimeout(timer);
      d.end();
      resolve(Buffer.concat(parts));
    };
    d.on('data', (c: Buffer) => {
      parts.push(c);
      got += c.length;
      if (got >= n) done();
    });
    d.on('end', done);
    d.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export interface DialerSuiteOptions {
  /**
   * false for transports without half-close (Mux.Cool: End closes a session both ways, as in
   * v2ray): the echo tests then read the whole answer before ending their side.
   */
  halfClose?: boolean;
}

export function dialerSuite(
  name: string,
  make: () => Promise<DialerUnderTest>,
  options: DialerSuiteOptions = {},
): void {
  const halfClose = options.halfClose ?? true;
  let sut: DialerUnderTest;
  let echo: Running;
  let banner: Running;
  let uecho: Running;
  before(async () => {
    sut = await make();
    echo = await tcpEcho();
    banner = await tcpEcho({ banner: Buffer.from('220 server speaks first\r\n') });
    uecho = await udpEcho();
  });
  after(async () => {
    await sut.close();
    await echo.close();
    await banner.close();
    await uecho.close();
  });

  test(`${name}: small echo${halfClose ? ', then half-close returns the rest' : ''}`, async () => {
    const d = await sut.dialer.dial({ host: '127.0.0.1', port: echo.port });
    const got = halfClose ? readAll(d) : readN(d, 11);
    d.write('hello ');
    if (halfClose) d.end('world');
    else d.write('world');
    assert.equal((await got).toString(), 'hello world');
  });

  test(`${name}: 8 MiB each way, in odd-sized writes, hashed`, async () => {
    const d = await sut.dialer.dial({ host: '127.0.0.1', port: echo.port });
    const data = randomBytes(8 * 1024 * 1024);
    const got = halfClose ? readAll(d, 60_000) : readN(d, data.length, 60_000);
    for (let i = 0; i < data.length;) {
      const n = 1 + ((i * 7919) % 100_000);
      const ok = d.write(data.subarray(i, i + n));
      i += n;
      if (!ok) await new Promise((r) => d.once('drain', r));
    }
    if (halfClose) d.end();
    assert.equal(sha(await got), sha(data));
  });

  test(`${name}: a server that speaks first is heard without the client writing`, async () => {
    const d = await sut.dialer.dial({ host: '127.0.0.1', port: banner.port });
    const first = await new Promise<Buffer>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no banner within 10 s')), 10_000);
      d.once('data', (c: Buffer) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    assert.match(first.toString(), /^220 server speaks first/);
    d.destroy();
  });

  test(`${name}: a refused target fails or ends without data`, async () => {
    const port = await closedPort();
    let d: Duplex;
    try {
      d = await sut.dialer.dial({ host: '127.0.0.1', port });
    } catch (err) {
      assert.match((err as Error).name, /DialError/);
      return;
    }
    d.write('anyone?');
    const out = await streamOutcome(d, 20_000);
    assert.equal(out.bytes.length, 0, 'no data from a refused target');
    assert.notEqual(out.how, 'open', 'the dialed stream ends or fails');
  });

  test(`${name}: 50 connections at once`, async () => {
    const runs = Array.from({ length: 50 }, async (_v, i) => {
      const d = await sut.dialer.dial({ host: '127.0.0.1', port: echo.port });
      const msg = `conn ${i}`;
      const got = halfClose ? readAll(d) : readN(d, msg.length);
      if (halfClose) d.end(msg);
      else d.write(msg);
      assert.equal((await got).toString(), msg);
    });
    await Promise.all(runs);
  });

  test(`${name}: UDP echo`, { skip: false }, async (t) => {
    if (!sut.packetDialer) {
      t.skip('this dialer has no UDP');
      return;
    }
    const got: string[] = [];
    const session = sut.packetDialer.open((payload, from) => {
      assert.equal(from.port, uecho.port);
      got.push(payload.toString());
    });
    // UDP may drop: send a few rounds until all three come back, bounded.
    for (let round = 0; round < 20 && got.length < 3; round++) {
      for (const m of ['one', 'two', 'three'])
        if (!got.includes(m)) session.send(Buffer.from(m), { host: '127.0.0.1', port: uecho.port });
      await new Promise((r) => setTimeout(r, 100));
    }
    session.close();
    assert.deepEqual([...new Set(got)].sort(), ['one', 'three', 'two']);
  });
}
