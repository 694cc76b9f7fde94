// `ladder probe` end to end on loopback, without root: a Ladder server as the tunnel, a "local"
// resolver that lies about one name and a truthful control resolver, an origin, and servers that
// misbehave the ways censors make servers look (silent after the first data, reset after it). The
// lab test (test/lab/probe.test.ts) does the same against real censor modules.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LADDER_CLI, freePort, startLadder, type Peer } from '../helpers/peers.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { closedPort } from '../helpers/echo.js';

const userinfo = Buffer.from('chacha20-ietf-poly1305:probe-test-password').toString('base64url');
const key = (port: number) => `ss://${userinfo}@127.0.0.1:${port}#probe-test`;

function probe(
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [LADDER_CLI, 'probe', ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? ((error as { code?: number }).code ?? null) : 0,
          out: stdout,
          err: stderr,
        }),
    );
  });
}

const lines = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.trim())
    .map(
      (l) =>
        JSON.parse(l) as { test_name: string; input: string; test_keys: Record<string, unknown> },
    );

/** A TCP server that accepts and then, on the first data, stays silent or resets. */
async function misbehaving(
  mode: 'silent' | 'reset',
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.on('close', () => sockets.delete(s));
    s.once('data', () => {
      if (mode === 'reset') s.resetAndDestroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('ladder probe on loopback', { timeout: 120_000 }, () => {
  let origin: Origin;
  let local: DnsServer;
  let controlDns: DnsServer;
  let server: Peer;
  let serverPort: number;
  let silent: Awaited<ReturnType<typeof misbehaving>>;
  let reset: Awaited<ReturnType<typeof misbehaving>>;
  const dir = mkdtempSync(join(tmpdir(), 'ladder-probe-'));

  before(async () => {
    origin = await startOrigin();
    local = await startDnsServer({ 'site.test': ['127.0.0.1'], 'poisoned.test': ['127.0.0.2'] });
    controlDns = await startDnsServer({
      'site.test': ['127.0.0.1'],
      'poisoned.test': ['127.0.0.1'],
    });
    serverPort = await freePort();
    server = await startLadder([
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${serverPort}`,
      '--key',
      key(serverPort),
    ]);
    silent = await misbehaving('silent');
    reset = await misbehaving('reset');
  });
  after(async () => {
    await server?.stop();
    await origin?.close();
    await local?.close();
    await controlDns?.close();
    await silent?.close();
    await reset?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const common = () => [
    '--resolver',
    `127.0.0.1:${local.port}`,
    '--control-resolver',
    `127.0.0.1:${controlDns.port}`,
    '--check-url',
    `http://127.0.0.1:${origin.port}/hello`,
    '--timeout',
    '1.5',
    '--backoff',
    '0',
  ];

  test('web connectivity: accessible, DNS-poisoned, and down for everyone', async () => {
    const file = join(dir, 'web.jsonl');
    const r = await probe([
      '--key',
      key(serverPort),
      '--only',
      'web',
      ...common(),
      '--json',
      file,
      `http://site.test:${origin.port}/hello`,
      `http://poisoned.test:${origin.port}/hello`,
      `http://gone.test:${origin.port}/hello`,
    ]);
    assert.equal(r.code, 0, r.err + r.out);
    const m = lines(readFileSync(file, 'utf8'));
    assert.equal(m.length, 3);
    const by = (host: string) => m.find((x) => x.input.includes(host))!.test_keys;
    assert.ok(m.every((x) => x.test_name === 'web_connectivity'));

    const site = by('site.test');
    assert.equal(site.blocking, false);
    assert.equal(site.accessible, true);
    assert.equal(site.dns_consistency, 'consistent');
    assert.equal(site.body_length_match, true);
    assert.equal((site.requests as { response: { code: number } }[])[0]!.response.code, 200);

    const poisoned = by('poisoned.test');
    assert.equal(poisoned.dns_consistency, 'inconsistent');
    assert.equal(poisoned.blocking, 'dns');
    assert.equal(poisoned.accessible, false);
    assert.deepEqual((poisoned.control as { dns: { addrs: string[] } }).dns.addrs, ['127.0.0.1']);

    const gone = by('gone.test');
    assert.equal(gone.dns_experiment_failure, 'dns_nxdomain_error');
    assert.equal(gone.dns_consistency, 'consistent');
    assert.equal(gone.blocking, false);
    assert.equal(gone.accessible, false);

    assert.match(r.out, /3 URLs measured, 1 accessible, 1 blocked \(dns 1\)/);
    assert.ok(
      controlDns.seen.includes('poisoned.test A'),
      'the control resolver was asked through the tunnel',
    );
  });

  test('transport check: one key gets through, the others are refused, silenced, reset', async () => {
    const r = await probe([
      '--key',
      key(serverPort),
      '--key',
      key(await closedPort()),
      '--key',
      key(silent.port),
      '--key',
      key(reset.port),
      '--only',
      'transports',
      '--attempts',
      '2',
      ...common(),
      '--json',
    ]);
    assert.equal(r.code, 0, r.err);
    const m = lines(r.out);
    assert.equal(m.length, 4);
    assert.ok(m.every((x) => x.test_name === 'ladder_transport_check'));
    const k = m.map((x) => [x.test_keys.status, x.test_keys.technique]);
    assert.deepEqual(k, [
      ['ok', 'none'],
      ['blocked', 'refused'],
      ['blocked', 'data-drop'],
      ['blocked', 'data-reset'],
    ]);
    assert.match(
      r.err,
      /GETS THROUGH \(2\/2\)/,
      'the tables go to stderr when JSON goes to stdout',
    );
    assert.ok(
      !r.out.includes('probe-test-password') && !r.err.includes('probe-test-password'),
      'no secret in any output',
    );
  });

  test('a download frozen after 20 KB: it ends as stalled, a fresh connection still works, byte-budget named', async () => {
    // An origin that answers with 20,000 bytes of a longer body, then nothing: no byte, no end.
    const held = new Set<Socket>();
    const frozen = createServer((c) => {
      held.add(c);
      c.on('error', () => c.destroy());
      c.once('data', () => {
        c.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n');
        c.write(Buffer.alloc(20_000, 0x61));
      });
    });
    await new Promise<void>((r) => frozen.listen(0, '127.0.0.1', r));
    try {
      const r = await probe([
        '--key',
        key(serverPort),
        '--only',
        'transports',
        '--attempts',
        '1',
        ...common(),
        '--throughput-url',
        `http://127.0.0.1:${(frozen.address() as AddressInfo).port}/big`,
        '--json',
      ]);
      assert.equal(r.code, 0, r.err);
      const k = lines(r.out)[0]!.test_keys;
      const th = k.throughput as { bytes: number; end: string };
      assert.equal(th.end, 'stall', r.err);
      assert.ok(th.bytes >= 20_000 && th.bytes < 20_200, `${th.bytes} bytes`);
      assert.equal((k.recheck as { attempt: { kind: string } }).attempt.kind, 'ok');
      assert.match(r.err, /\[byte-budget\] [^\n]*stopped after \d+ bytes and stayed silent/);
      assert.doesNotMatch(r.err, /\[volume-ban\]/);
    } finally {
      for (const c of held) c.destroy();
      frozen.close();
    }
  });

  test('usage errors name the fix', async () => {
    const noKey = await probe(['http://a.test/']);
    assert.equal(noKey.code, 2);
    assert.match(noKey.err, /--key <uri>/);
    const badOnly = await probe(['--key', key(serverPort), '--only', 'everything']);
    assert.equal(badOnly.code, 2);
    assert.match(badOnly.err, /--only takes 'web' or 'transports'/);
    const badUrl = await probe([
      '--key',
      key(serverPort),
      '--resolver',
      '127.0.0.1:9',
      'ftp://a.test/',
    ]);
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.err, /only http:\/\/ and https:\/\//);
  });
});
