// Connections opened ahead (preconnect.ts): opened only after a dial was answered, at most one, closed unused
// after the idle bound and not replaced; a dead one is never handed out; a dial takes the one
// being opened; measurements neither take nor leave one; close() closes it and opens no more; the
// per-server cap holds, counted in sockets at a real loopback server. Time is a manual timer list
// (the Timers seam); every other wait is for the event itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { once } from 'node:events';
import { setImmediate as turn } from 'node:timers/promises';
import type { Timers } from '../core/clock.js';
import { duplexPair } from '../../test/helpers/duplex-pair.js';
import { CappedDialer, dialIfRoom } from './capped-dialer.js';
import { openNothingAhead, Preconnect, wasOpenedAhead, type Opener } from './preconnect.js';

/** Timers that run only when `advance` passes their due time. */
class ManualTimers implements Timers {
  now = 0;
  #seq = 0;
  readonly #due = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#due.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#due.delete(handle as number);
  }
  get pending(): number {
    return this.#due.size;
  }
  advance(ms: number): void {
    this.now += ms;
    for (const [id, t] of [...this.#due].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at > this.now) break;
      this.#due.delete(id);
      t.fn();
    }
  }
}

/** An opener of in-memory connections; `server[i]` is the far end of the i-th. */
function fakeServer() {
  const client: Duplex[] = [];
  const server: Duplex[] = [];
  const holds = new Map<number, { gate: Promise<void>; fail: boolean }>();
  let opens = 0;
  const open: Opener = async () => {
    const h = holds.get(++opens);
    if (h) {
      await h.gate;
      if (h.fail) throw new Error('refused');
    }
    const [c, s] = duplexPair();
    client.push(c);
    server.push(s);
    return c;
  };
  return {
    open,
    client,
    server,
    opens: () => opens,
    /** The k-th open (from 1) waits until the returned function is called, then fails if told. */
    holdOpen(k: number, fail = false): () => void {
      let release!: () => void;
      holds.set(k, { gate: new Promise((r) => (release = r)), fail });
      return () => release();
    },
  };
}

function preconnect(f: ReturnType<typeof fakeServer>, timers: ManualTimers): Preconnect {
  return new Preconnect(f.open, { openIfRoom: (signal) => f.open(signal), timers });
}

/** A dial whose server answers (what opens the next one ahead), after which the opens run. */
async function use(f: ReturnType<typeof fakeServer>, p: Preconnect, signal?: AbortSignal) {
  const conn = await p.open(signal);
  f.server[f.client.indexOf(conn)]!.write('answer');
  await settle();
  return conn;
}

