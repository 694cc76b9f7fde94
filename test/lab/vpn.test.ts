// OpenVPN and WireGuard fingerprints (§10, §11) against real peers in the lab: Debian's openvpn (TLS
// mode over UDP) and wireguard-go configured by wg, a server in abroad and a client in client.
// Without the module the tunnel carries pings; with it the flow is flagged and the tunnel dies.
// Needs root and /dev/net/tun, plus openvpn, wireguard-go, wireguard-tools and ping (.ci/run
// installs them); skipped with the reason printed otherwise.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { labUp, startCensor, destroyLab, eventsPath } from '../../src/lab/lab.js';
import { labUnavailable, planLab, labNamespaces } from '../../src/lab/topology.js';
import { modulePolicy, profilePolicy } from '../../src/lab/policy.js';
import {
  openVpnReady,
  openVpnUnavailable,
  pingThroughTunnel,
  startOpenVpn,
  startWireGuard,
  stopVpn,
  wireGuardUnavailable,
  type VpnPeers,
} from '../../src/lab/vpn-peers.js';

const noPing = ['/usr/bin/ping', '/bin/ping'].some(existsSync) ? undefined : 'ping is missing';
const why = labUnavailable() ?? noPing;
if (why) console.log(`lab VPN tests skipped: ${why}`);
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}4-`);
const ovpnWhy = openVpnUnavailable();
const wgWhy = wireGuardUnavailable();
if (ovpnWhy) console.log(`OpenVPN lab test skipped: ${ovpnWhy}`);
if (wgWhy) console.log(`WireGuard lab test skipped: ${wgWhy}`);

function events(): string[] {
  if (!existsSync(eventsPath(plan))) return [];
  return readFileSync(eventsPath(plan), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { module: string; action: string }).module);
}

describe('VPN fingerprints with real peers', { skip: why ?? false, timeout: 240_000 }, () => {
  let peers: VpnPeers | undefined;
  before(async () => {
    destroyLab(plan);
    await labUp(plan, { policy: { modules: {} } });
  });
  after(() => {
    if (peers) void stopVpn(peers);
    destroyLab(plan);
    assert.deepEqual(labNamespaces(plan.prefix), []);
  });

  test(
    'openvpn: the tunnel works without the module, and the opcode fingerprint blocks it within 100 packets (§10)',
    { skip: ovpnWhy ?? false },
    async () => {
      await startCensor(plan, { ...modulePolicy('wireguard', plan), timeFactor: 1 }); // must not
      peers = await startOpenVpn(plan);
      await openVpnReady(plan, peers, 20_000);
      assert.ok(pingThroughTunnel(plan, peers, 150), 'OpenVPN is not WireGuard');
      await stopVpn(peers);
      await startCensor(plan, { ...profilePolicy('gfw-2025', plan), timeFactor: 1 });
      peers = await startOpenVpn(plan);
      await openVpnReady(plan, peers, 20_000);
      pingThroughTunnel(plan, peers, 150);
      assert.ok(!pingThroughTunnel(plan, peers, 3), 'the flow and its 3-tuple are blocked');
      assert.ok(events().includes('openvpn'));
      await stopVpn(peers);
      peers = undefined;
    },
  );

  test(
    'wireguard: the tunnel works without the module, and the handshake is flagged (§11)',
    { skip: wgWhy ?? false },
    async () => {
      await startCensor(plan, { ...modulePolicy('openvpn', plan), timeFactor: 1 }); // must not
      peers = await startWireGuard(plan);
      assert.ok(pingThroughTunnel(plan, peers, 150), 'WireGuard is not OpenVPN');
      await stopVpn(peers);
      await startCensor(plan, { ...profilePolicy('gfw-2025', plan), timeFactor: 1 });
      peers = await startWireGuard(plan);
      assert.ok(!pingThroughTunnel(plan, peers, 5));
      assert.ok(events().includes('wireguard'));
      await stopVpn(peers);
      peers = undefined;
    },
  );
});
