// Pure tests (no root) of the path emulator's model (src/lab/path.ts) and its scheduler
// (src/lab/path-emulator.ts) on a fake clock and seeded randomness: loss rates, burst lengths, queue
// drops, delays and reordering come out as configured; profiles and policy parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  badAfter,
  burstyLoss,
  checkPathParams,
  GE_SLOT_BYTES,
  meanLossRate,
  PathLink,
  pathProfile,
  type LinkParams,
} from '../../src/lab/path.js';
import { PathEmulator, sourcePrefixMatcher, type PathClock } from '../../src/lab/path-emulator.js';
import { seededRandom } from '../../src/lab/censor/run.js';
import { checkPolicy, profilePolicy } from '../../src/lab/policy.js';
import { planLab } from '../../src/lab/topology.js';
import { ConfigError } from '../../src/errors.js';

const plain: LinkParams = {
  delayMs: 0,
  jitterMs: 0,
  loss: { kind: 'none' },
  rateBps: 0,
  queueBytes: 0,
  reorder: 0,
  reorderGapMs: 0,
};

const within = (actual: number, expected: number, frac: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= expected * frac,
    `${what}: ${actual} not within ${frac * 100}% of ${expected}`,
  );

test('random loss: 1% of 200 000 packets are lost', () => {
  const link = new PathLink({ ...plain, loss: { kind: 'random', p: 0.01 } }, seededRandom(1));
  for (let i = 0; i < 200_000; i++) link.offer(i, 100);
  within(link.stats.lost / link.stats.packets, 0.01, 0.05, 'loss rate');
  assert.equal(link.stats.lost + link.stats.sent, 200_000);
});

test('Gilbert–Elliott loss: mean rate and mean burst length as configured', () => {
  const model = burstyLoss(0.05, 3);
  assert.ok(Math.abs(meanLossRate(model) - 0.05) < 1e-12);
  const link = new PathLink({ ...plain, loss: model }, seededRandom(2));
  const bursts: number[] = [];
  let run = 0;
  for (let i = 0; i < 400_000; i++) {
    const lost = link.offer(i, 100).drop === 'loss';
    if (lost) run++;
    else if (run > 0) {
      bursts.push(run);
      run = 0;
    }
  }
  within(link.stats.lost / link.stats.packets, 0.05, 0.05, 'loss rate');
  within(bursts.reduce((a, b) => a + b, 0) / bursts.length, 3, 0.05, 'mean burst');
  // bursty, not random: random 5% loss would give a mean run of 1/(1-0.05) ≈ 1.05
  assert.ok(bursts.filter((b) => b >= 3).length > bursts.length * 0.3);
});

test('Gilbert–Elliott with loss in the good state and partial loss in the bad', () => {
  const m = { kind: 'gilbert-elliott', p: 0.02, r: 0.2, lossBad: 0.5, lossGood: 0.001 } as const;
  const link = new PathLink({ ...plain, loss: m }, seededRandom(3));
  for (let i = 0; i < 400_000; i++) link.offer(i, 100);
  within(link.stats.lost / link.stats.packets, meanLossRate(m), 0.05, 'loss rate');
});

test('Gilbert–Elliott n-step chance of the bad state: 0 and 1 steps exact, the mean in the long run', () => {
  const { p, r } = burstyLoss(0.05, 3) as { p: number; r: number };
  assert.equal(badAfter(true, p, r, 0), 1);
  assert.ok(Math.abs(badAfter(false, p, r, 0)) < 1e-12);
  assert.ok(Math.abs(badAfter(true, p, r, 1) - (1 - r)) < 1e-12);
  assert.ok(Math.abs(badAfter(false, p, r, 1) - p) < 1e-12);
  assert.ok(Math.abs(badAfter(true, p, r, 1000) - 0.05) < 1e-12);
  assert.ok(Math.abs(badAfter(false, p, r, 1000) - 0.05) < 1e-12);
});

