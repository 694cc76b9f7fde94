/**
 * ss:// key URIs: the vectors of test/vectors/ss-uri.json (SIP002 and Outline examples, with their
 * source), round trips over all six methods with random passwords, hosts, ports, tags, prefixes and
 * plugins, and errors that name the part without ever showing the password.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { ConfigError, LadderError } from '../errors.js';
import { SS_METHODS, SS_METHOD_NAMES, type SsMethod } from '../crypto/methods.js';
import { makeCipherKey } from '../crypto/ss-key.js';
import {
  decodePrefix,
  encodePrefix,
  formatSsUri,
  generateSsPassword,
  maxPrefixLength,
  parseSsUri,
  resolveMethod,
  type SsAccessKey,
} from './access-key-uri.js';

interface ValidCase {
  name: string;
  source: string;
  uri: string;
  expect: Omit<SsAccessKey, 'prefix'> & { prefixHex?: string };
  canonical?: string;
}
interface NegativeCase {
  name: string;
  source: string;
  uri: string;
  code: string;
  message: string;
}

/** The vectors file, found from the compiled test (dist/src/codec) or from the working directory. */
function loadVectors(): { valid: ValidCase[]; negative: NegativeCase[] } {
  const rel = 'test/vectors/ss-uri.json';
  const candidates = [
    fileURLToPath(new URL(`../../../${rel}`, import.meta.url)),
    join(process.cwd(), rel),
  ];
  const file = candidates.find((f) => existsSync(f));
  assert.ok(file, `${rel} not found (looked in ${candidates.join(', ')})`);
  return JSON.parse(readFileSync(file, 'utf8')) as { valid: ValidCase[]; negative: NegativeCase[] };
}

const vectors = loadVectors();

/** A parsed key in the vectors' shape (prefix as hex). */
function view(k: SsAccessKey): ValidCase['expect'] {
  const { prefix, ...rest } = k;
  return prefix ? { ...rest, prefixHex: Buffer.from(prefix).toString('hex') } : rest;
}

test('vectors: every valid key parses to what its source says', () => {
  assert.ok(vectors.valid.length >= 20);
  for (const c of vectors.valid) {
    const k = parseSsUri(c.uri);
    assert.deepEqual(view(k), c.expect, c.name);
    // What the codec accepts, the cipher layer must accept too.
    assert.doesNotThrow(() => makeCipherKey(k.method, k.password), c.name);
  }
});

test('vectors: formatSsUri writes the canonical form, and it parses back to the same key', () => {
  for (const c of vectors.valid) {
    const k = parseSsUri(c.uri);
    const text = formatSsUri(k);
    if (c.canonical !== undefined) assert.equal(text, c.canonical, c.name);
    assert.deepEqual(parseSsUri(text), k, c.name);
  }
});

test('vectors: every negative case fails with its code and a message naming the problem', () => {
  assert.ok(vectors.negative.length >= 20);
  for (const c of vectors.negative) {
    assert.throws(
      () => parseSsUri(c.uri),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, `${c.name}: a ConfigError, got ${String(err)}`);
        assert.equal(err.code, c.code, c.name);
        assert.ok(
          err.message.includes(c.message),
          `${c.name}: message ${JSON.stringify(err.message)} lacks ${JSON.stringify(c.message)}`,
        );
        return true;
      },
    );
  }
});

test('the SIP002 2022 example is plain user info, AEAD-2017 keys are base64url without padding', () => {
  const psk = Buffer.alloc(32, 9).toString('base64');
  const k2022 = formatSsUri({
    method: '2022-blake3-aes-256-gcm',
    password: psk,
    host: '198.18.0.1',
    port: 8388,
  });
  assert.equal(
    k2022,
    `ss://2022-blake3-aes-256-gcm:${encodeURIComponent(psk)}@198.18.0.1:8388`,
    'SIP002: 2022 user info MUST NOT be base64',
  );
  const k2017 = formatSsUri({ method: 'aes-256-gcm', password: 'a?', host: '198.18.0.1', port: 1 });
  const userinfo = k2017.slice(5, k2017.indexOf('@'));
  assert.match(userinfo, /^[A-Za-z0-9_-]+$/, 'base64url alphabet, no padding');
  assert.equal(Buffer.from(userinfo, 'base64url').toString(), 'aes-256-gcm:a?');
});

// --- round trips -------------------------------------------------------------------------------

const psk = (size: number) => fc.uint8Array({ minLength: size, maxLength: size });

function passwordFor(method: SsMethod): fc.Arbitrary<string> {
  const spec = SS_METHODS[method];
  if (spec.edition === 2017) return fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 });
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  if (spec.cipher === 'chacha20-poly1305') return psk(spec.keySize).map(b64);
  // SIP023: zero to two identity PSKs before the user PSK.
  return fc
    .array(psk(spec.keySize), { minLength: 1, maxLength: 3 })
    .map((parts) => parts.map(b64).join(':'));
}