/** Lets the opens and their continuations run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await turn();
}

test('nothing is opened until a dial is answered; then one is opened ahead, closed unused after the idle bound and not replaced', async () => {
  const f = fakeServer();
  const timers = new ManualTimers();
  const p = preconnect(f, timers);
  await settle();
  assert.equal(f.client.length, 0, 'an unused dialer opens nothing');
  assert.equal(timers.pending, 0, 'and starts no timer');

  const first = await p.open();
  await settle();
  assert.equal(f.client.length, 1, 'no answer yet: nothing opened ahead');
  f.server[0]!.write('answer');
  await settle();
  assert.equal(f.client.length, 2, 'the dial, and one ahead');
  assert.equal(p.ahead, 1);
  const ahead = f.client[1]!;
  assert.equal(wasOpenedAhead(first), false);

  timers.advance(2_999);
  assert.equal(ahead.destroyed, false, 'still waiting within the bound');
  timers.advance(1);
  assert.equal(ahead.destroyed, true, 'closed at the bound');
  assert.equal(p.ahead, 0);
  timers.advance(60_000);
  await settle();
  assert.equal(f.client.length, 2, 'not replaced: an idle client opens nothing');
  assert.equal(timers.pending, 0);
});

test('the next dial takes the connection opened ahead, and one more is opened behind it', async () => {
  const f = fakeServer();
  const timers = new ManualTimers();
  const p = preconnect(f, timers);
  await use(f, p);
  const ahead = f.client[1]!;
  const second = await use(f, p);
  assert.equal(second, ahead);
  assert.equal(wasOpenedAhead(second), true);
  assert.equal(f.client.length, 3, 'the dial used one: the next is opened ahead');
  timers.advance(3_000);
  assert.equal(second.destroyed, false, 'the idle bound no longer applies to the one taken');
  assert.equal(f.client[2]!.destroyed, true);
});

test('a connection the server ended while it waited is not handed out: the dial opens a fresh one', async () => {
  const f = fakeServer();
  const timers = new ManualTimers();
  const p = preconnect(f, timers);
  await use(f, p);
  const ahead = f.client[1]!;
  f.server[1]!.end(); // the server gives up on it; nobody reads the client side yet
  await settle();
  const second = await use(f, p);
  assert.notEqual(second, ahead);
  assert.equal(wasOpenedAhead(second), false);
  assert.equal(ahead.destroyed, true, 'the dead one is closed');

  // One destroyed while it waits is dropped at once.
  await settle();
  const next = f.client.at(-1)!;
  assert.equal(p.ahead, 1);
  next.destroy();
  await settle();
  assert.equal(p.ahead, 0);
});

test('a dial while one is being opened takes that one; if its open fails the dial opens its own', async () => {
  const f = fakeServer();
  const p = preconnect(f, new ManualTimers());
  const release = f.holdOpen(2);
  await use(f, p);
  const second = p.open();
  await settle();
  assert.equal(f.opens(), 2, 'the dial waits for the one being opened, opening none of its own');
  release();
  const got = await second;
  assert.equal(got, f.client[1]);
  assert.equal(wasOpenedAhead(got), true);

  const g = fakeServer();
  const q = preconnect(g, new ManualTimers());
  const refuse = g.holdOpen(2, true);
  await use(g, q);
  const fallback = q.open();
  await settle();
  refuse();
  const own = await fallback;
  assert.equal(wasOpenedAhead(own), false, 'the failed one is not handed out');
  assert.equal(own, g.client[1], 'the dial opened its own (the third open)');
  g.server[1]!.write('answer');
  await settle();
  assert.equal(g.opens(), 4, 'and, answered, one more ahead');
});

test('a dial that fails opens nothing ahead', async () => {
  const f = fakeServer();
  const p = preconnect(f, new ManualTimers());
  f.holdOpen(1, true)();
  await assert.rejects(p.open(), /refused/);
  await settle();
  assert.equal(f.opens(), 1);
  assert.equal(p.ahead, 0);
});

test('a measurement dial neither takes a connection opened ahead nor leaves one', async () => {
  const f = fakeServer();
  const timers = new ManualTimers();
  const p = preconnect(f, timers);
  const measuring = new AbortController();
  openNothingAhead(measuring.signal);
  await use(f, p, measuring.signal);
  assert.equal(f.client.length, 1);
  assert.equal(p.ahead, 0);
  await use(f, p);
  const ahead = f.client[2]!;
  const measured = await p.open(measuring.signal);
  assert.notEqual(measured, ahead);
  assert.equal(p.ahead, 1, 'the one ahead stays for a real dial');
});

test('close() closes the connection opened ahead, one still opening included, and opens none after', async () => {
  const f = fakeServer();
  const timers = new ManualTimers();
  const p = preconnect(f, timers);
  await use(f, p);
  const ahead = f.client[1]!;
  p.close();
  assert.equal(ahead.destroyed, true);
  assert.equal(timers.pending, 0);
  await use(f, p);
  assert.equal(f.client.length, 3, 'dials still work');
  assert.equal(p.ahead, 0, 'none opened ahead after close');

  const g = fakeServer();
  const q = preconnect(g, timers);
  const release = g.holdOpen(2);
  await use(g, q);
  q.close(); // the open ahead is still under way
  release();
  await settle();
  assert.equal(g.client.length, 2);
  assert.equal(g.client[1]!.destroyed, true, 'closed as soon as it opened');
});

/** A loopback TCP server that counts the sockets open at it now and at most. */
async function countingServer(): Promise<{
  server: Server;
  port: number;
  open: () => number;
  peak: () => number;
  /** The sockets accepted, in order. */
  sockets: Socket[];
  accepted: (n: number) => Promise<void>;
}> {
  const sockets = new Set<Socket>();
  const all: Socket[] = [];
  let peak = 0;
  let total = 0;
  const server = createServer((s) => {
    sockets.add(s);
    all.push(s);
    total++;
    peak = Math.max(peak, sockets.size);
    s.on('error', () => {});
    s.pipe(s); // each request answered
    s.once('close', () => sockets.delete(s));
    server.emit('counted');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    open: () => sockets.size,
    peak: () => peak,
    sockets: all,
    accepted: async (n) => {
      while (total < n) await once(server, 'counted');
    },
  };
}

test('the per-server cap holds with a connection opened ahead: counted at a real loopback server', async () => {
  const srv = await countingServer();
  const sockets: Socket[] = [];
  const raw = {
    dial: async () => {
      const s = connect(srv.port, '127.0.0.1');
      sockets.push(s);
      s.on('error', () => {});
      await once(s, 'connect');
      return s;
    },
  };
  const caps = new CappedDialer(raw, { max: 2 });
  const to = { host: '', port: 0 };
  const p = new Preconnect((signal) => caps.dial(to, signal), {
    openIfRoom: (signal) => dialIfRoom(caps, to, signal),
    timers: new ManualTimers(),
  });
  try {
    const answered = async (c: Duplex): Promise<Duplex> => {
      c.write('request');
      await once(c, 'data');
      await settle();
      return c;
    };
    const a = await answered(await p.open());
    await srv.accepted(2); // a, and one ahead: the cap is full
    assert.equal(caps.open, 2);
    const b = await answered(await p.open()); // takes the one ahead; no room for another
    assert.equal(wasOpenedAhead(b), true);
    assert.equal(caps.open, 2);
    assert.equal(p.ahead, 0, 'the cap had no room: nothing opened ahead');
    const c = p.open(); // waits for a slot, as without preconnect
    await settle();
    assert.equal(srv.open(), 2);
    // Closed by the server, so that it has counted the close before the next accept.
    srv.sockets[0]!.destroy();
    const got = await answered(await c);
    assert.equal(a.destroyed, true);
    assert.equal(wasOpenedAhead(got), false);
    await srv.accepted(3);
    assert.equal(p.ahead, 0, 'b and c hold both slots');
    assert.equal(srv.peak(), 2, 'never more sockets than the cap at the server');
  } finally {
    p.close();
    for (const s of sockets) s.destroy();
    srv.server.close();
  }
});
