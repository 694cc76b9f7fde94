// Manners and failure strings: the connection cap, bounded parallelism, backoff, OONI's names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffMs, ConnectionBudget, mapLimit, MAX_BACKOFF_MS } from './manners.js';
import { EofFailure, failureOf, rcodeFailure, TimeoutFailure } from './failure.js';

test('ConnectionBudget: reserve, take, give back what was not used', () => {
  const b = new ConnectionBudget(10);
  const r = b.reserve(6)!;
  assert.equal(b.reserve(5), undefined, 'not enough left');
  assert.ok(r.take() && r.take());
  r.release();
  assert.equal(b.committed, 2);
  const r2 = b.reserve(8)!;
  for (let i = 0; i < 8; i++) assert.ok(r2.take());
  assert.equal(r2.take(), false, 'a spent reservation takes no more');
  assert.equal(b.reserve(1), undefined);
});

test('mapLimit: never more than the limit at once, results in order', async () => {
  let now = 0;
  let peak = 0;
  const out = await mapLimit([5, 1, 4, 2, 3, 0], 2, async (x) => {
    now++;
    peak = Math.max(peak, now);
    await new Promise((r) => setImmediate(r));
    now--;
    return x * 10;
  });
  assert.deepEqual(out, [50, 10, 40, 20, 30, 0]);
  assert.equal(peak, 2);
});

test('backoff doubles from the second attempt and is capped', () => {
  assert.deepEqual(
    [1, 2, 3, 4].map((n) => backoffMs(1000, n)),
    [0, 1000, 2000, 4000],
  );
  assert.equal(backoffMs(1000, 30), MAX_BACKOFF_MS);
});

test("failure strings: OONI's df-007 names", () => {
  const sys = (code: string, message = code) => Object.assign(new Error(message), { code });
  assert.equal(failureOf(sys('ECONNRESET')), 'connection_reset');
  assert.equal(failureOf(sys('ECONNRESET', 'socket hang up')), 'eof_error');
  assert.equal(failureOf(sys('ECONNREFUSED')), 'connection_refused');
  assert.equal(failureOf(sys('EHOSTUNREACH')), 'host_unreachable');
  assert.equal(failureOf(sys('ENETUNREACH')), 'network_unreachable');
  assert.equal(failureOf(sys('ERR_TLS_CERT_ALTNAME_INVALID')), 'ssl_invalid_hostname');
  assert.equal(failureOf(sys('UNABLE_TO_VERIFY_LEAF_SIGNATURE')), 'ssl_unknown_authority');
  assert.equal(failureOf(sys('CERT_HAS_EXPIRED')), 'ssl_invalid_certificate');
  assert.equal(failureOf(sys('ERR_SSL_WRONG_VERSION_NUMBER')), 'ssl_failed_handshake');
  assert.equal(failureOf(new TimeoutFailure('x')), 'generic_timeout_error');
  assert.equal(failureOf(new EofFailure('x')), 'eof_error');
  assert.match(failureOf(new Error('odd\nthing')), /^unknown_failure: odd thing$/);
  assert.equal(rcodeFailure(0), undefined);
  assert.equal(rcodeFailure(3), 'dns_nxdomain_error');
  assert.equal(rcodeFailure(2), 'dns_servfail_error');
  assert.equal(rcodeFailure(5), 'dns_refused_error');
  assert.equal(rcodeFailure(9), 'dns_server_misbehaving');
});
