// The transport check's reasoning, on hand-made attempts: each pattern of steps and failures names
// its technique, and throughput samples show throttling only when the rate falls within a transfer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  analyzeThroughput,
  attemptKind,
  checkRequest,
  dnsPoisoned,
  otherPorts,
  transportVerdict,
  classifyTransport,
  type Attempt,
  type DnsEvidence,
  type StepRecord,
} from './transport-check.js';
import { keyTransports, transportsFromKey, type ProbeTransport } from './transports.js';
import { formatLadderKey } from '../codec/ladder-key.js';
import type { Failure } from './failure.js';

const ss = transportsFromKey('ss://chacha20-ietf-poly1305:secret-password@198.18.9.1:8388')[0]!;
const trojan = transportsFromKey('trojan://pw@198.18.9.1:443?sni=www.example.com')[0]!;

const ok: StepRecord = { t0: 0, t: 5, failure: null };
const fail = (f: Failure): StepRecord => ({ t0: 0, t: 2000, failure: f });

function attempt(
  n: number,
  parts: {
    tcp?: StepRecord;
    tls?: StepRecord;
    data?: { outcome: 'data' | 'eof' | 'error' | 'timeout'; failure?: Failure | null };
    statusLine?: string;
  },
): Attempt {
  const a = {
    n,
    address: '198.18.9.1',
    port: 8388,
    tcp: parts.tcp ?? ok,
    ...(parts.tls ? { tls: parts.tls } : {}),
    ...(parts.data
      ? {
          data: {
            t0: 0,
            t: 10,
            failure: parts.data.failure ?? null,
            outcome: parts.data.outcome,
            bytes: 0,
          },
        }
      : {}),
    ...(parts.statusLine ? { statusLine: parts.statusLine } : {}),
  };
  return { ...a, kind: attemptKind(a) };
}

const good = (n: number) =>
  attempt(n, { data: { outcome: 'data' }, statusLine: 'HTTP/1.1 200 OK' });
const verdict = (t: ProbeTransport, attempts: Attempt[], extra: object = {}) =>
  transportVerdict({ transport: t, address: '198.18.9.1', attempts, ...extra });

test('gets through: every attempt answered with HTTP', () => {
  const v = verdict(ss, [good(1), good(2), good(3)]);
  assert.equal(v.status, 'ok');
  assert.equal(v.technique, 'none');
  assert.equal(v.okAttempts, 3);
});

test('FET: drop after the first data, then the 3-tuple is null-routed (residual)', () => {
  const v = verdict(ss, [
    attempt(1, { data: { outcome: 'timeout', failure: 'generic_timeout_error' } }),
    attempt(2, { tcp: fail('generic_timeout_error') }),
    attempt(3, { tcp: fail('generic_timeout_error') }),
  ]);
  assert.equal(v.status, 'blocked');
  assert.equal(v.technique, 'data-drop');
  assert.equal(v.residual, true);
  assert.match(v.explanation, /silent drop after the first data packet.*residual/);
});

test('FET sampled: some attempts get through (partial), no residual after an ok', () => {
  const v = verdict(ss, [good(1), attempt(2, { data: { outcome: 'timeout' } }), good(3)]);
  assert.equal(v.status, 'partial');
  assert.equal(v.technique, 'data-drop');
  assert.equal(v.residual, false);
});

test('IP blocked vs port blocked: decided by another port of the address', () => {
  const timeouts = [1, 2, 3].map((n) => attempt(n, { tcp: fail('generic_timeout_error') }));
  const ip = verdict(ss, timeouts, {
    otherPort: { port: 443, failure: 'generic_timeout_error', answered: false },
  });
  assert.equal(ip.technique, 'ip');
  const port = verdict(ss, timeouts, {
    otherPort: { port: 443, failure: 'connection_refused', answered: true },
  });
  assert.equal(port.technique, 'port');
  assert.equal(ip.residual, false);
});

test('TLS: reset after the ClientHello names the SNI; a silent handshake is a drop', () => {
  const reset = verdict(
    trojan,
    [1, 2, 3].map((n) => attempt(n, { tls: fail('connection_reset') })),
  );
  assert.equal(reset.technique, 'tls-reset');
  assert.match(reset.explanation, /www\.example\.com/);
  const drop = verdict(trojan, [attempt(1, { tls: fail('generic_timeout_error') })]);
  assert.equal(drop.technique, 'tls-drop');
  const cert = verdict(trojan, [attempt(1, { tls: fail('ssl_unknown_authority') })]);
  assert.equal(cert.technique, 'tls-cert');
});

test('refused, reset after data, closed, not HTTP', () => {
  assert.equal(verdict(ss, [attempt(1, { tcp: fail('connection_refused') })]).technique, 'refused');
  assert.equal(
    verdict(ss, [attempt(1, { data: { outcome: 'error', failure: 'connection_reset' } })])
      .technique,
    'data-reset',
  );
  assert.equal(
    verdict(ss, [attempt(1, { data: { outcome: 'eof', failure: 'eof_error' } })]).technique,
    'closed',
  );
  assert.equal(
    verdict(ss, [attempt(1, { data: { outcome: 'data' }, statusLine: 'SSH-2.0' })]).technique,
    'bad-answer',
  );
});

