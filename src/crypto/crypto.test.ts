/**
 * Ladder's crypto layer against published vectors and against independent implementations:
 *
 * - HChaCha20: draft-irtf-cfrg-xchacha-03 §2.2.1. XChaCha20-Poly1305: the same draft's AEAD example
 *   (Appendix A, "Example and Test Vector for AEAD_XCHACHA20_POLY1305"), with its AAD.
 * - HKDF-SHA1: RFC 5869 Appendix A.4–A.7 (the SHA-1 cases; A.1–A.3 are SHA-256).
 * - EVP_BytesToKey(MD5): the `openssl enc -md md5 -nosalt -P` command, a real independent program.
 * - BLAKE3 derive_key and hash: BLAKE3-team/BLAKE3 test_vectors/test_vectors.json (commit
 *   2f6f56f3477321c9e4742f1c863e45f2cfcbfb5e), inputs of the repeating 0..250 byte pattern.
 * - AES single blocks: FIPS-197 Appendix C.1 (AES-128) and C.3 (AES-256).
 * - CounterAead, sealOnce/openOnce, xchachaSeal/Open: byte for byte against @noble/ciphers.
 *
 * CounterAead has two paths (the native addon and node:crypto). Whichever this process loaded is
 * checked here; when it is the addon, a child process runs this file and the vector suite again
 * with LADDER_NO_NATIVE=1, so both paths meet the same checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { md5, sha1 } from '@noble/hashes/legacy.js';
import { blake3 } from '@noble/hashes/blake3.js';
import {
  aesDecryptBlock,
  aesEncryptBlock,
  CounterAead,
  hchacha20,
  openOnce,
  sealOnce,
  xchachaOpen,
  xchachaSeal,
} from './aead.js';
import {
  evpBytesToKey,
  pskHash16,
  ss2022IdentitySubkey,
  ss2022SessionSubkey,
  ssSubkey,
} from './kdf.js';
import { configureNativeAead, nativeAead } from './native-aead.js';
import type { AeadCipherName } from './methods.js';

// The other AEAD path (crypto.test.ts runs this file again with LADDER_NO_NATIVE=1).
configureNativeAead({ enabled: process.env.LADDER_NO_NATIVE !== '1' });

const h = (s: string): Buffer => Buffer.from(s.replace(/[\s:]/g, ''), 'hex');
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');
const range = (from: number, n: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff));
const te = new TextEncoder();

// ------------------------------------------------------------------------ XChaCha20-Poly1305

test('HChaCha20: draft-irtf-cfrg-xchacha-03 §2.2.1', () => {
  const key = range(0, 32);
  const nonce = h('00:00:00:09:00:00:00:4a:00:00:00:00:31:41:59:27');
  assert.equal(
    hex(hchacha20(key, nonce)),
    '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc',
  );
  // the same from views at odd offsets (DataView over a shared buffer)
  const backing = Buffer.alloc(32 + 16 + 3);
  key.copy(backing, 1);
  nonce.copy(backing, 34);
  assert.equal(
    hex(hchacha20(backing.subarray(1, 33), backing.subarray(34, 50))),
    '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc',
  );
});

/** draft-irtf-cfrg-xchacha-03, Appendix A: the AEAD_XChaCha20_Poly1305 example. */
const XCHACHA_EXAMPLE = {
  plaintext: Buffer.from(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  ),
  aad: h('50 51 52 53 c0 c1 c2 c3 c4 c5 c6 c7'),
  key: range(0x80, 32),
  iv: range(0x40, 24),
  ciphertext: h(`
    bd 6d 17 9d 3e 83 d4 3b 95 76 57 94 93 c0 e9 39
    57 2a 17 00 25 2b fa cc be d2 90 2c 21 39 6c bb
    73 1c 7f 1b 0b 4a a6 44 0b f3 a8 2f 4e da 7e 39
    ae 64 c6 70 8c 54 c2 16 cb 96 b7 2e 12 13 b4 52
    2f 8c 9b a4 0d b5 d9 45 b1 1b 69 b9 82 c1 bb 9e
    3f 3f ac 2b c3 69 48 8f 76 b2 38 35 65 d3 ff f9
    21 f9 66 4c 97 63 7d a9 76 88 12 f6 15 c6 8b 13
    b5 2e`),
  tag: h('c0:87:59:24:c1:c7:98:79:47:de:af:d8:78:0a:cf:49'),
};

