// The path emulator in a real lab (root and /dev/net/tun; skipped with the reason otherwise): ping's
// round trip and a bulk TCP transfer through the wall reproduce the configured RTT and bandwidth
// within 10%. These check the emulator's output on medians and averages over many samples; they are
// not timings of this machine (the emulator's own clock sets them, the machine only adds the
// forwarding cost, which is small against 180 ms).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { destroyLab, labUp, startCensor } from '../../src/lab/lab.js';
import { labNamespaces, labUnavailable, planLab } from '../../src/lab/topology.js';
import { pathProfile, type PathParams } from '../../src/lab/path.js';
import { runIn } from '../../src/lab/card.js';

const why = labUnavailable();
if (why) console.log(`path lab tests skipped: ${why}`);
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}p-`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

async function pingRtts(count: number): Promise<number[]> {
  const r = await runIn(
    plan,
    plan.ns.client,
    ['ping', '-n', '-c', String(count), '-i', '0.05', '-W', '2', plan.addr.abroad],
    (count * 0.05 + 10) * 1000,
  );
  return [...r.out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
}

describe('path emulator in the lab', { skip: why ?? false, timeout: 240_000 }, () => {
  before(async () => {
    destroyLab(plan);
    await labUp(plan);
  });
  after(() => {
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  for (const [name, rtt] of [
    ['path-cn-us', 180],
    ['path-cn-peak', 250],
  ] as const) {
    test(`${name}: median ping RTT within 10% of ${rtt} ms`, async () => {
      await startCensor(plan, { modules: {}, seed: 1, path: pathProfile(name) });
      const rtts = await pingRtts(60);
      // some pings are lost (loss applies each way); most must come back
      assert.ok(rtts.length >= 40, `only ${rtts.length} of 60 pings answered`);
      const m = median(rtts);
      console.log(`${name}: median ping RTT ${m.toFixed(1)} ms over ${rtts.length} replies`);
      assert.ok(Math.abs(m - rtt) <= rtt * 0.1, `median RTT ${m} ms, configured ${rtt} ms`);
    });
  }

  test('bulk TCP through a 20 Mbit/s cap: goodput within 10% of the rate', async () => {
    const rateBps = 20e6;
    const link = {
      delayMs: 10,
      jitterMs: 0,
      loss: { kind: 'none' },
      rateBps,
      queueBytes: 256 * 1024,
      reorder: 0,
      reorderGapMs: 0,
    } as const;
    const path: PathParams = { up: link, down: link };
    await startCensor(plan, { modules: {}, path });
    const bytes = 25 * 1024 * 1024; // about 10 s at the rate; slow start is a small part of it
    const r = await runIn(
      plan,
      plan.ns.client,
      [
        'curl',
        '-sS',
        '--max-time',
        '60',
        '-o',
        '/dev/null',
        '-w',
        '%{size_download} %{time_starttransfer} %{time_total}',
        `http://${plan.addr.allowedIp}/bytes/${bytes}`,
      ],
      70_000,
    );
    const [size, start, total] = r.out.trim().split(' ').map(Number);
    assert.equal(size, bytes, r.out);
    // goodput over the body: TCP/IP headers take under 1% at the lab's MTU of 9000
    const goodputBps = (bytes * 8) / (total! - start!);
    console.log(`bulk through a 20 Mbit/s path: ${(goodputBps / 1e6).toFixed(2)} Mbit/s goodput`);
    assert.ok(
      Math.abs(goodputBps - rateBps) <= rateBps * 0.1,
      `goodput ${(goodputBps / 1e6).toFixed(2)} Mbit/s, configured 20`,
    );
  });
});