const host = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain());
const plugin = fc.record(
  {
    name: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
    options: fc.dictionary(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }),
      fc.string({ unit: 'grapheme', maxLength: 12 }),
      { maxKeys: 3, noNullPrototype: true },
    ),
  },
  { noNullPrototype: true },
);

function keyFor(method: SsMethod): fc.Arbitrary<SsAccessKey> {
  return fc
    .record(
      {
        password: passwordFor(method),
        host,
        port: fc.integer({ min: 1, max: 65535 }),
        tag: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
        prefix: fc.uint8Array({ minLength: 1, maxLength: maxPrefixLength(method) }),
        plugin,
      },
      { requiredKeys: ['password', 'host', 'port'] },
    )
    .map((r) => ({ method, ...r }));
}

test('round trip over all six methods: parseSsUri(formatSsUri(k)) equals k', () => {
  assert.equal(SS_METHOD_NAMES.length, 6);
  for (const method of SS_METHOD_NAMES) {
    fc.assert(
      fc.property(keyFor(method), (k) => {
        const text = formatSsUri(k);
        assert.deepEqual(parseSsUri(text), k);
        // The same text survives a second trip unchanged (one canonical form).
        assert.equal(formatSsUri(parseSsUri(text)), text);
      }),
      { numRuns: 150 },
    );
  }
});

test('prefix: any byte string survives encodePrefix/decodePrefix; Outline reads it the same way', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      const text = encodePrefix(b);
      assert.deepEqual(decodePrefix(text), b);
      // Outline: decodeURIComponent gives code points U+0000..U+00FF, one per byte.
      const s = decodeURIComponent(text);
      assert.deepEqual(
        Uint8Array.from(s, (ch) => ch.charCodeAt(0)),
        b,
      );
    }),
    { numRuns: 300 },
  );
});

// --- errors ------------------------------------------------------------------------------------

test('a 2022 PSK of the wrong size names the sizes and never shows the password', () => {
  for (const method of SS_METHOD_NAMES.filter((m) => SS_METHODS[m].edition === 2022)) {
    const size = SS_METHODS[method].keySize;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }).filter((n) => n !== size),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        (n, bytes) => {
          const password = Buffer.from(bytes.subarray(0, n)).toString('base64');
          const uri = `ss://${method}:${encodeURIComponent(password)}@198.18.0.1:8388`;
          assert.throws(
            () => parseSsUri(uri),
            (err: unknown) =>
              err instanceof ConfigError &&
              err.code === 'ERR_KEY_URI' &&
              err.message.includes(`is base64 of ${n} bytes; ${method} takes exactly ${size}`) &&
              !err.message.includes(password) &&
              !err.message.includes(encodeURIComponent(password)),
          );
        },
      ),
      { numRuns: 60 },
    );
  }
});

test('no error message repeats the password, whatever else is wrong with the key', () => {
  const secret = 'Sup3r-Secret-Value-42';
  const bad = [
    `ss://aes-256-gcm:${secret}@198.18.0.1:abc`,
    `ss://aes-256-gcm:${secret}@198.18.0.1`,
    `ss://aes-256-gcm:${secret}@::1:8388`,
    `ss://aes-256-gcm:${secret}@bad_host!:8388`,
    `ss://aes-512-gcm:${secret}@198.18.0.1:8388`,
    `ss://2022-blake3-aes-128-gcm:${secret}@198.18.0.1:8388`,
    `ss://${Buffer.from(`aes-256-gcm:${secret}`).toString('base64url')}@198.18.0.1:0`,
    `ss://aes-256-gcm:${secret}@198.18.0.1:8388/?prefix=%A8`,
    `ss://aes-256-gcm:${secret}@198.18.0.1:8388/?plugin=%3Bx`,
    `ss://${Buffer.from(`aes-256-gcm:${secret}@198.18.0.1:99999`).toString('base64')}`,
  ];
  for (const uri of bad) {
    assert.throws(
      () => parseSsUri(uri),
      (err: unknown) => err instanceof LadderError && !err.message.includes(secret),
      uri,
    );
  }
});

test('hostile input: a key or a ConfigError, never another exception', () => {
  const starts = [
    '',
    'ss://',
    'ss://YWVzLTI1Ni1nY206cHc@',
    'ss://YWVzLTI1Ni1nY206cHc@198.18.0.1:8388/?prefix=',
    'ss://YWVzLTI1Ni1nY206cHc@198.18.0.1:8388/?plugin=',
    'ss://2022-blake3-aes-128-gcm:',
    'ss://aes-256-gcm:pw@[',
  ];
  const valid = vectors.valid.map((c) => c.uri);
  const input = fc.oneof(
    fc
      .tuple(fc.constantFrom(...starts), fc.string({ unit: 'binary', maxLength: 120 }))
      .map(([a, b]) => a + b),
    // A valid key with one character replaced, inserted or removed.
    fc
      .tuple(fc.constantFrom(...valid), fc.nat(), fc.string({ unit: 'binary', maxLength: 2 }))
      .map(([u, i, s]) => u.slice(0, i % u.length) + s + u.slice((i % u.length) + (i & 1))),
  );
  fc.assert(
    fc.property(input, (text) => {
      let k: SsAccessKey;
      try {
        k = parseSsUri(text);
      } catch (err) {
        assert.ok(err instanceof ConfigError, `${JSON.stringify(text)}: ${String(err)}`);
        return;
      }
      // Whatever parses can be written and read back unchanged.
      assert.deepEqual(parseSsUri(formatSsUri(k)), k);
    }),
    { numRuns: 2000 },
  );
});