test('XChaCha20-Poly1305: the draft example, through noble and through hchacha20 + node:crypto', () => {
  const x = XCHACHA_EXAMPLE;
  const expected = hex(Buffer.concat([x.ciphertext, x.tag]));
  assert.equal(hex(xchacha20poly1305(x.key, x.iv, x.aad).encrypt(x.plaintext)), expected);
  // Ladder's construction: subkey = HChaCha20(key, iv[0..16]), nonce = 0^4 || iv[16..24]
  const c = createCipheriv(
    'chacha20-poly1305',
    hchacha20(x.key, x.iv.subarray(0, 16)),
    Buffer.concat([Buffer.alloc(4), x.iv.subarray(16)]),
    { authTagLength: 16 },
  );
  c.setAAD(x.aad, { plaintextLength: x.plaintext.length });
  const ct = Buffer.concat([c.update(x.plaintext), c.final(), c.getAuthTag()]);
  assert.equal(hex(ct), expected);
});

test('xchachaSeal/xchachaOpen (no AAD, as SIP022 uses them) equal noble, and refuse a flipped bit', () => {
  for (const n of [0, 1, 63, 64, 65, 1500]) {
    const key = randomBytes(32);
    const nonce = randomBytes(24);
    const pt = randomBytes(n);
    const sealed = xchachaSeal(key, nonce, pt);
    assert.equal(hex(sealed), hex(xchacha20poly1305(key, nonce).encrypt(pt)), `${n} bytes`);
    assert.equal(hex(xchachaOpen(key, nonce, sealed)!), hex(pt));
    for (const at of [0, sealed.length - 1, Math.floor(sealed.length / 2)]) {
      const bad = Buffer.from(sealed);
      bad[at]! ^= 0x80;
      assert.equal(xchachaOpen(key, nonce, bad), null);
    }
    assert.equal(xchachaOpen(key, nonce, sealed.subarray(0, 15)), null, 'shorter than a tag');
  }
});

// ------------------------------------------------------------------------ HKDF-SHA1, EVP_BytesToKey

/** RFC 5869 Appendix A.4–A.7 (Hash = SHA-1). A.7 has no salt: HashLen zero octets. */
const RFC5869_SHA1 = [
  {
    name: 'A.4',
    ikm: h('0b'.repeat(11)),
    salt: h('000102030405060708090a0b0c'),
    info: h('f0f1f2f3f4f5f6f7f8f9'),
    okm: h(
      `085a01ea1b10f36933068b56efa5ad81 a4f14b822f5b091568a9cdd4f155fda2 c22e422478d305f3f896`,
    ),
  },
  {
    name: 'A.5',
    ikm: range(0x00, 80),
    salt: range(0x60, 80),
    info: range(0xb0, 80),
    okm: h(`0bd770a74d1160f7c9f12cd5912a06eb ff6adcae899d92191fe4305673ba2ffe
            8fa3f1a4e5ad79f3f334b3b202b2173c 486ea37ce3d397ed034c7f9dfeb15c5e
            927336d0441f4c4300e2cff0d0900b52 d3b4`),
  },
  {
    name: 'A.6',
    ikm: h('0b'.repeat(22)),
    salt: Buffer.alloc(0),
    info: Buffer.alloc(0),
    okm: h(
      `0ac1af7002b3d761d1e55298da9d0506 b9ae52057220a306e07b6b87e8df21d0 ea00033de03984d34918`,
    ),
  },
  {
    name: 'A.7',
    ikm: h('0c'.repeat(22)),
    salt: Buffer.alloc(20),
    info: Buffer.alloc(0),
    okm: h(
      `2c91117204d745f3500d636a62f64f0a b3bae548aa53d423b0d1f27ebba6f5e5 673a081d70cce7acfc48`,
    ),
  },
];

test('HKDF-SHA1: RFC 5869 A.4–A.7 through node:crypto (what ssSubkey uses) and noble (the oracle)', () => {
  for (const v of RFC5869_SHA1) {
    const node = Buffer.from(hkdfSync('sha1', v.ikm, v.salt, v.info, v.okm.length));
    assert.equal(hex(node), hex(v.okm), `${v.name} node:crypto`);
    assert.equal(
      hex(hkdf(sha1, v.ikm, v.salt, v.info, v.okm.length)),
      hex(v.okm),
      `${v.name} noble`,
    );
  }
});

