// `ladder probe --allowlist-control URL`: the direct fetch that tells whitelist mode (every
// transport silent while an allow-listed site answers) from a dead network. On loopback: a site that
// answers (any status), one that accepts and never answers, and a closed port. The flag's bad
// input is in cli.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { answersDirectly } from '../../src/cli/probe-command.js';
import { closedPort } from '../helpers/echo.js';

test('answersDirectly: any HTTP answer is true, even a 404', async (t) => {
  const site = createHttpServer((_req, res) => {
    res.writeHead(404);
    res.end('not here');
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  t.after(() => site.close());
  const { port } = site.address() as AddressInfo;
  assert.equal(await answersDirectly(new URL(`http://127.0.0.1:${port}/`), 10_000), true);
});

test('answersDirectly: a site that accepts and never answers, and a closed port, are false', async (t) => {
  const held: Socket[] = [];
  const silent = createServer((s) => held.push(s)); // reads nothing back, never writes
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of held) s.destroy();
    silent.close();
  });
  const { port } = silent.address() as AddressInfo;
  // the site never answers, so only the timeout can end it: false whatever the timeout's length
  assert.equal(await answersDirectly(new URL(`http://127.0.0.1:${port}/`), 300), false);
  const closed = await closedPort();
  assert.equal(await answersDirectly(new URL(`http://127.0.0.1:${closed}/`), 10_000), false);
});
