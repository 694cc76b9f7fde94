/**
 * `npm run bench -- --only=tun`: full-device tunnels between the same two namespaces
 * (test/helpers/tun-net.ts), one run each: `ladder client --tun`, the same key's SOCKS path
 * (`ladder client --socks`, curl --socks5), OpenVPN (Debian's openvpn, UDP, AES-256-GCM) and
 * WireGuard (wireguard-go). For each: a 1 GiB download with curl (MB/s) with the CPU time of the
 * tunnel's processes on both sides per GiB, and 200 sequential fresh requests of a small page
 * (mean and p99 ms, a new TCP connection each). Needs root; never run as a test. Every process is
 * stopped by its PID and the namespaces removed, also on failure.
 *
 * OpenVPN and WireGuard carry the origin's address through their device (a route for it via the
 * tunnel): the path every packet takes is the one a full-device setup gives it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LADDER_CLI, startProcess, type Peer } from '../test/helpers/peers.js';
import {
  LADDER_PORT,
  ORIGIN_ADDR,
  SERVER_ADDR,
  inNs,
  startLadderClientIn,
  tunNetDown,
  tunNetSettled,
  tunNetUp,
  type TunNet,
} from '../test/helpers/tun-net.js';

const GIB = 1024 * 1024 * 1024;
/** `--tun-mtu=N` on the bench's command line is passed to `ladder client --tun`. */
const mtuArg = process.argv
  .filter((a) => a.startsWith('--tun-mtu='))
  .flatMap((a) => ['--tun-mtu', a.slice(10)]);
const onlyLadder = process.argv.includes('--tun-ladder-only');
const KEY = `ss://${Buffer.from('chacha20-ietf-poly1305:tun-bench-secret').toString('base64')}@${SERVER_ADDR}:${LADDER_PORT}`;

const ORIGIN = `
import http from 'node:http';
const chunk = Buffer.alloc(1 << 20, 0x61);
http.createServer((q, r) => {
  if (q.url.startsWith('/big/')) {
    let left = Number(q.url.slice(5));
    r.writeHead(200, { 'content-length': String(left) });
    const pump = () => { while (left > 0) { const n = Math.min(left, chunk.length); left -= n;
      if (!r.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return r.once('drain', pump); }
      r.end(); };
    pump();
  } else r.end('small page\\n');
}).listen(80, '${ORIGIN_ADDR}', () => console.log('origin ready'));
`;

// Sequential fresh requests, each on a new connection, straight or through SOCKS5 (CONNECT by
// IPv4); prints {"meanMs","p99Ms"}. With a third argument 'alt', requests alternate between the two
// paths (the order swapped every pair) and it prints {"tunMeanMs","socksMeanMs"}: both paths then
// see the same machine load, which a run of one after the other does not.
const REQUESTS = `
import net from 'node:net';
const n = Number(process.argv[2]);
const socksPort = process.argv[3] ? Number(process.argv[3]) : 0;
const alt = process.argv[4] === 'alt';
const ip = '${ORIGIN_ADDR}'.split('.').map(Number);
function once(socks) { return new Promise((res, rej) => {
  const t0 = performance.now();
  const s = socks ? net.connect(socks, '127.0.0.1') : net.connect(80, '${ORIGIN_ADDR}');
  s.setNoDelay(true);
  let stage = socks ? 0 : 2; let buf = Buffer.alloc(0);
  const get = () => s.write('GET /small HTTP/1.1\\r\\nHost: o\\r\\nConnection: close\\r\\n\\r\\n');
  s.on('connect', () => socks ? s.write(Buffer.from([5, 1, 0])) : get());
  s.on('data', (d) => {
    if (stage === 0) { stage = 1; s.write(Buffer.from([5, 1, 0, 1, ...ip, 0, 80])); return; }
    if (stage === 1) { buf = Buffer.concat([buf, d]); if (buf.length >= 10) { stage = 2; get(); } return; }
  });
  s.on('close', () => res(performance.now() - t0)); s.on('error', rej);
  s.setTimeout(10000, () => s.destroy(new Error('timeout')));
}); }
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
if (alt) {
  for (let i = 0; i < 20; i++) { await once(0); await once(socksPort); }
  const tun = [], socks = [];
  for (let i = 0; i < n; i++) {
    if (i % 2) { socks.push(await once(socksPort)); tun.push(await once(0)); }
    else { tun.push(await once(0)); socks.push(await once(socksPort)); }
  }
  console.log(JSON.stringify({ tunMeanMs: mean(tun), socksMeanMs: mean(socks) }));
} else {
  for (let i = 0; i < 20; i++) await once(socksPort);
  const ms = []; for (let i = 0; i < n; i++) ms.push(await once(socksPort));
  ms.sort((a, b) => a - b);
  console.log(JSON.stringify({ meanMs: mean(ms), p99Ms: ms[Math.ceil(n * 0.99) - 1] }));
}
`;