test('native HKDF-SHA1: RFC 5869 A.4–A.7, and noble for every salt and output length', (t) => {
  const native = nativeAead()?.hkdfSha1;
  if (!native) {
    t.skip('the native addon is not built (or is an old build): ssSubkey uses noble');
    return;
  }
  for (const v of RFC5869_SHA1) {
    const out = new Uint8Array(v.okm.length);
    native(v.ikm, v.salt, v.info, out);
    assert.equal(hex(out), hex(v.okm), v.name);
  }
  // salts longer than a SHA-1 block are hashed first (RFC 2104); lengths across T(i) boundaries
  for (const saltLen of [0, 1, 20, 63, 64, 65, 200]) {
    for (const len of [1, 16, 19, 20, 21, 32, 40, 41, 255]) {
      const ikm = randomBytes(1 + (len % 33));
      const salt = randomBytes(saltLen);
      const info = randomBytes(len % 7);
      const out = new Uint8Array(len);
      native(ikm, salt, info, out);
      assert.equal(
        hex(out),
        hex(hkdf(sha1, ikm, salt, info, len)),
        `salt ${saltLen}, length ${len}`,
      );
    }
  }
  assert.throws(() =>
    native(new Uint8Array(1), new Uint8Array(1), new Uint8Array(0), new Uint8Array(255 * 20 + 1)),
  );
});

test('ssSubkey is HKDF-SHA1(key, salt, "ss-subkey") as long as the key', () => {
  for (const size of [16, 32]) {
    for (let i = 0; i < 8; i++) {
      const key = randomBytes(size);
      const salt = randomBytes(size);
      assert.equal(
        hex(ssSubkey(key, salt)),
        hex(hkdf(sha1, key, salt, te.encode('ss-subkey'), size)),
      );
    }
  }
});

function opensslKey(cipher: string, password: string): string | null {
  const r = spawnSync(
    'openssl',
    ['enc', `-${cipher}`, '-md', 'md5', '-nosalt', '-P', '-pass', `pass:${password}`],
    {
      encoding: 'utf8',
      timeout: 10_000,
    },
  );
  if (r.error || r.status !== 0) return null;
  return /^key=([0-9A-F]+)$/m.exec(r.stdout)?.[1]?.toLowerCase() ?? null;
}

test('EVP_BytesToKey(MD5) equals `openssl enc -md md5 -nosalt -P` and a noble MD5 chain', (t) => {
  if (opensslKey('aes-128-cbc', 'probe') === null) {
    t.skip('openssl is not installed');
    return;
  }
  for (const password of ['foobar', 'vector-password-aes-128-gcm', 'ünï cödé ✓', 'x'.repeat(100)]) {
    for (const [cipher, size] of [
      ['aes-128-cbc', 16],
      ['aes-256-cbc', 32],
    ] as const) {
      const mine = hex(evpBytesToKey(password, size));
      assert.equal(mine, opensslKey(cipher, password), `${password} / ${size}`);
      // D1 = MD5(pw), D2 = MD5(D1 || pw)
      const pw = te.encode(password);
      const d1 = md5(pw);
      assert.equal(mine, hex(Buffer.concat([d1, md5(Buffer.concat([d1, pw]))])).slice(0, size * 2));
    }
  }
  // the value every Shadowsocks implementation derives for "foobar" with a 32-byte key
  assert.equal(
    hex(evpBytesToKey('foobar', 32)),
    '3858f62230ac3c915f300c664312c63f568378529614d22ddb49237d2f60bfdf',
  );
});

// ------------------------------------------------------------------------ BLAKE3

