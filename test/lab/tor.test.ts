// Tor in the lab (docs/censorship-techniques.md §12; root, /dev/net/tun and Debian's tor needed, skipped with the reason
// otherwise): a real Tor bridge in abroad and real Tor clients in client. With the `tor` module off
// the client reaches the bridge; with it on the client is flagged by its ClientHello, the bridge is
// probed with a VERSIONS cell, answers like Tor and is null-routed, and unblocked once Tor is gone.
// Ladder's Trojan and curl's HTTPS are not flagged, and the Tor prober gets from the Ladder server
// what it gets from the decoy site alone. Every censor here runs the `egress` check: no flow may
// leave the lab's address space, and the test asserts none did. Its own lab prefix, removed in
// after(), even on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  labUp,
  startCensor,
  destroyLab,
  caPath,
  eventsPath,
  CLI_PATH,
  LADDER_NAME,
} from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import type { Policy } from '../../src/lab/policy.js';
import {
  runIn,
  stopTransports,
  ladderTrojanNodeTransport,
  transports,
  LADDER_PORT,
} from '../../src/lab/card.js';
import { DECOY_REFERENCE_PORT } from '../../src/lab/services.js';
import { TOR_JA3_HASHES } from '../../src/lab/modules/tor.js';
import { inAddressSpace } from '../../src/lab/modules/egress.js';
import {
  startTorBridge,
  startTorClient,
  stopTor,
  torBootstrap,
  torUnavailable,
  waitForBootstrap,
  TOR_HANDSHAKE_DONE,
  TOR_OR_PORT,
  type TorPeer,
} from '../../src/lab/tor-peers.js';

