// Issue #14 item 7, the lab proof: the lab's client namespace runs `ladder client --tun` (Trojan over
// TLS, padded Mux.Cool, the allowed site's SNI: card-rows-ladder.ts ladderTunEntry) under the gfw-2022, gfw-2025 and sensitive-period profiles; plain programs with no proxy
// setting reach the blocked site by name (curl over HTTP and HTTPS, a DNS query for the blocked
// name). The censor's events show no DNS poisoning (no query for a blocked name reached it), and a
// counter on the wall sees no packet from the client to anything but the Ladder server. After
// kill -9 nothing gets out, and --tun-cleanup restores the namespace's routing. Root needed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { labUp, startCensor, destroyLab, eventsPath, caPath, CLI_PATH } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { profilePolicy } from '../../src/lab/policy.js';
import {
  transports,
  curlBlockedByName,
  runIn,
  stopTransports,
  tunAttempt,
  LADDER_PORT,
  type AttemptResult,
} from '../../src/lab/card.js';
import type { LabPlan } from '../../src/lab/topology.js';
import { routingSnapshot } from '../helpers/tun-net.js';

const why = labUnavailable() ?? (spawnSync('nft', ['-v']).status === 0 ? undefined : 'no nft');
if (why) console.log(`--tun lab proof skipped: ${why}`);
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}9-`);

function eventModules(from: number): string[] {
  if (!existsSync(eventsPath(plan))) return [];
  return readFileSync(eventsPath(plan), 'utf8')
    .slice(from)
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { module: string }).module);
}
const eventsSize = () => (existsSync(eventsPath(plan)) ? statSync(eventsPath(plan)).size : 0);

/** nft counter on the wall: packets from the client to anything but the Ladder server's port. */
function watchWall(p: LabPlan): () => number {
  const rules = `table inet tnlab {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    iifname "wc" ip daddr != ${p.addr.ladderIp} counter
    iifname "wc" ip daddr ${p.addr.ladderIp} tcp dport != ${LADDER_PORT} counter
    iifname "wc" ip daddr ${p.addr.ladderIp} meta l4proto != tcp counter
    iifname "wc" meta nfproto ipv6 meta l4proto != ipv6-icmp counter
  }
}
`;
  spawnSync('ip', ['netns', 'exec', p.ns.wall, 'nft', 'delete', 'table', 'inet', 'tnlab']);
  const r = spawnSync('ip', ['netns', 'exec', p.ns.wall, 'nft', '-f', '-'], {
    input: rules,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return () => {
    const out = spawnSync(
      'ip',
      ['netns', 'exec', p.ns.wall, 'nft', 'list', 'table', 'inet', 'tnlab'],
      { encoding: 'utf8' },
    ).stdout;
    return [...out.matchAll(/packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  };
}

const DNS_PROBE = (server: string, name: string) => `
import dns from 'node:dns';
const r = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
r.setServers(['${server}']);
r.resolve4('${name}').then((a) => console.log(JSON.stringify(a)), (e) => console.log(JSON.stringify(e.code)));
`;

async function everything(p: LabPlan, timeoutS: number): Promise<AttemptResult> {
  const http = await curlBlockedByName(p, timeoutS);
  if (!http.ok) return { ok: false, detail: `http: ${http.detail}` };
  const https = await runIn(
    p,
    p.ns.client,
    [
      'curl',
      '-sS',
      '--max-time',
      String(timeoutS),
      '--cacert',
      caPath(p),
      `https://${p.names.blocked}/`,
    ],
    (timeoutS + 2) * 1000,
  );
  if (https.status !== 0 || !https.out.includes(`site ${p.names.blocked}`))
    return { ok: false, detail: `https: ${https.out.trim().slice(-200)}` };
  const dns = await runIn(
    p,
    p.ns.client,
    [process.execPath, '--input-type=module', '-e', DNS_PROBE(p.addr.dnsIp, p.names.blocked)],
    10_000,
  );
  const answer = JSON.parse(dns.out.trim().split('\n').pop() ?? '""') as string[] | string;
  if (!Array.isArray(answer) || !/^100\.(9[6-9]|10\d|11[01])\./.test(answer[0] ?? ''))
    return { ok: false, detail: `dns: ${dns.out.trim()}` };
  return { ok: true, detail: 'ok' };
}

describe(
  'ladder client --tun in the lab, against the censor',
  { skip: why ?? false, timeout: 300_000 },
  () => {
    let before0 = '';
    before(async () => {
      destroyLab(plan);
      await labUp(plan, { policy: { modules: {} } });
      const t = transports().find((x) => x.name === 'ladder-tun');
      assert.ok(t?.setup);
      await t.setup(plan);
      before0 = routingSnapshot(plan.ns.client);
    });
    after(() => {
      stopTransports();
      destroyLab(plan);
      assert.deepEqual(labNamespaces(plan.prefix), []);
    });

    for (const profile of ['gfw-2022', 'gfw-2025', 'sensitive-period'] as const)
      test(`${profile}: the blocked site by name, no DNS query seen, no flow but Ladder's`, async () => {
        await startCensor(plan, { ...profilePolicy(profile, plan), timeFactor: 1 });
        const wall = watchWall(plan);
        const from = eventsSize();
        const r = await tunAttempt(plan, 10, everything);
        assert.ok(r.ok, r.detail);
        const modules = eventModules(from);
        assert.ok(!modules.includes('dns'), `the censor saw a DNS query: ${modules.join(',')}`);
        assert.equal(
          wall(),
          0,
          'a packet from the client to something other than the Ladder server',
        );
        assert.equal(routingSnapshot(plan.ns.client), before0, 'SIGTERM restored routing');
      });

    test('after kill -9 nothing gets out, and --tun-cleanup restores routing', async () => {
      await startCensor(plan, { ...profilePolicy('gfw-2025', plan), timeFactor: 1 });
      const wall = watchWall(plan);
      let blocked: AttemptResult | undefined;
      const r = await tunAttempt(plan, 10, async (p) => {
        const pid = Number(
          spawnSync('ip', ['netns', 'pids', p.ns.client], { encoding: 'utf8' })
            .stdout.split('\n')
            .filter(Boolean)
            .find((x) => readFileSync(`/proc/${x}/cmdline`, 'utf8').includes('--tun')),
        );
        assert.ok(pid > 0);
        process.kill(pid, 'SIGKILL');
        while (existsSync(`/proc/${pid}`)) await new Promise((res) => setTimeout(res, 20));
        blocked = await runIn(
          p,
          p.ns.client,
          ['curl', '-sS', '--max-time', '3', `http://${p.addr.blockedIp}/`],
          6000,
        ).then((x) => ({ ok: x.status === 0, detail: x.out }));
        return { ok: true, detail: 'killed' };
      });
      assert.ok(r.ok, r.detail);
      assert.equal(blocked?.ok, false, 'nothing gets out with the client killed');
      assert.equal(wall(), 0, 'the kill switch held');
      const c = spawnSync(
        'ip',
        ['netns', 'exec', plan.ns.client, process.execPath, CLI_PATH, 'client', '--tun-cleanup'],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(c.status, 0, c.stderr);
      assert.equal(routingSnapshot(plan.ns.client), before0);
    });
  },
);