test('formatSsUri refuses keys it could not read back', () => {
  const ok: SsAccessKey = { method: 'aes-256-gcm', password: 'pw', host: '198.18.0.1', port: 8388 };
  const cases: [Partial<SsAccessKey>, string][] = [
    [{ port: 0 }, "the port '0'"],
    [{ port: 70000 }, "the port '70000'"],
    [{ host: 'a b' }, "the host 'a b'"],
    [{ password: '' }, 'the password is empty'],
    [{ method: '2022-blake3-aes-128-gcm' }, 'takes exactly 16'],
    [{ prefix: new Uint8Array(17) }, 'keep it to 16 or fewer'],
    [{ plugin: { name: '', options: {} } }, 'the plugin has no name'],
    [{ tag: 'a\uD800b' }, 'the tag is not well-formed Unicode'],
    [{ password: 'a\uDC00' }, 'the password is not well-formed Unicode'],
  ];
  for (const [change, message] of cases) {
    assert.throws(
      () => formatSsUri({ ...ok, ...change }),
      (err: unknown) => err instanceof ConfigError && err.message.includes(message),
      message,
    );
  }
});

test('method names: exact, any case, and the aliases other implementations write', () => {
  for (const m of SS_METHOD_NAMES) {
    assert.equal(resolveMethod(m), m);
    assert.equal(resolveMethod(m.toUpperCase()), m);
  }
  assert.equal(resolveMethod('chacha20-poly1305'), 'chacha20-ietf-poly1305');
  assert.equal(resolveMethod('AEAD_AES_256_GCM'), 'aes-256-gcm');
  assert.throws(() => resolveMethod('aes-256-cfb'), /stream cipher/);
  assert.throws(() => resolveMethod('none'), { code: 'ERR_UNKNOWN_METHOD' });
});

test('a malformed #tag is kept as written (a name is no reason to refuse a key)', () => {
  const base = 'ss://YWVzLTI1Ni1nY206cHc@198.18.0.1:8388';
  assert.equal(parseSsUri(`${base}#100%25`).tag, '100%');
  assert.equal(parseSsUri(`${base}#100%`).tag, '100%');
  const k = parseSsUri(`${base}#a%\uD800`);
  assert.equal(
    k.tag,
    'a%\uFFFD',
    'a lone surrogate becomes U+FFFD so the key can be written again',
  );
  assert.deepEqual(parseSsUri(formatSsUri(k)), k);
});

test('generateSsPassword: 2022 PSKs of the key size, 2017 passwords of 24 random bytes', () => {
  for (const method of SS_METHOD_NAMES) {
    const spec = SS_METHODS[method];
    const asked: number[] = [];
    const random = (n: number) => {
      asked.push(n);
      return Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
    };
    const password = generateSsPassword(method, random);
    const k = parseSsUri(formatSsUri({ method, password, host: '127.0.0.1', port: 8388 }));
    assert.equal(k.password, password);
    if (spec.edition === 2022) {
      assert.deepEqual(asked, [spec.keySize]);
      assert.equal(Buffer.from(password, 'base64').length, spec.keySize);
      assert.equal(makeCipherKey(method, password).key.length, spec.keySize);
    } else {
      assert.deepEqual(asked, [24]);
      assert.match(password, /^[A-Za-z0-9_-]{32}$/);
    }
  }
  // Different random bytes, different passwords: nothing is fixed.
  const a = generateSsPassword('aes-256-gcm', (n) => new Uint8Array(n).fill(1));
  const b = generateSsPassword('aes-256-gcm', (n) => new Uint8Array(n).fill(2));
  assert.notEqual(a, b);
});

test('dns=: the DNS tunnel domain, canonical, written back; a bad one refused with the reason', () => {
  const psk = Buffer.alloc(32, 7).toString('base64');
  const uri = `ss://2022-blake3-aes-256-gcm:${encodeURIComponent(psk)}@198.18.0.1:443/?dns=T.Example.COM.`;
  const k = parseSsUri(uri);
  assert.equal(k.dns, 't.example.com');
  assert.match(formatSsUri(k), /\/\?dns=t\.example\.com$/);
  assert.deepEqual(parseSsUri(formatSsUri(k)), k);
  for (const bad of ['a..b', 'x_y.com', ''])
    assert.throws(
      () => parseSsUri(uri.replace(/dns=.*/, `dns=${bad}`)),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.code === 'ERR_KEY_URI' &&
        /is not a tunnel domain: the domain .* is not a host name/.test(e.message),
    );
});
