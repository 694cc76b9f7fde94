// The probe's recogniser on recorded observations: what `checkTransports` records under each
// 2024–2026 technique (shapes taken from lab runs of the matching censor module), and look-alikes
// that must not be named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatFindings, recognise } from './censors.js';
import {
  transportVerdict,
  type Attempt,
  type AttemptKind,
  type Throughput,
  type TransportCheck,
} from './transport-check.js';
import type { ProbeTransport } from './transports.js';

const ADDR = '198.19.2.20';

function transport(name: string, port: number, tls?: string): ProbeTransport {
  return {
    name,
    kind: tls ? 'trojan' : 'shadowsocks',
    server: { host: ADDR, port },
    ...(tls ? { tlsServerName: tls } : {}),
    dialers: () => {
      throw new Error('recorded');
    },
  };
}

function attempt(n: number, kind: AttemptKind, port: number): Attempt {
  const s = (failure: Attempt['tcp']['failure']) => ({ t0: 0, t: 10, failure });
  switch (kind) {
    case 'ok':
      return {
        n,
        address: ADDR,
        port,
        tcp: s(null),
        data: { ...s(null), outcome: 'data', bytes: 200 },
        statusLine: 'HTTP/1.1 200 OK',
        kind,
      };
    case 'tcp-reset':
      return { n, address: ADDR, port, tcp: s('connection_reset'), kind };
    case 'tcp-timeout':
      return { n, address: ADDR, port, tcp: s('generic_timeout_error'), kind };
    case 'tls-timeout':
      return { n, address: ADDR, port, tcp: s(null), tls: s('generic_timeout_error'), kind };
    case 'data-timeout':
      return {
        n,
        address: ADDR,
        port,
        tcp: s(null),
        data: { ...s('generic_timeout_error'), outcome: 'timeout', bytes: 0 },
        kind,
      };
    default:
      return {
        n,
        address: ADDR,
        port,
        tcp: s(null),
        data: { ...s('connection_reset'), outcome: 'error', bytes: 0 },
        kind,
      };
  }
}

function check(
  t: ProbeTransport,
  kinds: AttemptKind[],
  extra: Partial<Omit<TransportCheck, 'verdict' | 'transport'>> = {},
): TransportCheck {
  const c = {
    transport: t,
    address: ADDR,
    attempts: kinds.map((k, i) => attempt(i + 1, k, t.server.port)),
    ...extra,
  };
  return { ...c, verdict: transportVerdict(c) };
}

const ss = transport('shadowsocks', 8388);
const trojan = transport('trojan (TLS, SNI ladder.lab)', 443, 'ladder.lab');
const trojanMux = {
  ...transport('trojan (TLS, SNI ladder.lab, Mux.Cool)', 443, 'ladder.lab'),
  multiplexed: true,
};

function throughput(bytes: number, end: Throughput['end'], silentMs: number): Throughput {
  return {
    bytes,
    seconds: 1,
    bytesPerSecond: bytes,
    ratio: null,
    kneeBytes: null,
    failure: null,
    end,
    silentMs,
  };
}

test('byte-budget: a download silent after ~20 KB is named, with the transport whose download went on', () => {
  const f = recognise([
    check(trojan, ['ok', 'ok'], { throughput: throughput(19_872, 'timer', 19_000) }),
    check(ss, ['ok', 'ok'], { throughput: throughput(64 * 1024 * 1024, 'bytes', 0) }),
  ]);
  assert.equal(f.length, 1);
  assert.equal(f[0]!.technique, 'byte-budget');
  assert.match(f[0]!.evidence, /stopped after 19872 bytes and stayed silent for 19 s, no reset/);
  assert.deepEqual(f[0]!.useInstead, ['shadowsocks']);
  // look-alikes: a small file that ended, a slow but moving download, a large stall
  for (const th of [
    throughput(20_000, 'eof', 0),
    throughput(20_000, 'timer', 100),
    throughput(500_000, 'timer', 19_000),
  ])
    assert.deepEqual(recognise([check(trojan, ['ok'], { throughput: th })]), []);
});

test('port-reset: every SYN reset while another port answers; the other-port transport is advised', () => {
  const f = recognise([
    check(trojan, ['tcp-reset', 'tcp-reset', 'tcp-reset'], {
      otherPort: { port: 80, failure: null, answered: true },
    }),
    check(ss, ['ok', 'ok', 'ok']),
  ]);
  assert.deepEqual(
    f.map((x) => x.technique),
    ['port-reset'],
  );
  assert.match(
    f[0]!.evidence,
    /every SYN to port 443 was answered by a reset \(3\/3\), while port 80/,
  );
  assert.deepEqual(f[0]!.useInstead, ['shadowsocks']);
  // the whole address refusing is not a port reset
  assert.deepEqual(
    recognise([
      check(trojan, ['tcp-reset', 'tcp-reset'], {
        otherPort: { port: 80, failure: 'connection_refused', answered: true },
      }),
    ]),
    [],
  );
});

test('serverhello-drop: TLS handshakes unanswered while a non-TLS transport to the address works', () => {
  const f = recognise([check(trojan, ['tls-timeout', 'tls-timeout']), check(ss, ['ok', 'ok'])]);
  assert.equal(f[0]?.technique, 'serverhello-drop');
  assert.deepEqual(f[0]!.useInstead, ['shadowsocks']);
  assert.match(formatFindings(f), /\[serverhello-drop\].*use instead: shadowsocks/s);
  // without a working plain transport it could be an IP block of TLS: not named
  assert.deepEqual(recognise([check(trojan, ['tls-timeout', 'tls-timeout'])]), []);
});

test('conn-count: one at a time works, at once only the first few; a mux transport is advised', () => {
  const kinds: AttemptKind[] = ['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'tls-reset', 'tls-reset'];
  const f = recognise([
    check(trojan, ['ok', 'ok'], {
      concurrent: kinds.map((k, i) => attempt(10 + i, k, 443)),
    }),
    check(trojanMux, ['ok', 'ok']),
  ]);
  assert.equal(f[0]?.technique, 'conn-count');
  assert.match(f[0]!.evidence, /of 8 opened at once only the first 6 did/);
  assert.deepEqual(f[0]!.useInstead, ['trojan (TLS, SNI ladder.lab, Mux.Cool)']);
  // failures spread among successes are not a count limit
  assert.deepEqual(
    recognise([], {
      concurrency: [{ transport: 'x', kinds: ['ok', 'tls-reset', 'ok', 'tls-reset'] }],
    }),
    [],
  );
});

test('whitelist: every transport silent while an allow-listed site answers; without the control, nothing is claimed', () => {
  const checks = [
    check(trojan, ['tls-timeout', 'tls-timeout']),
    check(ss, ['data-timeout', 'tcp-timeout']),
  ];
  const f = recognise(checks, { allowlistControl: { name: 'https://allowed.example/', ok: true } });
  assert.deepEqual(
    f.map((x) => x.technique),
    ['whitelist'],
  );
  assert.match(f[0]!.advice, /allowed SNI or a CDN/);
  assert.deepEqual(recognise(checks), []);
  assert.deepEqual(recognise(checks, { allowlistControl: { name: 'x', ok: false } }), []);
});
