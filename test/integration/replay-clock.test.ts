/**
 * SIP022 replay defence across a wall-clock step, end to end: the server's wall clock (timestamps)
 * and monotonic clock (salt ages) are both injected, so the step is exact and nothing sleeps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { SsServer } from '../../src/server/ss-server.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsTcpClientSession } from '../../src/codec/ss-tcp.js';
import type { ErrorCode } from '../../src/errors.js';
import { tcpEcho } from '../helpers/echo.js';

test('2022 TCP: a replay after the wall clock stepped back is refused though 61 s passed on the monotonic clock', async (t) => {
  const key = makeCipherKey('2022-blake3-aes-256-gcm', randomBytes(32).toString('base64'));
  const T0 = 1_800_000_000_000;
  let wall = T0;
  let mono = 0;
  const outcomes: (ErrorCode | 'accepted')[] = [];
  let next: (() => void) | null = null;
  const record = (o: ErrorCode | 'accepted'): void => {
    outcomes.push(o);
    next?.();
  };
  const server = new SsServer({
    keys: [{ id: 'k', key }],
    dialer: new DirectDialer(),
    clock: { now: () => wall },
    monotonicNow: () => mono,
    authTimeoutMs: 30_000,
    events: { accepted: () => record('accepted'), rejected: (code) => record(code) },
  });
  const { port } = await server.listen('127.0.0.1', 0);
  const echo = await tcpEcho();
  t.after(async () => {
    await echo.close();
    await server.close(0);
  });
  const request = new SsTcpClientSession(key, randomBytes).encodeRequest(
    { host: '127.0.0.1', port: echo.port },
    Buffer.from('hello'),
    T0,
  );
  const attempt = async (): Promise<ErrorCode | 'accepted'> => {
    const n = outcomes.length;
    const decided = new Promise<void>((resolve) => {
      next = () => {
        if (outcomes.length > n) resolve();
      };
    });
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write(request);
    await decided;
    s.destroy();
    return outcomes[n]!;
  };
  assert.equal(await attempt(), 'accepted');
  // 61 s later by the monotonic clock; the wall clock was set back meanwhile and reads T0 + 10 s,
  // so the request's timestamp passes the ±30 s check.
  mono = 61_000;
  wall = T0 + 10_000;
  assert.equal(await attempt(), 'ERR_REPLAY_CLIENT');
  // Once both clocks agree 60 s have passed, the timestamp check refuses it instead.
  wall = T0 + 60_000;
  assert.equal(await attempt(), 'ERR_SS2022_BAD_TIMESTAMP');
});
