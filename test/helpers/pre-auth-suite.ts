/**
 * The pre-authentication conformance suite (STYLE.md habit 9): every front that accepts connections
 * from the internet — raw Shadowsocks, the one port with and without TLS, Trojan behind TLS, the
 * WebSocket front behind TLS and on the plain `--ws-listen` port — passes the same tests of the one
 * rule in src/server/pre-auth.ts:
 * - the deadline closes a connection without a key whatever stage it is in (TCP accepted and silent,
 *   TLS handshaking, TLS done and silent, request headers trickling in), and not one tick before;
 * - a key holder's connection (and a web client that sent the decoy a whole request) leaves the
 *   deadline and outlives it;
 * - what the front does with bytes before the deadline stays its own: silence and discard for
 *   Shadowsocks, the decoy's answer byte for byte (Date aside) for HTTP;
 * - caps per source (an IPv4 /32) and in total close the next connection at once, without a byte,
 *   while other sources still get in.
 * The deadline runs on {@link ManualTimers}, so the tests move time themselves: nothing waits for it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { PreAuthGuard, type Timers } from '../../src/server/pre-auth.js';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { upgradeRequest } from '../../src/codec/websocket-handshake.js';

/** Timers that fire only when the test moves time with {@link ManualTimers.advance}. */
export class ManualTimers implements Timers {
  #now = 0;
  #next = 1;
  readonly #pending = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#pending.set(id, { at: this.#now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#pending.delete(handle as number);
  }

  /** Moves time on by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.#pending)
        if (e[1].at <= until && (!first || e[1].at < first[1].at)) first = e;
      if (!first) break;
      this.#pending.delete(first[0]);
      this.#now = first[1].at;
      first[1].fn();
    }
    this.#now = until;
  }
}

/** What a front speaks: the tests that do not apply are skipped. */
export interface PreAuthTraits {
  /** Connections start with TLS (the one port with TLS). */
  tls: boolean;
  /** Unknown HTTP requests reach the decoy site (after TLS, when `tls`). */
  http: boolean;
  /** Bytes no key opens meet Shadowsocks' rule: silence until the deadline. */
  ssRule: boolean;
}

/** A front under test. */
export interface PreAuthFront {
  port: number;
  /**
   * Opens an authenticated connection and proves it works (an echo through the server, or a
   * WebSocket upgrade answered); returns a check that it still works later.
   */
  keyed(): Promise<{ stillWorks(): Promise<void>; close(): void }>;
  close(): Promise<void>;
}

export interface PreAuthFrontStart {
  (guard: PreAuthGuard): Promise<PreAuthFront>;
}

const DEADLINE_MS = 10_000;
/** The built-in pages' modification time, the same for every decoy (it shows in ETag and Last-Modified). */
export const DECOY_MTIME_MS = Date.UTC(2026, 0, 2, 3, 4, 5);

/** Waits for `cond`, one event-loop turn at a time; fails after `limit` turns of a few ms. */
export async function until(cond: () => boolean, what: string, limit = 2000): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`timed out waiting for ${what}`);
}

interface Client {
  sock: Duplex;
  closed: Promise<void>;
  isClosed(): boolean;
  /** Every byte received so far. */
  received(): Buffer;
}

function track(sock: Duplex): Client {
  let closed = false;
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  sock.on('error', () => {});
  const p = new Promise<void>((r) =>
    sock.once('close', () => {
      closed = true;
      r();
    }),
  );
  return { sock, closed: p, isClosed: () => closed, received: () => Buffer.concat(chunks) };
}

/** A plain TCP connection (from `localAddress` when given), once connected. */
export async function openTcp(port: number, localAddress = '127.0.0.1'): Promise<Client> {
  const s = connect({ port, host: '127.0.0.1', localAddress });
  const c = track(s);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return c;
}

/** A TLS connection whose handshake is done. */
export async function openTls(port: number): Promise<Client & { sock: TLSSocket }> {
  const s = tlsConnect({
    port,
    host: '127.0.0.1',
    servername: 'localhost',
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1'],
  });
  const c = track(s);
  await new Promise<void>((resolve, reject) => {
    s.once('secureConnect', resolve);
    s.once('error', reject);
  });
  return c as Client & { sock: TLSSocket };
}

async function readUntil(c: Client, done: (b: Buffer) => boolean, what: string): Promise<Buffer> {
  await until(() => done(c.received()) || c.isClosed(), what);
  assert.ok(done(c.received()), `${what}: got ${JSON.stringify(c.received().toString('latin1'))}`);
  return c.received();
}

