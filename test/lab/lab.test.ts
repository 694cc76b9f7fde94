// The lab end to end (root and /dev/net/tun needed; skipped with the reason otherwise): topology,
// the TUN forwarding path with its throughput, and the modules that trigger and those that must not.
// Everything lives under this file's own prefix and is removed in after(), even on failure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { labUp, startCensor, caPath, destroyLab } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { modulePolicy } from '../../src/lab/policy.js';
import { runIn } from '../../src/lab/card.js';
import { CLI_PATH } from '../../src/lab/lab.js';

const why = labUnavailable();
if (why) console.log(`lab tests skipped: ${why}`);
// LADDER_LAB_TEST_PREFIX lets two checkouts run their lab tests side by side without sharing namespaces.
const plan = planLab(process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-');

async function curl(args: string[], timeoutS = 4) {
  return runIn(
    plan,
    plan.ns.client,
    ['curl', '-sS', '--max-time', String(timeoutS), ...args],
    (timeoutS + 3) * 1000,
  );
}

async function connect(mode: string) {
  const r = await runIn(
    plan,
    plan.ns.client,
    [
      process.execPath,
      CLI_PATH,
      'lab',
      'connect',
      '--to',
      `${plan.addr.sinkIp}:9000`,
      '--mode',
      mode,
      '--timeout',
      '3',
    ],
    8000,
  );
  return r.status === 0;
}

describe('adversary lab', { skip: why ?? false, timeout: 180_000 }, () => {
  before(async () => {
    destroyLab(plan); // a crashed earlier run
    await labUp(plan, { policy: { modules: {} } });
  });
  after(() => {
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  test('forwarding only: lab names resolve and HTTP, HTTPS and the domestic site work through the censor', async () => {
    assert.match((await curl([`http://${plan.names.allowed}/`])).out, /site allowed\.lab/);
    assert.match(
      (await curl(['--cacert', caPath(plan), `https://${plan.names.blocked}/`])).out,
      /site blocked\.lab/,
    );
    assert.match((await curl([`http://${plan.names.domestic}/`])).out, /site domestic\.lab/);
  });

  test('bulk TCP through the censor (figure printed, not asserted)', async () => {
    const bytes = 512 * 1024 * 1024;
    const r = await curl(
      [
        '-o',
        '/dev/null',
        '-w',
        '%{size_download} %{speed_download}',
        `http://${plan.addr.allowedIp}/bytes/${bytes}`,
      ],
      60,
    );
    const [size, speed] = r.out.trim().split(' ').map(Number);
    assert.equal(size, bytes);
    console.log(
      `lab bulk TCP through the censor: ${((speed ?? 0) / 1e6).toFixed(0)} MB/s at MTU ${plan.mtu}`,
    );
  });

  test('sni: blocked SNI reset, allowed SNI untouched, then the 3-tuple is reset during the residual (§6)', async () => {
    await startCensor(plan, { ...modulePolicy('sni', plan), timeFactor: 1 });
    const blocked = await curl(['--cacert', caPath(plan), `https://${plan.names.blocked}/`]);
    assert.notEqual(blocked.status, 0);
    assert.match(blocked.out, /reset|SSL_ERROR_SYSCALL|Connection/i);
    const allowed = await curl(['--cacert', caPath(plan), `https://${plan.names.allowed}/`]);
    assert.match(allowed.out, /site allowed\.lab/);
    // allowed.lab's name on the blocked address: same 3-tuple as the blocked connection
    const residual = await curl([
      '--cacert',
      caPath(plan),
      '--resolve',
      `${plan.names.allowed}:443:${plan.addr.blockedIp}`,
      `https://${plan.names.allowed}/`,
    ]);
    assert.notEqual(
      residual.status,
      0,
      'the residual must reset an innocuous connection on the 3-tuple',
    );
    const otherPort = await curl([`http://${plan.addr.blockedIp}/`]);
    assert.match(otherPort.out, /site blocked\.lab/, 'another port on the same server still works');
  });

  test('fet p=1: printable prefix exempt, random first packet null-routed (§1)', async () => {
    await startCensor(plan, modulePolicy('fet', plan, { p: 1 }));
    assert.ok(await connect('printable-prefix'), 'printable-prefixed random data is exempt (Ex2)');
    assert.ok(!(await connect('random')), 'a random first packet is blocked');
    assert.ok(
      !(await connect('printable-prefix')),
      'the 3-tuple is now null-routed, exempt or not',
    );
  });

  test('dns: a blocked name resolves to a forged address, an allowed name to its real one (§4)', async () => {
    await startCensor(plan, modulePolicy('dns', plan));
    const b = await runIn(plan, plan.ns.client, ['getent', 'ahostsv4', plan.names.blocked], 8000);
    assert.match(b.out, /^198\.18\.254\./m);
    const a = await runIn(plan, plan.ns.client, ['getent', 'ahostsv4', plan.names.allowed], 8000);
    assert.match(a.out, new RegExp(`^${plan.addr.allowedIp.replace(/\./g, '\\.')}`, 'm'));
  });

  test('http: Host of a blocked site reset, allowed host untouched (§5)', async () => {
    await startCensor(plan, modulePolicy('http', plan, { pTrigger: 1 }));
    const allowed = await curl([`http://${plan.names.allowed}/`]);
    assert.match(allowed.out, /site allowed\.lab/);
    const blocked = await curl([`http://${plan.names.blocked}/`]);
    assert.notEqual(blocked.status, 0);
  });

  test('ipblock: a null-routed server times out, others work (§3)', async () => {
    await startCensor(plan, modulePolicy('ipblock', plan));
    assert.notEqual((await curl([`http://${plan.addr.blockedIp}/`], 2)).status, 0);
    assert.match((await curl([`http://${plan.names.allowed}/`])).out, /site allowed\.lab/);
  });
});