interface Row {
  name: string;
  bulkMBps?: number;
  cpuSecondsPerGiB?: number;
  latencyMeanMs?: number;
  latencyP99Ms?: number;
  /** The interleaved row: --tun and SOCKS requests alternating in one client process. */
  altTunMeanMs?: number;
  altSocksMeanMs?: number;
  error?: string;
}

function cpuTicks(pids: number[]): number {
  let t = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      t += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return t;
}

function measure(
  net: TunNet,
  dir: string,
  pids: () => number[],
  bytes: number,
  seq: number,
  socks?: number,
): Omit<Row, 'name'> {
  const c0 = cpuTicks(pids());
  const curl = inNs(
    net.client,
    [
      'curl',
      '-sS',
      '--max-time',
      '300',
      '-o',
      '/dev/null',
      '-w',
      '%{speed_download}',
      ...(socks ? ['--socks5', `127.0.0.1:${socks}`] : []),
      `http://${ORIGIN_ADDR}/big/${bytes}`,
    ],
    320_000,
  );
  const c1 = cpuTicks(pids());
  if (curl.status !== 0) return { error: `curl: ${curl.stderr.trim()}` };
  const req = inNs(
    net.client,
    [process.execPath, join(dir, 'requests.mjs'), String(seq), ...(socks ? [String(socks)] : [])],
    120_000,
  );
  let lat: { meanMs: number; p99Ms: number } | undefined;
  try {
    lat = JSON.parse(req.stdout) as { meanMs: number; p99Ms: number };
  } catch {
    // reported below
  }
  return {
    bulkMBps: Math.round(Number(curl.stdout) / 1e5) / 10,
    cpuSecondsPerGiB: Math.round(((((c1 - c0) / 100) * GIB) / bytes) * 100) / 100,
    ...(lat
      ? {
          latencyMeanMs: Math.round(lat.meanMs * 100) / 100,
          latencyP99Ms: Math.round(lat.p99Ms * 100) / 100,
        }
      : { error: `requests: ${req.stderr.trim().slice(0, 200)}` }),
  };
}

function spawnIn(ns: string, argv: string[], log: string): ChildProcess {
  const out = spawn('ip', ['netns', 'exec', ns, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  out.stdout!.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-20000)));
  out.stderr!.on('data', (d: Buffer) => (text = (text + d.toString()).slice(-20000)));
  out.on('exit', () => writeFileSync(log, text));
  return out;
}

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopAll(children: ChildProcess[]): Promise<void> {
  return Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 3000).unref();
        }),
    ),
  ).then(() => undefined);
}

