// `ladder probe` inside the lab's client namespace, one censor module at a time, checking that the
// probe names what each module does: a poisoned name gives `dns`, an IP block `tcp_ip`, an SNI reset
// `http-failure` with `connection_reset`, a block page `http-diff`, an allowed site stays accessible;
// and the transport check names the technique of the module that blocked each transport (checked
// against the censor's own events), and the 2024–2026 techniques the recogniser names under their
// modules (byte budget, port reset, dropped ServerHello, connection count, whitelist mode, the
// tm-2025 volume ban), each with its evidence and the key's transport to use instead, checked
// against the censor's events. Also the block-page module's own test. Root and /dev/net/tun
// needed (skipped with the reason otherwise); everything under this file's prefix, removed in after().
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  caPath,
  CLI_PATH,
  destroyLab,
  eventsPath,
  labUp,
  spawnInNamespace,
  startCensor,
  waitForLog,
} from '../../src/lab/lab.js';
import { labNamespaces, labUnavailable, planLab } from '../../src/lab/topology.js';
import { modulePolicy, profilePolicy, type ModuleName } from '../../src/lab/policy.js';
import { runIn } from '../../src/lab/card.js';
import { formatLadderKey } from '../../src/codec/ladder-key.js';
import { BUDGET_MIN_BYTES } from '../../src/probe/censors.js';

const why = labUnavailable();
if (why) console.log(`probe lab tests skipped: ${why}`);
// Its own prefix, derived from LADDER_LAB_TEST_PREFIX so that checkouts and lab test files never share one.
const base = (process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-').slice(0, -1).slice(0, 6);
const plan = planLab(`${base}p-`);

const userinfo = Buffer.from('chacha20-ietf-poly1305:lab-probe-password').toString('base64url');
const SS_PORT = 8388;
const keys = {
  ss: `ss://${userinfo}@${plan.addr.ladderIp}:${SS_PORT}`,
  ssByName: `ss://${userinfo}@ladder.lab:${SS_PORT}`,
  trojan: `trojan://lab-probe-trojan@${plan.addr.ladderIp}:443?sni=${plan.names.allowed}`,
  trojanBlockedSni: `trojan://lab-probe-trojan@${plan.addr.ladderIp}:443?sni=${plan.names.blocked}`,
};

interface Line {
  test_name: string;
  input: string;
  test_keys: Record<string, unknown>;
}

let run = 0;
/** Runs `ladder probe` in the client namespace; returns its JSON lines and its table. */
async function probe(args: string[]): Promise<{ lines: Line[]; out: string }> {
  const file = join(plan.stateDir, `probe-${++run}.jsonl`);
  const r = await runIn(
    plan,
    plan.ns.client,
    [
      process.execPath,
      CLI_PATH,
      'probe',
      '--control-resolver',
      `${plan.addr.dnsIp}:53`,
      '--check-url',
      `http://${plan.names.allowed}/`,
      '--ca',
      caPath(plan),
      '--timeout',
      '2',
      '--backoff',
      '0.3',
      '--json',
      file,
      ...args,
    ],
    110_000,
  );
  assert.equal(r.status, 0, r.out);
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l)
    .map((l) => JSON.parse(l) as Line);
  return { lines, out: r.out };
}

/** A string as a regular expression that matches it literally. */
const literal = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Prints the techniques the probe recognised, as the CI log's record of what the lab showed. */
const printFindings = (out: string) => {
  const from = Math.max(0, out.indexOf('censorship techniques recognised:'));
  const to = out.indexOf('\n\n', from);
  console.log(out.slice(from, to < 0 ? undefined : to));
};

const web = (lines: Line[], url: string) => {
  const m = lines.find((l) => l.test_name === 'web_connectivity' && l.input === url);
  assert.ok(m, `a measurement of ${url}`);
  return m.test_keys;
};
const transport = (lines: Line[], name: RegExp) => {
  const m = lines.find(
    (l) => l.test_name === 'ladder_transport_check' && name.test(String(l.test_keys.transport)),
  );
  assert.ok(m, `a check of ${name}`);
  return m.test_keys;
};

