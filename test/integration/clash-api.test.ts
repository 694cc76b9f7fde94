// The Clash-compatible API of `ladder client --ui`, driven with the requests Clash dashboards make
// (from Clash's documented external-controller API: en.clash.wiki/runtime/external-controller):
// bearer secret, /version, /configs, /proxies and selecting a member of a group, /rules,
// /connections and closing one, and the /traffic and /logs streams, as chunked JSON lines and over
// a WebSocket. A real Ladder server and client on loopback; a ladder:// key with two transports.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { freePort, startLadder, type Peer } from '../helpers/peers.js';
import { formatLadderKey } from '../../src/codec/ladder-key.js';

const userinfo = Buffer.from('chacha20-ietf-poly1305:clash-api-test-password').toString(
  'base64url',
);

describe('Clash API of ladder client --ui', { timeout: 90_000 }, () => {
  let origin: Origin;
  let server: Peer;
  let client: Peer;
  let base: URL;
  let secret = '';
  let socks = 0;
  const dir = mkdtempSync(join(tmpdir(), 'ladder-clash-api-'));
  const running: ChildProcess[] = [];

  const api = (path: string, init: RequestInit & { auth?: string | null } = {}) =>
    fetch(new URL(path, base), {
      ...init,
      headers: {
        ...(init.auth === null ? {} : { Authorization: `Bearer ${init.auth ?? secret}` }),
        ...(init.body ? { 'Content-Type': 'application/json' } : {}),
      },
    });

  before(async () => {
    origin = await startOrigin();
    const sp = await freePort();
    const ss = `ss://${userinfo}@127.0.0.1:${sp}`;
    server = await startLadder([
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${sp}`,
      '--key',
      ss,
    ]);
    socks = await freePort();
    const key = formatLadderKey({ transports: [`${ss}#first`, `${ss}#second`], name: 'Two' });
    client = await startLadder(
      [
        'client',
        '--server',
        key,
        '--ui',
        `127.0.0.1:${await freePort()}`,
        '--socks',
        `127.0.0.1:${socks}`,
        '--no-http',
        '--ui-keys',
        join(dir, 'keys.json'),
      ],
      /control page at (http:\/\/\S+)/,
    );
    const url = new URL(/control page at (http:\/\/\S+)/.exec(client.output())![1]!);
    secret = new URLSearchParams(url.hash.slice(1)).get('token')!;
    base = new URL(url.origin);
  });
  after(async () => {
    for (const c of running) c.kill();
    await client?.stop();
    await server?.stop();
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the secret is required; an unknown route is 404', async () => {
    assert.equal((await api('/version', { auth: null })).status, 401);
    assert.equal((await api('/version', { auth: 'not-the-secret' })).status, 401);
    const r = await api('/no-such-route');
    assert.equal(r.status, 404);
    assert.match(((await r.json()) as { message: string }).message, /no route/);
    const pre = await fetch(new URL('/proxies', base), { method: 'OPTIONS' });
    assert.equal(pre.status, 204);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /Authorization/);
  });

  test('/version and /configs', async () => {
    const v = (await (await api('/version')).json()) as { version: string };
    assert.match(v.version, /^ladder-/);
    const c = (await (await api('/configs')).json()) as Record<string, unknown>;
    assert.equal(c['socks-port'], socks);
    assert.equal(c.mode, 'rule');
    const p = await api('/configs', { method: 'PATCH', body: JSON.stringify({ mode: 'rule' }) });
    assert.equal(p.status, 204);
  });

  test('/proxies lists the transports; PUT /proxies/PROXY selects one', async () => {
    type P = { proxies: Record<string, { type: string; all?: string[]; now?: string }> };
    const p = (await (await api('/proxies')).json()) as P;
    assert.equal(p.proxies.PROXY?.type, 'Selector');
    assert.deepEqual(p.proxies.PROXY?.all, ['auto', 'first', 'second']);
    assert.equal(p.proxies.PROXY?.now, 'auto');
    assert.equal(p.proxies.first?.type, 'Shadowsocks');
    assert.equal(p.proxies.GLOBAL?.type, 'Selector');

    const put = (group: string, name: string) =>
      api(`/proxies/${encodeURIComponent(group)}`, {
        method: 'PUT',
        body: JSON.stringify({ name }),
      });
    assert.equal((await put('PROXY', 'second')).status, 204);
    const one = (await (await api('/proxies/PROXY')).json()) as { now: string };
    assert.equal(one.now, 'second');
    assert.equal((await put('PROXY', 'nope')).status, 400);
    assert.equal((await put('nope', 'second')).status, 404);
    const bad = await api('/proxies/PROXY', { method: 'PUT', body: '{not json' });
    assert.equal(bad.status, 400);
    assert.equal((await put('PROXY', 'auto')).status, 204);
  });

  test('/rules', async () => {
    const r = (await (await api('/rules')).json()) as { rules: unknown[] };
    assert.deepEqual(r.rules, []);
  });

  test('/connections lists an open connection; DELETE /connections/:id closes it', async () => {
    const curl = spawn('curl', [
      '-s',
      '-o',
      '/dev/null',
      '--limit-rate',
      '100k',
      '--max-time',
      '60',
      '--socks5-hostname',
      `127.0.0.1:${socks}`,
      `http://127.0.0.1:${origin.port}/bytes/20000000`,
    ]);
    running.push(curl);
    type C = {
      connections: { id: string; metadata: { destinationIP: string; destinationPort: string } }[];
      downloadTotal: number;
    };
    // Poll until curl's connection is listed (bounded by a deadline, not deciding the outcome).
    let listed: C['connections'][number] | undefined;
    for (const end = Date.now() + 20_000; !listed && Date.now() < end;) {
      const c = (await (await api('/connections')).json()) as C;
      listed = c.connections.find((x) => x.metadata.destinationPort === String(origin.port));
      if (!listed) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(listed, 'the connection is listed');
    assert.equal(listed.metadata.destinationIP, '127.0.0.1');
    const exited = new Promise<number | null>((r) => curl.once('exit', (c) => r(c)));
    assert.equal((await api(`/connections/${listed.id}`, { method: 'DELETE' })).status, 204);
    assert.notEqual(await exited, 0, 'curl saw its download cut');
    assert.equal((await api(`/connections/${listed.id}`, { method: 'DELETE' })).status, 404);
  });

  test('/traffic and /logs stream JSON lines', async () => {
    const ac = new AbortController();
    const t = await api('/traffic', { signal: ac.signal });
    assert.equal(t.status, 200);
    const reader = t.body!.getReader();
    const { value } = await reader.read();
    const first = JSON.parse(Buffer.from(value!).toString('utf8').split('\n')[0]!) as object;
    assert.deepEqual(Object.keys(first).sort(), ['down', 'up']);
    ac.abort();

    const ac2 = new AbortController();
    const l = await api('/logs?level=info', { signal: ac2.signal });
    assert.equal(l.status, 200);
    const lr = l.body!.getReader();
    const next = lr.read();
    // Selecting a transport writes a log line.
    await api('/proxies/PROXY', { method: 'PUT', body: JSON.stringify({ name: 'first' }) });
    const line = JSON.parse(
      Buffer.from((await next).value!)
        .toString('utf8')
        .split('\n')[0]!,
    ) as {
      type: string;
      payload: string;
    };
    assert.equal(line.type, 'info');
    assert.match(line.payload, /transport: first/);
    ac2.abort();
  });

  test('/traffic over a WebSocket with ?token=, and without it 401', async () => {
    const upgrade = (path: string) =>
      new Promise<Buffer>((resolve, reject) => {
        const s = connect(Number(base.port), base.hostname, () => {
          s.write(
            `GET ${path} HTTP/1.1\r\nHost: ${base.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
              `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          );
        });
        let got = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          const end = got.indexOf('\r\n\r\n');
          // The 101 head and at least one frame header with its payload, or a refusal.
          if (
            end >= 0 &&
            (!got.subarray(0, 12).toString().includes('101') || got.length > end + 6)
          ) {
            s.destroy();
            resolve(got);
          }
        });
        s.on('error', reject);
        s.on('close', () => resolve(got));
      });
    const ok = await upgrade(`/traffic?token=${encodeURIComponent(secret)}`);
    assert.match(ok.toString('latin1'), /^HTTP\/1\.1 101 /);
    const frame = ok.subarray(ok.indexOf('\r\n\r\n') + 4);
    assert.equal(frame[0], 0x81, 'a final text frame');
    const len = frame[1]! & 0x7f;
    assert.deepEqual(Object.keys(JSON.parse(frame.subarray(2, 2 + len).toString())).sort(), [
      'down',
      'up',
    ]);
    const refused = await upgrade('/traffic?token=wrong');
    assert.match(refused.toString('latin1'), /^HTTP\/1\.1 401 /);
  });
});
