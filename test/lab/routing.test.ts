// Split routing in the lab (issue #15; root and /dev/net/tun needed, skipped with the reason
// otherwise): the real `ladder client --rules` in the client namespace with a Trojan key, the real
// `ladder server` abroad, under the gfw profiles, whose DNS module poisons the lab resolver's answers
// for blocked.lab on the way through the wall. The report card's `ladder-rules` row is the same check.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labUp, startCensor, destroyLab } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { profilePolicy } from '../../src/lab/policy.js';
import { runIn, stopTransports, transports, RULES_CLIENT } from '../../src/lab/card.js';
import { DNS_DEFAULTS } from '../../src/lab/modules/dns.js';

const why = labUnavailable();
if (why) console.log(`routing lab tests skipped: ${why}`);
// A prefix of its own, derived from LADDER_LAB_TEST_PREFIX, so that it runs beside the other lab tests.
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 6)}rt-`);
const UDP_DNS = fileURLToPath(new URL('../helpers/socks-udp-dns.js', import.meta.url));

const row = () => {
  const t = transports().find((x) => x.name === 'ladder-rules');
  assert.ok(t);
  return t;
};

function curl(args: string[]) {
  return runIn(plan, plan.ns.client, ['curl', '-sS', '--max-time', '6', ...args], 10_000);
}

function udpDns(socksPort: number) {
  return runIn(
    plan,
    plan.ns.client,
    [
      process.execPath,
      UDP_DNS,
      String(socksPort),
      plan.addr.dnsIp,
      plan.names.blocked,
      plan.addr.blockedIp,
    ],
    12_000,
  );
}

function clientLog(): string {
  return readFileSync(join(plan.stateDir, 'ladder-client-rules.log'), 'utf8');
}

describe('split routing in the lab', { skip: why ?? false, timeout: 300_000 }, () => {
  before(async () => {
    destroyLab(plan);
    await labUp(plan, { policy: { modules: {} } });
    await startCensor(plan, { ...profilePolicy('gfw-2025', plan), timeFactor: 0.01 });
    await row().setup!(plan);
  });
  after(() => {
    stopTransports();
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  test('control: without Ladder, blocked.lab is poisoned and unreachable from the client', async () => {
    const r = await curl([`http://${plan.names.blocked}/`]);
    assert.ok(!r.out.includes(`site ${plan.names.blocked}`), r.out);
    const u = await udpDns(0);
    const answers = (JSON.parse(u.out.trim().split('\n').pop()!) as { answers: string[][] })
      .answers;
    assert.ok(
      answers.flat().some((a) => DNS_DEFAULTS.poolV4.includes(a)),
      `a forged answer raced the genuine one: ${u.out}`,
    );
  });

  test('gfw-2025: blocked.lab through the tunnel at its real address, domestic.lab direct, ads.lab refused', async () => {
    const blocked = await curl([
      '--socks5-hostname',
      `127.0.0.1:${RULES_CLIENT.socks}`,
      `http://${plan.names.blocked}/whoami`,
    ]);
    assert.match(blocked.out, /site blocked\.lab, from /);
    assert.ok(
      !blocked.out.includes(`from ${plan.addr.client}`),
      'it came from the server, not the client',
    );
    const domestic = await curl([
      '--socks5-hostname',
      `127.0.0.1:${RULES_CLIENT.socks}`,
      `http://${plan.names.domestic}/whoami`,
    ]);
    assert.match(
      domestic.out,
      new RegExp(`site domestic\\.lab, from ${plan.addr.client.replace(/\./g, '\\.')}`),
      'direct: the site sees the client itself, the server no connection',
    );
    const rejected = await curl([
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--proxy',
      `http://127.0.0.1:${RULES_CLIENT.http}`,
      'http://ads.lab/',
    ]);
    assert.equal(rejected.out.trim(), '403');
    const log = clientLog();
    assert.match(log, /route tcp blocked\.lab:80 → PROXY \(.*rules\.txt:6 MATCH,PROXY\)/);
    assert.match(log, /route tcp domestic\.lab:80 → DIRECT via 198\.18\.3\.2 \(.*rules\.txt:3 /);
    assert.match(log, /route tcp ads\.lab:80 → REJECT/);
    assert.doesNotMatch(log, /blocked\.lab:80 → DIRECT/);
  });

  test('a UDP flow follows its rule: the DNS query goes through the tunnel and gets only the genuine answer', async () => {
    const u = await udpDns(RULES_CLIENT.socks);
    assert.equal(u.status, 0, u.out);
    const answers = (JSON.parse(u.out.trim().split('\n').pop()!) as { answers: string[][] })
      .answers;
    assert.deepEqual(answers, [[plan.addr.blockedIp]]);
    assert.match(
      clientLog(),
      new RegExp(`route udp ${plan.addr.dnsIp.replace(/\./g, '\\.')}:53 → PROXY`),
    );
  });

  test('the report-card row passes under each gfw profile', async () => {
    for (const profile of ['gfw-2022', 'gfw-2025', 'henan-2024']) {
      await startCensor(plan, { ...profilePolicy(profile, plan), timeFactor: 0.01 });
      const r = await row().attempt(plan, 6);
      assert.ok(r.ok, `${profile}: ${r.detail}`);
    }
  });
});
