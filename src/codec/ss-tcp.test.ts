import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { makeCipherKey } from '../crypto/ss-key.js';
import { SS_METHOD_NAMES, SS_METHODS } from '../crypto/methods.js';
import { RotatingSaltFilter, SaltPool } from '../crypto/replay.js';
import { SsKeyTable, SsTcpAcceptor, SsTcpClientSession, type ReplayGuard } from './ss-tcp.js';
import { hasCode } from '../errors.js';

function passwordFor(method: (typeof SS_METHOD_NAMES)[number]): string {
  const spec = SS_METHODS[method];
  return spec.edition === 2017
    ? randomBytes(9).toString('hex')
    : randomBytes(spec.keySize).toString('base64');
}

function guard(): ReplayGuard {
  const f = new RotatingSaltFilter(randomBytes(16));
  const p = new SaltPool();
  return { addSalt2017: (s) => f.add(s, 0), addSalt2022: (s, now) => p.add(s, now, now) };
}

for (const method of SS_METHOD_NAMES) {
  test(`${method}: request and response round trip, every split of the request`, () => {
    const key = makeCipherKey(method, passwordFor(method));
    const other = makeCipherKey(method, passwordFor(method));
    const table = new SsKeyTable([
      { id: 'other', key: other },
      { id: 'k1', key },
    ]);
    const now = 1_700_000_000_000;
    const client = new SsTcpClientSession(key, randomBytes);
    const payload = randomBytes(70_000);
    const req = Buffer.concat([
      client.encodeRequest({ host: 'example.com', port: 443 }, payload.subarray(0, 100), now),
      client.encode(payload.subarray(100)),
    ]);
    for (const cut of [1, 17, 40, 60, 100, req.length - 1]) {
      const acc = new SsTcpAcceptor(table, guard(), randomBytes);
      const early = acc.push(Buffer.from(req.subarray(0, cut)), now);
      const got = early ?? acc.push(Buffer.from(req.subarray(cut)), now);
      assert.ok(got, `accepted after cut ${cut}`);
      assert.equal(got.key.id, 'k1');
      assert.deepEqual(got.target, { host: 'example.com', port: 443 });
      const rest = got.stream.decode(early ? Buffer.from(req.subarray(cut)) : Buffer.alloc(0));
      assert.deepEqual(Buffer.concat([got.initialPayload, ...rest]), payload);
    }
    // response, decoded by the client one byte at a time
    const acc = new SsTcpAcceptor(table, guard(), randomBytes);
    const got = acc.push(Buffer.from(req), now)!;
    const body = randomBytes(100_000);
    const resp = Buffer.concat([
      got.stream.encode(body.subarray(0, 10), now),
      got.stream.encode(body.subarray(10), now),
    ]);
    const pieces: Buffer[] = [];
    for (let i = 0; i < resp.length; i += 997)
      pieces.push(...client.decode(Buffer.from(resp.subarray(i, i + 997)), now));
    assert.deepEqual(Buffer.concat(pieces), body);
  });

  test(`${method}: replayed request and wrong key are refused`, () => {
    const key = makeCipherKey(method, passwordFor(method));
    const table = new SsKeyTable([{ id: 'k', key: makeCipherKey(method, passwordFor(method)) }]);
    const req = new SsTcpClientSession(key, randomBytes).encodeRequest(
      { host: '127.0.0.1', port: 80 },
      Buffer.from('GET'),
      Date.now(),
    );
    assert.throws(
      () => new SsTcpAcceptor(table, guard(), randomBytes).push(req, Date.now()),
      (e) => hasCode(e, 'ERR_CIPHER'),
    );
    const good = new SsKeyTable([{ id: 'k', key }]);
    const g = guard();
    assert.ok(new SsTcpAcceptor(good, g, randomBytes).push(Buffer.from(req), Date.now()));
    assert.throws(
      () => new SsTcpAcceptor(good, g, randomBytes).push(req, Date.now()),
      (e) => hasCode(e, 'ERR_REPLAY_CLIENT'),
    );
  });
}

test('2022: a timestamp 31 s off is refused, 29 s is accepted', () => {
  const key = makeCipherKey('2022-blake3-aes-128-gcm', randomBytes(16).toString('base64'));
  const table = new SsKeyTable([{ id: 'k', key }]);
  const now = 1_700_000_000_000;
  const mk = (t: number) =>
    new SsTcpClientSession(key, randomBytes).encodeRequest(
      { host: 'a.test', port: 1 },
      Buffer.from('x'),
      t,
    );
  assert.throws(
    () => new SsTcpAcceptor(table, guard(), randomBytes).push(mk(now - 31_000), now),
    (e) => hasCode(e, 'ERR_SS2022_BAD_TIMESTAMP'),
  );
  assert.ok(new SsTcpAcceptor(table, guard(), randomBytes).push(mk(now - 29_000), now));
});

