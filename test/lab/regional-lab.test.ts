// ESNI/ECH (§7) and Henan (§9) in a real lab (root and /dev/net/tun needed; skipped with the reason
// otherwise): what triggers each and what must not. Henan's is the reference's self-test pair:
// with Linux's default TCP timestamps the client passes; with net.ipv4.tcp_timestamps=0 (in the
// client namespace only) a blocked SNI or Host meets the regional RST. Its own lab prefix, removed
// in after(), even on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { labUp, startCensor, caPath, destroyLab, eventsPath, CLI_PATH } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { modulePolicy, type Policy } from '../../src/lab/policy.js';
import { runIn } from '../../src/lab/card.js';

const why = labUnavailable();
if (why) console.log(`lab regional tests skipped: ${why}`);
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}7-`);

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
async function censor(policy: Policy, timeFactor = 0.01): Promise<void> {
  await startCensor(plan, { seed: 7, ...policy, timeFactor });
  const f = eventsPath(plan);
  eventsFrom = existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
}

async function curl(url: string): Promise<boolean> {
  const r = await runIn(
    plan,
    plan.ns.client,
    ['curl', '-sS', '--max-time', '3', '--cacert', caPath(plan), url],
    8000,
  );
  return r.status === 0 && /ladder lab site/.test(r.out);
}

/** Node's ClientHello for `sni` with extensions appended, to allowed.lab's HTTPS port. */
async function hello(sni: string, exts = ''): Promise<boolean> {
  const r = await runIn(
    plan,
    plan.ns.client,
    [
      process.execPath,
      CLI_PATH,
      'lab',
      'connect',
      '--to',
      `${plan.addr.allowedIp}:443`,
      '--mode',
      `hello:${sni}${exts ? `:${exts}` : ''}`,
      '--timeout',
      '2',
    ],
    10_000,
  );
  return r.status === 0;
}

describe('ESNI/ECH and Henan in the lab', { skip: why ?? false, timeout: 300_000 }, () => {
  before(async () => {
    destroyLab(plan);
    await labUp(plan, { policy: { modules: {} } });
  });
  after(() => {
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  test('henan (§9): with TCP timestamps off, a blocked SNI or Host is reset, an allowed one is not; with them on (Linux default) both pass', async () => {
    await censor(modulePolicy('henan', plan));
    await runIn(plan, plan.ns.client, ['sysctl', '-q', '-w', 'net.ipv4.tcp_timestamps=0'], 5000);
    assert.equal(await curl(`https://${plan.names.blocked}/`), false, 'blocked SNI');
    assert.equal(await curl(`http://${plan.names.blocked}/`), false, 'blocked Host');
    assert.equal(await curl(`https://${plan.names.allowed}/`), true);
    assert.ok(events().includes('henan/reset'));
    await runIn(plan, plan.ns.client, ['sysctl', '-q', '-w', 'net.ipv4.tcp_timestamps=1'], 5000);
    const from = events().length;
    assert.equal(await curl(`https://${plan.names.blocked}/`), true, 'TCP options: not inspected');
    assert.equal(await curl(`http://${plan.names.blocked}/`), true);
    assert.deepEqual(events().slice(from), []);
  });

  test('esni (§7): a ClientHello with 0xffce is dropped and its 3-tuple too for the residual; without it, and another 3-tuple, pass', async () => {
    await censor(modulePolicy('esni', plan), 0.1); // residual 18 s
    assert.equal(await hello(plan.names.allowed), true, 'a plain ClientHello');
    assert.equal(await hello(plan.names.allowed, 'ffce'), false, 'with ESNI');
    assert.equal(await curl(`https://${plan.names.allowed}/`), false, 'the 3-tuple, residual');
    assert.equal(await curl(`https://${plan.names.blocked}/`), true, 'another address');
    assert.ok(events().includes('esni/block'));
  });

  test('ech (§7, TSPU mode): cloudflare-ech.com with 0xfe0d freezes; SNI alone or ECH alone pass', async () => {
    await censor(modulePolicy('ech', plan));
    assert.equal(await hello('cloudflare-ech.com', 'fe0d'), false);
    assert.equal(await hello('cloudflare-ech.com'), true);
    assert.equal(await hello(plan.names.allowed, 'fe0d'), true);
    assert.deepEqual(events(), ['ech/freeze']);
  });
});
