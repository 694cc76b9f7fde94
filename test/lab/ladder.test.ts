// Ladder's own transports in the lab (root and /dev/net/tun needed; skipped with the reason
// otherwise): the real `ladder server` in abroad and `ladder client` in client, through the censor.
// The 200-connection proofs are `ladder lab run` (docs/lab.md has the figures); these are the short
// versions that every `npm test` runs, plus the active prober against the Trojan server compared
// with the decoy site alone.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  labUp,
  startCensor as startLabCensor,
  destroyLab,
  CLI_PATH,
  LADDER_NAME,
  caPath,
  eventsPath,
} from '../../src/lab/lab.js';
import type { Policy } from '../../src/lab/policy.js';
import { ja3Hash } from '../../src/lab/modules/tls-fingerprint.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { modulePolicy, profilePolicy } from '../../src/lab/policy.js';
import {
  runIn,
  stopTransports,
  ladderTrojanNodeTransport,
  columns,
  transports,
  LADDER_PORT,
  LADDER_CONTROL_PORT,
} from '../../src/lab/card.js';
import { DECOY_REFERENCE_PORT } from '../../src/lab/services.js';
import { SS_PORT } from '../../src/lab/card-rows-reference.js';
import { PREFIX_PRESETS } from '../../src/codec/ss-prefix.js';
import {
  DEFAULT_TLS_FINGERPRINT,
  type TlsFingerprint,
} from '../../src/codec/tls-fingerprint-param.js';
import { TrojanDialer } from '../../src/transport/trojan-dialer.js';
import { parseClientHello } from '../../src/lab/packet/tls-client-hello.js';

