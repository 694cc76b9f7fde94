/**
 * The DNS tunnel's client, server and link on a fake clock, over an in-memory "resolver" that
 * delays, reorders, drops and duplicates datagrams by a seeded generator: every run is the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { LadderError } from '../errors.js';
import {
  decodeTunnelAnswer,
  encodeTunnelQuery,
  TUNNEL_FLAG,
  type TunnelPacket,
} from '../codec/dns-tunnel.js';
import { openDnsTunnel, type DatagramPort } from './dns-tunnel-client.js';
import { TunnelLink, unwrapOffset, type TunnelTimers } from './dns-tunnel-link.js';
import { DnsTunnelServer, type DnsTunnelServerOptions } from './dns-tunnel-server.js';

const DOMAIN = 't.example.com';

/** Manual time: timers run in order as `advance` passes their due time. */
class FakeTime implements TunnelTimers {
  now = 1_000_000;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  readonly clock = { now: () => this.now };

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.#timers.delete(next[0]);
      this.now = Math.max(this.now, next[1].at);
      next[1].fn();
    }
    this.now = end;
  }
}

/** A deterministic generator (xorshift32) for loss, duplication and delays. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

function seededBytes(seed: number): (n: number) => Uint8Array {
  const r = prng(seed);
  return (n) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

interface PathOptions {
  drop?: number;
  duplicate?: number;
  /** Delays from 1 to this many ms, so datagrams overtake each other. */
  jitterMs?: number;
}

/** The "resolver": carries the client's queries to the server and answers back. */
class Path {
  readonly time: FakeTime;
  readonly server: DnsTunnelServer;
  readonly sessions: Duplex[] = [];
  readonly o: Required<PathOptions>;
  readonly #rand = prng(7);
  blackhole = false;
  queries = 0;

  constructor(time: FakeTime, o: PathOptions = {}, server: Partial<DnsTunnelServerOptions> = {}) {
    this.time = time;
    this.o = { drop: 0, duplicate: 0, jitterMs: 1, ...o };
    this.server = new DnsTunnelServer({
      domain: DOMAIN,
      clock: time.clock,
      timers: time,
      onSession: (s) => this.sessions.push(s),
      ...server,
    });
  }

  #carry(msg: Buffer, deliver: (m: Buffer) => void): void {
    if (this.blackhole || this.#rand() < this.o.drop) return;
    const copies = this.#rand() < this.o.duplicate ? 2 : 1;
    for (let i = 0; i < copies; i++)
      this.time.setTimeout(() => deliver(msg), 1 + Math.floor(this.#rand() * this.o.jitterMs));
  }

  port(source = '198.18.0.1'): DatagramPort & { closed: boolean } {
    let onMessage: (m: Buffer) => void = () => {};
    const port = {
      closed: false,
      send: (msg: Buffer) => {
        this.queries++;
        this.#carry(msg, (m) =>
          this.server.handle(m, source, (answer) =>
            this.#carry(answer, (a) => {
              if (!port.closed) onMessage(a);
            }),
          ),
        );
      },
      onMessage: (fn: (m: Buffer) => void) => (onMessage = fn),
      close: () => (port.closed = true),
    };
    return port;
  }
}

function sha(parts: Buffer[]): string {
  return createHash('sha256').update(Buffer.concat(parts)).digest('hex');
}

function collect(s: Duplex): { parts: Buffer[]; ended: boolean; error: Error | null } {
  const out = { parts: [] as Buffer[], ended: false, error: null as Error | null };
  s.on('data', (c: Buffer) => out.parts.push(c));
  s.on('end', () => (out.ended = true));
  s.on('error', (e) => (out.error = e));
  return out;
}

/** Steps fake time and lets stream callbacks run, until `done` or `maxMs` of fake time. */
async function run(time: FakeTime, done: () => boolean, maxMs: number, stepMs = 5): Promise<void> {
  for (let t = 0; t < maxMs && !done(); t += stepMs) {
    time.advance(stepMs);
    await new Promise((r) => setImmediate(r));
  }
}

const UP = Buffer.from(seededBytes(1)(30_000));
const DOWN = Buffer.from(seededBytes(2)(100_000));