function eventsFrom(offset: number): string[] {
  const f = eventsPath(plan);
  if (!existsSync(f)) return [];
  return readFileSync(f)
    .subarray(offset)
    .toString()
    .split('\n')
    .filter((l) => l)
    .map((l) => {
      const e = JSON.parse(l) as { module: string; action: string };
      return `${e.module}/${e.action}`;
    });
}
const eventsSize = () => (existsSync(eventsPath(plan)) ? readFileSync(eventsPath(plan)).length : 0);

async function censor(name: ModuleName, overrides: object = {}): Promise<number> {
  await startCensor(plan, modulePolicy(name, plan, overrides));
  return eventsSize();
}

describe('ladder probe in the lab', { skip: why ?? false, timeout: 600_000 }, () => {
  before(async () => {
    destroyLab(plan); // a crashed earlier run
    await labUp(plan, { policy: { modules: {} } });
    const cert = join(plan.stateDir, 'site-cert.pem');
    const key = join(plan.stateDir, 'site-key.pem');
    const node = [process.execPath, CLI_PATH, 'server', '--allow-private-targets'];
    const ss = spawnInNamespace(plan, 'abroad', 'ladder-ss', [
      ...node,
      '--listen',
      `${plan.addr.ladderIp}:${SS_PORT}`,
      '--key',
      keys.ss,
    ]);
    const trojan = spawnInNamespace(plan, 'abroad', 'ladder-trojan', [
      ...node,
      '--listen',
      `${plan.addr.ladderIp}:443`,
      '--key',
      keys.trojan,
      '--tls-cert',
      cert,
      '--tls-key',
      key,
    ]);
    await waitForLog(plan, 'ladder-ss', ss, /listening/);
    await waitForLog(plan, 'ladder-trojan', trojan, /listening/);
  });
  after(() => {
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  test('no censor: every site accessible, both transports get through', async () => {
    await startCensor(plan, { modules: {} });
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--attempts',
      '2',
      `http://${plan.names.allowed}/`,
      `https://${plan.names.blocked}/`,
    ]);
    for (const url of [`http://${plan.names.allowed}/`, `https://${plan.names.blocked}/`]) {
      const k = web(lines, url);
      assert.equal(k.blocking, false, url);
      assert.equal(k.accessible, true, url);
      assert.equal(k.dns_consistency, 'consistent', url);
      assert.equal(k.control_failure, null);
    }
    assert.equal(transport(lines, /shadowsocks/).status, 'ok');
    assert.equal(transport(lines, /trojan/).status, 'ok');
  });

  test('dns module: the poisoned name gives dns, the other stays accessible', async () => {
    const from = await censor('dns');
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--only',
      'web',
      `http://${plan.names.blocked}/`,
      `http://${plan.names.allowed}/`,
    ]);
    const b = web(lines, `http://${plan.names.blocked}/`);
    assert.equal(b.blocking, 'dns');
    assert.equal(b.dns_consistency, 'inconsistent');
    assert.equal(b.accessible, false);
    assert.deepEqual((b.control as { dns: { addrs: string[] } }).dns.addrs, [plan.addr.blockedIp]);
    assert.equal(web(lines, `http://${plan.names.allowed}/`).accessible, true);
    assert.ok(eventsFrom(from).includes('dns/forge'));
  });

  test('ipblock module: the null-routed server gives tcp_ip', async () => {
    const from = await censor('ipblock');
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--only',
      'web',
      `http://${plan.names.blocked}/`,
    ]);
    const b = web(lines, `http://${plan.names.blocked}/`);
    assert.equal(b.blocking, 'tcp_ip');
    assert.equal(b.http_experiment_failure, 'generic_timeout_error');
    assert.equal(b.dns_consistency, 'consistent');
    assert.ok(eventsFrom(from).includes('ipblock/drop'));
  });

  test('sni module: the blocked SNI gives http-failure with connection_reset', async () => {
    const from = await censor('sni');
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--only',
      'web',
      `https://${plan.names.blocked}/`,
      `https://${plan.names.allowed}/`,
    ]);
    const b = web(lines, `https://${plan.names.blocked}/`);
    assert.equal(b.blocking, 'http-failure');
    assert.equal(b.http_experiment_failure, 'connection_reset');
    const tls = b.tls_handshakes as { failure: string | null; server_name: string }[];
    assert.equal(tls[0]!.failure, 'connection_reset');
    assert.equal(tls[0]!.server_name, plan.names.blocked);
    assert.equal(web(lines, `https://${plan.names.allowed}/`).accessible, true);
    assert.ok(eventsFrom(from).includes('sni/reset'));
  });

  test('http module: a reset on the blocked Host gives http-failure', async () => {
    const from = await censor('http', { pTrigger: 1 });
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--only',
      'web',
      `http://${plan.names.blocked}/`,
    ]);
    const b = web(lines, `http://${plan.names.blocked}/`);
    assert.equal(b.blocking, 'http-failure');
    assert.equal(b.http_experiment_failure, 'connection_reset');
    assert.ok(eventsFrom(from).includes('http/reset'));
  });

  test('blockpage module: curl gets the page, the allowed site is untouched', async () => {
    const from = await censor('blockpage');
    const curl = (url: string) =>
      runIn(plan, plan.ns.client, ['curl', '-sS', '-i', '--max-time', '4', url], 8000);
    const blocked = await curl(`http://${plan.names.blocked}/`);
    assert.equal(blocked.status, 0, blocked.out);
    assert.match(blocked.out, /^HTTP\/1\.1 200 OK/);
    assert.match(blocked.out, /<title>Access Denied<\/title>/);
    assert.doesNotMatch(blocked.out, /ladder lab site/);
    assert.match((await curl(`http://${plan.names.allowed}/`)).out, /ladder lab site allowed\.lab/);
    // HTTPS to the same host is not touched by a block page
    const https = await runIn(
      plan,
      plan.ns.client,
      [
        'curl',
        '-sS',
        '--max-time',
        '4',
        '--cacert',
        caPath(plan),
        `https://${plan.names.blocked}/`,
      ],
      8000,
    );
    assert.match(https.out, /ladder lab site blocked\.lab/);
    assert.deepEqual(
      eventsFrom(from).filter((e) => e.startsWith('blockpage')),
      ['blockpage/inject'],
    );
  });

  test('blockpage module: the probe calls the page http-diff', async () => {
    const from = await censor('blockpage');
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--only',
      'web',
      `http://${plan.names.blocked}/`,
      `http://${plan.names.allowed}/`,
    ]);
    const b = web(lines, `http://${plan.names.blocked}/`);
    assert.equal(b.blocking, 'http-diff');
    assert.equal(b.accessible, false);
    assert.equal(b.status_code_match, true);
    assert.equal(b.body_length_match, false);
    assert.equal(web(lines, `http://${plan.names.allowed}/`).blocking, false);
    assert.ok(eventsFrom(from).includes('blockpage/inject'));
  });

  test('transports × fet: in one ladder:// key, Shadowsocks is dropped after its first packet, then null-routed; Trojan gets through', async () => {
    const from = await censor('fet', { p: 1 });
    const bundle = formatLadderKey({ transports: [keys.ss, keys.trojan], name: 'lab' });
    const { lines } = await probe(['--key', bundle, '--only', 'transports', '--attempts', '2']);
    const ss = transport(lines, /shadowsocks/);
    assert.equal(ss.status, 'blocked');
    assert.equal(ss.technique, 'data-drop');
    assert.equal(ss.residual, true);
    assert.equal(transport(lines, /trojan/).status, 'ok');
    assert.ok(eventsFrom(from).includes('fet/block'));
  });

  test('transports × ipblock: the whole address, then only the Shadowsocks port', async () => {
    let from = await censor('ipblock', {
      rules: [{ ip: plan.addr.ladderIp, mode: 'nullroute-both' }],
    });
    let r = await probe(['--key', keys.ss, '--only', 'transports', '--attempts', '2']);
    assert.equal(transport(r.lines, /shadowsocks/).technique, 'ip');
    assert.ok(eventsFrom(from).includes('ipblock/drop'));

    from = await censor('ipblock', {
      rules: [{ ip: plan.addr.ladderIp, port: SS_PORT, mode: 'nullroute-both' }],
    });
    r = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '2',
    ]);
    const ss = transport(r.lines, /shadowsocks/);
    assert.equal(ss.technique, 'port');
    assert.equal((ss.other_port as { port: number; answered: boolean }).answered, true);
    assert.equal(transport(r.lines, /trojan/).status, 'ok');
    assert.ok(eventsFrom(from).includes('ipblock/drop'));
  });

  test('transports × sni: Trojan with a blocked SNI is reset after its ClientHello; Shadowsocks gets through', async () => {
    const from = await censor('sni');
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojanBlockedSni,
      '--only',
      'transports',
    ]);
    const t = transport(lines, /trojan/);
    assert.equal(t.status, 'blocked');
    assert.equal(t.technique, 'tls-reset');
    assert.equal(transport(lines, /shadowsocks/).status, 'ok');
    assert.ok(eventsFrom(from).includes('sni/reset'));
  });

  test('transports × dns: a key naming its server by a poisoned name; the real address gets through', async () => {
    const from = await censor('dns', { blocklist: ['ladder.lab'] });
    const { lines } = await probe([
      '--key',
      keys.ssByName,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '2',
    ]);
    const ss = transport(lines, /shadowsocks/);
    assert.equal(ss.technique, 'dns');
    assert.deepEqual((ss.control_dns as { addrs: string[] }).addrs, [plan.addr.ladderIp]);
    assert.equal((ss.real_address_attempt as { kind: string }).kind, 'ok');
    assert.equal(transport(lines, /trojan/).status, 'ok');
    assert.ok(eventsFrom(from).includes('dns/forge'));
  });
  test('transports × port443-reset, allowlist, rst-on-data: refused, tls-drop, data-reset', async () => {
    let from = await censor('port443-reset');
    let r = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '2',
    ]);
    assert.equal(transport(r.lines, /trojan/).technique, 'refused');
    assert.equal(transport(r.lines, /shadowsocks/).status, 'ok', 'port 8388 is not 443');
    assert.ok(eventsFrom(from).includes('port443-reset/reset'));

    from = await censor('allowlist'); // TLS only, and only to allowed.lab
    r = await probe([
      '--key',
      keys.trojan,
      '--key',
      keys.trojanBlockedSni,
      '--only',
      'transports',
      '--attempts',
      '2',
    ]);
    assert.equal(transport(r.lines, new RegExp(`SNI ${plan.names.allowed}`)).status, 'ok');
    assert.equal(transport(r.lines, new RegExp(`SNI ${plan.names.blocked}`)).technique, 'tls-drop');
    assert.ok(eventsFrom(from).includes('allowlist/drop'));

    from = await censor('ipblock', {
      rules: [{ ip: plan.addr.ladderIp, port: SS_PORT, mode: 'rst-on-data' }],
    });
    r = await probe(['--key', keys.ss, '--only', 'transports', '--attempts', '2']);
    assert.equal(transport(r.lines, /shadowsocks/).technique, 'data-reset');
    assert.ok(eventsFrom(from).includes('ipblock/reset'));
  });

  test('transports × whitelist: every transport silent while the allow-listed control answers directly: whitelist mode named', async () => {
    const from = await censor('whitelist'); // only the SNI allowed.lab passes
    const args = [
      '--key',
      keys.ss,
      '--key',
      keys.trojanBlockedSni,
      '--only',
      'transports',
      '--attempts',
      '1',
    ];
    const without = await probe(args);
    assert.doesNotMatch(without.out, /\[whitelist\]/, 'with no control site the probe cannot tell');
    const r = await probe([...args, '--allowlist-control', `https://${plan.names.allowed}/`]);
    assert.match(
      r.out,
      new RegExp(
        `\\[whitelist\\] all 2 transports fail silently \\(.*\\), while https://${plan.names.allowed}/ answers`,
      ),
      r.out,
    );
    assert.ok(eventsFrom(from).includes('whitelist/drop'));
  });

  test('transports × byte-budget: the download through Shadowsocks freezes after the budget while a fresh connection works; the exempt SNI carries on: byte budget named', async () => {
    // n4p#662: allowed.lab is spared, as in ru-2026; the Trojan key's SNI is that name
    const from = await censor('byte-budget', { exemptSni: [plan.names.allowed] });
    const r = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '1',
      '--throughput-url',
      `http://${plan.names.allowed}/bytes/${256 * 1024}`,
      // a stall is one step timeout of silence: longer than 2 s, so a pause under load is not one
      '--timeout',
      '4',
    ]);
    printFindings(r.out);
    const ss = transport(r.lines, /shadowsocks/);
    const th = ss.throughput as { bytes: number; end: string };
    assert.equal(th.end, 'stall', r.out);
    // the budget (14–32 KB of TCP payload) less the tunnel's framing
    assert.ok(th.bytes >= BUDGET_MIN_BYTES && th.bytes <= 32 * 1024, `${th.bytes} bytes`);
    assert.equal((ss.recheck as { attempt: { kind: string } }).attempt.kind, 'ok', 'a fresh one');
    const trojan = transport(r.lines, /trojan/);
    const tth = trojan.throughput as { bytes: number; end: string };
    assert.equal(tth.end, 'eof', 'the whole download through the exempt SNI');
    assert.ok(tth.bytes > 256 * 1024, `${tth.bytes} bytes`);
    assert.match(
      r.out,
      new RegExp(
        `\\[byte-budget\\] ${literal(String(ss.transport))}: the download stopped after ${th.bytes} bytes and stayed silent for \\d+ s, no reset\\n +use instead: ${literal(String(trojan.transport))}\\n`,
      ),
      r.out,
    );
    // one flow over its budget: the Shadowsocks download; the exempt SNI's never counted
    assert.deepEqual(eventsFrom(from), ['byte-budget/stall']);
  });

  test('transports × port443-reset: every SYN to 443 reset while Shadowsocks on 8388 gets through: port reset named', async () => {
    const from = await censor('port443-reset');
    const r = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '2',
    ]);
    printFindings(r.out);
    const ss = String(transport(r.lines, /shadowsocks/).transport);
    const trojan = transport(r.lines, /trojan/);
    // nothing listens on port 80 of the server: the other port refuses, which alone proves nothing
    assert.equal((trojan.other_port as { failure: string }).failure, 'connection_refused');
    assert.match(
      r.out,
      new RegExp(
        `\\[port-reset\\] ${literal(String(trojan.transport))}: every SYN to port 443 was answered by a reset \\(2/2\\), while ${literal(ss)} on port ${SS_PORT} of the same address gets through\\n +use instead: ${literal(ss)}\\n`,
      ),
      r.out,
    );
    // one reset flow per attempt to 443
    assert.deepEqual(eventsFrom(from), ['port443-reset/reset', 'port443-reset/reset']);
  });

  test('transports × iran: TCP connects, the TLS handshake is never answered, Shadowsocks to the same address gets through: dropped ServerHello named', async () => {
    const from = await censor('iran');
    const r = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '2',
    ]);
    printFindings(r.out);
    const ss = String(transport(r.lines, /shadowsocks/).transport);
    const trojan = transport(r.lines, /trojan/);
    assert.equal(trojan.technique, 'tls-drop');
    assert.match(
      r.out,
      new RegExp(
        `\\[serverhello-drop\\] ${literal(String(trojan.transport))}: TCP to ${literal(plan.addr.ladderIp)} connects, the TLS handshake \\(SNI ${literal(plan.names.allowed)}\\) times out 2/2 times, while ${literal(ss)} to the same address gets through\\n +use instead: ${literal(ss)}\\n`,
      ),
      r.out,
    );
    // the censor dropped the ServerHello of each Trojan attempt, and did nothing else (its other
    // events are IPv6 and UDP the namespaces send by themselves). At least one flow per attempt:
    // a loaded run once counted three flows where the probe reported two attempts (not explained).
    const ev = eventsFrom(from).filter((e) => e !== 'iran/drop');
    assert.ok(ev.length >= 2 && ev.every((e) => e === 'iran/drop-serverhello'), ev.join(', '));
  });

  test('transports × conn-count: of 10 Trojan connections held open together 6 get through, all 10 over Shadowsocks: connection count named', async () => {
    const from = await censor('conn-count'); // 6 TLS connections per client and server address
    const r = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '1',
      '--concurrent',
      '10',
      '--timeout',
      '4',
    ]);
    printFindings(r.out);
    const ss = transport(r.lines, /shadowsocks/);
    const trojan = transport(r.lines, /trojan/);
    const kinds = (t: Record<string, unknown>) =>
      (t.concurrent as { kind: string }[]).map((a) => a.kind);
    assert.deepEqual(kinds(ss), Array(10).fill('ok'), 'Shadowsocks is not TLS: not counted');
    assert.equal(kinds(trojan).filter((k) => k === 'ok').length, 6, kinds(trojan).join(' '));
    assert.match(
      r.out,
      new RegExp(
        `\\[conn-count\\] ${literal(String(trojan.transport))}: one connection at a time gets through, but of 10 held open together only 6 did; the other 4 failed \\([a-z-, ]+\\)\\n +use instead: ${literal(String(ss.transport))}\\n`,
      ),
      r.out,
    );
    assert.deepEqual(eventsFrom(from), Array(4).fill('conn-count/reset'));
  });

  test('transports × tm-2025: a download carries the volume, then every port and protocol of the server is silent while the direct control answers: volume ban named', async () => {
    await startCensor(plan, profilePolicy('tm-2025', plan)); // volume-ban at its 2 MiB default
    const from = eventsSize();
    const r = await probe([
      '--key',
      keys.ss,
      '--key',
      keys.trojan,
      '--only',
      'transports',
      '--attempts',
      '1',
      '--throughput-url',
      `http://${plan.names.allowed}/bytes/${4 * 1024 * 1024}`,
      '--allowlist-control',
      `https://${plan.names.allowed}/`,
      // The download counts as stalled after one step timeout of silence: a longer one than the
      // file's 2 s, so that a pause on a loaded machine is not read as the ban.
      '--timeout',
      '4',
    ]);
    console.log(
      r.out
        .split('\n')
        .filter((l) => /volume-ban|banned|again after/.test(l))
        .join('\n'),
    );
    assert.ok(eventsFrom(from).includes('volume-ban/ban'), 'the censor banned the address');
    const ss = transport(r.lines, /shadowsocks/);
    const th = ss.throughput as { bytes: number; end: string };
    assert.equal(th.end, 'stall', r.out);
    assert.ok(th.bytes > 1024 * 1024 && th.bytes < 2 * 1024 * 1024, `${th.bytes} bytes`);
    for (const t of [ss, transport(r.lines, /trojan/)])
      assert.equal((t.recheck as { attempt: { kind: string } }).attempt.kind, 'tcp-timeout');
    assert.match(
      r.out,
      new RegExp(
        `\\[volume-ban\\] ${plan.addr.ladderIp.replace(/\./g, '\\.')}: shadowsocks[^\\n]* got through and received \\d+ bytes \\(the download through shadowsocks[^)]* stopped after ${th.bytes} bytes\\); then every new connection to the address failed: [^\\n]*port 80 \\(generic_timeout_error\\); while https://${plan.names.allowed}/ answers\\n +this server address was banned[^\\n]*--rotate-after`,
      ),
      r.out,
    );
  });

  test('transports × throttle: a throughput sample is taken (the verdict is printed, not asserted: it is a rate)', async () => {
    const from = await censor('throttle', { bytesThreshold: 4 * 1024 * 1024 });
    const { lines } = await probe([
      '--key',
      keys.ss,
      '--only',
      'transports',
      '--attempts',
      '1',
      '--throughput-url',
      `http://${plan.names.allowed}/bytes/${16 * 1024 * 1024}`,
    ]);
    const ss = transport(lines, /shadowsocks/);
    const th = ss.throughput as {
      bytes: number;
      late_early_ratio: number | null;
      knee_bytes: number | null;
    };
    assert.ok(th.bytes > 4 * 1024 * 1024, 'the sample went past the throttle threshold');
    assert.ok(eventsFrom(from).includes('throttle/throttle'));
    console.log(
      `lab throttle (4 MiB threshold, 2% loss, 40 ms): technique ${String(ss.technique)}, late/early rate ${th.late_early_ratio?.toFixed(2)}, knee ${th.knee_bytes} bytes`,
    );
  });
});