const why = labUnavailable();
if (why) console.log(`ladder lab tests skipped: ${why}`);
// A prefix of its own, derived from LADDER_LAB_TEST_PREFIX, so that it runs beside lab.test.ts.
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}2-`);

const transport = (name: string) => {
  const t = [...transports(), ladderTrojanNodeTransport()].find((x) => x.name === name);
  assert.ok(t, name);
  return t;
};

async function attempts(name: string, n: number): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i++) if ((await transport(name).attempt(plan, 3)).ok) ok++;
  return ok;
}

interface ProbeLine {
  probe: string;
  layer: 'tcp' | 'tls';
  length: number;
  reaction: string;
  reply: string;
}

async function probeCampaign(port: number, firstHex: string, seed: number) {
  const r = await runIn(
    plan,
    plan.ns.wall,
    [
      process.execPath,
      CLI_PATH,
      'lab',
      'probe',
      '--to',
      `${plan.addr.ladderIp}:${port}`,
      '--first-hex',
      firstHex,
      '--seed',
      String(seed),
      '--timeout-ms',
      '1500',
      '--random-probes',
      '4',
      '--random-length-probes',
      '6',
      '--tls-probes',
      '6',
      '--source',
      plan.prober[0]!,
    ],
    120_000,
  );
  const lines = r.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ProbeLine & { verdict?: string; reason?: string });
  return { probes: lines.filter((l) => l.probe), verdict: lines.find((l) => l.verdict)! };
}

/** The ClientHello Ladder's Trojan client sends with the TLS client `fp` (recorded on loopback). */
async function recordTrojanClientHello(fp: TlsFingerprint): Promise<Buffer> {
  const pem = readFileSync(join(plan.stateDir, 'ladder-cert.pem'), 'utf8');
  return new Promise((resolve, reject) => {
    const server = createServer((s) => {
      s.once('data', (d: Buffer) => {
        s.destroy();
        server.close();
        resolve(d);
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      new TrojanDialer(
        { host: '127.0.0.1', port },
        {
          password: 'x',
          sni: LADDER_NAME,
          pinSha256: new X509Certificate(pem).fingerprint256,
          fp,
        },
      )
        .dial({ host: 'allowed.lab', port: 80 })
        .catch(() => {});
    });
    server.on('error', reject);
  });
}

/** Starts the censor and remembers where its events begin. */
async function startCensor(p: typeof plan, policy: Policy): Promise<void> {
  await startLabCensor(p, policy);
  const f = eventsPath(plan);
  eventsFrom = existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
}

type Campaign = Awaited<ReturnType<typeof probeCampaign>>;
const campaigns: { seed: number; ladder: Campaign; decoy: Campaign }[] = [];

describe('Ladder transports in the lab', { skip: why ?? false, timeout: 300_000 }, () => {
  before(async () => {
    destroyLab(plan);
    await labUp(plan, { policy: { modules: {} } });
    for (const name of [
      'ladder-ss',
      'ladder-trojan',
      'ladder-trojan-node',
      ...PREFIX_PRESETS.map((p) => `ladder-ss-${p.name}`),
    ])
      await transport(name).setup!(plan);
  });
  after(() => {
    stopTransports();
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  // First: the client keeps TLS sessions to resume (src/transport/tls.ts), and a resumed ClientHello
  // (pre_shared_key) has another JA3. This test denies the fresh hello's JA3, so it runs before any
  // test has given the lab's fp=node client a session to resume.
  test("tls-fingerprint: denying Node's JA3 resets Ladder's fp=node Trojan client, not the default (Chrome's) one nor curl's HTTPS (§13)", async () => {
    const hello = await recordTrojanClientHello('node');
    const hash = ja3Hash(parseClientHello(hello)!);
    await startCensor(plan, {
      ...modulePolicy('tls-fingerprint', plan, { deny: [hash] }),
      timeFactor: 0.01,
    });
    // the default client first: a reset leaves a residual block on the 3-tuple both clients share
    assert.equal(
      await attempts('ladder-trojan', 2),
      2,
      "the default client (fp=chrome) does not send Node's ClientHello",
    );
    assert.equal(
      await attempts('ladder-trojan-node', 2),
      0,
      "the fp=node client's ClientHello is Node's",
    );
    const curl = await runIn(
      plan,
      plan.ns.client,
      [
        'curl',
        '-sS',
        '--max-time',
        '4',
        '--cacert',
        caPath(plan),
        `https://${plan.names.allowed}/`,
      ],
      8000,
    );
    assert.match(curl.out, /site allowed\.lab/, 'another client fingerprint passes');
  });

  test('browser-only column (issue #16): every Ladder TLS transport with fp=chrome passes, fp=node and the naive tunnel are reset', async () => {
    const chrome = ['ladder-trojan', 'ladder-ws-trojan', 'ladder-ws-ss', 'ladder-trojan-https'];
    for (const name of [...chrome, 'naive-tunnel-https']) await transport(name).setup?.(plan);
    const column = columns().find((c) => c.name === 'browser-only');
    assert.ok(column, 'a report-card column');
    await startCensor(plan, { ...column.policy(plan), timeFactor: 0.01 });
    // the passing rows first: a reset leaves a residual block on a 3-tuple some rows share
    for (const name of chrome) assert.equal(await attempts(name, 3), 3, `${name} passes`);
    assert.equal(await attempts('naive-tunnel-https', 2), 0, 'the naive tunnel is not a browser');
    assert.equal(await attempts('ladder-trojan-node', 2), 0, "fp=node's hello is Node's");
    const resets = readFileSync(eventsPath(plan), 'utf8')
      .split('\n')
      .filter(Boolean)
      .slice(eventsFrom)
      .filter((l) => l.includes('not a browser'));
    assert.ok(resets.length >= 2, 'the resets name the rule');
  });

  test('fet p=1: every prefix preset passes, classic Shadowsocks is null-routed (§1, issue #4 item 3)', async () => {
    await startCensor(plan, { ...modulePolicy('fet', plan, { p: 1 }), timeFactor: 0.01 });
    for (const p of PREFIX_PRESETS)
      assert.equal(await attempts(`ladder-ss-${p.name}`, 4), 4, `prefix preset ${p.name}`);
    assert.equal(await attempts('ladder-trojan', 4), 4, 'trojan over TLS');
    assert.equal(await attempts('ladder-ss', 2), 0, 'classic Shadowsocks must fail (control)');
  });

  test("probe (every server): Ladder's one-port server and Debian's ss-server are probed, cleared, and stay reachable (§2)", async () => {
    await transport('shadowsocks-libev').setup!(plan);
    for (const name of ['ladder-ss', 'ladder-trojan', 'shadowsocks-libev']) {
      await startCensor(plan, {
        ...modulePolicy('probe', plan, { trigger: 'all', maxDelayS: 0.5, proberTimeoutS: 1 }),
        timeFactor: 0.01,
      });
      assert.equal(await attempts(name, 1), 1, name);
      // The verdict on this row's server (a flow to another server may be probed meanwhile).
      const port =
        { 'ladder-ss': LADDER_CONTROL_PORT, 'ladder-trojan': LADDER_PORT }[name] ?? SS_PORT;
      const deadline = Date.now() + 60_000;
      let verdict: LabEvent | undefined;
      while (!verdict && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        verdict = labEventRecords().find(
          (e) =>
            e.module === 'probe' &&
            (e.action === 'clear' || e.action === 'confirm') &&
            e.serverPort === port,
        );
      }
      const probes = labEventRecords()
        .filter((e) => e.module === 'probe')
        .map((e) => `${e.serverPort} ${e.action} ${e.detail ?? ''}`)
        .join('; ');
      assert.equal(
        verdict?.action,
        'clear',
        `${name}: the prober's verdict on port ${port} (${probes})`,
      );
      assert.equal(await attempts(name, 3), 3, `${name} after probing`);
    }
  });

  test('gfw-2025 and sni: Trojan over TLS with an allowed SNI passes', async () => {
    await startCensor(plan, { ...profilePolicy('gfw-2025', plan), timeFactor: 0.01 });
    assert.equal(await attempts('ladder-trojan', 5), 5);
    assert.equal(await attempts('ladder-ss-tls', 5), 5);
  });

  test("inside TLS and as ClientHello replays, the prober's probes get from the Trojan server what they get from the decoy site alone", async () => {
    await startCensor(plan, { modules: {} });
    const hello = await recordTrojanClientHello(DEFAULT_TLS_FINGERPRINT);
    assert.equal(parseClientHello(hello)?.sni, LADDER_NAME);
    const hex = hello.toString('hex');
    for (const seed of [1, 2]) {
      const ladder = await probeCampaign(LADDER_PORT, hex, seed);
      const decoy = await probeCampaign(DECOY_REFERENCE_PORT, hex, seed);
      // the raw TCP probes are judged by the next test, whatever this one finds inside TLS
      campaigns.push({ seed, ladder, decoy });
      assert.deepEqual(
        ladder.probes.map((p) => `${p.layer} ${p.probe} ${p.length}`),
        decoy.probes.map((p) => `${p.layer} ${p.probe} ${p.length}`),
        'the same campaign went to both',
      );
      const inside = ladder.probes.filter((p) => p.layer === 'tls');
      assert.ok(inside.length >= 6 && inside.some((p) => p.length > 1000));
      for (const [i, p] of ladder.probes.entries()) {
        const d = decoy.probes[i]!;
        if (p.layer === 'tls') {
          // Inside TLS, the decoy answers the very same bytes: compare them exactly.
          assert.equal(p.reaction, d.reaction, `${p.probe} ${p.length} B inside TLS`);
          assert.equal(
            normalise(p.reply),
            normalise(d.reply),
            `${p.probe} ${p.length} B inside TLS: reply`,
          );
        } else if (p.probe === 'R1') {
          // A replayed ClientHello: both run the TLS handshake with the same certificate; the flights
          // have the same records, whose lengths differ only by the ECDSA signature's DER length.
          assert.equal(p.reaction, 'DATA');
          assert.equal(d.reaction, 'DATA');
          const a = tlsRecords(p.reply);
          const b = tlsRecords(d.reply);
          assert.deepEqual(
            a.map((r) => r.type),
            b.map((r) => r.type),
          );
          a.forEach((r, k) => assert.ok(Math.abs(r.length - b[k]!.length) <= 2, `record ${k}`));
        }
      }
      assert.equal(ladder.verdict.verdict, 'cleared', ladder.verdict.reason);
    }
  });

  // The one-port tell, closed (docs/lab.md, docs/probe-resistance.md "One port with TLS"): bytes
  // that are not a ClientHello and fail Shadowsocks go to the same TLS stack as the decoy site.
  test('raw TCP probes that are not a ClientHello get the same reaction as from the decoy site alone', () => {
    assert.ok(campaigns.length > 0, 'the previous test collected no probe campaign');
    for (const { seed, ladder, decoy } of campaigns) {
      const raw = (c: typeof ladder) =>
        c.probes
          .filter((p) => p.layer === 'tcp')
          .map((p) => `${p.probe}/${p.length}:${p.reaction}`)
          .join(' ');
      console.log(`# seed ${seed} raw TCP probes, ladder: ${raw(ladder)}`);
      console.log(`# seed ${seed} raw TCP probes, decoy alone: ${raw(decoy)}`);
      assert.equal(raw(ladder), raw(decoy));
      // and what came back: nothing, the same bytes, or a handshake flight with the same records
      // (their lengths equal up to the ECDSA signature's DER length; randoms differ every time).
      ladder.probes.forEach((p, i) => {
        const d = decoy.probes[i]!;
        if (p.layer !== 'tcp') return;
        if (p.reaction !== 'DATA') assert.equal(p.reply, d.reply, `${p.probe} ${p.length} B`);
        else {
          const a = tlsRecords(p.reply);
          const b = tlsRecords(d.reply);
          assert.deepEqual(
            a.map((r) => r.type),
            b.map((r) => r.type),
            `${p.probe} ${p.length} B: records`,
          );
          a.forEach((r, k) => assert.ok(Math.abs(r.length - b[k]!.length) <= 2, `record ${k}`));
        }
      });
    }
  });
});

/** `module/action` of the events since the censor last started (startCensor keeps the file). */
let eventsFrom = 0;
interface LabEvent {
  readonly module: string;
  readonly action: string;
  readonly serverPort?: number;
  readonly detail?: string;
}

/** The censor's events since it was started. */
function labEventRecords(): LabEvent[] {
  const f = eventsPath(plan);
  if (!existsSync(f)) return [];
  const all = readFileSync(f, 'utf8').split('\n').filter(Boolean);
  return all.slice(eventsFrom).map((l) => JSON.parse(l) as LabEvent);
}

/** A reply with its Date header blanked (the only thing that may differ between two answers). */
function normalise(b64: string): string {
  return Buffer.from(b64, 'base64')
    .toString('latin1')
    .replace(/\r\nDate: [^\r]*/i, '\r\nDate: -');
}

/** TLS record headers in a reply: type and length of each. */
function tlsRecords(b64: string): { type: number; length: number }[] {
  const b = Buffer.from(b64, 'base64');
  const out: { type: number; length: number }[] = [];
  for (let o = 0; o + 5 <= b.length;) {
    const length = b.readUInt16BE(o + 3);
    out.push({ type: b[o]!, length });
    o += 5 + length;
  }
  return out;
}
