/**
 * `node dist/bench/carrier.js [--mib=8] [--reps=3]`: a download through Ladder's Trojan handler on
 * a TLS listener on loopback, in this process, from an origin that sends `--mib` MiB: plain Trojan
 * (one connection) against carrier sessions of 8 KiB (with and without the next carrier dialled
 * ahead) and of 64 KiB, in alternating rounds; MB/s and the ratio to plain, medians. Never run as
 * a test.
 */
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { issueCertificate } from '../src/server/certificates.js';
import { trojanPasswordHash } from '../src/codec/trojan.js';
import { TrojanHandler } from '../src/server/trojan-server.js';
import { DecoySite } from '../src/server/decoy/decoy-site.js';
import { TrojanDialer } from '../src/transport/trojan-dialer.js';
import { CarrierDialer } from '../src/transport/carrier-dialer.js';
import { DirectDialer } from '../src/transport/direct.js';
import type { StreamDialer } from '../src/transport/types.js';

const arg = (k: string, d: number): number =>
  Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d);
const MIB = arg('mib', 8);
const REPS = arg('reps', 3);
const cert = issueCertificate({
  commonName: 'localhost',
  altNames: ['localhost'],
  serial: randomBytes(16),
});
const decoy = new DecoySite();
const handler = new TrojanHandler({
  users: [{ id: 'u', hash: trojanPasswordHash('bench') }],
  dialer: new DirectDialer(),
  fallback: decoy,
});
const sockets = new Set<TLSSocket | Socket>();
const tls = createTlsServer({ cert: cert.cert, key: cert.key, allowHalfOpen: true }, (s) => {
  sockets.add(s);
  s.once('close', () => sockets.delete(s));
  handler.handle(s);
});
const chunk = Buffer.alloc(1 << 20, 7);
const origin = createServer((s) => {
  sockets.add(s);
  s.once('close', () => sockets.delete(s));
  s.on('error', () => s.destroy());
  let left = MIB;
  const more = (): void => {
    while (left > 0) {
      left--;
      if (!s.write(chunk)) return void s.once('drain', more);
    }
    s.end();
  };
  more();
});
await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
const port = (tls.address() as AddressInfo).port;
const target = { host: '127.0.0.1', port: (origin.address() as AddressInfo).port };
const trojan = new TrojanDialer(
  { host: '127.0.0.1', port },
  { password: 'bench', sni: 'localhost', pinSha256: cert.fingerprint256 },
);
const setups: [string, StreamDialer][] = [
  ['trojan (one connection)', trojan],
  ['carrier=8192', new CarrierDialer(trojan, { carrierBytes: 8192 })],
  ['carrier=8192, no prefetch', new CarrierDialer(trojan, { carrierBytes: 8192, prefetch: false })],
  ['carrier=65536', new CarrierDialer(trojan, { carrierBytes: 65536 })],
];

async function once(d: StreamDialer): Promise<number> {
  const t0 = performance.now();
  const s = (await d.dial(target)) as Duplex;
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('download timed out')), 300_000);
    s.on('data', (b: Buffer) => (bytes += b.length));
    s.on('end', () => {
      clearTimeout(timer);
      resolve();
    });
    s.on('error', reject);
  });
  s.destroy();
  if (bytes !== MIB << 20) throw new Error(`got ${bytes} bytes`);
  return bytes / 1e6 / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const runs = new Map<string, number[]>(setups.map(([n]) => [n, []]));
const ratios = new Map<string, number[]>(setups.map(([n]) => [n, []]));
const load0 = loadavg()[0]!;
try {
  for (let r = 0; r < REPS; r++) {
    let plain = 0;
    for (const [name, d] of setups) {
      const mbps = await once(d);
      if (name === setups[0]![0]) plain = mbps;
      runs.get(name)!.push(mbps);
      ratios.get(name)!.push(mbps / plain);
    }
  }
  console.log(
    `${MIB} MiB download, ${REPS} rounds, load ${load0.toFixed(1)}–${loadavg()[0]!.toFixed(1)}`,
  );
  for (const [name] of setups)
    console.log(
      `${name.padEnd(28)} ${median(runs.get(name)!).toFixed(2).padStart(8)} MB/s  ratio ${median(ratios.get(name)!).toFixed(3)} (${ratios
        .get(name)!
        .map((x) => x.toFixed(3))
        .join(', ')})`,
    );
} finally {
  tls.close();
  origin.close();
  for (const s of sockets) s.destroy();
  decoy.close();
}
