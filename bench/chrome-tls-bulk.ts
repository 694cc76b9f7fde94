/**
 * `node dist/bench/chrome-tls-bulk.js [--mib=256] [--reps=3]`: bulk download over TLS 1.3
 * (TLS_AES_128_GCM_SHA256) from a Node TLS server in a child process, into this process with the
 * fp=chrome client (its reads lent, as `ladder client` has them) and with fp=node, alternating;
 * MB/s and client CPU per MB, medians. The record layer alone, without the Trojan relay around it
 * (bench/run.ts has that). Never run as a test.
 */
import { spawn } from 'node:child_process';
import { tlsConnect } from '../src/transport/tls.js';
import { makeCert } from '../test/helpers/tls-cert.js';

const arg = (k: string, d: number): number =>
  Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d);
const MIB = arg('mib', 256);
const REPS = arg('reps', 3);
const cert = makeCert();
const server = spawn(
  process.execPath,
  [
    '--input-type=module',
    '-e',
    `import { createServer } from 'node:tls';
     const chunk = Buffer.alloc(1 << 20, 7);
     const s = createServer({ cert: process.env.C, key: process.env.K, ciphers: 'TLS_AES_128_GCM_SHA256' }, (c) => {
       c.on('error', () => {});
       let left = ${MIB};
       const more = () => { while (left > 0) { left--; if (!c.write(chunk)) return void c.once('drain', more); } c.end(); };
       more();
     });
     s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));`,
  ],
  { env: { ...process.env, C: cert.cert, K: cert.key }, stdio: ['ignore', 'pipe', 'inherit'] },
);
const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout!.on('data', (d: Buffer) => {
      const m = /port (\d+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    });
    server.once('exit', () => reject(new Error('the TLS server exited')));
  });
  const once = async (fp: 'chrome' | 'node'): Promise<{ mbps: number; cpuMsPerMb: number }> => {
    const s = await tlsConnect(
      { host: '127.0.0.1', port },
      // lendReads: as `ladder client` reads plain Trojan; this reader keeps no chunk.
      { sni: 'localhost', pinSha256: cert.pin, fp, timeoutMs: 10_000, lendReads: true },
    );
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      s.on('data', (d: Buffer) => (bytes += d.length));
      s.on('end', resolve);
      s.on('error', reject);
      setTimeout(() => reject(new Error('bulk timed out')), 120_000).unref();
    });
    s.destroy();
    const c = process.cpuUsage(c0);
    if (bytes !== MIB << 20) throw new Error(`got ${bytes} bytes`);
    const mb = bytes / 1e6;
    return {
      mbps: mb / ((performance.now() - t0) / 1000),
      cpuMsPerMb: (c.user + c.system) / 1000 / mb,
    };
  };
  const r: Record<string, { mbps: number[]; cpu: number[] }> = {
    node: { mbps: [], cpu: [] },
    chrome: { mbps: [], cpu: [] },
  };
  for (let i = 0; i < REPS; i++)
    for (const fp of ['node', 'chrome'] as const) {
      const x = await once(fp);
      r[fp]!.mbps.push(x.mbps);
      r[fp]!.cpu.push(x.cpuMsPerMb);
    }
  for (const fp of ['node', 'chrome'])
    console.log(
      `fp=${fp.padEnd(6)} ${median(r[fp]!.mbps).toFixed(0)} MB/s, client CPU ${median(r[fp]!.cpu).toFixed(2)} ms/MB (median of ${REPS}, ${MIB} MiB each)`,
    );
  console.log(
    `ratio chrome/node: throughput ${(median(r.chrome!.mbps) / median(r.node!.mbps)).toFixed(2)}x, CPU per MB ${(median(r.chrome!.cpu) / median(r.node!.cpu)).toFixed(2)}x`,
  );
} finally {
  server.kill('SIGTERM');
  cert.remove();
}
