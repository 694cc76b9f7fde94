/**
 * The `ladder` command as scripts use it: the first line of `keys new` is the key, the listening
 * lines, exit codes, and messages that name the problem and the fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { parseSsUri } from '../../src/codec/access-key-uri.js';
import { LADDER_CLI, startLadder, freePort } from '../helpers/peers.js';
import { socksRequest } from '../helpers/socks5-client.js';
import { SOCKS_CMD, SOCKS_REPLY } from '../../src/codec/socks5.js';

function ladder(
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [LADDER_CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

test('keys new: the first stdout line is a SIP002 key; no QR code into a pipe', async () => {
  for (const method of ['aes-256-gcm', '2022-blake3-aes-256-gcm'] as const) {
    const r = await ladder([
      'keys',
      'new',
      '--method',
      method,
      '--host',
      '198.18.0.10',
      '--port',
      '8443',
      '--name',
      'Home server',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1, 'only the URI when stdout is not a terminal');
    const k = parseSsUri(lines[0]!);
    assert.deepEqual(
      [k.method, k.host, k.port, k.tag],
      [method, '198.18.0.10', 8443, 'Home server'],
    );
    if (method.startsWith('2022'))
      assert.match(
        lines[0]!,
        /^ss:\/\/2022-blake3-aes-256-gcm:[^@]+@/,
        'percent-encoded user info for 2022',
      );
    else assert.match(lines[0]!, /^ss:\/\/[A-Za-z0-9_-]+@/, 'base64url user info for AEAD-2017');
  }
});

test('keys new with an unknown method: exit 2 and the supported list', async () => {
  const r = await ladder(['keys', 'new', '--method', 'aes-512-gcm']);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /unknown method 'aes-512-gcm'; supported: aes-128-gcm, .*2022-blake3-chacha20-poly1305/,
  );
});

test('an unknown flag and an unknown command: exit 2, naming them', async () => {
  const a = await ladder(['server', '--lisen', '127.0.0.1:1']);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /--lisen/);
  const b = await ladder(['serve']);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /unknown command 'serve'/);
});

test('--help after a subcommand: its options, exit 0, for lab and keys alike', async () => {
  // Every `Run '... --help'` message must lead somewhere: lab's subcommands once refused it.
  for (const args of [
    ['lab', 'down', '--help'],
    ['lab', 'up', '-h'],
    ['keys', '--help'],
  ]) {
    const r = await ladder(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /--prefix|--data/, args.join(' '));
  }
});

test('client --mux-sessions outside 1..1024: exit 2, naming the flag and the range', async () => {
  for (const bad of ['0', '1025', 'many']) {
    const r = await ladder([
      'client',
      '--server',
      'trojan://pw@127.0.0.1:1?mux=8',
      '--mux-sessions',
      bad,
      '--no-http',
    ]);
    assert.equal(r.code, 2, bad);
    assert.match(r.stderr, /--mux-sessions '.*' must be the sessions per connection, 1 to 1024/);
  }
});

test('client --mux-connections outside 1..16: exit 2, naming the flag and the range', async () => {
  for (const bad of ['0', '17', 'two']) {
    const r = await ladder([
      'client',
      '--server',
      'trojan://pw@127.0.0.1:1?mux=8',
      '--mux-connections',
      bad,
      '--no-http',
    ]);
    assert.equal(r.code, 2, bad);
    assert.match(r.stderr, /--mux-connections '.*' must be the connections .*, 1 to 16/);
  }
});

test('client --first-payload-wait outside 1..60000 ms: exit 2, naming the flag and the range', async () => {
  for (const bad of ['0', '60001', '1.5', 'long']) {
    const r = await ladder([
      'client',
      '--server',
      'trojan://pw@127.0.0.1:1',
      '--first-payload-wait',
      bad,
      '--no-http',
    ]);
    assert.equal(r.code, 2, bad);
    assert.match(r.stderr, /--first-payload-wait '.*' must be milliseconds, 1 to 60000/);
  }
});

test('probe --allowlist-control that is not an http(s) URL: exit 2, naming the flag', async () => {
  for (const bad of ['allowed.example', 'ftp://allowed.example/']) {
    const r = await ladder([
      'probe',
      '--key',
      'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpw@127.0.0.1:1',
      '--only',
      'transports',
      '--allowlist-control',
      bad,
    ]);
    assert.equal(r.code, 2, bad);
    assert.match(
      r.stderr,
      /--allowlist-control '.*' (is not a URL|must be an http:\/\/ or https:\/\/ URL)/,
    );
  }
});

test('server: no key, a bad key, a port in use — each says what is wrong', async () => {
  const none = await ladder(['server', '--listen', '127.0.0.1:0']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /at least one --key/);
  const bad = await ladder([
    'server',
    '--listen',
    '127.0.0.1:0',
    '--key',
    'ss://YWVzLTI1Ni1nY206cHc@127.0.0.1:99999',
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--key #1: .*port '99999'/);
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const port = (busy.address() as AddressInfo).port;
  const inUse = await ladder([
    'server',
    '--listen',
    `127.0.0.1:${port}`,
    '--key',
    'ss://YWVzLTI1Ni1nY206cHc@127.0.0.1:1',
  ]);
  busy.close();
  assert.equal(inUse.code, 1);
  assert.match(inUse.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
});

test('server and client print their listening lines, and stop cleanly on SIGTERM', async () => {
  const sp = await freePort();
  const key = `ss://2022-blake3-aes-128-gcm:${encodeURIComponent(Buffer.alloc(16, 7).toString('base64'))}@127.0.0.1:${sp}`;
  const server = await startLadder([
    'server',
    '--allow-private-targets',
    '--listen',
    `127.0.0.1:${sp}`,
    '--key',
    key,
  ]);
  assert.match(server.output(), new RegExp(`listening on 127\\.0\\.0\\.1:${sp} \\(tcp\\+udp\\)`));
  const client = await startLadder(
    ['client', '--server', key, '--socks', '127.0.0.1:0', '--http', '127.0.0.1:0'],
    /HTTP proxy listening/,
  );
  assert.match(client.output(), /SOCKS5 listening on 127\.0\.0\.1:\d+/);
  await client.stop();
  await server.stop();
  assert.match(server.output(), /SIGTERM, closing/);
});

test('npm start (ladder demo) proves the tunnel on an embedded default', async () => {
  const r = await ladder(['demo', '--exit-after-check'], 30_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /access key \(2022-blake3-aes-256-gcm\)/);
  assert.match(r.stdout, /through the tunnel: SOCKS5 \d+ bytes, HTTP proxy \d+ bytes: OK/);
});

test('client --rules: a bad line, a missing file, a bad --geoip and stray flags each say what is wrong', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(`${tmpdir()}/ladder-rules-`);
  try {
    const key = `ss://2022-blake3-aes-128-gcm:${encodeURIComponent(Buffer.alloc(16, 7).toString('base64'))}@127.0.0.1:9`;
    const base = ['client', '--server', key, '--socks', '127.0.0.1:0', '--no-http'];
    writeFileSync(`${dir}/bad.txt`, 'DOMAIN,a.lab,DIRECT\nIP-CIDR,10.0.0.0/40,DIRECT\n');
    let r = await ladder([...base, '--rules', `${dir}/bad.txt`]);
    assert.equal(r.code, 2, 'a bad rule or database file is a usage error');
    assert.match(
      r.stderr,
      /bad\.txt:2: 'IP-CIDR,10\.0\.0\.0\/40,DIRECT': the prefix length '\/40' must be 0 to 32/,
    );
    r = await ladder([...base, '--rules', `${dir}/none.txt`]);
    assert.equal(r.code, 2, 'a bad rule or database file is a usage error');
    assert.match(r.stderr, /--rules .*none\.txt: cannot read it \(ENOENT\)/);
    writeFileSync(`${dir}/geo.txt`, 'GEOIP,CN,DIRECT\nMATCH,PROXY\n');
    writeFileSync(`${dir}/not.mmdb`, 'hello');
    r = await ladder([...base, '--rules', `${dir}/geo.txt`, '--geoip', `${dir}/not.mmdb`]);
    assert.equal(r.code, 2, 'a bad rule or database file is a usage error');
    assert.match(r.stderr, /not\.mmdb: not a usable MaxMind DB/);
    writeFileSync(`${dir}/rs.txt`, 'RULE-SET,missing.yaml,DIRECT\n');
    r = await ladder([...base, '--rules', `${dir}/rs.txt`]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /rs\.txt:1: 'RULE-SET,missing\.yaml,DIRECT': the rule-set file cannot be read/,
    );
    writeFileSync(`${dir}/and.txt`, 'AND,((DOMAIN,a.lab),(NETWORK,UDP)),REJECT\n');
    r = await ladder([...base, '--rules', `${dir}/and.txt`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /and\.txt:1: .*the rule type AND is not supported by Ladder/);
    r = await ladder([...base, '--rules', 'preset:cn', '--dns-remote', 'quic://dns.lab']);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /--dns-remote 'quic:\/\/dns\.lab': quic:\/\/ is not offered .*; give <ip:port> \(DNS over TCP\), tls:\/\/<host>\[:853\] \(DNS over TLS\) or https:\/\/<host>\[:443\]\/<path>/,
    );
    r = await ladder([...base, '--geoip', `${dir}/not.mmdb`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--geoip takes effect only with --rules/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('client --rules: no output line names a destination unless --log-connections', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(`${tmpdir()}/ladder-rules-log-`);
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = (echo.address() as AddressInfo).port;
  // The server is never dialled: every connection here is DIRECT or REJECT.
  const key = `ss://2022-blake3-aes-128-gcm:${encodeURIComponent(Buffer.alloc(16, 7).toString('base64'))}@127.0.0.1:9`;
  writeFileSync(
    `${dir}/rules.txt`,
    'DOMAIN-SUFFIX,reject.lab,REJECT\nIP-CIDR,127.0.0.0/8,DIRECT,no-resolve\nMATCH,PROXY\n',
  );
  try {
    for (const logging of [false, true]) {
      const c = spawn(
        process.execPath,
        [
          LADDER_CLI,
          'client',
          '--server',
          key,
          '--socks',
          '127.0.0.1:0',
          '--no-http',
          '--rules',
          `${dir}/rules.txt`,
          ...(logging ? ['--log-connections'] : []),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (out += d));
      const closed = new Promise((r) => c.on('close', r));
      try {
        let port: string | undefined;
        for (let i = 0; i < 4000 && port === undefined && c.exitCode === null; i++) {
          port = /SOCKS5 listening on 127\.0\.0\.1:(\d+)/.exec(out)?.[1];
          if (port === undefined) await new Promise((r) => setTimeout(r, 5));
        }
        assert.ok(port, out);
        const direct = await socksRequest(Number(port), SOCKS_CMD.CONNECT, {
          host: '127.0.0.1',
          port: echoPort,
        });
        direct.socket.destroy();
        assert.equal(direct.code, SOCKS_REPLY.SUCCEEDED);
        const refused = await socksRequest(Number(port), SOCKS_CMD.CONNECT, {
          host: 'www.reject.lab',
          port: 443,
        });
        refused.socket.destroy();
        assert.equal(refused.code, SOCKS_REPLY.NOT_ALLOWED);
      } finally {
        c.kill('SIGTERM');
        await closed; // every line the client wrote has been read
      }
      if (logging) {
        assert.match(
          out,
          new RegExp(`route tcp 127\\.0\\.0\\.1:${echoPort} → DIRECT \\(.*rules\\.txt:2 `),
        );
        assert.match(out, /route tcp www\.reject\.lab:443 → REJECT \(.*rules\.txt:1 /);
      } else {
        assert.doesNotMatch(out, /reject\.lab/, out);
        assert.ok(!out.includes(`:${echoPort}`), out);
      }
    }
  } finally {
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('client --rules preset:cn starts with the packaged country database', async () => {
  const key = `ss://2022-blake3-aes-128-gcm:${encodeURIComponent(Buffer.alloc(16, 7).toString('base64'))}@127.0.0.1:9`;
  const client = await startLadder(
    ['client', '--server', key, '--socks', '127.0.0.1:0', '--no-http', '--rules', 'preset:cn'],
    /routing by preset:cn/,
  );
  await client.stop();
});
