/**
 * Load tier: one source floods the one port of a real `ladder server` (a child process) with
 * connections that never authenticate — half complete a TLS handshake and go silent, half send
 * nothing — and trickles request headers over TLS on more. Meanwhile a key holder from another
 * address makes Shadowsocks requests through the server. Checked: every keyed request succeeds
 * during the flood; after the pre-authentication deadline every attacker connection has been closed
 * by the server; the server's memory stays bounded. Twice: with the default caps (10,000 + 1,000
 * connections; the source holds at most its 256, the rest are closed at accept), and with the caps
 * raised past a smaller flood (2,000 + 200), so that the deadline alone must end it, as it must
 * against an attacker with many sources.
 *
 * Measured and printed (docs/benchmarks.md, "Pre-authentication flood"), never asserted as timings:
 * the keyed requests' latency without and during the flood, attacker connections left after the
 * deadline, the server's RSS. Bounded in count and time, loopback only. Sizes: LADDER_FLOOD_SCALE
 * (default 1) multiplies both floods; LADDER_FLOOD_DEADLINE_S sets the deadline (default 10 s).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { formatSsUri } from '../../src/codec/access-key-uri.js';
import { formatTrojanUri } from '../../src/codec/trojan-uri.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { tcpEcho, type Running } from '../helpers/echo.js';
import { echoRoundTrip } from '../helpers/pre-auth-suite.js';

const SCALE = Number(process.env.LADDER_FLOOD_SCALE ?? '1');
/** The server's pre-authentication deadline for the flood (`--auth-timeout`). */
const DEADLINE_S = Number(process.env.LADDER_FLOOD_DEADLINE_S ?? '10');
/** The per-source cap the server has by default (`--max-unauthenticated-per-source`). */
const DEFAULT_PER_SOURCE = 256;
const KEYED_REQUESTS = 40;
/** Connections opened at once while the flood builds up (the listen backlog is finite). */
const BATCH = 250;
/** An attacker from 127.0.0.1; the key holder from 127.0.0.2: another source. */
const KEYED_FROM = '127.0.0.2';

const peers: Peer[] = [];
const attackers = new Set<Socket>();
let echo: Running | null = null;
after(async () => {
  for (const s of attackers) s.destroy();
  await Promise.all(peers.map((p) => p.stop()));
  await echo?.close();
});

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

/** An attacker's socket, forgotten once closed. */
function attacker(s: Socket): Socket {
  attackers.add(s);
  s.on('error', () => {});
  s.on('data', () => {});
  s.once('close', () => attackers.delete(s));
  return s;
}

function openSilentTcp(port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = attacker(connect({ port, host: '127.0.0.1' }));
    s.once('connect', () => resolve());
    s.once('close', () => resolve());
  });
}

function openTls(port: number): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = attacker(
      tlsConnect({
        port,
        host: '127.0.0.1',
        servername: 'localhost',
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
      }),
    );
    s.once('secureConnect', () => resolve(s));
    s.once('close', () => resolve(null));
  });
}

async function inBatches(n: number, open: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += BATCH) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(open());
    await Promise.all(batch);
  }
}

/** `n` keyed echo requests, each on a fresh connection; their latencies in ms. */
async function keyedRequests(
  dialer: SsStreamDialer,
  echoPort: number,
  n: number,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const s = await dialer.dial({ host: '127.0.0.1', port: echoPort });
    await echoRoundTrip(s, randomBytes(32));
    out.push(performance.now() - t0);
    s.destroy();
  }
  return out;
}

async function startServer(port: number, extra: string[], ssUri: string): Promise<Peer> {
  const server = await startLadder(
    [
      'server',
      '--listen',
      `127.0.0.1:${port}`,
      '--key',
      ssUri,
      '--key',
      formatTrojanUri({ password: 'flood', host: '127.0.0.1', port }),
      '--no-udp',
      '--allow-private-targets',
      ...extra,
    ],
    /listening on/,
  );
  peers.push(server);
  return server;
}

interface Flood {
  silentTcp: number;
  silentTls: number;
  trickle: number;
}

/**
 * Starts a server with `flags`, measures keyed requests, floods it, measures them again during the
 * flood, then waits (bounded) for the server to close every attacker; returns the figures. With
 * `heldAtMost`, the count of attackers still open once the flood is built is awaited down to it.
 */
