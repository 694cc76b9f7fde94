import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect as connectRaw } from 'node:net';
import { makeCipherKey, type SsCipherKey } from '../crypto/ss-key.js';
import { DialError } from '../errors.js';
import { SsKeyTable, type SsServerKey } from '../codec/ss-tcp.js';
import { SsStreamDialer } from '../transport/ss-dialer.js';
import { SsServer } from './ss-server.js';

const METHOD = 'chacha20-ietf-poly1305';

/** Keys whose secret bytes record which keys a trial decryption touched. */
function countingKeys(n: number): { keys: SsServerKey[]; tried: Set<string> } {
  const tried = new Set<string>();
  const keys = Array.from({ length: n }, (_, i) => {
    const id = `k${i}`;
    const real = makeCipherKey(METHOD, `hint-test-${i}`);
    const key: SsCipherKey = {
      ...real,
      get key() {
        tried.add(id);
        return real.key;
      },
    };
    return { id, key };
  });
  return { keys, tried };
}

/** A server whose accepted connections go nowhere: the test looks at authentication alone. */
async function serve(keys: SsServerKey[]): Promise<{
  server: SsServer;
  port: number;
  accepted: string[];
  rejected: string[];
}> {
  const accepted: string[] = [];
  const rejected: string[] = [];
  const server = new SsServer({
    keys,
    dialer: { dial: () => Promise.reject(new DialError('ERR_DIAL_REFUSED', 'test')) },
    events: {
      accepted: (id) => accepted.push(id),
      rejected: (code) => rejected.push(code),
    },
  });
  const { port } = await server.listen('127.0.0.1', 0);
  return { server, port, accepted, rejected };
}

/** Opens a connection with the i-th test password and waits for the server to decide. */
async function connect(
  s: { port: number; accepted: string[]; rejected: string[] },
  i: number,
): Promise<void> {
  const before = s.accepted.length + s.rejected.length;
  const d = new SsStreamDialer(
    { host: '127.0.0.1', port: s.port },
    makeCipherKey(METHOD, `hint-test-${i}`),
  );
  const c = await d.dial({ host: '198.18.0.1', port: 80 });
  c.on('error', () => undefined);
  c.write('GET / HTTP/1.1\r\n\r\n');
  while (s.accepted.length + s.rejected.length === before)
    await new Promise((r) => setImmediate(r));
  c.destroy();
  if (!c.closed) await once(c, 'close');
}

test('SsServer.setKeys: a client keeps the key it last matched when that key is still served', async () => {
  const { keys, tried } = countingKeys(40);
  const s = await serve(keys);
  try {
    await connect(s, 39);
    assert.deepEqual(s.accepted, ['k39']);
    assert.ok(tried.size >= 40, 'the first connection tries every key before the last');
    // A rebuild, as any key's change in the store makes: same key objects, a new table.
    s.server.setKeys(keys.slice());
    tried.clear();
    await connect(s, 39);
    assert.deepEqual(s.accepted, ['k39', 'k39']);
    assert.deepEqual([...tried], ['k39'], 'after the rebuild only the remembered key is tried');
  } finally {
    await s.server.close();
  }
});

test('SsServer.setKeys: a remembered key that left the table opens nothing', async () => {
  const { keys } = countingKeys(5);
  const s = await serve(keys);
  try {
    await connect(s, 4);
    assert.deepEqual(s.accepted, ['k4']);
    s.server.setKeys(keys.slice(0, 4));
    await connect(s, 4);
    assert.deepEqual(s.accepted, ['k4'], 'not accepted again');
    assert.deepEqual(s.rejected, ['ERR_CIPHER']);
  } finally {
    await s.server.close();
  }
});

test('SsKeyTable.has: trial keys and identity-header keys by object, absent keys not', () => {
  const psk = (b: number): string => Buffer.alloc(16, b).toString('base64');
  const trialKey = { id: 't', key: makeCipherKey(METHOD, 'has-test') };
  const idKey = { id: 'i', key: makeCipherKey('2022-blake3-aes-128-gcm', `${psk(1)}:${psk(2)}`) };
  const table = new SsKeyTable([trialKey, idKey]);
  assert.equal(table.has(trialKey), true);
  assert.equal(table.has(idKey), true);
  assert.equal(table.has({ ...trialKey }), false, 'the same secret in another object');
  assert.equal(
    table.has({ id: 'j', key: makeCipherKey('2022-blake3-aes-128-gcm', `${psk(1)}:${psk(3)}`) }),
    false,
  );
  assert.equal(new SsKeyTable([trialKey]).has(idKey), false);
});

test('SsServer: a trial over more keys than one turn tries still finds the key, or refuses', async () => {
  const { keys, tried } = countingKeys(600);
  const s = await serve(keys);
  try {
    await connect(s, 599);
    assert.deepEqual(s.accepted, ['k599']);
    assert.equal(tried.size, 600);
    // Bytes no key opens: refused once every key has been tried.
    const raw = connectRaw(s.port, '127.0.0.1');
    raw.on('error', () => undefined);
    raw.write(randomBytes(200));
    while (s.rejected.length === 0) await new Promise((r) => setImmediate(r));
    assert.deepEqual(s.rejected, ['ERR_CIPHER']);
    raw.destroy();
  } finally {
    await s.server.close();
  }
});