/** Client sends UP and ends, server sends DOWN and ends; both must arrive whole. */
async function exchange(path: Path, maxMs: number): Promise<void> {
  const time = path.time;
  const port = path.port();
  const client = openDnsTunnel(port, {
    domain: DOMAIN,
    clock: time.clock,
    timers: time,
    random: seededBytes(3),
  });
  const got = collect(client);
  client.end(UP);
  await run(time, () => path.sessions.length > 0, 5000);
  const server = path.sessions[0]!;
  const sent = collect(server);
  server.end(DOWN);
  await run(
    time,
    () => got.ended && sent.ended && port.closed && path.server.sessions === 0,
    maxMs,
  );
  assert.equal(got.error, null);
  assert.equal(sent.error, null);
  assert.ok(got.ended && sent.ended, 'both directions ended');
  assert.equal(sha(got.parts), sha([DOWN]), 'server → client bytes equal');
  assert.equal(sha(sent.parts), sha([UP]), 'client → server bytes equal');
  assert.ok(port.closed, 'the client closed its socket once both FINs were acknowledged');
  assert.equal(path.server.sessions, 0, 'the server forgot the session');
  assert.equal(path.sessions.length, 1, 'one session');
}

test('a clean path: both directions, in order, FIN both ways, nothing left behind', async () => {
  const time = new FakeTime();
  await exchange(new Path(time), 60_000);
});

test('loss, duplication and reordering: the streams still arrive whole and in order', async () => {
  const time = new FakeTime();
  await exchange(new Path(time, { drop: 0.2, duplicate: 0.15, jitterMs: 40 }), 300_000);
});

test('a path that goes silent for 5 s: retransmission fills the gap after', async () => {
  const time = new FakeTime();
  const path = new Path(time);
  const port = path.port();
  const client = openDnsTunnel(port, { domain: DOMAIN, clock: time.clock, timers: time });
  const got = collect(client);
  await run(time, () => path.sessions.length > 0, 5000);
  const server = path.sessions[0]!;
  const sent = collect(server);
  server.write(DOWN.subarray(0, 20_000));
  await run(time, () => got.parts.length > 0, 5000);
  path.blackhole = true;
  client.write(UP.subarray(0, 5000));
  server.write(DOWN.subarray(20_000, 40_000));
  await run(time, () => false, 5000);
  path.blackhole = false;
  await run(
    time,
    () => Buffer.concat(got.parts).length === 40_000 && Buffer.concat(sent.parts).length === 5000,
    60_000,
  );
  assert.equal(sha(got.parts), sha([DOWN.subarray(0, 40_000)]));
  assert.equal(sha(sent.parts), sha([UP.subarray(0, 5000)]));
  assert.equal(got.error, null);
  client.destroy();
  server.destroy();
});

test('no answer at all: the client fails with ERR_DIAL_TIMEOUT after deadMs', async () => {
  const time = new FakeTime();
  const path = new Path(time);
  path.blackhole = true;
  const port = path.port();
  const client = openDnsTunnel(port, {
    domain: DOMAIN,
    clock: time.clock,
    timers: time,
    deadMs: 10_000,
  });
  const got = collect(client);
  client.write('hello');
  await run(time, () => got.error !== null, 30_000, 100);
  assert.ok(got.error instanceof LadderError);
  assert.equal((got.error as LadderError).code, 'ERR_DIAL_TIMEOUT');
  assert.match(got.error.message, /--dns-tunnel-resolver/);
  assert.ok(time.now - 1_000_000 >= 10_000, 'not before deadMs');
  assert.ok(port.closed);
});

test('caps: sessions in all and per source; a refused session gets RST, the client an error', async () => {
  const time = new FakeTime();
  const path = new Path(time, {}, { maxSessions: 3, maxSessionsPerSource: 2 });
  const open = (source: string): ReturnType<typeof collect> => {
    const c = openDnsTunnel(path.port(source), {
      domain: DOMAIN,
      clock: time.clock,
      timers: time,
      random: seededBytes(100 + path.queries),
    });
    c.write('x');
    return collect(c);
  };
  const a = [open('198.18.0.1'), open('198.18.0.1'), open('198.18.0.1')];
  await run(time, () => a[2]!.error !== null, 5000);
  assert.equal(path.server.sessions, 2);
  assert.equal(path.server.sessionsFrom('198.18.0.1'), 2);
  assert.equal((a[2]!.error as LadderError | null)?.code, 'ERR_DIAL_REFUSED');
  const b = [open('198.18.0.2'), open('198.18.0.3')];
  await run(time, () => b[1]!.error !== null, 5000);
  assert.equal(path.server.sessions, 3);
  assert.equal(b[0]!.error, null);
  assert.equal((b[1]!.error as LadderError | null)?.code, 'ERR_DIAL_REFUSED');
  path.server.close();
});

