// Ladder's answers to 2024–2026 techniques, and their controls, in a real lab (root and
// /dev/net/tun needed, skipped with the reason otherwise): the report card's rows under one censor
// module at a time, each control failing where its answer passes.
// - tls-in-tls-ru (n4p#363): Shadowsocks carrying HTTPS browsing (3 requests with a browser's
//   headers on one connection: the ClientHello and two requests are 3 client packets of ≥ 411
//   bytes) is frozen; one request with curl's headers (1 such packet) and Trojan carrying the same
//   browsing (TLS outside) pass.
// - conn-count (n4p#546): 8 parallel fetches over 8 Trojan connections are cut; with the client's
//   --max-connections-per-server 6 the last two wait for a connection to close, and all pass.
// - ech, TSPU mode (n4p#417): a ClientHello with SNI cloudflare-ech.com and the ECH extension is
//   frozen; the same without the extension passes.
// One lab for the file, under its own prefix, removed in after() even on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { labUp, startCensor, destroyLab, eventsPath } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { modulePolicy, type ModuleName } from '../../src/lab/policy.js';
import { stopTransports, transports } from '../../src/lab/card.js';

const why = labUnavailable();
if (why) console.log(`lab answers tests skipped: ${why}`);
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}a-`);
const ROWS = [
  'ladder-ss-https',
  'ladder-ss-https-browse',
  'ladder-trojan-https-browse',
  'ladder-trojan-parallel',
  'ladder-trojan-parallel-capped',
  'ech-hello',
  'ech-sni-only',
];
/** Seconds per attempt: a frozen flow fails by this timeout, a passing one ends long before. */
const TIMEOUT_S = 5;

let eventsFrom = 0;
function events(): string[] {
  const f = eventsPath(plan);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .slice(eventsFrom)
    .map((l) => {
      const e = JSON.parse(l) as { module: string; action: string };
      return `${e.module}/${e.action}`;
    });
}

async function censor(name: ModuleName | 'none'): Promise<void> {
  await startCensor(
    plan,
    name === 'none' ? { modules: {} } : { timeFactor: 0.01, seed: 17, ...modulePolicy(name, plan) },
  );
  const f = eventsPath(plan);
  eventsFrom = existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
}

async function attempt(name: string): Promise<{ ok: boolean; detail: string }> {
  const t = transports().find((x) => x.name === name);
  assert.ok(t, name);
  return t.attempt(plan, TIMEOUT_S);
}

describe(
  "Ladder's answers to the 2024–2026 techniques, in the lab",
  {
    skip: why ?? false,
    timeout: 300_000,
  },
  () => {
    before(async () => {
      destroyLab(plan);
      await labUp(plan, { policy: { modules: {} } });
      for (const name of ROWS)
        await transports()
          .find((x) => x.name === name)!
          .setup?.(plan);
    });
    after(() => {
      stopTransports();
      destroyLab(plan);
      assert.deepEqual(labNamespaces(plan.prefix), []);
    });

    test('no censor: every row gets through', async () => {
      await censor('none');
      for (const name of ROWS) {
        const r = await attempt(name);
        assert.ok(r.ok, `${name}: ${r.detail}`);
      }
    });

    test('tls-in-tls-ru: Shadowsocks carrying HTTPS browsing is frozen; one plain request, and Trojan browsing, pass', async () => {
      await censor('tls-in-tls-ru');
      const ssOne = await attempt('ladder-ss-https');
      assert.ok(ssOne.ok, `one request (1 packet of ≥ 411 bytes): ${ssOne.detail}`);
      assert.deepEqual(events(), [], 'one request is not the pattern');
      const trojan = await attempt('ladder-trojan-https-browse');
      assert.ok(trojan.ok, `Trojan (TLS outside): ${trojan.detail}`);
      const ss = await attempt('ladder-ss-https-browse');
      assert.equal(ss.ok, false, 'Shadowsocks carrying browsing is frozen');
      assert.deepEqual(events(), ['tls-in-tls-ru/freeze']);
    });

    test('conn-count: 8 parallel Trojan connections are cut; capped at 6 by the client, all 8 fetches pass', async () => {
      await censor('conn-count');
      const capped = await attempt('ladder-trojan-parallel-capped');
      assert.ok(capped.ok, `capped: ${capped.detail}`);
      assert.deepEqual(events(), [], 'never more than 6 at once');
      const uncapped = await attempt('ladder-trojan-parallel');
      assert.equal(uncapped.ok, false, 'uncapped: cut');
      assert.ok(events().includes('conn-count/reset'));
    });

    test('ech (TSPU): cloudflare-ech.com with the ECH extension is frozen; without the extension it passes', async () => {
      await censor('ech');
      const sniOnly = await attempt('ech-sni-only');
      assert.ok(sniOnly.ok, sniOnly.detail);
      const ech = await attempt('ech-hello');
      assert.equal(ech.ok, false, 'frozen');
      assert.deepEqual(events(), ['ech/freeze']);
    });
  },
);
