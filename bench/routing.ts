/**
 * `npm run bench:routing`: how fast the rule matcher loads and decides (src/routing/rules.ts), and
 * what it costs in memory. 100,000 domain rules (DOMAIN-SUFFIX, DOMAIN, a few keywords) and 10,000
 * CIDRs (IPv4 and IPv6), then 1,000,000 decisions over a mix of names and addresses that match early,
 * late and not at all. Pure CPU, no network. Never run as a test; docs/benchmarks.md has the figures.
 */
import { performance } from 'node:perf_hooks';
import { NEEDS_ADDRESS, parseRules, type RouteQuery } from '../src/routing/rules.js';

const DOMAINS = 100_000;
const CIDRS = 10_000;
const DECISIONS = 1_000_000;

/** A deterministic generator (xorshift32), so every run measures the same rules. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const rand = rng(0x1adde7);
const word = (): string => Math.floor(rand() * 36 ** 6).toString(36);
const lines: string[] = [];
const names: string[] = [];
for (let i = 0; i < DOMAINS; i++) {
  const d = `${word()}.${['com', 'cn', 'net', 'org', 'lab'][i % 5]}`;
  names.push(d);
  lines.push(`${i % 4 === 0 ? 'DOMAIN' : 'DOMAIN-SUFFIX'},${d},${i % 2 ? 'DIRECT' : 'PROXY'}`);
  if (i % 10_000 === 0) lines.push(`DOMAIN-KEYWORD,${word()},REJECT`);
}
const addrs: string[] = [];
for (let i = 0; i < CIDRS; i++) {
  if (i % 10 === 0) {
    const g = Math.floor(rand() * 0xffff).toString(16);
    lines.push(`IP-CIDR6,2001:${g}::/32,DIRECT,no-resolve`);
    addrs.push(`2001:${g}::1`);
  } else {
    const a = Math.floor(rand() * 2 ** 32);
    const len = 8 + Math.floor(rand() * 17);
    const ip = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    lines.push(`IP-CIDR,${ip}/${len},DIRECT,no-resolve`);
    addrs.push(ip);
  }
}
lines.push('MATCH,PROXY');
const text = lines.join('\n');

/** CPU time (user + system) of this process since `from`, in ms: less disturbed by other load. */
function cpuMs(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
}

const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
const heap0 = process.memoryUsage().heapUsed;
const c0 = process.cpuUsage();
const t0 = performance.now();
const table = parseRules(text, 'bench', { read: () => ({ text: '', name: '' }) });
const loadMs = performance.now() - t0;
const loadCpuMs = cpuMs(c0);
gc?.();
const heapMiB = (process.memoryUsage().heapUsed - heap0) / 2 ** 20;

const queries: RouteQuery[] = [];
for (let i = 0; i < 4096; i++) {
  const k = i % 4;
  const host =
    k === 0
      ? `www.${names[Math.floor(rand() * names.length)]}`
      : k === 1
        ? `${word()}.${word()}.example`
        : k === 2
          ? addrs[Math.floor(rand() * addrs.length)]!
          : `${Math.floor(rand() * 223) + 1}.${Math.floor(rand() * 255)}.0.1`;
  queries.push({ host, port: 443, network: 'tcp' });
}
let sink = 0;
for (let i = 0; i < 100_000; i++) sink += table.match(queries[i & 4095]!); // warm-up
const c1 = process.cpuUsage();
const t1 = performance.now();
for (let i = 0; i < DECISIONS; i++) {
  const r = table.match(queries[i & 4095]!);
  if (r === NEEDS_ADDRESS) throw new Error('no resolving rule here');
  sink += r;
}
const decideNs = ((performance.now() - t1) * 1e6) / DECISIONS;
const decideCpuNs = (cpuMs(c1) * 1e6) / DECISIONS;

console.log(`rules: ${DOMAINS} domain + ${CIDRS} CIDR (${table.rules.length} lines)`);
console.log(
  `load:   ${loadMs.toFixed(0)} ms wall, ${loadCpuMs.toFixed(0)} ms CPU (target ≤ 1000 ms)`,
);
console.log(
  `decide: ${decideNs.toFixed(0)} ns wall, ${decideCpuNs.toFixed(0)} ns CPU per connection, mean of ${DECISIONS} (target ≤ 2000 ns)`,
);
console.log(
  `memory: ${heapMiB.toFixed(1)} MiB of heap for the table${gc ? '' : ' (run with --expose-gc for a steadier figure)'}`,
);
if (sink === 0.5) console.log(''); // keep the loop's result alive
