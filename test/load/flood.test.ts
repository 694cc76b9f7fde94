/**
 * Load tier: one source floods the one port of a real `ladder server` (a child process) with
 * connections that never authenticate — half complete a TLS handshake and go silent, half send
 * nothing — and trickles request headers over TLS on more. Meanwhile a key holder from another
 * address makes Shadowsocks requests through the server. Checked: every keyed request succeeds
 * during the flood; after the pre-authentication deadline every attacker connection has been closed
 * by the server; the server's memory stays bounded. A second, short phase runs the default caps: one
 * source holds at most `--max-unauthenticated-per-source` connections, the rest are closed at once.
 *
 * Measured and printed (docs/benchmarks.md, "Pre-authentication flood"), never asserted as timings:
 * the keyed requests' latency without and during the flood, attacker connections left after the
 * deadline, the server's RSS. Bounded in count and time, loopback only. Sizes: LADDER_FLOOD_SCALE
 * (default 1: 10,000 + 1,000 connections).
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
const SILENT_TLS = Math.round(5_000 * SCALE);
const SILENT_TCP = Math.round(5_000 * SCALE);
const TRICKLE = Math.round(1_000 * SCALE);
/** The server's pre-authentication deadline for the flood (`--auth-timeout`). */
const DEADLINE_S = Number(process.env.LADDER_FLOOD_DEADLINE_S ?? '15');
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