/** BLAKE3-team/BLAKE3 test_vectors/test_vectors.json @ 2f6f56f3477321c9e4742f1c863e45f2cfcbfb5e */
const BLAKE3_CONTEXT = 'BLAKE3 2019-12-27 16:29:52 test vectors context';
const BLAKE3_VECTORS = [
  {
    inputLen: 0,
    hash: 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
    deriveKey:
      '2cc39783c223154fea8dfb7c1b1660f2ac2dcbd1c1de8277b0b0dd39b7e50d7d905630c8be290dfcf3e6842f13bddd573c098c3f17361f1f206b8cad9d088aa4a3f746752c6b0ce6a83b0da81d59649257cdf8eb3e9f7d4998e41021fac119deefb896224ac99f860011f73609e6e0e4540f93b273e56547dfd3aa1a035ba6689d89a0',
  },
  {
    inputLen: 1,
    hash: '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213',
    deriveKey:
      'b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c5827b91bf889b6b97c5477f535361caefca0b5d8c4746441c57617111933158950670f9aa8a05d791daae10ac683cbef8faf897c84e6114a59d2173c3f417023a35d6983f2c7dfa57e7fc559ad751dbfb9ffab39c2ef8c4aafebc9ae973a64f0c76551',
  },
  {
    inputLen: 1024,
    hash: '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7',
    deriveKey:
      '7356cd7720d5b66b6d0697eb3177d9f8d73a4a5c5e968896eb6a6896843027066c23b601d3ddfb391e90d5c8eccdef4ae2a264bce9e612ba15e2bc9d654af1481b2e75dbabe615974f1070bba84d56853265a34330b4766f8e75edd1f4a1650476c10802f22b64bd3919d246ba20a17558bc51c199efdec67e80a227251808d8ce5bad',
  },
];
const blake3Input = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i % 251);

test('BLAKE3 (the @noble/hashes function SIP022 subkeys use): official hash and derive_key vectors', () => {
  const context = te.encode(BLAKE3_CONTEXT);
  for (const v of BLAKE3_VECTORS) {
    const input = blake3Input(v.inputLen);
    assert.equal(hex(blake3(input)), v.hash, `hash, ${v.inputLen} bytes`);
    const full = v.deriveKey.length / 2;
    assert.equal(
      hex(blake3(input, { context, dkLen: full })),
      v.deriveKey,
      `derive_key, ${v.inputLen}`,
    );
    // "implementations should also check that the first 32 bytes match their default-length output"
    assert.equal(hex(blake3(input, { context })), v.deriveKey.slice(0, 64));
    // SIP022 takes as many bytes as the PSK: a 16-byte output is the 16-byte prefix
    assert.equal(hex(blake3(input, { context, dkLen: 16 })), v.deriveKey.slice(0, 32));
  }
  // pskHash16 is the first 16 bytes of the plain hash
  assert.equal(hex(pskHash16(blake3Input(1))), BLAKE3_VECTORS[1]!.hash.slice(0, 32));
  assert.equal(hex(pskHash16(blake3Input(1024))), BLAKE3_VECTORS[2]!.hash.slice(0, 32));
});

test('SIP022/SIP023 subkeys: derive_key(context, PSK || salt) as long as the PSK', () => {
  for (const size of [16, 32]) {
    for (let i = 0; i < 8; i++) {
      const psk = randomBytes(size);
      const salt = randomBytes(i === 0 ? 8 : size); // UDP session subkeys take the 8-byte session id
      const material = Buffer.concat([psk, salt]);
      const derive = (ctx: string): string =>
        hex(blake3(material, { context: te.encode(ctx), dkLen: size }));
      assert.equal(hex(ss2022SessionSubkey(psk, salt)), derive('shadowsocks 2022 session subkey'));
      assert.equal(
        hex(ss2022IdentitySubkey(psk, salt)),
        derive('shadowsocks 2022 identity subkey'),
      );
    }
  }
});

// ------------------------------------------------------------------------ AES blocks

test('AES single blocks: FIPS-197 Appendix C.1 and C.3, from aligned and unaligned views', () => {
  const pt = h('00112233445566778899aabbccddeeff');
  for (const [key, ct] of [
    [range(0, 16), '69c4e0d86a7b0430d8cdb78070b4c55a'],
    [range(0, 32), '8ea2b7ca516745bfeafc49904b496089'],
  ] as const) {
    assert.equal(hex(aesEncryptBlock(key, pt)), ct);
    assert.equal(hex(aesDecryptBlock(key, h(ct))), hex(pt));
    const backing = Buffer.alloc(key.length + 16 + 3);
    key.copy(backing, 1);
    pt.copy(backing, key.length + 2);
    assert.equal(
      hex(aesEncryptBlock(backing.subarray(1, 1 + key.length), backing.subarray(key.length + 2))),
      ct,
    );
  }
  assert.throws(() => aesEncryptBlock(randomBytes(24), pt), RangeError);
});