async function openVpn(net: TunNet, dir: string): Promise<ChildProcess[]> {
  const ossl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ossl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-subj',
    '/CN=ca',
    '-days',
    '2',
  );
  for (const who of ['server', 'client']) {
    ossl('req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`);
    ossl(
      'x509',
      '-req',
      '-in',
      `${who}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-set_serial',
      String(Date.now()),
      '-out',
      `${who}.pem`,
      '-days',
      '2',
    );
  }
  const common = [
    'openvpn',
    '--dev',
    'tun',
    '--proto',
    'udp',
    '--ca',
    join(dir, 'ca.pem'),
    '--dh',
    'none',
    '--data-ciphers',
    'AES-256-GCM',
    '--verb',
    '3',
  ];
  const server = spawnIn(
    net.server,
    [
      ...common,
      '--tls-server',
      '--local',
      SERVER_ADDR,
      '--lport',
      '1194',
      '--ifconfig',
      '198.18.200.1',
      '198.18.200.2',
      '--cert',
      join(dir, 'server.pem'),
      '--key',
      join(dir, 'server.key'),
    ],
    join(dir, 'ovpn-s.log'),
  );
  let clientLog = '';
  const client = spawn(
    'ip',
    [
      'netns',
      'exec',
      net.client,
      ...common,
      '--tls-client',
      '--remote',
      SERVER_ADDR,
      '1194',
      '--nobind',
      '--ifconfig',
      '198.18.200.2',
      '198.18.200.1',
      '--route',
      ORIGIN_ADDR,
      '255.255.255.255',
      '198.18.200.1',
      '--cert',
      join(dir, 'client.pem'),
      '--key',
      join(dir, 'client.key'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  client.stdout!.on('data', (d: Buffer) => (clientLog = (clientLog + d.toString()).slice(-20000)));
  await waitFor(() => /Initialization Sequence Completed/.test(clientLog), 30_000, 'openvpn');
  return [server, client];
}

async function wireGuard(net: TunNet, dir: string): Promise<ChildProcess[]> {
  const key = (ns: string) => {
    const priv = inNs(ns, ['wg', 'genkey']).stdout.trim();
    const r = spawnSync('ip', ['netns', 'exec', ns, 'wg', 'pubkey'], {
      input: priv + '\n',
      encoding: 'utf8',
    });
    return { priv, pub: r.stdout.trim() };
  };
  const sk = key(net.server);
  const ck = key(net.client);
  const children: ChildProcess[] = [];
  for (const [ns, dev, addr, own, peer, endpoint, allowed] of [
    [net.server, 'tnbwgs', '198.18.201.1', sk, ck, undefined, '198.18.201.2/32'],
    [net.client, 'tnbwgc', '198.18.201.2', ck, sk, `${SERVER_ADDR}:51820`, '0.0.0.0/0'],
  ] as const) {
    const child = spawnIn(
      ns,
      ['env', 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1', 'wireguard-go', '-f', dev],
      join(dir, `${dev}.log`),
    );
    children.push(child);
    await waitFor(() => inNs(ns, ['ip', 'link', 'show', dev]).status === 0, 10_000, 'wireguard-go');
    const keyFile = join(dir, `${dev}.key`);
    writeFileSync(keyFile, own.priv + '\n', { mode: 0o600 });
    const set = inNs(ns, [
      'wg',
      'set',
      dev,
      'private-key',
      keyFile,
      ...(endpoint ? [] : ['listen-port', '51820']),
      'peer',
      peer.pub,
      'allowed-ips',
      allowed,
      ...(endpoint ? ['endpoint', endpoint] : []),
    ]);
    if (set.status !== 0) throw new Error(`wg set: ${set.stderr}`);
    inNs(ns, ['ip', 'addr', 'add', `${addr}/24`, 'dev', dev]);
    inNs(ns, ['ip', 'link', 'set', dev, 'up']);
  }
  inNs(net.client, ['ip', 'route', 'add', `${ORIGIN_ADDR}/32`, 'dev', 'tnbwgc']);
  return children;
}

export async function runTunBench(quick: boolean): Promise<Row[]> {
  const bytes = quick ? 128 * 1024 * 1024 : GIB;
  const seq = quick ? 50 : 200;
  const prefix = `${(process.env.LADDER_LAB_TEST_PREFIX ?? 'tn-').slice(0, -1).slice(0, 6)}b-`;
  const net = tunNetUp(prefix);
  const dir = mkdtempSync(join(tmpdir(), 'ladder-tun-bench-'));
  const rows: Row[] = [];
  const base: Peer[] = [];
  try {
    await tunNetSettled(net);
    writeFileSync(join(dir, 'origin.mjs'), ORIGIN);
    writeFileSync(join(dir, 'requests.mjs'), REQUESTS);
    base.push(
      await startProcess(
        ['ip', 'netns', 'exec', net.server, process.execPath, join(dir, 'origin.mjs')],
        /origin ready/,
      ),
    );
    const server = await startProcess(
      [
        'ip',
        'netns',
        'exec',
        net.server,
        process.execPath,
        LADDER_CLI,
        'server',
        '--listen',
        `${SERVER_ADDR}:${LADDER_PORT}`,
        '--key',
        KEY,
        '--allow-private-targets',
      ],
      /listening/,
    );
    base.push(server);
    const cases: { name: string; run: () => Promise<Omit<Row, 'name'>> }[] = [
      {
        name: 'ladder --tun',
        run: async () => {
          const c = await startLadderClientIn(
            net.client,
            ['--server', KEY, '--tun', ...mtuArg],
            /tunnel up/,
            20_000,
          );
          try {
            return measure(net, dir, () => [server.pid, c.pid], bytes, seq);
          } finally {
            await c.stop();
          }
        },
      },
      {
        name: 'ladder SOCKS (same key)',
        run: async () => {
          const c = await startLadderClientIn(
            net.client,
            ['--server', KEY, '--socks', '127.0.0.1:1080', '--no-http'],
            /SOCKS5 listening/,
          );
          try {
            return measure(net, dir, () => [server.pid, c.pid], bytes, seq, 1080);
          } finally {
            await c.stop();
          }
        },
      },
      {
        name: 'interleaved: --tun and SOCKS in one client',
        run: async () => {
          const c = await startLadderClientIn(
            net.client,
            ['--server', KEY, '--tun', ...mtuArg, '--socks', '127.0.0.1:1080', '--no-http'],
            /tunnel up/,
            20_000,
          );
          try {
            const req = inNs(
              net.client,
              [process.execPath, join(dir, 'requests.mjs'), String(seq), '1080', 'alt'],
              240_000,
            );
            const r = JSON.parse(req.stdout) as { tunMeanMs: number; socksMeanMs: number };
            return {
              altTunMeanMs: Math.round(r.tunMeanMs * 100) / 100,
              altSocksMeanMs: Math.round(r.socksMeanMs * 100) / 100,
            };
          } finally {
            await c.stop();
          }
        },
      },
      {
        name: 'OpenVPN (udp, AES-256-GCM)',
        run: async () => {
          const ch = await openVpn(net, dir);
          try {
            return measure(net, dir, () => ch.map((c) => c.pid!), bytes, seq);
          } finally {
            await stopAll(ch);
          }
        },
      },
      {
        name: 'WireGuard (wireguard-go)',
        run: async () => {
          const ch = await wireGuard(net, dir);
          try {
            return measure(net, dir, () => ch.map((c) => c.pid!), bytes, seq);
          } finally {
            await stopAll(ch);
          }
        },
      },
    ];
    for (const c of onlyLadder ? cases.slice(0, 3) : cases) {
      process.stderr.write(`bench: ${c.name}\n`);
      try {
        rows.push({ name: c.name, ...(await c.run()) });
      } catch (err) {
        rows.push({ name: c.name, error: (err as Error).message.slice(0, 300) });
      }
    }
  } finally {
    for (const p of base) await p.stop();
    tunNetDown(net);
    rmSync(dir, { recursive: true, force: true });
  }
  printTunBench(rows, bytes);
  return rows;
}

function printTunBench(rows: Row[], bytes: number): void {
  console.log(`\nfull-device tunnels, ${Math.round(bytes / 2 ** 20)} MiB download, one run each`);
  console.log('setup                          MB/s   CPU s/GiB  req mean ms  req p99 ms');
  for (const r of rows)
    console.log(
      r.altTunMeanMs !== undefined && r.altSocksMeanMs !== undefined
        ? `${r.name}: req mean --tun ${r.altTunMeanMs} ms, SOCKS ${r.altSocksMeanMs} ms`
        : r.error
          ? `${r.name.padEnd(30)} error: ${r.error}`
          : `${r.name.padEnd(30)} ${String(r.bulkMBps).padStart(6)} ${String(r.cpuSecondsPerGiB).padStart(10)} ${String(r.latencyMeanMs).padStart(12)} ${String(r.latencyP99Ms).padStart(11)}`,
    );
  const by = (n: string) => rows.find((r) => r.name.startsWith(n));
  const tun = by('ladder --tun');
  const socks = by('ladder SOCKS');
  const ovpn = by('OpenVPN');
  if (tun?.bulkMBps && socks?.bulkMBps && socks.latencyMeanMs && tun.latencyMeanMs) {
    const bulk = tun.bulkMBps / socks.bulkMBps;
    const lat = tun.latencyMeanMs / socks.latencyMeanMs;
    console.log(
      `--tun / SOCKS bulk ${bulk.toFixed(2)} (target ≥ 0.7: ${bulk >= 0.7 ? 'met' : 'NOT met'})`,
    );
    console.log(
      `--tun / SOCKS request latency ${lat.toFixed(2)} (target ≤ 1.3: ${lat <= 1.3 ? 'met' : 'NOT met'})`,
    );
  }
  const alt = by('interleaved');
  if (alt?.altTunMeanMs && alt.altSocksMeanMs) {
    const lat = alt.altTunMeanMs / alt.altSocksMeanMs;
    console.log(
      `--tun / SOCKS request latency, interleaved ${lat.toFixed(2)} (target ≤ 1.3: ${lat <= 1.3 ? 'met' : 'NOT met'})`,
    );
  }
  if (tun?.bulkMBps && ovpn?.bulkMBps)
    console.log(
      `--tun / OpenVPN bulk ${(tun.bulkMBps / ovpn.bulkMBps).toFixed(2)} (target ≥ 1: ${tun.bulkMBps >= ovpn.bulkMBps ? 'met' : 'NOT met'})`,
    );
}