/** A closed attacker is counted and forgotten. */
const closedAt = new Map<Socket, number>();
function attacker(s: Socket): Socket {
  attackers.add(s);
  s.on('error', () => {});
  s.on('data', () => {});
  s.once('close', () => {
    attackers.delete(s);
    closedAt.set(s, performance.now());
  });
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

test(
  'a flood without keys: key holders get in, the deadline closes it all, memory stays bounded',
  { timeout: 240_000 },
  async (t) => {
    echo = await tcpEcho();
    const password = randomBytes(16).toString('base64');
    const method = '2022-blake3-aes-128-gcm';
    const port = await freePort();
    const ssUri = formatSsUri({ method, password, host: '127.0.0.1', port });
    const total = SILENT_TLS + SILENT_TCP + TRICKLE;
    const server = await startServer(
      port,
      [
        '--auth-timeout',
        String(DEADLINE_S),
        // Caps raised past the flood: the deadline alone must end it.
        '--max-connections',
        String(total + 2_000),
        '--max-unauthenticated',
        String(total + 1_000),
        '--max-unauthenticated-per-source',
        String(total + 1_000),
      ],
      ssUri,
    );
    const dialer = new SsStreamDialer(
      { host: '127.0.0.1', port },
      makeCipherKey(method, password),
      {
        localAddress: KEYED_FROM,
        firstPayloadWaitMs: 0,
      },
    );
    await keyedRequests(dialer, echo.port, 10); // warm-up
    const rssBefore = rssMiB(server.pid);
    const without = await keyedRequests(dialer, echo.port, KEYED_REQUESTS);

    // The flood, with keyed requests running alongside it from the start.
    const floodStart = performance.now();
    const during: number[] = [];
    let flooding = true;
    let keyedFailures = 0;
    const alongside = (async () => {
      while (flooding && during.length < 10 * KEYED_REQUESTS) {
        try {
          during.push(...(await keyedRequests(dialer, echo.port, 1)));
        } catch {
          keyedFailures++;
        }
      }
    })();
    await inBatches(SILENT_TCP, () => openSilentTcp(port));
    await inBatches(SILENT_TLS, () => openTls(port));
    const trickling: Socket[] = [];
    await inBatches(TRICKLE, async () => {
      const s = await openTls(port);
      if (s) {
        s.write('GET / HTTP/1.1\r\nHost: localhost\r\n');
        trickling.push(s);
      }
    });
    const builtMs = performance.now() - floodStart;
    const heldAfterBuild = attackers.size;
    const rssPeak = rssMiB(server.pid);
    // Headers keep trickling, one line a second per connection, until the server closes them.
    const trickle = setInterval(() => {
      for (const s of trickling)
        if (!s.destroyed) s.write(`X-Pad-${randomBytes(2).toString('hex')}: 1\r\n`);
    }, 1_000);
    try {
      const more = await keyedRequests(dialer, echo.port, KEYED_REQUESTS);
      during.push(...more);
      flooding = false;
      await alongside;
      // Every attacker closed by the server: wait for the last close, bounded.
      const limit = performance.now() + DEADLINE_S * 1000 + 20_000;
      while (attackers.size > 0 && performance.now() < limit)
        await new Promise((r) => setTimeout(r, 100));
    } finally {
      clearInterval(trickle);
      flooding = false;
    }
    const leftAfterDeadline = attackers.size;
    const rssAfter = rssMiB(server.pid);
    const after1 = await keyedRequests(dialer, echo.port, 5);
    const ms = (x: number): string => x.toFixed(2);
    const report = {
      attackers: { silentTcp: SILENT_TCP, silentTls: SILENT_TLS, trickle: TRICKLE },
      deadlineS: DEADLINE_S,
      floodBuiltInMs: Math.round(builtMs),
      heldWhenBuilt: heldAfterBuild,
      leftAfterDeadline,
      keyed: {
        withoutFlood: {
          n: without.length,
          p50: ms(quantile(without, 0.5)),
          p95: ms(quantile(without, 0.95)),
        },
        duringFlood: {
          n: during.length,
          p50: ms(quantile(during, 0.5)),
          p95: ms(quantile(during, 0.95)),
          failures: keyedFailures,
        },
        ratioP50: (quantile(during, 0.5) / quantile(without, 0.5)).toFixed(1),
      },
      serverRssMiB: { before: rssBefore, peak: rssPeak, afterDeadline: rssAfter },
    };
    t.diagnostic(`flood: ${JSON.stringify(report)}`);
    console.log(`flood: ${JSON.stringify(report)}`);
    assert.equal(keyedFailures, 0, 'every keyed request during the flood succeeded');
    assert.ok(during.length >= KEYED_REQUESTS);
    assert.equal(after1.length, 5);
    assert.equal(leftAfterDeadline, 0, 'every attacker connection closed after the deadline');
    // Bounded: 11,000 idle connections cost far less than this (a leak of their buffers would not).
    assert.ok(rssPeak < 1024, `server RSS ${rssPeak} MiB at the peak of the flood`);
  },
);

test(
  'default caps: one source holds at most its share; the rest are closed at accept',
  { timeout: 60_000 },
  async (t) => {
    echo ??= await tcpEcho();
    const password = randomBytes(16).toString('base64');
    const method = '2022-blake3-aes-128-gcm';
    const port = await freePort();
    const server = await startServer(
      port,
      [],
      formatSsUri({ method, password, host: '127.0.0.1', port }),
    );
    const n = 1_000;
    let refused = 0;
    await inBatches(n, async () => {
      await openSilentTcp(port);
    });
    // A refused connection is closed by the server at once; the held ones wait for the deadline.
    const limit = performance.now() + 10_000;
    while (attackers.size > 256 && performance.now() < limit)
      await new Promise((r) => setTimeout(r, 50));
    refused = n - attackers.size;
    const held = attackers.size;
    const dialer = new SsStreamDialer(
      { host: '127.0.0.1', port },
      makeCipherKey(method, password),
      {
        localAddress: KEYED_FROM,
        firstPayloadWaitMs: 0,
      },
    );
    const keyed = await keyedRequests(dialer, echo.port, 5);
    t.diagnostic(
      `default caps: ${held} held, ${refused} refused of ${n} from one source; rss ${rssMiB(server.pid)} MiB`,
    );
    console.log(`default caps: ${held} held, ${refused} refused of ${n} from one source`);
    assert.equal(held, 256, 'the default per-source cap');
    assert.equal(keyed.length, 5, 'another source still gets in');
    for (const s of attackers) s.destroy();
  },
);
