/**
 * `node dist/bench/chrome-tls-handshake.js [--n=200]`: the client CPU of one TLS handshake with
 * Ladder's fp=chrome client against Node's (fp=node), to the same loopback Node TLS server in a
 * child process, and the ML-KEM-768 part (key generation + decapsulation) on its own. Sequential,
 * bounded by --n; CPU is this process's user+system time per handshake. Never run as a test.
 */
import { spawn } from 'node:child_process';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { tlsConnect } from '../src/transport/tls.js';
import { makeCert } from '../test/helpers/tls-cert.js';

const n = Number(process.argv.find((a) => a.startsWith('--n='))?.slice(4) ?? 200);
const cert = makeCert();
const server = spawn(
  process.execPath,
  [
    '--input-type=module',
    '-e',
    `import { createServer } from 'node:tls';
     const s = createServer({ cert: process.env.C, key: process.env.K }, (c) => { c.on('error', () => {}); c.end(); });
     s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));`,
  ],
  { env: { ...process.env, C: cert.cert, K: cert.key }, stdio: ['ignore', 'pipe', 'inherit'] },
);
try {
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout!.on('data', (d: Buffer) => {
      const m = /port (\d+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    });
    server.once('exit', () => reject(new Error('the TLS server exited')));
  });
  const cpuPer = async (fp: 'chrome' | 'node'): Promise<{ cpuMs: number; wallMs: number }> => {
    const one = async (): Promise<void> => {
      const s = await tlsConnect(
        { host: '127.0.0.1', port },
        { sni: 'localhost', pinSha256: cert.pin, fp, resume: false, timeoutMs: 10_000 },
      );
      s.destroy();
    };
    for (let i = 0; i < 20; i++) await one(); // warm-up
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await one();
    const c = process.cpuUsage(c0);
    return { cpuMs: (c.user + c.system) / 1000 / n, wallMs: (performance.now() - t0) / n };
  };
  const node = await cpuPer('node');
  const chrome = await cpuPer('chrome');
  const kem = (() => {
    const k = ml_kem768.keygen();
    const { cipherText } = ml_kem768.encapsulate(k.publicKey);
    for (let i = 0; i < 20; i++) ml_kem768.decapsulate(cipherText, ml_kem768.keygen().secretKey);
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) ml_kem768.decapsulate(cipherText, ml_kem768.keygen().secretKey);
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000 / n;
  })();
  console.log(`handshakes: ${n} each, client CPU per handshake (ms), wall per handshake (ms)`);
  console.log(`fp=node    cpu ${node.cpuMs.toFixed(2)}  wall ${node.wallMs.toFixed(2)}`);
  console.log(`fp=chrome  cpu ${chrome.cpuMs.toFixed(2)}  wall ${chrome.wallMs.toFixed(2)}`);
  console.log(`  of which ML-KEM-768 keygen + decapsulate: cpu ${kem.toFixed(2)}`);
  console.log(`ratio chrome/node CPU: ${(chrome.cpuMs / node.cpuMs).toFixed(2)}x`);
} finally {
  server.kill('SIGTERM');
  cert.remove();
}
