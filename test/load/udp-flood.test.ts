/**
 * Load tier: a flood of 64 KB junk UDP datagrams against a real `ladder server` process with 100
 * AEAD-2017 keys, while a real `ladder client` carries keyed TCP requests (the key tried last in
 * trial order). Without a budget each junk datagram costs one AEAD pass per key on the event loop
 * that serves TCP too; with it (src/server/udp-trial-budget.ts) the flood is mostly dropped untried.
 *
 * Asserts only that every keyed request succeeds and that the budget dropped datagrams; the
 * latencies with and without the flood are printed as diagnostics (docs/benchmarks.md keeps them).
 * Bounded: at most FLOOD_MAX datagrams and FLOOD_MAX_MS of flooding, loopback only (sources
 * 127.0.x.2 in four /24s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { tcpEcho } from '../helpers/echo.js';
import { socksRequest } from '../helpers/socks5-client.js';

const KEYS = 100;
const FLOOD_MAX = 15_000;
const FLOOD_MAX_MS = 15_000;
/** Datagrams per second: about 100 times what the default global budget tries in full. */
const FLOOD_RATE = 1_000;
const DATAGRAM = 65_000;
const REQUESTS = 40;

function ssKey(i: number, port: number): string {
  const user = Buffer.from(`aes-256-gcm:flood-key-${i}`).toString('base64url');
  return `ss://${user}@127.0.0.1:${port}#k${i}`;
}

/** One keyed request: SOCKS5 CONNECT through the client to the echo, 1 KB there and back. */
async function keyedRequest(socksPort: number, echoPort: number): Promise<number> {
  const start = performance.now();
  const { code, socket } = await socksRequest(socksPort, 1, { host: '127.0.0.1', port: echoPort });
  assert.equal(code, 0, 'SOCKS5 CONNECT succeeded');
  const payload = randomBytes(1024);
  const got: Buffer[] = [];
  let n = 0;
  const echoed = new Promise<void>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      got.push(d);
      n += d.length;
      if (n >= payload.length) resolve();
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed after ${n} bytes`)));
  });
  socket.write(payload);
  await echoed;
  const ms = performance.now() - start;
  socket.destroy();
  assert.deepEqual(Buffer.concat(got), payload);
  return ms;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Sends `max` junk datagrams at `rate` per second at most, for `maxMs` at most, from four /24s. */
const FLOODER = `
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
const [port, max, maxMs, size, rate] = process.argv.slice(1).map(Number);
const sources = ['127.0.0.2', '127.0.1.2', '127.0.2.2', '127.0.3.2'];
const socks = await Promise.all(sources.map((a) => new Promise((r) => {
  const s = createSocket('udp4'); s.on('error', () => {}); s.bind(0, a, () => r(s));
})));
const junk = Array.from({ length: 8 }, () => randomBytes(size));
const t0 = Date.now();
const end = t0 + maxMs;
let sent = 0;
process.stdout.write('flooding\\n');
while (sent < max && Date.now() < end) {
  // Paced: never ahead of rate × elapsed time.
  const due = Math.min(max, Math.floor(((Date.now() - t0) / 1000) * rate) + 1);
  const batch = [];
  for (; sent < due; sent++)
    batch.push(new Promise((r) => socks[sent % socks.length].send(junk[sent % junk.length], port, '127.0.0.1', r)));
  await Promise.all(batch);
  await new Promise((r) => setTimeout(r, 5));
}
for (const s of socks) s.close();
process.stdout.write('sent ' + sent + ' in ' + (Date.now() - t0) + ' ms\\n');
`;

test(
  `a 64 KB junk UDP flood against ${KEYS} AEAD-2017 keys leaves keyed TCP requests working`,
  { timeout: 90_000 },
  async (t) => {
    const echo = await tcpEcho();
    t.after(() => echo.close());
    const port = await freePort();
    const keys = Array.from({ length: KEYS }, (_, i) => ssKey(i, port));
    const server: Peer = await startLadder(
      [
        'server',
        '--listen',
        `127.0.0.1:${port}`,
        '--metrics',
        '127.0.0.1:0',
        // The echo target is on loopback.
        '--allow-private-targets',
        ...keys.flatMap((k) => ['--key', k]),
      ],
      /metrics at (http:\/\/\S+)/,
    );
    t.after(() => server.stop());
    const metricsUrl = /metrics at (http:\/\/\S+)/.exec(server.output())![1]!;
    // The last key: every trial decryption tries it last.
    const client = await startLadder(
      ['client', '--server', keys[KEYS - 1]!, '--socks', '127.0.0.1:0', '--no-http'],
      /SOCKS5 listening on 127\.0\.0\.1:(\d+)/,
    );
    t.after(() => client.stop());
    const socksPort = Number(/SOCKS5 listening on 127\.0\.0\.1:(\d+)/.exec(client.output())![1]);

    // Warm-up (connections, JIT), not measured.
    for (let i = 0; i < 10; i++) await keyedRequest(socksPort, echo.port);
    const quiet: number[] = [];
    for (let i = 0; i < REQUESTS; i++) quiet.push(await keyedRequest(socksPort, echo.port));

    const flooder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        FLOODER,
        String(port),
        String(FLOOD_MAX),
        String(FLOOD_MAX_MS),
        String(DATAGRAM),
        String(FLOOD_RATE),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.after(() => {
      if (flooder.exitCode === null) flooder.kill('SIGKILL');
    });
    let flooderOut = '';
    const started = new Promise<void>((resolve) =>
      flooder.stdout.on('data', (d: Buffer) => {
        flooderOut += String(d);
        if (flooderOut.includes('flooding')) resolve();
      }),
    );
    const exited = once(flooder, 'exit');
    await started;
    const during: number[] = [];
    let floodOver = false;
    void exited.then(() => (floodOver = true));
    while (!floodOver && during.length < 3_000)
      during.push(await keyedRequest(socksPort, echo.port));
    await exited;
    assert.equal(flooder.exitCode, 0, flooderOut);
    const [, sent, floodMs] = /sent (\d+) in (\d+) ms/.exec(flooderOut) ?? [];

    const metrics = await (await fetch(`${metricsUrl}`)).text();
    const count = (code: string): number =>
      Number(
        new RegExp(`ladder_probes_total\\{transport="udp",code="${code}"\\} (\\d+)`).exec(
          metrics,
        )?.[1] ?? 0,
      );
    const dropped = count('ERR_UDP_BUDGET');
    const tried = count('ERR_CIPHER');

    const fmt = (xs: number[]): string =>
      `n=${xs.length} median ${percentile(xs, 50).toFixed(1)} ms, p95 ${percentile(xs, 95).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
    t.diagnostic(`without flood: ${fmt(quiet)}`);
    t.diagnostic(`during flood:  ${fmt(during)}`);
    t.diagnostic(
      `flood: ${sent} datagrams of ${DATAGRAM} B in ${floodMs} ms; server tried ${tried}, dropped ${dropped} untried (the rest lost in socket buffers)`,
    );
    assert.ok(during.length > 0, 'requests ran during the flood');
    assert.ok(dropped > 0, 'the budget dropped junk untried');
  },
);