test('idle deadline: a session whose client went away is closed and forgotten', async () => {
  const time = new FakeTime();
  const path = new Path(time, {}, { idleTimeoutMs: 20_000 });
  const port = path.port();
  openDnsTunnel(port, { domain: DOMAIN, clock: time.clock, timers: time }).write('hi');
  await run(time, () => path.sessions.length > 0, 5000);
  const closed = new Promise((r) => path.sessions[0]!.once('close', r));
  path.blackhole = true;
  const at = time.now;
  await run(time, () => path.server.sessions === 0, 60_000, 100);
  assert.equal(path.server.sessions, 0);
  assert.ok(time.now - at >= 20_000 - 3000, 'not long before the idle deadline');
  await closed;
  assert.ok(path.sessions[0]!.destroyed);
});

test('held polls: at most maxHeld per session; the rest are answered at once', () => {
  const time = new FakeTime();
  const server = new DnsTunnelServer({
    domain: DOMAIN,
    clock: time.clock,
    timers: time,
    maxHeld: 4,
    onSession: () => {},
  });
  const answers: Buffer[] = [];
  const poll = (id: number): void =>
    server.handle(
      encodeTunnelQuery(
        DOMAIN,
        { session: 42, flags: 0, seq: 0, ack: 0, data: new Uint8Array(0) },
        id,
        Uint8Array.of(0, 0, 0, id),
      ),
      '198.18.0.9',
      (a) => answers.push(a),
    );
  for (let i = 0; i < 20; i++) poll(i);
  assert.equal(answers.length, 16, 'all but 4 answered at once');
  time.advance(10_000);
  assert.equal(answers.length, 20, 'the held ones answered by their hold time');
  assert.ok(answers.every((a) => decodeTunnelAnswer(a).packet?.session === 42));
  server.close();
  // A late query for a closed session is told so (RST), not made a new session.
  poll(99);
  assert.equal(decodeTunnelAnswer(answers[20]!).packet!.flags, TUNNEL_FLAG.RST);
  assert.equal(server.sessions, 0);
});

test('link: out-of-order data is held within bounds; bogus ACKs are ignored', () => {
  const l = new TunnelLink(1, { rtoMs: 1000, reorderBytes: 100, reorderSegments: 2 });
  const pkt = (seq: number, data: string, ack = 0, flags = 0): TunnelPacket => ({
    session: 1,
    flags,
    seq,
    ack,
    data: Buffer.from(data),
  });
  assert.deepEqual(l.receive(pkt(3, 'def'), 0).data, []);
  assert.deepEqual(l.receive(pkt(6, 'ghi'), 0).data, []);
  assert.deepEqual(l.receive(pkt(9, 'jkl'), 0).data, [], 'a third early segment is dropped');
  assert.deepEqual(l.receive(pkt(200, 'far'), 0).data, [], 'beyond the reorder window');
  const r = l.receive(pkt(0, 'abc'), 0);
  assert.equal(Buffer.concat(r.data).toString(), 'abcdefghi');
  assert.equal(l.receive(pkt(2, 'cdefghijk', 0, TUNNEL_FLAG.FIN), 0).ended, true);
  // Nothing was sent yet: an ACK of 5 is not from our peer.
  assert.equal(l.receive(pkt(12, '', 5), 0).acked, false);
  l.write(Buffer.from('hello'));
  const first = l.next(3, 0);
  assert.equal(Buffer.from(first.data).toString(), 'hel');
  assert.equal(first.ack, 12, 'the peer FIN counts one');
  assert.equal(l.receive(pkt(12, '', 4), 1).acked, false, 'beyond what was sent');
  assert.equal(l.receive(pkt(12, '', 2), 1).acked, true);
  assert.equal(l.buffered, 3);
  // No ACK for rtoMs: back to the first unacknowledged byte.
  assert.equal(Buffer.from(l.next(10, 500).data).toString(), 'lo');
  assert.equal(Buffer.from(l.next(10, 1001).data).toString(), 'llo');
});

test('offsets wrap at 2^32 on the wire', () => {
  assert.equal(unwrapOffset(5, 2 ** 32 - 3), 2 ** 32 + 5);
  assert.equal(unwrapOffset(2 ** 32 - 3, 2 ** 32 + 5), 2 ** 32 - 3);
  assert.equal(unwrapOffset(10, 0), 10);
});

