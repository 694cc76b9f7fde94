// The Clash API against hostile requests: random methods, paths and bodies get a JSON status
// (never a crash, never a hang), with and without the secret; unknown routes are left to the caller.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { ClashApi } from './clash-api.js';
import { ConnectionTable } from './connection-table.js';
import { LogHub } from './log-hub.js';
import { requestUrl } from './ui-server.js';

function start(): Promise<{ server: Server; port: number }> {
  let selected = 'auto';
  const api = new ClashApi(
    {
      version: 'test',
      connections: new ConnectionTable(),
      logs: new LogHub(),
      proxies: () => [{ name: 'one', type: 'Shadowsocks', udp: true }],
      selected: () => selected,
      select: (n) => {
        selected = n;
      },
      rules: () => [],
      ports: { socks: 1080 },
    },
    'the-secret',
  );
  const server = createServer((req, res) => {
    const url = requestUrl(req);
    if (!url || !api.handle(req, res, url)) res.writeHead(404).end();
  });
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () =>
      r({ server, port: (server.address() as AddressInfo).port }),
    ),
  );
}

const PATHS = [
  '/version',
  '/configs',
  '/proxies',
  '/proxies/PROXY',
  '/proxies/one',
  '/proxies/%E0%A4%A',
  '/rules',
  '/connections',
  '/connections/abc',
  '/nope',
];

test('fuzz: random requests get a status and a JSON or empty body', async () => {
  const { server, port } = await start();
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'PUT', 'PATCH', 'DELETE', 'POST'),
        fc.oneof(fc.constantFrom(...PATHS), fc.stringMatching(/^\/[A-Za-z0-9%._~/-]{0,40}$/)),
        fc.oneof(fc.constant(''), fc.json(), fc.string()),
        fc.boolean(),
        async (method, path, body, auth) => {
          const r = await fetch(
            `http://127.0.0.1:${port}${path.startsWith('/') ? path : '/' + path}`,
            {
              method,
              headers: auth ? { Authorization: 'Bearer the-secret' } : {},
              ...(method === 'GET' || body === '' ? {} : { body }),
            },
          );
          const text = await r.text();
          assert.ok(r.status >= 200 && r.status < 600);
          if (!auth && r.status !== 404) assert.equal(r.status, 401);
          if (text) JSON.parse(text);
        },
      ),
      { numRuns: 300, interruptAfterTimeLimit: 20_000 },
    );
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('a body over the cap is refused with a message', async () => {
  const { server, port } = await start();
  try {
    const r = await fetch(`http://127.0.0.1:${port}/proxies/PROXY`, {
      method: 'PUT',
      headers: { Authorization: 'Bearer the-secret' },
      body: JSON.stringify({ name: 'x'.repeat(64 * 1024) }),
    });
    assert.equal(r.status, 400);
    assert.match(((await r.json()) as { message: string }).message, /over 16384 bytes/);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