test('Gilbert–Elliott on a capped link: bursts of back-to-back packets as configured, a packet after a pause lost at the mean rate', () => {
  const rateBps = 20e6;
  const slotMs = (GE_SLOT_BYTES * 8000) / rateBps;
  const link = new PathLink(
    { ...plain, loss: burstyLoss(0.05, 3), rateBps, queueBytes: 1e9 },
    seededRandom(7),
  );
  let now = 0;
  const bursts: number[] = [];
  let afterPause = 0;
  let lostAfterPause = 0;
  for (let trial = 0; trial < 4000; trial++) {
    // back to back, one slot apart, until a burst has begun and ended
    let run = 0;
    for (;;) {
      const lost = link.offer(now, GE_SLOT_BYTES).drop === 'loss';
      now += slotMs;
      if (lost) run++;
      else if (run > 0) break;
    }
    bursts.push(run);
    // a burst begins again, then the sender pauses (a retransmission timeout) and sends one packet
    while (link.offer(now, GE_SLOT_BYTES).drop !== 'loss') now += slotMs;
    now += 1000;
    afterPause++;
    if (link.offer(now, GE_SLOT_BYTES).drop === 'loss') lostAfterPause++;
    now += 1000;
  }
  within(bursts.reduce((a, b) => a + b, 0) / bursts.length, 3, 0.1, 'mean burst');
  // a chain stepped per packet only would still be in the burst: lost with 1 − r = 2/3
  within(lostAfterPause / afterPause, 0.05, 0.3, 'loss after a pause');
});

test('bandwidth cap: departures spaced at the link rate, drop-tail past the queue', () => {
  // 8 Mbit/s = 1 byte per µs: a 1000-byte packet takes 1 ms; queue of 10 packets
  const link = new PathLink({ ...plain, rateBps: 8e6, queueBytes: 10_000 }, seededRandom(4));
  const departures: number[] = [];
  // offered at 2 packets per ms for 1 s: twice the rate
  for (let i = 0; i < 2000; i++) {
    const now = i / 2;
    const v = link.offer(now, 1000);
    assert.ok(link.backlog(now) <= 10_000, 'backlog never exceeds the queue');
    if (v.drop === undefined) departures.push(v.at);
    else assert.equal(v.drop, 'queue');
  }
  // about half get through (the link's 1 packet per ms), the rest meet a full queue
  within(departures.length, 1000 + 10, 0.02, 'packets through');
  within(link.stats.queueDrops, 990, 0.03, 'queue drops');
  for (let i = 1; i < departures.length; i++)
    assert.ok(departures[i]! - departures[i - 1]! >= 1 - 1e-9, 'spaced by the serialisation time');
  // throughput over the run: bytes / time = the configured rate
  const spanMs = departures.at(-1)! - departures[0]!;
  within(((departures.length - 1) * 1000 * 8) / (spanMs / 1000), 8e6, 0.01, 'rate');
});

test('below the rate nothing is queued or dropped, and delay is serialisation + propagation', () => {
  const link = new PathLink(
    { ...plain, rateBps: 8e6, queueBytes: 10_000, delayMs: 90 },
    seededRandom(5),
  );
  for (let i = 0; i < 100; i++) {
    const v = link.offer(i * 10, 1000);
    assert.equal(v.drop, undefined);
    if (v.drop === undefined) assert.ok(Math.abs(v.at - (i * 10 + 1 + 90)) < 1e-9);
  }
});

test('delay with jitter: within ±jitter, median at the delay, order kept', () => {
  const link = new PathLink({ ...plain, delayMs: 90, jitterMs: 5 }, seededRandom(6));
  const delays: number[] = [];
  let last = -Infinity;
  for (let i = 0; i < 20_000; i++) {
    const now = i * 20; // far apart: ordering does not hold any packet back
    const v = link.offer(now, 100);
    assert.equal(v.drop, undefined);
    if (v.drop !== undefined) continue;
    assert.ok(v.at >= last, 'no reordering unless asked');
    last = v.at;
    delays.push(v.at - now);
  }
  delays.sort((a, b) => a - b);
  assert.ok(delays[0]! >= 85 && delays.at(-1)! <= 95);
  within(delays[delays.length >> 1]!, 90, 0.01, 'median delay');
  // uniform: the quartiles sit at ±2.5 ms
  within(delays[delays.length >> 2]!, 87.5, 0.01, 'first quartile');
});

test('back-to-back packets with jitter keep their order (a packet waits for the one before)', () => {
  const link = new PathLink({ ...plain, delayMs: 50, jitterMs: 10 }, seededRandom(7));
  let last = -Infinity;
  for (let i = 0; i < 10_000; i++) {
    const v = link.offer(i * 0.1, 100);
    if (v.drop !== undefined) continue;
    assert.ok(v.at >= last);
    last = v.at;
  }
});