async function runFlood(
  flood: Flood,
  flags: string[],
  heldAtMost = Infinity,
): Promise<Record<string, unknown>> {
  echo ??= await tcpEcho();
  const password = randomBytes(16).toString('base64');
  const method = '2022-blake3-aes-128-gcm';
  const port = await freePort();
  const ssUri = formatSsUri({ method, password, host: '127.0.0.1', port });
  const server = await startServer(port, ['--auth-timeout', String(DEADLINE_S), ...flags], ssUri);
  const dialer = new SsStreamDialer({ host: '127.0.0.1', port }, makeCipherKey(method, password), {
    localAddress: KEYED_FROM,
    firstPayloadWaitMs: 0,
  });
  await keyedRequests(dialer, echo.port, 10); // warm-up
  const rssBefore = rssMiB(server.pid);
  const without = await keyedRequests(dialer, echo.port, KEYED_REQUESTS);

  // The flood, with keyed requests one after another alongside it from its start.
  const floodStart = performance.now();
  const during: number[] = [];
  let flooding = true;
  let keyedFailures = 0;
  let maxHeld = 0;
  const alongside = (async () => {
    while (flooding && during.length < 10 * KEYED_REQUESTS) {
      try {
        during.push(...(await keyedRequests(dialer, echo.port, 1)));
      } catch {
        keyedFailures++;
      }
    }
  })();
  const note = (): void => {
    maxHeld = Math.max(maxHeld, attackers.size);
  };
  await inBatches(flood.silentTcp, () => openSilentTcp(port).then(note));
  await inBatches(flood.silentTls, () => openTls(port).then(note));
  const trickling: Socket[] = [];
  await inBatches(flood.trickle, async () => {
    const s = await openTls(port);
    note();
    if (s) {
      s.write('GET / HTTP/1.1\r\nHost: localhost\r\n');
      trickling.push(s);
    }
  });
  const builtMs = performance.now() - floodStart;
  // Connections past a cap are closed at accept: wait for those closes (bounded) before counting.
  const settle = performance.now() + 10_000;
  while (attackers.size > heldAtMost && performance.now() < settle)
    await new Promise((r) => setTimeout(r, 50));
  const heldWhenBuilt = attackers.size;
  const rssPeak = rssMiB(server.pid);
  // Headers keep trickling, one line a second per connection, until the server closes them.
  const trickle = setInterval(() => {
    for (const s of trickling)
      if (!s.destroyed) s.write(`X-Pad-${randomBytes(2).toString('hex')}: 1\r\n`);
  }, 1_000);
  let leftAfterDeadline: number;
  try {
    during.push(...(await keyedRequests(dialer, echo.port, KEYED_REQUESTS)));
    flooding = false;
    await alongside;
    // Every attacker is closed by the server: wait for the last close, bounded by the deadline.
    const limit = performance.now() + DEADLINE_S * 1000 + 15_000;
    while (attackers.size > 0 && performance.now() < limit)
      await new Promise((r) => setTimeout(r, 100));
    leftAfterDeadline = attackers.size;
  } finally {
    clearInterval(trickle);
    flooding = false;
  }
  const rssAfter = rssMiB(server.pid);
  const afterwards = await keyedRequests(dialer, echo.port, 5);
  const ms = (x: number): number => Math.round(x * 100) / 100;
  const report = {
    flags: flags.join(' ') || '(defaults)',
    attackers: flood,
    deadlineS: DEADLINE_S,
    floodBuiltInMs: Math.round(builtMs),
    maxHeld,
    heldWhenBuilt,
    leftAfterDeadline,
    keyedWithoutFlood: {
      n: without.length,
      p50: ms(quantile(without, 0.5)),
      p95: ms(quantile(without, 0.95)),
    },
    keyedDuringFlood: {
      n: during.length,
      p50: ms(quantile(during, 0.5)),
      p95: ms(quantile(during, 0.95)),
      failures: keyedFailures,
    },
    serverRssMiB: { before: rssBefore, peak: rssPeak, afterDeadline: rssAfter },
    loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
  console.log(`flood: ${JSON.stringify(report)}`);
  assert.equal(keyedFailures, 0, 'every keyed request during the flood succeeded');
  assert.ok(during.length >= KEYED_REQUESTS);
  assert.equal(afterwards.length, 5, 'key holders get in after the flood');
  assert.equal(leftAfterDeadline, 0, 'every attacker connection closed after the deadline');
  // Bounded: thousands of idle connections cost far less; a leak of their buffers would not.
  assert.ok(rssPeak < 1024, `server RSS ${rssPeak} MiB at the peak of the flood`);
  return report;
}

test(
  'one source floods with the default caps: it holds its share, key holders get in, the deadline ends it',
  { timeout: 240_000 },
  async () => {
    const r = await runFlood(
      {
        silentTcp: Math.round(5_000 * SCALE),
        silentTls: Math.round(5_000 * SCALE),
        trickle: Math.round(1_000 * SCALE),
      },
      [],
      DEFAULT_PER_SOURCE,
    );
    assert.ok(
      (r.heldWhenBuilt as number) <= DEFAULT_PER_SOURCE,
      `at most ${DEFAULT_PER_SOURCE} held from one source, saw ${String(r.heldWhenBuilt)}`,
    );
  },
);

test(
  'caps raised past the flood: the deadline alone closes every attacker, key holders get in',
  { timeout: 240_000 },
  async () => {
    const flood = {
      silentTcp: Math.round(1_000 * SCALE),
      silentTls: Math.round(1_000 * SCALE),
      trickle: Math.round(200 * SCALE),
    };
    const total = flood.silentTcp + flood.silentTls + flood.trickle;
    await runFlood(flood, [
      '--max-connections',
      String(total + 2_000),
      '--max-unauthenticated',
      String(total + 1_000),
      '--max-unauthenticated-per-source',
      String(total + 1_000),
    ]);
  },
);