/** A complete HTTP response with Content-Length at the end of `b`. */
function wholeResponses(b: Buffer, n: number): boolean {
  let off = 0;
  for (let i = 0; i < n; i++) {
    const end = b.indexOf('\r\n\r\n', off);
    if (end < 0) return false;
    const m = /content-length: *(\d+)/i.exec(b.subarray(off, end).toString('latin1'));
    off = end + 4 + (m ? Number(m[1]) : 0);
    if (off > b.length) return false;
  }
  return true;
}

function withoutDate(b: Buffer): string {
  return b.toString('latin1').replace(/\r\nDate: [^\r]*/gi, '');
}

/** What the decoy site alone, on a plain connection, answers to `request` (then the end). */
async function decoyAlone(request: Buffer): Promise<Buffer> {
  const decoy = new DecoySite({ builtinMtimeMs: DECOY_MTIME_MS });
  const server = createServer((s) => decoy.handle(s, Buffer.alloc(0)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const c = await openTcp((server.address() as AddressInfo).port);
    c.sock.write(request);
    return await readUntil(c, (b) => wholeResponses(b, 1), 'the decoy alone');
  } finally {
    decoy.close();
    server.close();
  }
}

/** Runs the suite against one front. */
export function preAuthSuite(name: string, traits: PreAuthTraits, start: PreAuthFrontStart): void {
  const noTls = traits.tls ? false : 'this front does not speak TLS';
  const noHttp = traits.http ? false : 'this front has no web site';
  const noSs = traits.ssRule
    ? false
    : 'bytes no key opens go to the TLS stack here (one-port-tell tests that)';
  describe(`pre-auth conformance: ${name}`, () => {
    async function withFront(
      caps: { maxPerSource?: number; maxTotal?: number },
      body: (f: PreAuthFront, guard: PreAuthGuard, timers: ManualTimers) => Promise<void>,
    ): Promise<void> {
      const timers = new ManualTimers();
      const guard = new PreAuthGuard({ deadlineMs: DEADLINE_MS, timers, ...caps });
      const front = await start(guard);
      try {
        await body(front, guard, timers);
      } finally {
        await front.close();
      }
    }

    /** Holds `c` to the deadline: open one tick before it, closed by the server at it. */
    async function expectClosedAtDeadline(
      c: Client,
      guard: PreAuthGuard,
      timers: ManualTimers,
    ): Promise<void> {
      await until(() => guard.pending === 1, 'the connection to be admitted');
      timers.advance(DEADLINE_MS - 1);
      assert.equal(guard.pending, 1, 'still held one tick before the deadline');
      assert.equal(c.isClosed(), false);
      timers.advance(1);
      await until(() => c.isClosed(), 'the server to close it at the deadline');
      assert.equal(guard.pending, 0);
    }

    test('a silent TCP connection is closed at the deadline', () =>
      withFront({}, async (f, guard, timers) => {
        const c = await openTcp(f.port);
        await expectClosedAtDeadline(c, guard, timers);
        assert.equal(c.received().length, 0, 'not a byte before the close');
      }));

    test('a TLS handshake left half-way is closed at the deadline', { skip: noTls }, () =>
      withFront({}, async (f, guard, timers) => {
        const c = await openTcp(f.port);
        // A TLS record header announcing a 512-byte handshake message, and a few of its bytes.
        c.sock.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
        await expectClosedAtDeadline(c, guard, timers);
      }),
    );

    test(
      'bytes Shadowsocks refuses, handed to a TLS handshake that waits, are closed at the deadline',
      { skip: noTls },
      () =>
        withFront({}, async (f, guard, timers) => {
          const c = await openTcp(f.port);
          // An SSLv2-style record header announcing 256 bytes, and 80 of them: not a ClientHello
          // to the port's classifier, no key opens them, and the TLS stack waits for the rest.
          const bytes = randomBytes(80);
          bytes.set([0x81, 0x00, 0x01, 0x03, 0x01], 0);
          c.sock.write(bytes);
          await expectClosedAtDeadline(c, guard, timers);
          assert.equal(c.received().length, 0, 'the TLS stack sent nothing');
        }),
    );

    test(
      'a plain HTTP head trickled into the TLS port is closed at the deadline',
      { skip: noTls },
      () =>
        withFront({}, async (f, guard, timers) => {
          const c = await openTcp(f.port);
          for (const piece of ['GET / HTTP/1.1\r\n', 'Host: localhost\r\n', 'Accept: */']) {
            c.sock.write(piece);
            await new Promise((r) => setImmediate(r));
          }
          await expectClosedAtDeadline(c, guard, timers);
          assert.equal(c.received().length, 0, 'nginx answers only a whole head');
        }),
    );

    test(
      'a TLS connection that goes silent after its handshake is closed at the deadline',
      { skip: noTls },
      () =>
        withFront({}, async (f, guard, timers) => {
          const c = await openTls(f.port);
          await expectClosedAtDeadline(c, guard, timers);
        }),
    );

    test('request headers trickled in are closed at the deadline', { skip: noHttp }, () =>
      withFront({}, async (f, guard, timers) => {
        const c = traits.tls ? await openTls(f.port) : await openTcp(f.port);
        for (const piece of ['GET / HTTP/1.1\r\n', 'Host: localhost\r\n', 'Accept: */']) {
          c.sock.write(piece);
          await new Promise((r) => setImmediate(r));
        }
        await expectClosedAtDeadline(c, guard, timers);
      }),
    );

    test(
      'a whole request to the decoy leaves the deadline: its answer is the site alone',
      { skip: noHttp },
      () =>
        withFront({}, async (f, guard, timers) => {
          const request = Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
          const alone = await decoyAlone(request);
          const c = traits.tls ? await openTls(f.port) : await openTcp(f.port);
          c.sock.write(request);
          const first = await readUntil(c, (b) => wholeResponses(b, 1), 'the decoy answer');
          assert.equal(withoutDate(first), withoutDate(alone), 'byte for byte, Date aside');
          await until(() => guard.pending === 0, 'the ticket to be settled');
          timers.advance(2 * DEADLINE_MS);
          // Still open: a second request on the same connection is answered.
          c.sock.write(request);
          await readUntil(c, (b) => wholeResponses(b, 2), 'a second answer after the deadline');
          c.sock.destroy();
        }),
    );

    test('bytes no key opens meet silence and are closed at the deadline', { skip: noSs }, () =>
      withFront({}, async (f, guard, timers) => {
        const c = await openTcp(f.port);
        c.sock.write(randomBytes(200));
        await expectClosedAtDeadline(c, guard, timers);
        assert.equal(c.received().length, 0, 'discarded without a byte back');
      }),
    );

    test('a key holder leaves the deadline and outlives it', () =>
      withFront({}, async (f, guard, timers) => {
        const k = await f.keyed();
        try {
          await until(() => guard.pending === 0, 'the keyed connection to settle');
          timers.advance(2 * DEADLINE_MS);
          await k.stillWorks();
        } finally {
          k.close();
        }
      }));

    test('one source past its cap is closed at accept; another source still gets in', () =>
      withFront({ maxPerSource: 3 }, async (f, guard) => {
        const held = [];
        for (let i = 0; i < 3; i++) held.push(await openTcp(f.port));
        await until(() => guard.pending === 3, 'three connections admitted');
        const refused = await openTcp(f.port);
        await until(() => refused.isClosed(), 'the refused connection to close');
        assert.equal(refused.received().length, 0);
        const other = await openTcp(f.port, '127.0.0.2');
        await until(() => guard.pending === 4, 'the other source admitted');
        assert.equal(guard.pendingFrom('127.0.0.1'), 3);
        for (const c of [...held, other]) c.sock.destroy();
        await until(() => guard.pending === 0, 'every ticket released on close');
      }));

    test('past the total cap every source is closed at accept', () =>
      withFront({ maxTotal: 2 }, async (f, guard) => {
        const a = await openTcp(f.port);
        const b = await openTcp(f.port, '127.0.0.3');
        await until(() => guard.pending === 2, 'two connections admitted');
        const refused = await openTcp(f.port, '127.0.0.4');
        await until(() => refused.isClosed(), 'the refused connection to close');
        assert.equal(refused.received().length, 0);
        a.sock.destroy();
        b.sock.destroy();
        await until(() => guard.pending === 0, 'every ticket released on close');
      }));
  });
}

/** An echo round trip over `s`: `bytes` out, the same back. */
export async function echoRoundTrip(s: Duplex, bytes = randomBytes(64)): Promise<void> {
  const got: Buffer[] = [];
  let n = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      got.push(Buffer.from(c));
      n += c.length;
      if (n >= bytes.length) {
        s.off('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before the echo came back')));
    s.write(bytes);
  });
  assert.deepEqual(Buffer.concat(got), bytes);
}

/** A WebSocket upgrade on `path` over `c`; resolves once the 101 has come. */
export async function wsUpgrade(sock: Duplex, path: string): Promise<void> {
  const c = track(sock);
  sock.write(upgradeRequest({ path, host: 'localhost', key: randomBytes(16).toString('base64') }));
  const b = await readUntil(c, (x) => x.includes('\r\n\r\n'), 'the upgrade answer');
  assert.match(b.toString('latin1'), /^HTTP\/1\.1 101 /);
}

export type { Socket };
