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
// - volume-ban (n4p#523, Turkmenistan; 200 KiB as on the card): a ladder:// key of Trojan to three
//   server addresses, 6 fetches of a 54,547-byte page one after another: with failover alone the
//   first address carries 3 and is banned during the 4th (frozen); with the client's
//   --rotate-after 100k each address carries 2 and none reaches the ban.
// - mux (NDSS 2025 via n4p#528; reset at 40 request/response pairs per flow): 50 fetches over one
//   Mux.Cool connection are cut; with the client's --mux-sessions 8 each connection carries 8
//   sessions, none reaches 40 pairs, and all 50 pass.
// - byte-budget (n4p#490; 14–32 KB server→client to the abroad /24, then silence): Trojan fetching
//   a 54,547-byte page over one connection is frozen; the same key with carrier=8192 spreads the
//   stream over connections the server ends before the budget, and the page arrives. With carriers
//   of 64 KiB, above every budget, each carrier freezes below its cap; the client's stall watch
//   (5 s without a byte) opens the next at the offset it holds, and a 36,232-byte page arrives.
// - iran with the 2026 allowlist (n4p#630, #586), the domestic ISP resolver its one listed
//   address: Shadowsocks is blocked like everything from the client, and so is a DNS query sent
//   abroad directly; the same query through the ISP resolver passes, the path DNS tunnels take
//   (n4p#561), and so does Shadowsocks in Ladder's DNS tunnel through that resolver
//   (ladder-ss-dns; the abroad resolver delegates the tunnel's zone to the Ladder server).
// One lab for the file, under its own prefix, removed in after() even on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { labUp, startCensor, destroyLab, eventsPath } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { modulePolicy, type ModuleName } from '../../src/lab/policy.js';
import { stopTransports, transports } from '../../src/lab/card.js';
import type { Policy } from '../../src/lab/policy.js';
import { CARRIER_STALL_TIMEOUT_S } from '../../src/lab/card-rows-censors.js';

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
  'ladder-trojan-failover',
  'ladder-trojan-rotate',
  'ladder-trojan-large',
  'ladder-trojan-carrier',
  'ladder-trojan-carrier-stall',
  'ladder-trojan-mux-many',
  'ladder-trojan-mux-renew',
  'dns-isp-resolver',
  'dns-direct',
  'ladder-ss-dns',
];
/** The card's volume-ban threshold: 3 of the rotation rows' fetches fit under it, 4 do not. */
const VOLUME_BAN_BYTES = 200 * 1024;
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

async function censor(name: ModuleName | 'none', overrides: object = {}): Promise<void> {
  const policy: Policy =
    name === 'none'
      ? { modules: {} }
      : { timeFactor: 0.01, seed: 17, ...modulePolicy(name, plan, overrides) };
  await startCensor(plan, policy);
  const f = eventsPath(plan);
  eventsFrom = existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
}

async function attempt(
  name: string,
  timeoutS = TIMEOUT_S,
): Promise<{ ok: boolean; detail: string }> {
  const t = transports().find((x) => x.name === name);
  assert.ok(t, name);
  return t.attempt(plan, timeoutS);
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
        const r = await attempt(name, 2 * TIMEOUT_S);
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

    test('volume-ban: a key of three addresses with failover alone is banned mid-download; rotating after 100 KiB, all 6 fetches pass', async () => {
      // A fresh censor for each row: the volume counted per address starts at 0.
      await censor('volume-ban', { bytes: VOLUME_BAN_BYTES });
      const rotate = await attempt('ladder-trojan-rotate', 2 * TIMEOUT_S);
      assert.ok(rotate.ok, `rotating: ${rotate.detail}`);
      assert.deepEqual(events(), [], 'no address reached the ban');
      await censor('volume-ban', { bytes: VOLUME_BAN_BYTES });
      const failover = await attempt('ladder-trojan-failover', 2 * TIMEOUT_S);
      assert.equal(failover.ok, false, 'failover alone: the first address is banned mid-download');
      assert.deepEqual(events(), ['volume-ban/ban']);
    });

    test('byte-budget: Trojan over one connection is frozen mid-page; over carriers of 8 KiB the page arrives', async () => {
      await censor('byte-budget');
      const carrier = await attempt('ladder-trojan-carrier', 2 * TIMEOUT_S);
      assert.ok(carrier.ok, `carriers: ${carrier.detail}`);
      assert.deepEqual(events(), [], 'no carrier reached a budget');
      const one = await attempt('ladder-trojan-large');
      assert.equal(one.ok, false, 'one connection: frozen');
      assert.ok(events().includes('byte-budget/stall'));
    });

    test('byte-budget, carriers above the budget: each freezes below its cap, the stall watch opens the next at the held offset, and the page arrives', async () => {
      await censor('byte-budget');
      const r = await attempt('ladder-trojan-carrier-stall', CARRIER_STALL_TIMEOUT_S);
      assert.ok(r.ok, `carriers of 64 KiB: ${r.detail}`);
      // every frozen carrier is one stall of the censor's: at least the first (the page is larger
      // than any budget lets one carrier carry)
      const ev = events();
      assert.ok(ev.length >= 1 && ev.every((e) => e === 'byte-budget/stall'), ev.join(', '));
    });

    test('mux: 50 fetches over one Mux.Cool connection are cut; renewing the connection every 8 sessions, all pass', async () => {
      await censor('mux');
      const renew = await attempt('ladder-trojan-mux-renew', 2 * TIMEOUT_S);
      assert.ok(renew.ok, `renewing: ${renew.detail}`);
      assert.deepEqual(events(), [], 'no flow reached the pair threshold');
      const one = await attempt('ladder-trojan-mux-many', 2 * TIMEOUT_S);
      // The classifier resets the one long-lived flow at its 40th pair. Whether a fetch is in
      // flight then (it fails) or the reset falls between two (curl goes on over a fresh
      // connection, which may reach 40 pairs too) is timing: the reset is the evidence.
      const ev = events();
      assert.ok(
        ev.length > 0 && ev.every((e) => e === 'mux/reset'),
        `one connection for all 50 (${one.ok ? 'every fetch passed' : one.detail}): ${ev.join(', ')}`,
      );
    });

    test("iran allowlist: Shadowsocks and a direct DNS query are blocked; DNS through the ISP's resolver, and the DNS tunnel, pass", async () => {
      await censor('iran', { clientAllowlist: [`${plan.addr.domestic}/32`] });
      const viaIsp = await attempt('dns-isp-resolver');
      assert.ok(viaIsp.ok, `through the ISP resolver: ${viaIsp.detail}`);
      const tunnel = await attempt('ladder-ss-dns', 3 * TIMEOUT_S);
      assert.ok(tunnel.ok, `Shadowsocks in the DNS tunnel: ${tunnel.detail}`);
      // no event check here: the earlier rows' idle connections from the client (Mux.Cool keeps
      // one 16 s) are dropped too when they next send, whenever that is
      const direct = await attempt('dns-direct');
      assert.equal(direct.ok, false, 'the client itself reaches nothing abroad');
      const ss = await attempt('ladder-ss-https');
      assert.equal(ss.ok, false, 'Shadowsocks');
      const ev = events();
      assert.ok(ev.length >= 2 && ev.every((e) => e === 'iran/drop'), ev.join(', '));
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
