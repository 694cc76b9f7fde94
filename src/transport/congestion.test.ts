import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { LadderError } from '../errors.js';
import {
  congestionControl,
  restartCongestion,
  restartWorthwhile,
  loadSockoptAddon,
  socketCongestion,
  useCongestionControl,
} from './congestion.js';
import { listenTcp } from './listen.js';
import { connectTo } from './ss-dialer.js';
import { DirectDialer } from './direct.js';

const addonMissing = typeof loadSockoptAddon() === 'string';
const kernelList = (() => {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_available_congestion_control', 'utf8').split(/\s+/);
  } catch {
    return [];
  }
})();
const systemDefault = (() => {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  } catch {
    return '';
  }
})();
// A choice other than the system's default, so that the test sees the option's effect.
const other = ['reno', 'cubic', 'bbr'].find((c) => kernelList.includes(c) && c !== systemDefault);
const skip = addonMissing
  ? 'native/sockopt is not built (node scripts/build-native.mjs)'
  : other === undefined
    ? 'the kernel offers no congestion control besides its default'
    : false;

describe('--tcp-congestion', { skip }, () => {
  after(() => useCongestionControl(undefined));

  it('sets the chosen congestion control on listeners, accepted and dialled sockets', async () => {
    await useCongestionControl(other);
    assert.equal(congestionControl(), other);
    const accepted: Socket[] = [];
    const server = createServer((s) => accepted.push(s));
    const onAccept = new Promise<Socket>((resolve) =>
      server.once('connection', (s: Socket) => resolve(s)),
    );
    const at = await listenTcp(server, '127.0.0.1', 0, 'TCP', '--listen');
    try {
      assert.equal(socketCongestion(server), other);
      const out = await connectTo({ host: '127.0.0.1', port: at.port }, 5_000);
      const inbound = await onAccept;
      assert.equal(socketCongestion(out), other, 'the dialled socket');
      assert.equal(socketCongestion(inbound), other, 'inherited from the listener');
      out.destroy();
      const direct = (await new DirectDialer().dial({
        host: '127.0.0.1',
        port: at.port,
      })) as Socket;
      assert.equal(socketCongestion(direct), other, 'a socket of the server to a target');
      direct.destroy();
    } finally {
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('restarts a connection on its own algorithm, never leaving it on the one passed through', async () => {
    // Not BBR, whose fresh connection is in start-up: cubic (or reno), where a restart is done.
    const plain = ['cubic', 'reno'].find((c) => kernelList.includes(c));
    await useCongestionControl(plain);
    const server = createServer();
    const onAccept = new Promise<Socket>((resolve) =>
      server.once('connection', (s: Socket) => resolve(s)),
    );
    const at = await listenTcp(server, '127.0.0.1', 0, 'TCP', '--listen');
    try {
      const out = await connectTo({ host: '127.0.0.1', port: at.port }, 5_000);
      const inbound = await onAccept;
      const before = socketCongestion(inbound);
      // as root, or with both in tcp_allowed_congestion_control, it is done; either way unchanged
      const done = restartCongestion(inbound);
      assert.equal(typeof done, 'boolean');
      // (an addon built before tcpState never restarts: `node scripts/build-native.mjs` updates it)
      const addon = loadSockoptAddon();
      const hasState = typeof addon !== 'string' && typeof addon.tcpState === 'function';
      if (hasState && process.getuid?.() === 0 && before !== 'reno') assert.equal(done, true);
      assert.equal(socketCongestion(inbound), before);
      out.destroy();
      inbound.destroy();
    } finally {
      await useCongestionControl(undefined);
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('leaves the system default when none is chosen', async () => {
    await useCongestionControl(undefined);
    const server = createServer();
    await listenTcp(server, '127.0.0.1', 0, 'TCP', '--listen');
    try {
      assert.equal(socketCongestion(server), systemDefault);
    } finally {
      server.close();
    }
  });

  it('names a congestion control the kernel lacks, and the fix', async () => {
    await assert.rejects(
      useCongestionControl('nosuchcc'),
      (e: unknown) =>
        e instanceof LadderError &&
        e.code === 'ERR_USAGE' &&
        /--tcp-congestion nosuchcc: this kernel has no 'nosuchcc'/.test(e.message) &&
        /modprobe tcp_nosuchcc/.test(e.message),
    );
    assert.equal(congestionControl(), undefined, 'nothing chosen after a refusal');
  });

  it('refuses a malformed name before asking the kernel', async () => {
    for (const bad of ['', 'BBR', 'bbr;rm', 'a'.repeat(16), 'b\u0000r'])
      await assert.rejects(
        useCongestionControl(bad),
        (e: unknown) =>
          e instanceof LadderError && e.code === 'ERR_USAGE' && /1–15 lower-case/.test(e.message),
      );
  });
});

describe('restartWorthwhile', () => {
  it('only a quiet connection, and under BBR only one past its start-up', () => {
    assert.equal(restartWorthwhile(0, 0, null), true, 'quiet, not BBR');
    assert.equal(restartWorthwhile(0, 0, undefined), true, 'quiet, an addon that cannot tell');
    assert.equal(restartWorthwhile(0, 0, 320), true, 'BBR probing bandwidth (1.25)');
    assert.equal(restartWorthwhile(0, 0, 256), true, 'BBR cruising (1.0)');
    assert.equal(restartWorthwhile(0, 0, 88), true, 'BBR draining (1/2.89)');
    assert.equal(restartWorthwhile(0, 0, 739), false, "BBR's start-up (2.89)");
    assert.equal(restartWorthwhile(3, 0, 256), false, 'loss being repaired');
    assert.equal(restartWorthwhile(0, 2, 256), true, 'a few segments in flight (answers to End)');
    assert.equal(restartWorthwhile(0, 9, 256), false, 'more segments in flight');
  });
});
