// TLS-in-TLS in the lab (docs/censorship-techniques.md §14; root and /dev/net/tun needed, skipped with the reason
// otherwise). The trigger case: a naive TLS tunnel (its client sends the inner ClientHello with its
// CONNECT head in the first flight after the outer handshake, its server relays at once) is flagged
// by rule A, and reset by the resetting module, while plain HTTPS is not. Then the reference's test:
// 100 HTTPS pages (browser request headers, pages of 2–60 KB) through each TLS transport and with no
// tunnel (the baseline), rules A and B applied to every flow; a transport passes if its flag rate is
// at most the baseline's plus 2 percentage points. The naive tunnel is the control that must fail,
// and Trojan over Mux.Cool without padding (pad=0) the reference that shows the padding matters.
// Its own lab prefix, removed in after(), even on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labUp, startCensor, stopCensor, destroyLab, eventsPath } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { modulePolicy, type Policy } from '../../src/lab/policy.js';
import { stopTransports, transports } from '../../src/lab/card.js';

const why = labUnavailable();
if (why) console.log(`lab TLS-in-TLS tests skipped: ${why}`);
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}6-`);
const PAGES = 100;
const BASELINE = 'https-allowed';
const LADDER = [
  'ladder-trojan-https',
  'ladder-ws-trojan-https',
  'ladder-ws-ss-https',
  'ladder-trojan-mux-https',
  'ladder-trojan-mux-nopad-https',
  'ladder-trojan-split-https',
];
const CONTROL = 'naive-tunnel-https';

interface LabEvent {
  module: string;
  action: string;
  detail?: string;
}
let eventsFrom = 0;
function events(): LabEvent[] {
  const f = eventsPath(plan);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .slice(eventsFrom)
    .map((l) => JSON.parse(l) as LabEvent);
}
async function censor(policy: Policy): Promise<void> {
  await startCensor(plan, { timeFactor: 0.01, seed: 6, ...policy });
  const f = eventsPath(plan);
  eventsFrom = existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
}
const measuring: Policy = {
  modules: { 'tls-in-tls': { action: 'score', rules: ['A', 'B'], measure: true } },
};

/**
 * Stops the censor and waits for it to exit (no deadline but the test's own): on SIGTERM it writes
 * every event it still holds, tls-in-tls's `measure` of each flow still open included, so that
 * what follows reads them all, whatever the machine's load.
 */
function stopAndFlush(): void {
  assert.ok(stopCensor(plan, 300_000), 'the censor exited on SIGTERM, its events written');
}

const transport = (name: string) => {
  const t = transports().find((x) => x.name === name);
  assert.ok(t, name);
  return t;
};

interface Rates {
  ok: number;
  flows: number;
  a: number;
  b: number;
  runs: string[];
  /** Flows whose first run is the outer Finished alone (64 bytes): the server spoke before the client's data. */
  finishedAlone: number;
  /** Measured flows with no runs (seen mid-way), and what the censor says it saw. */
  noRuns: string[];
  censorLog: string;
}

/** Fetches pages 0..n-1 through a transport with the measuring censor; counts rule A and B flags. */
async function browse(name: string, n: number): Promise<Rates> {
  await censor(measuring);
  let ok = 0;
  for (let i = 0; i < n; i++) if ((await transport(name).attempt(plan, 5, `/page/${i}`)).ok) ok++;
  // A flow is measured when it ends, or when the censor stops with it still open (a WebSocket or
  // an idle Mux.Cool connection lingers): stopping the censor measures every flow it saw.
  stopAndFlush();
  // This row's flows are the ones the censor saw from their handshake (runs counted from the
  // client's CCS). Flows of the row before that close while this censor runs are seen mid-way,
  // with no runs: they are not this row's and are left out.
  const all = events().filter((e) => e.module === 'tls-in-tls' && e.action === 'measure');
  const m = all.filter((e) => /^runs \d/.test(e.detail ?? ''));
  const noRuns = all
    .filter((e) => !m.includes(e))
    .map((e) => `${(e as { serverPort?: number }).serverPort}: ${e.detail}`);
  const logFile = join(plan.stateDir, 'censor.log');
  const censorLog = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim() : '';
  const runs = [...new Set(m.map((e) => /runs ([\d/]+)/.exec(e.detail ?? '')?.[1] ?? '?'))];
  return {
    ok,
    flows: m.length,
    // flagged flows per PAGES flows
    a: (m.filter((e) => / A yes/.test(e.detail ?? '')).length * PAGES) / Math.max(1, m.length),
    b: (m.filter((e) => / B yes/.test(e.detail ?? '')).length * PAGES) / Math.max(1, m.length),
    runs,
    finishedAlone: m.filter((e) => /runs 64\//.test(e.detail ?? '')).length,
    noRuns,
    censorLog,
  };
}

const pct = (x: number) => (100 * x) / PAGES;
const measured = new Map<string, Rates>();

describe('TLS-in-TLS in the lab (§14)', { skip: why ?? false, timeout: 840_000 }, () => {
  before(async () => {
    destroyLab(plan);
    await labUp(plan, { policy: { modules: {} } });
    for (const name of [CONTROL, ...LADDER]) await transport(name).setup!(plan);
  });
  after(() => {
    stopTransports();
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  test('trigger: a naive TLS tunnel is flagged by rule A and reset by the resetting module; plain HTTPS is not', async () => {
    await censor(measuring);
    for (let i = 0; i < 5; i++) {
      assert.ok((await transport(CONTROL).attempt(plan, 5, `/page/${i}`)).ok);
      assert.ok((await transport(BASELINE).attempt(plan, 5, `/page/${i}`)).ok);
    }
    // every event is written once the censor has stopped
    stopAndFlush();
    const flags = events().filter((e) => e.action === 'flag');
    assert.ok(flags.length >= 1, 'the naive tunnel is flagged');
    assert.ok(flags.every((e) => /^rule A: runs /.test(e.detail ?? '')));
    const ports = new Set(
      events()
        .filter((e) => e.action === 'flag')
        .map((e) => (e as { serverPort?: number }).serverPort),
    );
    assert.deepEqual([...ports], [8443], 'only the tunnel port, never plain HTTPS (443)');
    // the resetting module (October 2022 sweep): the tunnel fails, plain HTTPS passes
    await censor(modulePolicy('tls-in-tls', plan));
    let tunnelOk = 0;
    for (let i = 0; i < 3; i++) if ((await transport(CONTROL).attempt(plan, 3)).ok) tunnelOk++;
    assert.ok(tunnelOk < 3, `the tunnel got through ${tunnelOk} of 3 times`);
    for (let i = 0; i < 3; i++) assert.ok((await transport(BASELINE).attempt(plan, 3)).ok);
    stopAndFlush();
    assert.ok(events().some((e) => e.module === 'tls-in-tls' && e.action === 'reset'));
  });

  test(`${PAGES} HTTPS pages through each TLS transport, rules A and B: the baseline, the control, and Ladder's WebSocket, padded Mux.Cool and split=1 Trojan transports within baseline + 2 pp`, async () => {
    for (const name of [BASELINE, CONTROL, ...LADDER]) {
      const r = await browse(name, PAGES);
      measured.set(name, r);
      console.log(
        `# ${name}: ${r.ok}/${PAGES} pages, ${r.flows} outer flows measured, rule A ${pct(r.a)}%, rule B ${pct(r.b)}%; first run the Finished alone in ${r.finishedAlone}; runs seen: ${r.runs.slice(0, 6).join(', ')}`,
      );
      assert.equal(r.ok, PAGES, `${name}: every page fetched`);
      // a fresh outer connection per page, each measured (ended, or open when the censor stopped)
      assert.ok(
        r.flows >= PAGES,
        `${name}: ${r.flows} outer flows measured, ${PAGES} expected; without runs: ${r.noRuns.join('; ')}; censor: ${r.censorLog}`,
      );
    }
    // Why no run crosses a line (windows: up 650..750; down 170..180 or 3000..7500). Sizes are fixed
    // by curl's 517-byte ClientHello, the requests and the records, and the Ladder rows run with
    // --first-payload-wait longer than an attempt (src/lab/card-transport.ts), so the Trojan or Shadowsocks
    // request always leaves in one record with the ClientHello, whatever the load:
    // - baseline: r0 80 or 598, r2 518: under 650 (52 bytes or more); 0 flagged.
    // - naive tunnel: r0 733 (Finished, CONNECT head and ClientHello), r1 3814: every flow flagged.
    // - WebSocket Trojan / Shadowsocks: r1 is 478 or 629 (or 780), never in a down window, so rule
    //   A never holds; r2 is the upgrade (308) or the request with the ClientHello in one record
    //   (629 / 639): 21 / 11 bytes under 650 (two records would add 22 and reach 651 / 661).
    // - padded Mux.Cool: r0 is the Finished alone (64), or holds the padded flight; a flight under
    //   892 bytes is padded to 900..1399 (codec/mux-cool.ts), so r2 ≥ 922 > 750.
    // - split=1: r2 615 when the tickets came first (most flows: fp=chrome never resumes), 637
    //   when the TLS client put the request and the ClientHello in two records; when
    //   split, r0 ≤ 64 + 22 + 76 + 516 = 678 but r1 is the tickets alone (478), r2 ≤ 539. The one
    //   way to a flag: the server's tickets later than the client's wait for them (the handshake's
    //   duration, 50 ms at least) in a flow that was split; the 2 pp allow two such flows.
    // - no padding (fp=node, resumed, no tickets): r0 703, r1 3348..3467 after the first flow:
    //   flagged in nearly every flow, far above 2%.
    const baseline = measured.get(BASELINE)!;
    const within = (name: string, rule: 'a' | 'b') =>
      pct(measured.get(name)![rule]) <= pct(baseline[rule]) + 2;
    // the control: the test can fail
    assert.ok(!within(CONTROL, 'a') && !within(CONTROL, 'b'), 'the naive tunnel fails');
    for (const name of [
      'ladder-ws-trojan-https',
      'ladder-ws-ss-https',
      'ladder-trojan-mux-https',
      // split=1: the request with a slice, the server's tickets, then the rest (or the payload
      // whole when the tickets came first); with curl's 517-byte ClientHello neither is in a window
      'ladder-trojan-split-https',
    ]) {
      assert.ok(within(name, 'a'), `${name}: rule A`);
      assert.ok(within(name, 'b'), `${name}: rule B`);
    }
    // The reference for the padding: the same Mux.Cool transport with pad=0 is flagged (its first
    // run is the Finished, the Trojan request, a New frame and the inner ClientHello, ~703 bytes),
    // so it is the padding that keeps the padded row at the baseline. Its key is fp=node: after a
    // full handshake the server's tickets can end the first run before the inner ClientHello, by
    // chance.
    const nopad = 'ladder-trojan-mux-nopad-https';
    assert.ok(!within(nopad, 'a') && !within(nopad, 'b'), `${nopad} is flagged without padding`);
  });

  test(
    "Ladder's Trojan carrying HTTPS: flag rate within baseline + 2 pp (rules A and B)",
    {
      todo: "Ladder's plain Trojan client (no mux, no split) sends the Trojan request and the inner ClientHello with its outer Finished when it resumes, so rule A sees an inner handshake; after a full handshake the server's tickets split its first flight by chance in the lab (docs/lab.md 'TLS in TLS'); Mux.Cool keys are padded, split=1 is opt-in",
    },
    () => {
      const baseline = measured.get(BASELINE)!;
      const r = measured.get('ladder-trojan-https')!;
      assert.ok(pct(r.a) <= pct(baseline.a) + 2, `rule A: ${pct(r.a)}% vs ${pct(baseline.a)}%`);
      assert.ok(pct(r.b) <= pct(baseline.b) + 2, `rule B: ${pct(r.b)}% vs ${pct(baseline.b)}%`);
    },
  );
});