test('a reader that does not read: the writer waits, memory stays bounded, then all arrives', async () => {
  const time = new FakeTime();
  const path = new Path(time, {}, { maxBufferedBytes: 16 * 1024 });
  const client = openDnsTunnel(path.port(), { domain: DOMAIN, clock: time.clock, timers: time });
  client.pause();
  client.write('go');
  await run(time, () => path.sessions.length > 0, 5000);
  const server = path.sessions[0]! as ReturnType<typeof openDnsTunnel>;
  let written = false;
  for (let i = 0; i < DOWN.length; i += 4096) server.write(DOWN.subarray(i, i + 4096));
  server.end(() => (written = true));
  await run(time, () => false, 20_000);
  assert.ok(!written, 'the writer waits');
  assert.ok(server.link.buffered <= 16 * 1024 + 4096, `${server.link.buffered} unacknowledged`);
  assert.ok(client.readableLength <= 16 * 1024 + 1500, `${client.readableLength} bytes buffered`);
  const got = collect(client);
  client.resume();
  await run(time, () => got.ended, 120_000);
  assert.equal(sha(got.parts), sha([DOWN]));
  assert.ok(written);
});

test('fast retransmit: two GAP reports at one ACK resend the segment there, once', () => {
  const l = new TunnelLink(1, { rtoMs: 10_000, reorderBytes: 1000, reorderSegments: 8 });
  l.write(Buffer.from('0123456789'));
  const first = l.next(4, 0);
  l.next(4, 0);
  assert.equal(Buffer.from(first.data).toString(), '0123');
  const gap = { session: 1, flags: TUNNEL_FLAG.GAP, seq: 0, ack: 0, data: new Uint8Array(0) };
  l.receive(gap, 1);
  assert.equal(l.wantsToSend(1), true, 'the rest is still unsent');
  l.receive(gap, 1);
  const again = l.next(4, 2);
  assert.equal(again.seq, 0);
  assert.equal(Buffer.from(again.data).toString(), '0123');
  assert.equal(Buffer.from(l.next(4, 2).data).toString(), '89', 'then on where it was');
  l.receive(gap, 3);
  l.receive(gap, 3);
  assert.equal(l.next(4, 3).data.length, 0, 'once per ACK value');
});

test('a session its owner closed waits at most 10 s for a client that is gone', async () => {
  const time = new FakeTime();
  const path = new Path(time, {}, { idleTimeoutMs: 300_000 });
  openDnsTunnel(path.port(), { domain: DOMAIN, clock: time.clock, timers: time }).write('hi');
  await run(time, () => path.sessions.length > 0, 5000);
  path.blackhole = true;
  path.sessions[0]!.destroy();
  const at = time.now;
  await run(time, () => path.server.sessions === 0, 60_000, 100);
  assert.equal(path.server.sessions, 0);
  assert.ok(time.now - at <= 10_000 + 3000, 'long before the idle deadline');
});

test('link: a FIN acknowledged after a resend leaves nothing more to send', () => {
  const l = new TunnelLink(1, { rtoMs: 100, reorderBytes: 1000, reorderSegments: 8 });
  l.write(Buffer.from('ab'));
  l.end();
  const first = l.next(10, 0);
  assert.equal(first.flags & TUNNEL_FLAG.FIN, TUNNEL_FLAG.FIN);
  assert.equal(l.wantsToSend(150), true, 'a resend is due');
  // The resend starts (one byte, no FIN yet), then the ACK of the first FIN arrives.
  assert.equal(l.next(1, 150).flags & TUNNEL_FLAG.FIN, 0);
  l.receive({ session: 1, flags: 0, seq: 0, ack: 3, data: new Uint8Array(0) }, 150);
  assert.ok(l.finAcked);
  assert.equal(l.wantsToSend(150), false);
  l.next(10, 200);
  assert.equal(l.wantsToSend(400), false);
});

test('an idle session polls less and less, and still gets what the server writes', async () => {
  const time = new FakeTime();
  const path = new Path(time);
  const client = openDnsTunnel(path.port(), { domain: DOMAIN, clock: time.clock, timers: time });
  const got = collect(client);
  client.write('hi');
  await run(time, () => path.sessions.length > 0, 5000);
  await run(time, () => false, 5000);
  const before = path.queries;
  await run(time, () => false, 60_000, 50);
  const idle = path.queries - before;
  // Without the pause: a poll each 0.4 s hold, 150 a minute; with it, about one each 2.4 s.
  assert.ok(idle <= 30, `${idle} queries in an idle minute`);
  const at = time.now;
  path.sessions[0]!.write('news');
  await run(time, () => got.parts.length > 0, 10_000, 50);
  assert.equal(Buffer.concat(got.parts).toString(), 'news');
  assert.ok(time.now - at <= 2000 + 400 + 100, 'within a pause and a hold');
  path.server.close();
  client.destroy();
});
