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
  // without a connect on port 80, a transport on another port of the address getting through
  const beside = recognise([
    check(trojan, ['tcp-reset', 'tcp-reset'], {
      otherPort: { port: 80, failure: 'connection_refused', answered: true },
    }),
    check(ss, ['ok', 'ok']),
  ]);
  assert.deepEqual(
    beside.map((x) => x.technique),
    ['port-reset'],
  );
  assert.match(
    beside[0]!.evidence,
    /\(2\/2\), while shadowsocks on port 8388 of the same address gets through/,
  );
  assert.deepEqual(beside[0]!.useInstead, ['shadowsocks']);
  // the whole address refusing is not a port reset, nor is a reset beside a failing transport
  assert.deepEqual(
    recognise([
      check(trojan, ['tcp-reset', 'tcp-reset'], {
        otherPort: { port: 80, failure: 'connection_refused', answered: true },
      }),
      check(ss, ['tcp-refused', 'tcp-refused']),
    ]),
    [],
  );
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

test('conn-count: one at a time works, of several held open together only some; a mux transport, or one that carried all at once, is advised', () => {
  // the censor cuts by arrival order at the wall, not by opening order: only counts matter
  const kinds: AttemptKind[] = ['ok', 'tls-reset', 'ok', 'ok', 'ok', 'tls-reset', 'ok', 'ok'];
  const f = recognise([
    check(trojan, ['ok', 'ok'], {
      concurrent: kinds.map((k, i) => attempt(10 + i, k, 443)),
    }),
    check(trojanMux, ['ok', 'ok']),
    check(ss, ['ok'], {
      concurrent: kinds.map((_, i) => attempt(10 + i, 'ok', 8388)),
    }),
  ]);
  assert.deepEqual(
    f.map((x) => x.technique),
    ['conn-count'],
  );
  assert.match(
    f[0]!.evidence,
    /of 8 held open together only 6 did; the other 2 failed \(tls-reset\)/,
  );
  assert.deepEqual(f[0]!.useInstead, ['trojan (TLS, SNI ladder.lab, Mux.Cool)', 'shadowsocks']);
  assert.match(f[0]!.advice, /--max-connections-per-server 6/);
  // look-alikes: the probe's own connection cap, every one failing, single attempts failing too
  for (const obs of [
    ['ok', 'ok', 'cap', 'cap'],
    ['tls-reset', 'tls-reset', 'tls-reset'],
  ] as AttemptKind[][])
    assert.deepEqual(
      recognise([check(trojan, ['ok'])], { concurrency: [{ transport: trojan.name, kinds: obs }] }),
      [],
      obs.join(' '),
    );
  assert.deepEqual(
    recognise([check(trojan, ['ok', 'tls-reset'])], {
      concurrency: [{ transport: trojan.name, kinds: ['ok', 'tls-reset'] }],
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

const HOST2 = '198.19.2.21';
const ssElsewhere: ProbeTransport = {
  ...transport('shadowsocks (second server)', 8388),
  server: { host: HOST2, port: 8388 },
};

/** The evidence of a volume ban: a download that stalled, then fresh attempts that time out. */
function banned(after: AttemptKind = 'tcp-timeout', answered = false): TransportCheck[] {
  return [
    check(ss, ['ok', 'ok'], {
      throughput: throughput(2_031_616, 'stall', 2000),
      recheck: {
        attempt: attempt(3, after, 8388),
        otherPort: {
          port: 80,
          failure: answered ? 'connection_refused' : 'generic_timeout_error',
          answered,
        },
      },
    }),
    check(trojan, ['ok', 'ok'], {
      throughput: { ...throughput(0, 'error', 0), failure: 'generic_timeout_error' },
      recheck: { attempt: attempt(3, after, 443) },
    }),
  ];
}

test('volume-ban: a transfer, then every port and protocol of the address silent, while the direct control answers', () => {
  const control = { allowlistControl: { name: 'http://domestic.example/', ok: true } };
  const f = recognise(banned(), control);
  assert.deepEqual(
    f.map((x) => x.technique),
    ['volume-ban'],
  );
  assert.deepEqual(f[0]!.transports, ['shadowsocks', 'trojan (TLS, SNI ladder.lab)']);
  assert.match(
    f[0]!.evidence,
    /^198\.19\.2\.20: shadowsocks, trojan \(TLS, SNI ladder\.lab\) got through and received 2032416 bytes \(the download through shadowsocks stopped after 2031616 bytes\); then every new connection to the address failed: shadowsocks to port 8388 \(tcp-timeout\), trojan \(TLS, SNI ladder\.lab\) to port 443 \(tcp-timeout\), port 80 \(generic_timeout_error\); while http:\/\/domestic\.example\/ answers$/,
  );
  assert.deepEqual(f[0]!.useInstead, []);
  assert.match(
    formatFindings(f),
    /\[volume-ban\][^\n]*\n {4}this server address was banned .*--rotate-after/,
  );
});

test('volume-ban: a transport on another address that still works is the control, and is advised', () => {
  const f = recognise([
    ...banned(),
    check(ssElsewhere, ['ok', 'ok'], {
      address: HOST2,
      recheck: { attempt: attempt(3, 'ok', 8388) },
    }),
  ]);
  assert.deepEqual(
    f.map((x) => x.technique),
    ['volume-ban'],
  );
  assert.match(
    f[0]!.evidence,
    /while shadowsocks \(second server\) \(another server address\) answers$/,
  );
  assert.deepEqual(f[0]!.useInstead, ['shadowsocks (second server)']);
});

test('volume-ban look-alikes: no control, a control that fails, a port that answers, a fresh connection that works, no transfer', () => {
  const ok = { allowlistControl: { name: 'c', ok: true } };
  // the whole network may be down: nothing is claimed
  assert.deepEqual(recognise(banned()), []);
  assert.deepEqual(recognise(banned(), { allowlistControl: { name: 'c', ok: false } }), []);
  // the address answers on another port: not the whole address
  assert.deepEqual(recognise(banned('tcp-timeout', true), ok), []);
  // a reset is not a silent ban
  assert.deepEqual(recognise(banned('tcp-reset'), ok), []);
  // a fresh connection works: only the flow froze (a byte budget, if small; nothing named here)
  assert.deepEqual(recognise(banned('ok'), ok), []);
  // nothing ever got through: an IP block, not a ban after a volume
  const blocked = banned().map((c) =>
    check(c.transport, ['tcp-timeout', 'tcp-timeout'], {
      ...(c.throughput ? { throughput: c.throughput } : {}),
      ...(c.recheck ? { recheck: c.recheck } : {}),
    }),
  );
  assert.deepEqual(
    recognise(blocked, ok).map((x) => x.technique),
    ['whitelist'],
    'everything silent from the start, with the control answering, is whitelist mode',
  );
  // no download stalled: no recheck was asked for
  const fine = banned().map((c) =>
    check(c.transport, ['ok', 'ok'], { throughput: throughput(4 << 20, 'bytes', 0) }),
  );
  assert.deepEqual(recognise(fine, ok), []);
});

test('byte-budget: a stall ended by the silence cutoff is named; a fresh connection that also fails is not a byte budget', () => {
  const stall = throughput(19_872, 'stall', 2000);
  const f = recognise([
    check(trojan, ['ok'], { throughput: stall, recheck: { attempt: attempt(2, 'ok', 443) } }),
  ]);
  assert.deepEqual(
    f.map((x) => x.technique),
    ['byte-budget'],
  );
  assert.deepEqual(
    recognise([
      check(trojan, ['ok'], {
        throughput: stall,
        recheck: { attempt: attempt(2, 'tcp-timeout', 443) },
      }),
    ]).map((x) => x.technique),
    [],
  );
});