test('reordering: the configured share of packets leaves ahead of its predecessor', () => {
  const link = new PathLink(
    { ...plain, delayMs: 50, reorder: 0.1, reorderGapMs: 5 },
    seededRandom(8),
  );
  const at: number[] = [];
  for (let i = 0; i < 50_000; i++) {
    const v = link.offer(i * 0.5, 100);
    if (v.drop === undefined) at.push(v.at);
  }
  let overtakes = 0;
  for (let i = 1; i < at.length; i++) if (at[i]! < at[i - 1]!) overtakes++;
  within(link.stats.reordered / link.stats.packets, 0.1, 0.05, 'reorder share');
  within(overtakes / at.length, 0.1, 0.1, 'overtaking share');
});

test('the model is deterministic for a seed', () => {
  const run = () => {
    const l = new PathLink(pathProfile('path-cn-peak').down, seededRandom(9));
    return Array.from({ length: 2000 }, (_, i) => JSON.stringify(l.offer(i * 0.3, 1400)));
  };
  assert.deepEqual(run(), run());
});

test('fuzz: any parameters and offers keep the invariants (no throw, at ≥ now, bounded queue)', () => {
  fc.assert(
    fc.property(
      fc.record({
        delayMs: fc.double({ min: 0, max: 500, noNaN: true }),
        jitterMs: fc.double({ min: 0, max: 600, noNaN: true }),
        rateBps: fc.constantFrom(0, 1e3, 1e6, 1e9),
        queueBytes: fc.integer({ min: 0, max: 1e6 }),
        reorder: fc.double({ min: 0, max: 1, noNaN: true }),
        reorderGapMs: fc.double({ min: 0, max: 100, noNaN: true }),
        p: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
      fc.array(
        fc.tuple(fc.double({ min: 0, max: 50, noNaN: true }), fc.integer({ min: 1, max: 65535 })),
        {
          maxLength: 200,
        },
      ),
      fc.integer(),
      (pp, offers, seed) => {
        const link = new PathLink(
          { ...pp, loss: burstyLoss(Math.min(pp.p, 0.99), 2) },
          seededRandom(seed),
        );
        let now = 0;
        for (const [dt, size] of offers) {
          now += dt;
          const v = link.offer(now, size);
          if (v.drop === undefined) assert.ok(v.at >= now);
          if (pp.rateBps > 0) assert.ok(link.backlog(now) <= pp.queueBytes + 1e-6);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('profiles: RTT, loss and rate as the issue names them', () => {
  const good = pathProfile('path-good');
  assert.equal(good.up.delayMs + good.down.delayMs, 40);
  assert.equal(meanLossRate(good.down.loss), 0);
  assert.equal(good.down.rateBps, 200e6);
  const us = pathProfile('path-cn-us');
  assert.equal(us.up.delayMs + us.down.delayMs, 180);
  assert.equal(meanLossRate(us.down.loss), 0.01);
  assert.equal(us.down.rateBps, 50e6);
  const peak = pathProfile('path-cn-peak');
  assert.equal(peak.up.delayMs + peak.down.delayMs, 250);
  assert.ok(Math.abs(meanLossRate(peak.down.loss) - 0.05) < 1e-12);
  assert.equal(peak.down.loss.kind, 'gilbert-elliott');
  assert.equal(peak.down.rateBps, 20e6);
  assert.throws(() => pathProfile('path-mars'), /unknown path profile 'path-mars'.*path-cn-us/);
});

test('profile lists combine a censor profile and a path; bad lists are refused with the fix', () => {
  const plan = planLab('ph-');
  const both = profilePolicy('gfw-2022,path-cn-us', plan);
  assert.ok(both.modules.fet);
  assert.deepEqual(both.path, pathProfile('path-cn-us'));
  const pathOnly = profilePolicy('path-cn-peak', plan);
  assert.deepEqual(pathOnly.modules, {});
  assert.deepEqual(pathOnly.path, pathProfile('path-cn-peak'));
  assert.equal(profilePolicy('gfw-2025', plan).path, undefined);
  assert.throws(() => profilePolicy('path-good,path-cn-us', plan), /at most one path profile/);
  assert.throws(() => profilePolicy('gfw-2022,gfw-2025', plan), /one censor profile/);
  assert.throws(() => profilePolicy('gfw-2099', plan), /unknown profile 'gfw-2099'/);
  // a policy file's path is checked field by field
  assert.doesNotThrow(() => checkPolicy(JSON.parse(JSON.stringify(both))));
  const bad = JSON.parse(JSON.stringify(both)) as { path: { down: { loss: unknown } } };
  bad.path.down.loss = { kind: 'random', p: 2 };
  assert.throws(() => checkPolicy(bad), /path\.down\.loss/);
  assert.throws(() => checkPathParams({ up: {} }), /path\.up\.delayMs/);
  assert.throws(() => checkPathParams({ up: pathProfile('path-good').up }), /path\.down: missing/);
});

test('fuzz: checkPathParams returns or throws a ConfigError on any JSON', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        checkPathParams(v);
      } catch (err) {
        assert.ok(err instanceof ConfigError);
      }
    }),
    { numRuns: 500 },
  );
});

/** A fake clock: timers run when `advance` passes their time. */
class FakeClock implements PathClock {
  t = 0;
  timers = new Map<number, { at: number; fn: () => void }>();
  #id = 0;
  now(): number {
    return this.t;
  }
  setTimer(fn: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimer(h: unknown): void {
    this.timers.delete(h as number);
  }
  advance(to: number): void {
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= to && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = to;
  }
}

function ipv4(src: string, dst: string, size = 100): Buffer {
  const b = Buffer.alloc(size);
  b[0] = 0x45;
  b.set(src.split('.').map(Number), 12);
  b.set(dst.split('.').map(Number), 16);
  b.writeUInt32BE(Math.random() * 2 ** 32, 20); // marks the packet
  return b;
}

test('emulator: each direction gets its own delay, packets leave at their time in order', () => {
  const clock = new FakeClock();
  const sent: { t: number; p: Buffer }[] = [];
  const em = new PathEmulator({
    params: {
      up: { ...plain, delayMs: 30 },
      down: { ...plain, delayMs: 60, rateBps: 8e6, queueBytes: 100_000 },
    },
    send: (p) => sent.push({ t: clock.now(), p }),
    inside: ['198.18.0.0/16', '2001:2:0:1::/64'],
    random: seededRandom(10),
    clock,
  });
  const up = ipv4('198.18.1.2', '198.19.2.2');
  const downs = [0, 1, 2].map(() => ipv4('198.19.2.2', '198.18.1.2', 1000));
  em.handle(up);
  for (const d of downs) em.handle(d);
  assert.equal(sent.length, 0);
  clock.advance(29);
  assert.equal(sent.length, 0);
  clock.advance(30);
  assert.deepEqual(
    sent.map((s) => s.p),
    [up],
  );
  clock.advance(200);
  assert.deepEqual(
    sent.map((s) => [s.t, s.p]),
    [
      [30, up],
      [61, downs[0]],
      [62, downs[1]],
      [63, downs[2]],
    ],
  );
  assert.equal(em.pending, 0);
  em.handle(ipv4('198.19.2.2', '198.18.1.2'));
  em.close();
  clock.advance(1000);
  assert.equal(sent.length, 4, 'close drops what is pending');
});

test('emulator: with no delay, loss or cap a packet passes at once', () => {
  const clock = new FakeClock();
  const sent: Buffer[] = [];
  const em = new PathEmulator({
    params: { up: plain, down: plain },
    send: (p) => sent.push(p),
    inside: ['198.18.0.0/16'],
    random: seededRandom(11),
    clock,
  });
  const p = ipv4('198.18.1.2', '198.19.2.2');
  em.handle(p);
  assert.deepEqual(sent, [p]);
});

test('source prefix matcher: IPv4 and IPv6, prefix lengths off the byte boundary', () => {
  const m = sourcePrefixMatcher('198.18.0.0/15');
  assert.equal(m(ipv4('198.19.2.2', '1.1.1.1')), true);
  assert.equal(m(ipv4('198.20.0.1', '1.1.1.1')), false);
  assert.equal(m(Buffer.alloc(10)), false);
  const m6 = sourcePrefixMatcher('2001:2:0:1::/64');
  const v6 = Buffer.alloc(40);
  v6[0] = 0x60;
  v6.set([0x20, 0x01, 0, 2, 0, 0, 0, 1], 8);
  assert.equal(m6(v6), true);
  v6[15] = 3;
  assert.equal(m6(v6), false);
  assert.equal(m(v6), false);
});
