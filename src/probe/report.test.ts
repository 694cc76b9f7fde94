import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatServerTable, summarizeServers } from './report.js';
import type { TransportCheck } from './transport-check.js';

/** The fields the server summary reads, for a check of `host:port` with TCP connect times. */
function check(
  host: string,
  port: number,
  ok: boolean,
  connects: (number | null)[],
): TransportCheck {
  return {
    transport: { server: { host, port } },
    verdict: { status: ok ? 'ok' : 'blocked' },
    attempts: connects.map((ms) => ({
      tcp: { t0: 100, t: 100 + (ms ?? 0), failure: ms === null ? 'timeout' : null },
    })),
  } as unknown as TransportCheck;
}

test('probe: servers of a key are summarized, the fastest that gets through first', () => {
  const checks = [
    check('198.18.0.1', 443, true, [80, 90, 85]),
    check('198.18.0.1', 443, false, [null]),
    check('198.18.0.2', 443, true, [20, 30, 25]),
    check('198.18.0.3', 8388, false, [5, 5, 5]),
  ];
  const s = summarizeServers(checks);
  assert.deepEqual(
    s.map((x) => [x.server, x.through, x.transports, x.connectMs]),
    [
      ['198.18.0.2:443', 1, 1, 25],
      ['198.18.0.1:443', 1, 2, 85],
      ['198.18.0.3:8388', 0, 1, 5],
    ],
  );
  const text = formatServerTable(checks);
  assert.match(text.split('\n')[0]!, /198\.18\.0\.2:443: GETS THROUGH .*prefer/);
  assert.match(text.split('\n')[2]!, /BLOCKED/);
});
