/**
 * `ladder keys` as a child process, the way scripts and people use it: the key on the first line, a
 * QR code only on a terminal, the password hidden by `keys parse`, exit code 2 for usage mistakes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SS_METHOD_NAMES, SS_METHODS } from '../crypto/methods.js';
import { parseSsUri } from '../codec/access-key-uri.js';
import { parseTrojanUri } from '../codec/trojan-uri.js';

/** The built CLI, next to this compiled test (dist/src/cli/main.js). */
const CLI = fileURLToPath(new URL('./main.js', import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ladder(args: string[], timeoutMs = 20_000): Promise<Result> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('keys new into a pipe: one line, the key, with the defaults', async () => {
  const r = await ladder(['keys', 'new']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.deepEqual(lines.slice(1), [''], 'exactly one line and no QR code into a pipe');
  const k = parseSsUri(lines[0]!);
  assert.deepEqual(
    [k.method, k.host, k.port],
    ['2022-blake3-aes-256-gcm', '127.0.0.1', 8388],
    'defaults',
  );
});

test('keys new for every method: the first line parses back to what was asked', async () => {
  for (const method of SS_METHOD_NAMES) {
    const r = await ladder([
      'keys',
      'new',
      '--method',
      method,
      '--host',
      '2001:2::10',
      '--port',
      '8443',
      '--name',
      'Office #2',
      '--prefix',
      '%16%03%01%00%C2%A8%01%01',
    ]);
    assert.equal(r.code, 0, `${method}: ${r.stderr}`);
    const first = r.stdout.split('\n')[0]!;
    assert.match(first, /@\[2001:2::10\]:8443\/\?prefix=/, 'IPv6 in brackets');
    const k = parseSsUri(first);
    assert.equal(k.method, method);
    assert.equal(k.host, '2001:2::10');
    assert.equal(k.port, 8443);
    assert.equal(k.tag, 'Office #2');
    assert.equal(Buffer.from(k.prefix!).toString('hex'), '16030100a80101');
    if (SS_METHODS[method].edition === 2022)
      assert.equal(Buffer.from(k.password, 'base64').length, SS_METHODS[method].keySize);
  }
});

test('keys new: two keys never share a password', async () => {
  const [a, b] = await Promise.all([
    ladder(['keys', 'new', '--method', 'aes-256-gcm']),
    ladder(['keys', 'new', '--method', 'aes-256-gcm']),
  ]);
  const pa = parseSsUri(a.stdout.split('\n')[0]!).password;
  const pb = parseSsUri(b.stdout.split('\n')[0]!).password;
  assert.notEqual(pa, pb);
});

test('keys new --json: one JSON line whose uri is the key', async () => {
  const r = await ladder(['keys', 'new', '--method', 'aes-128-gcm', '--name', 'n', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(
    { method: j.method, host: j.host, port: j.port, tag: j.tag },
    { method: 'aes-128-gcm', host: '127.0.0.1', port: 8388, tag: 'n' },
  );
  assert.equal(parseSsUri(j.uri as string).method, 'aes-128-gcm');
});

test('keys new on a terminal: the key first, then a QR code', async (t) => {
  // util-linux script(1) gives the child a pseudo-terminal.
  if (spawnSync('script', ['--version']).status !== 0) {
    t.skip('script(1) is not installed');
    return;
  }
  const cmd = `'${process.execPath}' '${CLI}' keys new --method aes-256-gcm`;
  const r = spawnSync('script', ['-q', '-e', '-c', cmd, '/dev/null'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split(/\r?\n/);
  assert.equal(parseSsUri(lines[0]!).method, 'aes-256-gcm');
  const art = lines.slice(1).filter((l) => /[█▀▄]/.test(l));
  assert.ok(art.length >= 10, `a QR code of at least 10 lines follows, got ${art.length}`);
});

test('keys new with an unknown method: exit 2 and the list of supported methods', async () => {
  const r = await ladder(['keys', 'new', '--method', 'aes-512-gcm']);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /unknown method 'aes-512-gcm'; supported: aes-128-gcm, aes-256-gcm, /);
});

test('usage mistakes exit 2 and name the flag', async () => {
  const flag = await ladder(['keys', 'new', '--prot', '1']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--prot/);
  const port = await ladder(['keys', 'new', '--port', '70000']);
  assert.equal(port.code, 2);
  assert.match(port.stderr, /--port '70000' is not a number from 1 to 65535/);
  const prefix = await ladder(['keys', 'new', '--method', 'aes-128-gcm', '--prefix', 'HTTP/1.1 ']);
  assert.equal(prefix.code, 2);
  assert.match(prefix.stderr, /--prefix is 9 bytes; .* keep it to 8 or fewer/);
  const sub = await ladder(['keys', 'old']);
  assert.equal(sub.code, 2);
  assert.match(sub.stderr, /unknown subcommand 'old'/);
  const none = await ladder(['keys']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /ladder keys new/);
  const help = await ladder(['keys', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /ladder keys parse <ss-uri>/);
});

test('keys parse shows what a key holds and hides the password unless asked', async () => {
  const password = 'correct-horse-battery';
  const uri = `ss://${Buffer.from(`chacha20-ietf-poly1305:${password}`).toString('base64url')}@198.18.0.7:443/?outline=1&prefix=%16%03%01%00%C2%A8%01%01&plugin=obfs-local%3Bobfs%3Dhttp#Caf%C3%A9`;
  const plain = await ladder(['keys', 'parse', uri]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.ok(!plain.stdout.includes(password), 'no password by default');
  assert.match(plain.stdout, /^method\s+chacha20-ietf-poly1305$/m);
  assert.match(plain.stdout, /^host\s+198\.18\.0\.7$/m);
  assert.match(plain.stdout, /^port\s+443$/m);
  assert.match(plain.stdout, /^tag\s+Café$/m);
  assert.match(plain.stdout, /^prefixHex\s+16030100a80101$/m);
  assert.match(plain.stdout, /^plugin\s+\{"name":"obfs-local","options":\{"obfs":"http"\}\}$/m);

  const json = await ladder(['keys', 'parse', '--json', uri]);
  assert.equal(json.code, 0, json.stderr);
  const j = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.equal(j.password, undefined);
  assert.equal(j.prefixHex, '16030100a80101');

  const shown = await ladder(['keys', 'parse', '--show-secret', '--json', uri]);
  assert.equal((JSON.parse(shown.stdout) as Record<string, unknown>).password, password);
});

test('keys parse of a bad key: exit 1, the part named, the password not repeated', async () => {
  const password = 'do-not-print-me';
  const r = await ladder([
    'keys',
    'parse',
    `ss://${Buffer.from(`aes-256-gcm:${password}`).toString('base64url')}@198.18.0.7:99999`,
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the port '99999' is not a number from 1 to 65535/);
  assert.ok(!r.stderr.includes(password));
});

test('keys new --transport ws: an ss:// key with v2ray-plugin options, a fresh secret path, port 443', async () => {
  const a = await ladder(['keys', 'new', '--transport', 'ws', '--host', '198.18.0.10']);
  const b = await ladder(['keys', 'new', '--transport', 'ws', '--host', '198.18.0.10']);
  assert.equal(a.code, 0, a.stderr);
  const k = parseSsUri(a.stdout.split('\n')[0]!);
  assert.equal(k.port, 443);
  assert.equal(k.plugin?.name, 'v2ray-plugin');
  assert.match(k.plugin!.options.path!, /^\/[A-Za-z0-9_-]{16}$/);
  assert.deepEqual(
    { ...k.plugin!.options, path: 'x' },
    { path: 'x', host: '198.18.0.10', tls: '' },
    "v2ray-plugin's default, Mux.Cool, is left as it is",
  );
  assert.notEqual(
    parseSsUri(b.stdout.split('\n')[0]!).plugin!.options.path,
    k.plugin!.options.path,
  );
  const c = await ladder(['keys', 'new', '--transport', 'ws', '--no-mux', '--no-tls']);
  assert.deepEqual(
    { ...parseSsUri(c.stdout.split('\n')[0]!).plugin!.options, path: 'x' },
    { path: 'x', host: '127.0.0.1', mux: '0' },
  );
});

test('keys new --protocol trojan, over TLS and over a plain WebSocket for a CDN', async () => {
  const pin = 'AB:'.repeat(31) + 'AB';
  const t = await ladder([
    'keys',
    'new',
    '--protocol',
    'trojan',
    '--sni',
    'a.example',
    '--pin',
    pin,
  ]);
  assert.equal(t.code, 0, t.stderr);
  const k = parseTrojanUri(t.stdout.split('\n')[0]!);
  assert.deepEqual(
    [k.port, k.sni, k.pinSha256, k.type],
    [443, 'a.example', 'ab'.repeat(32), undefined],
  );
  assert.ok(k.password.length >= 32);
  const w = await ladder([
    'keys',
    'new',
    '--protocol',
    'trojan',
    '--transport',
    'ws',
    '--no-tls',
    '--path',
    '/tunnel',
    '--ws-host',
    'cdn.example',
    '--port',
    '80',
    '--json',
  ]);
  assert.equal(w.code, 0, w.stderr);
  const j = JSON.parse(w.stdout) as { uri: string; path: string; tls: boolean };
  assert.deepEqual([j.path, j.tls], ['/tunnel', false]);
  const kw = parseTrojanUri(j.uri);
  assert.deepEqual(
    [kw.type, kw.path, kw.wsHost, kw.security, kw.port],
    ['ws', '/tunnel', 'cdn.example', 'none', 80],
  );
  assert.equal(kw.mux, undefined, 'no Mux.Cool unless asked: trojan-gfw servers know none');
  const m = await ladder(['keys', 'new', '--protocol', 'trojan', '--mux', '8', '--json']);
  assert.equal(m.code, 0, m.stderr);
  const jm = JSON.parse(m.stdout) as { uri: string; mux: number };
  assert.equal(jm.mux, 8);
  assert.equal(parseTrojanUri(jm.uri).mux, 8);
});

test('keys new: transport flags that do not fit are usage errors (exit 2) naming the flag', async () => {
  for (const [args, re] of [
    [['--transport', 'quic'], /--transport 'quic'/],
    [['--protocol', 'vmess'], /--protocol 'vmess'/],
    [['--path', '/x'], /--path is for WebSocket keys/],
    [['--protocol', 'trojan', '--method', 'aes-256-gcm'], /--method and --prefix are for ss keys/],
    [['--transport', 'ws', '--pin', 'abc'], /--pin must be the 64 hex digits/],
    [['--transport', 'ws', '--path', 'no-slash'], /--path 'no-slash' must start with '\/'/],
    [['--transport', 'ws', '--no-tls', '--pin', 'ab'.repeat(32)], /--pin needs TLS/],
    [['--protocol', 'trojan', '--transport', 'ws', '--no-mux'], /--no-mux is for ss keys/],
    [['--mux', '8'], /--mux is for trojan keys/],
    [['--protocol', 'trojan', '--mux', '0'], /--mux '0' must be the sessions per connection/],
    [['--protocol', 'trojan', '--mux', '2000'], /--mux '2000'/],
  ] as const) {
    const r = await ladder(['keys', 'new', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
});

test('keys parse: a trojan:// key, the password only with --show-secret', async () => {
  const uri =
    'trojan://hunter2-secret@198.18.0.1:443?security=tls&sni=s.example&type=ws&path=%2Fp#t';
  const r = await ladder(['keys', 'parse', uri, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    protocol: 'trojan',
    host: '198.18.0.1',
    port: 443,
    tag: 't',
    transport: 'ws',
    path: '/p',
    wsHost: 's.example',
    tls: true,
    sni: 's.example',
  });
  assert.doesNotMatch(r.stdout + r.stderr, /hunter2/);
  const s = await ladder(['keys', 'parse', uri, '--show-secret']);
  assert.match(s.stdout, /password\s+hunter2-secret/);
});
