import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import { cachedLookup, MAX_SERVER_NAMES, warmLookup } from './server-lookup.js';

type Cb = (err: unknown, a?: unknown, f?: number) => void;

function call(
  lookup: ReturnType<typeof cachedLookup>,
  host: string,
  options: { all?: boolean; family?: number },
): Promise<{ err: unknown; a: unknown; f: number | undefined }> {
  return new Promise((resolve) =>
    (lookup as unknown as (h: string, o: object, cb: Cb) => void)(host, options, (err, a, f) =>
      resolve({ err, a, f }),
    ),
  );
}

const answer: LookupAddress[] = [
  { address: '198.19.2.20', family: 4 },
  { address: '2001:2:0:2::20', family: 6 },
];

test('a name is resolved once per TTL, concurrent lookups share one query', async () => {
  let queries = 0;
  let t = 0;
  const lookup = cachedLookup(
    async () => {
      queries++;
      return answer;
    },
    () => t,
    1000,
  );
  const [a, b] = await Promise.all([
    call(lookup, 'ladder.lab', { all: true }),
    call(lookup, 'ladder.lab', {}),
  ]);
  assert.deepEqual(a.a, answer);
  assert.equal(b.a, '198.19.2.20');
  assert.equal(b.f, 4);
  assert.equal(queries, 1);
  t = 999;
  assert.equal((await call(lookup, 'ladder.lab', { family: 6 })).a, '2001:2:0:2::20');
  assert.equal(queries, 1);
  t = 1000;
  await call(lookup, 'ladder.lab', {});
  assert.equal(queries, 2, 'asked again once the TTL is over');
});

test('failures are passed on and not cached; a missing family is ENOTFOUND', async () => {
  let fail = true;
  let queries = 0;
  const lookup = cachedLookup(async () => {
    queries++;
    if (fail) throw Object.assign(new Error('getaddrinfo ENOTFOUND x'), { code: 'ENOTFOUND' });
    return [answer[0]!];
  });
  assert.match(String((await call(lookup, 'x', {})).err), /ENOTFOUND/);
  fail = false;
  assert.equal((await call(lookup, 'x', {})).a, '198.19.2.20');
  assert.equal(queries, 2);
  const v6 = await call(lookup, 'x', { family: 6, all: true });
  assert.equal((v6.err as { code: string }).code, 'ENOTFOUND');
});

test('the cache holds a bounded number of names', async () => {
  let queries = 0;
  const lookup = cachedLookup(async () => {
    queries++;
    return answer;
  });
  for (let i = 0; i <= MAX_SERVER_NAMES; i++) await call(lookup, `s${i}.example`, {});
  assert.equal(queries, MAX_SERVER_NAMES + 1);
  await call(lookup, 's0.example', {}); // the oldest was evicted
  assert.equal(queries, MAX_SERVER_NAMES + 2);
  await call(lookup, `s${MAX_SERVER_NAMES}.example`, {});
  assert.equal(queries, MAX_SERVER_NAMES + 2);
});

/** The address a lookup answered with by the next turn of the event loop, or 'waiting'. */
async function answerNow(p: ReturnType<typeof call>): Promise<unknown> {
  let got: unknown = 'waiting';
  void p.then((r) => (got = r.a));
  await new Promise((r) => setImmediate(r));
  return got;
}

test('past its TTL an answer is used at once while a fresh one is asked for', async () => {
  let t = 0;
  let queries = 0;
  let release: ((a: LookupAddress[]) => void) | undefined;
  const lookup = cachedLookup(
    (): Promise<LookupAddress[]> => {
      queries++;
      if (queries === 1) return Promise.resolve([answer[0]!]);
      // the second query hangs until the test lets it answer, as a lost UDP query does
      return new Promise((r) => (release = r));
    },
    () => t,
    1000,
    10_000,
  );
  assert.equal((await call(lookup, 'ladder.lab', {})).a, '198.19.2.20');
  t = 1500;
  // (a lookup that waited for the hanging query would never answer: checked without awaiting it)
  const early = answerNow(call(lookup, 'ladder.lab', {}));
  assert.equal(await early, '198.19.2.20', 'stale, not waiting');
  assert.equal(await answerNow(call(lookup, 'ladder.lab', {})), '198.19.2.20');
  assert.equal(queries, 2, 'one refresh in flight');
  release!([{ address: '198.19.2.99', family: 4 }]);
  await new Promise((r) => setImmediate(r));
  assert.equal((await call(lookup, 'ladder.lab', {})).a, '198.19.2.99', 'the refreshed answer');
  t = 1500 + 1000 + 10_000;
  const waited = call(lookup, 'ladder.lab', {});
  let answered = false;
  void waited.then(() => (answered = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(answered, false, 'too old to use: the lookup waits for the resolver');
  release!([{ address: '198.19.2.98', family: 4 }]);
  assert.equal((await waited).a, '198.19.2.98');
});

test('warmLookup resolves each name ahead; the first dial then asks no resolver', async () => {
  const asked: string[] = [];
  const lookup = cachedLookup(async (host) => {
    asked.push(host);
    return answer;
  });
  warmLookup(lookup, ['ladder.lab', 'other.lab']);
  assert.deepEqual(asked, ['ladder.lab', 'other.lab']);
  const r = await call(lookup, 'ladder.lab', {});
  assert.equal(r.a, '198.19.2.20');
  assert.deepEqual(asked, ['ladder.lab', 'other.lab']);
});

test('warmLookup: a failed lookup is left to the next dial, which queries again', async () => {
  let n = 0;
  const lookup = cachedLookup(async () => {
    if (++n === 1) throw Object.assign(new Error('timeout'), { code: 'EAI_AGAIN' });
    return answer;
  });
  warmLookup(lookup, ['ladder.lab']);
  await new Promise((r) => setImmediate(r));
  const r = await call(lookup, 'ladder.lab', {});
  assert.equal(r.err, null);
  assert.equal(n, 2);
});