test('SIP023: identity headers select the user among many on one iPSK', () => {
  const ipsk = randomBytes(32).toString('base64');
  const users = Array.from({ length: 5 }, () =>
    makeCipherKey('2022-blake3-aes-256-gcm', `${ipsk}:${randomBytes(32).toString('base64')}`),
  );
  const table = new SsKeyTable(users.map((key, i) => ({ id: `u${i}`, key })));
  const now = Date.now();
  for (let i = 0; i < users.length; i++) {
    const req = new SsTcpClientSession(users[i]!, randomBytes).encodeRequest(
      { host: '198.18.0.1', port: 80 },
      Buffer.alloc(0),
      now,
    );
    const got = new SsTcpAcceptor(table, guard(), randomBytes).push(req, now);
    assert.equal(got?.key.id, `u${i}`);
    assert.equal(got?.initialPayload.length, 0);
  }
});

test('trial decryption: the preferred key (the last match for a client) is tried first, then every key in order', () => {
  // Trials are counted by reads of each key's master key, which only a trial makes.
  let trials = 0;
  const keys = Array.from({ length: 200 }, (_, i) => {
    const key = makeCipherKey('aes-256-gcm', `password-${i}`);
    return {
      id: `k${i}`,
      key: new Proxy(key, {
        get(t, p, r): unknown {
          if (p === 'key') trials++;
          return Reflect.get(t, p, r) as unknown;
        },
      }),
    };
  });
  const table = new SsKeyTable(keys);
  const mine = keys[150]!;
  const now = Date.now();
  const request = (): Buffer =>
    new SsTcpClientSession(makeCipherKey('aes-256-gcm', 'password-150'), randomBytes).encodeRequest(
      { host: 'example.com', port: 443 },
      Buffer.from('hello'),
      now,
    );
  for (const [preferred, expected] of [
    [mine, 1],
    [undefined, 151],
    [keys[7], 151], // a wrong hint: k7 first, then k0..k150 in order without k7 again
    [{ id: 'gone', key: makeCipherKey('aes-256-gcm', 'not in the table') }, 151],
  ] as const) {
    trials = 0;
    const acc = new SsTcpAcceptor(table, guard(), randomBytes, preferred);
    const req = request();
    // in two pieces: too few bytes for any trial first, so nothing is tried twice or skipped
    assert.equal(acc.push(Buffer.from(req.subarray(0, 20)), now), null);
    const got = acc.push(Buffer.from(req.subarray(20)), now);
    assert.equal(got?.key.id, 'k150');
    assert.equal(trials, expected, `trials with hint ${preferred?.id ?? 'none'}`);
  }
  // A request no key opens fails only once every key has been tried.
  trials = 0;
  const bad = new SsTcpAcceptor(table, guard(), randomBytes, mine);
  assert.throws(
    () => bad.push(randomBytes(200), now),
    (e: unknown) => hasCode(e, 'ERR_CIPHER'),
  );
  assert.equal(trials, 200);
});

test('trial decryption in slices: at most triesPerCall keys per push or resume, same outcome', () => {
  let trials = 0;
  const keys = Array.from({ length: 100 }, (_, i) => {
    const key = makeCipherKey('aes-256-gcm', `slice-${i}`);
    return {
      id: `k${i}`,
      key: new Proxy(key, {
        get(t, p, r): unknown {
          if (p === 'key') trials++;
          return Reflect.get(t, p, r) as unknown;
        },
      }),
    };
  });
  const table = new SsKeyTable(keys);
  const now = Date.now();
  const req = new SsTcpClientSession(
    makeCipherKey('aes-256-gcm', 'slice-95'),
    randomBytes,
  ).encodeRequest({ host: 'example.com', port: 443 }, Buffer.from('hello'), now);
  // A wrong hint (k3) first: 1 + 29 in the first call, then 30, 30, and k95 is the 6th of the 4th.
  const acc = new SsTcpAcceptor(table, guard(), randomBytes, keys[3], undefined, 30);
  const perCall: number[] = [];
  trials = 0;
  let got = acc.push(Buffer.from(req), now);
  perCall.push(trials);
  while (got === null) {
    assert.equal(acc.deferred, true, 'null only while keys are left for these bytes');
    trials = 0;
    got = acc.resume(now);
    perCall.push(trials);
  }
  assert.equal(got.key.id, 'k95');
  assert.equal(acc.deferred, false);
  assert.deepEqual(perCall.slice(0, 3), [30, 30, 30]);
  assert.ok(perCall[3]! >= 6, 'the last call finds k95 (and reads its key again to serve it)');
  // Bytes too few for any key: not deferred, just waiting for more.
  const short = new SsTcpAcceptor(table, guard(), randomBytes, undefined, undefined, 30);
  assert.equal(short.push(randomBytes(10), now), null);
  assert.equal(short.deferred, false);
  // A request no key opens still fails once every key has been tried, in slices.
  const bad = new SsTcpAcceptor(table, guard(), randomBytes, undefined, undefined, 30);
  trials = 0;
  assert.equal(bad.push(randomBytes(200), now), null);
  assert.equal(bad.resume(now), null);
  assert.equal(bad.resume(now), null);
  assert.throws(
    () => bad.resume(now),
    (e: unknown) => hasCode(e, 'ERR_CIPHER'),
  );
  assert.equal(trials, 100);
});