const why = labUnavailable() ?? torUnavailable();
if (why) console.log(`lab Tor tests skipped: ${why}`);
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}5-`);
const bridgeAt = `${plan.addr.torIp}:${TOR_OR_PORT}`;
const peers: TorPeer[] = [];
let bridge: TorPeer | undefined;

interface LabEvent {
  module: string;
  action: string;
  detail?: string;
}
let eventsFrom = 0;
function allEvents(): LabEvent[] {
  const f = eventsPath(plan);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LabEvent);
}
/** `module/action` since the censor last started. */
const labEvents = () =>
  allEvents()
    .slice(eventsFrom)
    .map((e) => `${e.module}/${e.action}`);

/** Starts the censor with `modules` and the egress check, and remembers where its events begin. */
async function censor(modules: Policy['modules'], timeFactor = 0.01): Promise<void> {
  await startCensor(plan, { timeFactor, seed: 5, modules: { egress: {}, ...modules } });
  eventsFrom = allEvents().length;
}

async function waitForEvent(name: string, timeoutMs = 30_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!labEvents().includes(name) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 200));
  return labEvents().includes(name);
}

/** The Tor prober's probe (TLS + VERSIONS) run in a namespace: from the wall, or from the client. */
async function torProbeFrom(
  ns: string,
  to: string,
  source?: string,
  sni?: string,
): Promise<{ reaction: string; reply: string; verdict: string }> {
  const r = await runIn(
    plan,
    ns,
    [
      process.execPath,
      CLI_PATH,
      'lab',
      'probe',
      '--tor',
      '--to',
      to,
      '--timeout-ms',
      '3000',
      ...(source ? ['--source', source] : []),
      ...(sni ? ['--sni', sni] : []),
    ],
    20_000,
  );
  return JSON.parse(r.out.trim().split('\n').pop()!) as {
    reaction: string;
    reply: string;
    verdict: string;
  };
}

/** A plain TCP connection from the client namespace to the bridge's port: how it failed. */
async function connectFromClient(): Promise<string> {
  const r = await runIn(
    plan,
    plan.ns.client,
    [process.execPath, CLI_PATH, 'lab', 'connect', '--to', bridgeAt, '--timeout', '3'],
    15_000,
  );
  return r.out.trim();
}

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

async function torClient(timeoutMs = 20_000): Promise<number> {
  const c = startTorClient(plan, `tor-client-${peers.length}`);
  peers.push(c);
  try {
    return await waitForBootstrap(plan, c, TOR_HANDSHAKE_DONE, timeoutMs);
  } finally {
    stopTor(c);
  }
}

describe('Tor in the lab (§12)', { skip: why ?? false, timeout: 300_000 }, () => {
  before(async () => {
    destroyLab(plan);
    await labUp(plan, { policy: { modules: {} } });
    bridge = await startTorBridge(plan);
    peers.push(bridge);
    await transport('ladder-trojan').setup!(plan);
    await transport('ladder-trojan-node').setup!(plan);
  });
  after(() => {
    for (const p of peers) stopTor(p);
    stopTransports();
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  test("module off: a real Tor client reaches the lab's bridge; its live ClientHello has the recorded JA3", async () => {
    await censor({ 'tls-fingerprint': { measure: true } });
    const pct = await torClient();
    assert.ok(pct >= TOR_HANDSHAKE_DONE, `bootstrap reached ${pct}%`);
    const hashes = allEvents()
      .slice(eventsFrom)
      .filter((e) => e.module === 'tls-fingerprint' && e.action === 'measure')
      .map((e) => e.detail);
    assert.ok(hashes.length > 0);
    for (const h of hashes)
      assert.ok(
        TOR_JA3_HASHES.includes(h!),
        `the installed tor's JA3 ${h} is not the recorded one: re-record test/vectors/tor.json`,
      );
    assert.ok(!labEvents().includes('egress/outside'));
  });

  test('the Tor prober gets from the Ladder server what it gets from the decoy site alone: no VERSIONS cell, and the server is cleared and stays reachable', async () => {
    await censor({ 'tls-fingerprint': { measure: true } });
    const measured = (from: number) =>
      allEvents()
        .slice(from)
        .filter((e) => e.module === 'tls-fingerprint')
        .map((e) => e.detail!);
    assert.equal(await attempts('ladder-trojan', 2), 2);
    // the default client's (fp=chrome) ClientHellos: Chrome's permuted extensions, a JA3 each
    const chromeJa3 = measured(eventsFrom);
    const nodeFrom = allEvents().length;
    assert.equal(await attempts('ladder-trojan-node', 2), 2);
    // the fresh and the resumed ClientHello of the fp=node client (a resumed one has another JA3)
    const ladderJa3 = measured(nodeFrom);
    assert.ok(chromeJa3.length > 0 && chromeJa3.every((h) => !TOR_JA3_HASHES.includes(h)));
    assert.ok(ladderJa3.length > 0 && ladderJa3.every((h) => !TOR_JA3_HASHES.includes(h)));
    const ladder = await torProbeFrom(
      plan.ns.wall,
      `${plan.addr.ladderIp}:${LADDER_PORT}`,
      plan.prober[0],
      LADDER_NAME,
    );
    const decoy = await torProbeFrom(
      plan.ns.wall,
      `${plan.addr.ladderIp}:${DECOY_REFERENCE_PORT}`,
      plan.prober[0],
      LADDER_NAME,
    );
    assert.equal(ladder.verdict, 'not-tor');
    assert.equal(ladder.reaction, decoy.reaction);
    assert.equal(normalise(ladder.reply), normalise(decoy.reply));
    // the module, told that the fp=node client's ClientHellos are Tor's (the default client's JA3
    // is new on each connection, no list names it), probes the server and clears it
    await censor({ tor: { proberAddresses: [...plan.prober], fingerprints: ladderJa3 } }, 0.001);
    assert.equal(await attempts('ladder-trojan-node', 1), 1);
    assert.ok(await waitForEvent('tor/clear'), `no tor/clear in: ${labEvents().join(' ')}`);
    assert.equal(await attempts('ladder-trojan-node', 3), 3, 'not blocked');
    assert.equal(await attempts('ladder-trojan', 2), 2, 'not blocked');
    assert.ok(!labEvents().includes('tor/confirm') && !labEvents().includes('tor/drop'));
  });

  test('module on: the Tor client is flagged, the bridge probed with VERSIONS, confirmed and null-routed S→C; Ladder Trojan and curl HTTPS are not flagged', async () => {
    // time factor 0.0002: the 12 h re-probe comes every 8.6 s
    await censor({ tor: { proberAddresses: [...plan.prober] } }, 0.0002);
    assert.equal(await attempts('ladder-trojan', 3), 3);
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
    assert.match(curl.out, /site allowed\.lab/);
    assert.deepEqual(labEvents(), [], 'neither is flagged');
    await torClient(10_000);
    assert.ok(await waitForEvent('tor/confirm'), labEvents().join(' '));
    const ev = labEvents();
    assert.deepEqual(ev.slice(0, 4), ['tor/flag', 'tor/schedule', 'tor/probe', 'tor/confirm']);
    // from the client the bridge is gone (its SYN+ACK dropped); from the prober it still speaks Tor
    assert.equal((await torProbeFrom(plan.ns.client, bridgeAt)).reaction, 'TIMEOUT');
    assert.match(await connectFromClient(), /^timeout after 0 of/);
    assert.equal((await torProbeFrom(plan.ns.wall, bridgeAt, plan.prober[1])).verdict, 'tor');
    const pct = await torClient(8000);
    assert.ok(pct < TOR_HANDSHAKE_DONE, `a fresh Tor client got to ${pct}%`);
    assert.ok(labEvents().includes('tor/drop'));
    // still not flagged after the block: Ladder's Trojan and curl
    const flags = labEvents().filter((e) => e === 'tor/flag').length;
    assert.equal(await attempts('ladder-trojan', 2), 2);
    assert.equal(labEvents().filter((e) => e === 'tor/flag').length, flags);
  });

  test('Tor gone: the 12 h re-probe (× time factor) finds no VERSIONS and unblocks the ip:port', async () => {
    assert.ok(labEvents().includes('tor/confirm'), 'the previous test left the bridge blocked');
    stopTor(bridge!);
    assert.ok(await waitForEvent('tor/unblock', 40_000), labEvents().join(' '));
    // the port answers again: the refusal (RST) of the closed port reaches the client, not silence
    assert.match(await connectFromClient(), /ECONNREFUSED/);
  });

  test('nothing left the lab: no egress events, and every address in the tor logs is a lab address', () => {
    assert.ok(allEvents().length > 0);
    assert.deepEqual(
      allEvents().filter((e) => e.module === 'egress'),
      [],
    );
    let seen = 0;
    for (const p of peers) {
      const log = join(plan.stateDir, `${p.name}.log`);
      if (!existsSync(log)) continue;
      for (const m of readFileSync(log, 'utf8').matchAll(/\b(\d{1,3}(?:\.\d{1,3}){3})\b/g)) {
        if (m[1]!.startsWith('0.')) continue; // the version "Tor 0.4.9.11"
        seen++;
        assert.ok(inAddressSpace(m[1]!), `${p.name}.log names ${m[1]}`);
      }
    }
    assert.ok(seen > 0, 'the logs name the bridge');
    assert.ok(torBootstrap(plan, 'tor-client-1') >= TOR_HANDSHAKE_DONE);
  });
});

/** A reply with its Date header blanked (the only thing that may differ between two answers). */
function normalise(b64: string): string {
  return Buffer.from(b64, 'base64')
    .toString('latin1')
    .replace(/\r\nDate: [^\r]*/i, '\r\nDate: -');
}
