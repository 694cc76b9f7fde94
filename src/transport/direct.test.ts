/**
 * The direct dialers against loopback only: TCP connects, refused ports, the allow hook, connect
 * timeouts and cancellation (against a listener whose accept queue is full, so SYNs go unanswered),
 * and UDP sessions by address and by name.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { hasCode } from '../errors.js';
import type { Target } from './types.js';
import { DirectDialer, DirectPacketDialer } from './direct.js';

let echo: Server;
let echoPort: number;
let accepted = 0;

before(async () => {
  echo = createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as AddressInfo).port;
});
after(() => new Promise<void>((r) => echo.close(() => r())));

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('connects, carries bytes both ways, half-closes', async () => {
  const s = await new DirectDialer().dial({ host: '127.0.0.1', port: echoPort });
  const got = new Promise<string>((r) => {
    let text = '';
    s.on('data', (d: Buffer) => (text += d));
    s.on('end', () => r(text));
  });
  s.end('ping');
  assert.equal(await got, 'ping');
  s.destroy();
});

test('a name is resolved (localhost, from /etc/hosts)', async () => {
  const s = await new DirectDialer().dial({ host: 'localhost', port: echoPort });
  s.destroy();
});

test('a closed port: ERR_DIAL_REFUSED, and the message does not name the target', async () => {
  const port = await closedPort();
  await assert.rejects(new DirectDialer().dial({ host: '127.0.0.1', port }), (e: unknown) => {
    assert.ok(hasCode(e, 'ERR_DIAL_REFUSED'));
    assert.doesNotMatch((e as Error).message, new RegExp(String(port)));
    return true;
  });
});

test('the allow hook refuses with ERR_DIAL_FORBIDDEN before any connection is made', async () => {
  const seen: [string, number][] = [];
  const dialer = new DirectDialer({
    allow: (host, port) => {
      seen.push([host, port]);
      return false;
    },
  });
  const before = accepted;
  await assert.rejects(dialer.dial({ host: '127.0.0.1', port: echoPort }), (e) =>
    hasCode(e, 'ERR_DIAL_FORBIDDEN'),
  );
  assert.deepEqual(seen, [['127.0.0.1', echoPort]]);
  // The dial was refused before any connect, so there is no event to wait for; the pause only gives
  // a connect that must not exist the chance to show up (it cannot make a correct dialer fail).
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(accepted, before, 'nothing reached the listener');
});

/**
 * A loopback port that never completes a handshake: a listener (python3, listen(0), never
 * accepting) whose one-slot accept queue we fill, after which the kernel drops further SYNs.
 */
async function blackHole(): Promise<{ port: number; close(): void } | null> {
  let child: ChildProcess;
  try {
    child = spawn(
      'python3',
      [
        '-c',
        'import socket,sys,time\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()',
      ],
      { stdio: ['pipe', 'pipe', 'ignore'] },
    );
  } catch {
    return null;
  }
  const port = await new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(null));
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(Number(l)));
  });
  if (!port) return null;
  const fillers: Socket[] = [];
  const close = (): void => {
    for (const f of fillers) f.destroy();
    child.kill(); // by its own handle: the process we started
  };
  // Fill the queue: connect until one connection hangs (bounded).
  for (let i = 0; i < 8; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
    const ok = await new Promise<boolean>((r) => {
      const t = setTimeout(() => r(false), 300);
      s.once('connect', () => {
        clearTimeout(t);
        r(true);
      });
    });
    if (!ok) return { port, close };
  }
  close();
  return null;
}

test('connect timeout: ERR_DIAL_TIMEOUT; an abort: ERR_ABORTED', async (t) => {
  const hole = await blackHole();
  if (!hole) return t.skip('needs python3 and a kernel that drops SYNs on a full accept queue');
  try {
    const target: Target = { host: '127.0.0.1', port: hole.port };
    await assert.rejects(new DirectDialer({ connectTimeoutMs: 200 }).dial(target), (e) =>
      hasCode(e, 'ERR_DIAL_TIMEOUT'),
    );
    const ac = new AbortController();
    const pending = new DirectDialer().dial(target, ac.signal);
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(pending, (e) => hasCode(e, 'ERR_ABORTED'));
    await assert.rejects(new DirectDialer().dial(target, AbortSignal.abort()), (e) =>
      hasCode(e, 'ERR_ABORTED'),
    );
  } finally {
    hole.close();
  }
});

test('UDP: one session reaches targets by address and by name; replies name their source', async () => {
  const server = createSocket('udp4');
  server.on('message', (m, r) =>
    server.send(Buffer.concat([Buffer.from('re:'), m]), r.port, r.address),
  );
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
  const port = server.address().port;
  const replies: { text: string; from: Target }[] = [];
  const session = new DirectPacketDialer().open((payload, from) =>
    replies.push({ text: payload.toString(), from }),
  );
  // UDP may drop: resend what is missing, a bounded number of rounds
  for (let i = 0; i < 20 && replies.length < 2; i++) {
    if (!replies.some((r) => r.text === 're:by address'))
      session.send(Buffer.from('by address'), { host: '127.0.0.1', port });
    if (!replies.some((r) => r.text === 're:by name'))
      session.send(Buffer.from('by name'), { host: 'localhost', port });
    await new Promise((r) => setTimeout(r, 50));
  }
  session.close();
  session.send(Buffer.from('after close'), { host: '127.0.0.1', port }); // ignored, no throw
  server.close();
  assert.deepEqual(replies.map((r) => r.text).sort(), ['re:by address', 're:by name']);
  for (const r of replies) assert.deepEqual(r.from, { host: '127.0.0.1', port });
});

test('UDP over IPv6 loopback', async (t) => {
  const server = createSocket('udp6');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.bind(0, '::1', resolve);
    });
  } catch {
    server.close();
    return t.skip('no IPv6 loopback');
  }
  server.on('message', (m, r) => server.send(m, r.port, r.address));
  const port = server.address().port;
  const got: Target[] = [];
  const session = new DirectPacketDialer().open((_p, from) => got.push(from));
  for (let i = 0; i < 20 && got.length === 0; i++) {
    session.send(Buffer.from('v6'), { host: '::1', port });
    await new Promise((r) => setTimeout(r, 50));
  }
  session.close();
  server.close();
  assert.deepEqual(got[0], { host: '::1', port });
});

test('bindAddress: each connection binds to the address it returns (the --tun bypass)', async () => {
  const seen: string[] = [];
  const server = createServer((s) => {
    seen.push(s.remoteAddress ?? '');
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  let address: string | undefined = '127.0.0.2';
  const d = new DirectDialer({ bindAddress: () => address });
  try {
    for (const expect of ['127.0.0.2', '127.0.0.1']) {
      const s = await d.dial({ host: '127.0.0.1', port });
      s.end();
      await new Promise((r) => s.once('close', r).resume());
      assert.equal(seen.pop(), expect);
      address = undefined;
    }
  } finally {
    server.close();
  }
});