test('DNS: poisoned when the control disagrees or answers raced the first', () => {
  const base: DnsEvidence = {
    lookups: [],
    addresses: ['198.18.254.10'],
    failure: null,
    injected: [],
  };
  assert.equal(dnsPoisoned(base), false, 'no control, no race: cannot tell');
  assert.equal(dnsPoisoned({ ...base, injected: ['198.18.9.1'] }), true);
  assert.equal(
    dnsPoisoned({ ...base, control: { via: 'x', addresses: ['198.18.9.1'], failure: null } }),
    true,
  );
  assert.equal(
    dnsPoisoned({
      ...base,
      addresses: ['198.18.9.1'],
      control: { via: 'x', addresses: ['198.18.9.1'], failure: null },
    }),
    false,
  );
  const named = transportsFromKey('ss://chacha20-ietf-poly1305:pw@server.example:8388')[0]!;
  const v = transportVerdict({
    transport: named,
    address: '198.18.254.10',
    dns: { ...base, control: { via: 'trojan', addresses: ['198.18.9.1'], failure: null } },
    attempts: [attempt(1, { tcp: fail('network_unreachable') })],
    realAddressAttempt: good(2),
  });
  assert.equal(v.technique, 'dns');
  assert.match(v.explanation, /real address 198\.18\.9\.1 it gets through/);
  const none = transportVerdict({
    transport: named,
    dns: { lookups: [], addresses: [], failure: 'dns_nxdomain_error', injected: [] },
    attempts: [],
  });
  assert.equal(none.status, 'blocked');
  assert.match(none.explanation, /dns_nxdomain_error/);
});

test('throughput: a steady transfer is not throttled, a fall after a knee is', () => {
  const steady = Array.from({ length: 100 }, (_, i) => ({
    t: (i + 1) * 10,
    bytes: (i + 1) * 100_000,
  }));
  const s = analyzeThroughput(steady, 0);
  assert.ok(s.ratio !== null && s.ratio > 0.9 && s.ratio < 1.1);
  // 5 MB in the first 0.1 s, then 100 kB per 0.1 s
  const knee = Array.from({ length: 100 }, (_, i) => ({
    t: (i + 1) * 10,
    bytes: i < 10 ? (i + 1) * 500_000 : 5_000_000 + (i - 9) * 10_000,
  }));
  const k = analyzeThroughput(knee, 0);
  assert.ok(k.ratio !== null && k.ratio < 0.1, `ratio ${k.ratio}`);
  assert.equal(k.kneeBytes, 5_000_000);
  const v = verdict(ss, [good(1)], { throughput: { ...k, failure: null } });
  assert.equal(v.technique, 'throttled');
  assert.equal(v.status, 'ok');
  assert.equal(analyzeThroughput(steady.slice(0, 5), 0).ratio, null, 'too short to tell');
});

test('checkRequest and other ports', () => {
  assert.equal(
    checkRequest(new URL('http://example.com:8080/a?b=1')).toString('latin1').split('\r\n')[0],
    'GET /a?b=1 HTTP/1.1',
  );
  assert.deepEqual(otherPorts(443), [80, 22]);
  assert.deepEqual(otherPorts(8388), [443, 80]);
});

test('keys: ss and trojan give one transport each, ladder:// its list; anything else is a clear error', () => {
  assert.equal(ss.kind, 'shadowsocks');
  assert.equal(trojan.tlsServerName, 'www.example.com');
  assert.throws(() => transportsFromKey('vmess://abc'), /'vmess:' keys cannot be checked/);
  const bundle = formatLadderKey({
    transports: [
      'trojan://pw@198.18.9.1:443?sni=www.example.com',
      'wss://198.18.9.1/some-future-transport',
      'ss://chacha20-ietf-poly1305:secret-password@198.18.9.1:8388',
    ],
    name: 'home',
  });
  const k = keyTransports(bundle);
  assert.deepEqual(
    k.transports.map((t) => [t.kind, t.tag]),
    [
      ['trojan', 'home'],
      ['shadowsocks', 'home'],
    ],
  );
  assert.equal(k.skipped.length, 1);
  assert.match(k.skipped[0]!, /transport 2 .*'wss:'/);
});

test('classifyTransport: the case and fields without the prose, as the verdict has them', () => {
  const timedOut = attempt(1, { tcp: fail('generic_timeout_error') });
  const attempts = [good(1), timedOut];
  const k = classifyTransport({
    transport: ss,
    address: '198.18.9.1',
    attempts,
    otherPort: { port: 22, failure: null, answered: true },
  });
  assert.equal(k.finding.case, 'failed');
  assert.equal(k.finding.case === 'failed' && k.finding.first, timedOut);
  assert.deepEqual(
    { status: k.status, technique: k.technique, residual: k.residual, okAttempts: k.okAttempts },
    { status: 'partial', technique: 'port', residual: false, okAttempts: 1 },
  );
  const v = verdict(ss, attempts, { otherPort: { port: 22, failure: null, answered: true } });
  assert.equal(v.technique, k.technique);
  assert.match(v.explanation, /^gets through 1\/2 times; the others: port blocked/);
  assert.equal(classifyTransport({ transport: ss, attempts: [] }).finding.case, 'no-attempt');
});