// ------------------------------------------------------------------------ AEAD with counters

function nobleSeal(
  cipher: AeadCipherName,
  key: Uint8Array,
  nonce: Uint8Array,
  pt: Uint8Array,
): Uint8Array {
  return cipher === 'chacha20-poly1305'
    ? chacha20poly1305(key, nonce).encrypt(pt)
    : gcm(key, nonce).encrypt(pt);
}
function counterNonce(i: number): Uint8Array {
  const n = new Uint8Array(12);
  n[0] = i & 0xff;
  n[1] = (i >> 8) & 0xff;
  return n;
}
const CIPHERS: [AeadCipherName, number][] = [
  ['aes-128-gcm', 16],
  ['aes-256-gcm', 32],
  ['chacha20-poly1305', 32],
];

for (const [cipher, size] of CIPHERS) {
  test(`CounterAead ${cipher} (${nativeAead() ? 'native addon' : 'node:crypto'}): little-endian counter nonces, equal to noble`, () => {
    const key = randomBytes(size);
    const sealer = new CounterAead(cipher, key);
    const opener = new CounterAead(cipher, key);
    // 300 operations carry the counter from byte 0 into byte 1
    for (let i = 0; i < 300; i++) {
      const pt = randomBytes(i % 40);
      const out = Buffer.alloc(pt.length + 16 + 7, 0xaa);
      assert.equal(sealer.seal(pt, out, 3), pt.length + 16);
      assert.equal(out[2], 0xaa, 'nothing written before the offset');
      assert.equal(out[3 + pt.length + 16], 0xaa, 'nothing written after');
      const sealed = out.subarray(3, 3 + pt.length + 16);
      assert.equal(hex(sealed), hex(nobleSeal(cipher, key, counterNonce(i), pt)), `operation ${i}`);
      if (i % 3 === 0) {
        // a wrong tag is refused and does not move the counter
        const bad = Buffer.from(sealed);
        bad[bad.length - 1]! ^= 1;
        assert.equal(opener.open(bad), null);
        assert.equal(opener.open(sealed.subarray(0, 15)), null, 'shorter than a tag');
      }
      const opened = i % 2 === 0 ? opener.open(sealed) : opener.openInPlace(Buffer.from(sealed));
      assert.ok(opened, `operation ${i} opens`);
      assert.equal(hex(opened), hex(pt));
    }
  });

  test(`sealOnce/openOnce ${cipher}: explicit nonce, equal to noble`, () => {
    const key = randomBytes(size);
    const nonce = randomBytes(12);
    for (const n of [0, 1, 16, 1000]) {
      const pt = randomBytes(n);
      const sealed = sealOnce(cipher, key, nonce, pt);
      assert.equal(hex(sealed), hex(nobleSeal(cipher, key, nonce, pt)));
      assert.equal(hex(openOnce(cipher, key, nonce, sealed)!), hex(pt));
      sealed[0]! ^= 1;
      assert.equal(openOnce(cipher, key, nonce, sealed), null);
    }
  });
}

test('the other AEAD path: this file and the vector suite again with LADDER_NO_NATIVE=1', (t) => {
  if (!nativeAead() || process.env.LADDER_NO_NATIVE === '1') {
    t.skip(
      process.env.LADDER_NO_NATIVE === '1'
        ? 'this is the child'
        : 'the addon is not loaded here: this run was the node:crypto path',
    );
    return;
  }
  const files = [
    fileURLToPath(import.meta.url),
    fileURLToPath(new URL('../../test/ss-vectors.test.js', import.meta.url)),
  ];
  // NODE_TEST_CONTEXT would make the child talk to this runner instead of printing its report
  const { NODE_TEST_CONTEXT: _ignored, ...env } = process.env;
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=tap', ...files], {
    env: { ...env, LADDER_NO_NATIVE: '1' },
    encoding: 'utf8',
    timeout: 90_000,
  });
  assert.equal(r.status, 0, `node:crypto path failed:\n${r.stdout.slice(-4000)}\n${r.stderr}`);
  assert.match(r.stdout, /# fail 0/);
});
