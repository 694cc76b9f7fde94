/*
 * ladder_aead: AEAD with a reusable OpenSSL context per stream direction.
 *
 * node:crypto makes a new cipher object (and a new key schedule) for every Shadowsocks chunk,
 * which costs several microseconds per 16 KiB chunk. Here one EVP_CIPHER_CTX per direction keeps
 * its key; each chunk only sets the nonce. The nonce is the Shadowsocks 96-bit little-endian
 * counter, kept here and incremented after every successful seal or open, so JavaScript cannot
 * reuse one by mistake. OpenSSL comes from the Node binary itself (its symbols are exported and its
 * headers ship with Node), so there is nothing else to install.
 *
 * JS API (all buffers are Uint8Array):
 *   create(cipher: 0=aes-128-gcm 1=aes-256-gcm 2=chacha20-poly1305, key, encrypt: boolean) -> ctx
 *   seal(ctx, plaintext, out, offset) -> bytes written (plaintext.length + 16)
 *   open(ctx, sealed, out, offset) -> plaintext length, or -1 if the tag is wrong (counter unchanged)
 *   hkdfSha1(ikm, salt, info, out) -> undefined; out.length <= 255 * 20 bytes of HKDF-SHA1 (RFC 5869)
 * `out` may be the same memory as `sealed` (in-place open); on a wrong tag its contents are undefined.
 *
 * hkdfSha1 is the AEAD-2017 subkey derivation, done for every connection in each direction. Through
 * OpenSSL 3's EVP layer (hkdfSync) every call fetches the algorithm and builds a KeyObject; in
 * JavaScript (@noble/hashes) it costs about 50 us in a busy proxy. Here it is HMAC over the plain
 * SHA-1 block functions, which OpenSSL 3 still exports (deprecated, but not removed).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define TAG 16
#define NONCE 12

typedef struct {
  EVP_CIPHER_CTX *ctx;
  unsigned char nonce[NONCE];
  int encrypt;
} Aead;

static void increment(unsigned char *n) {
  for (int i = 0; i < NONCE; i++) {
    if (++n[i] != 0) return;
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Aead *a = (Aead *)data;
  EVP_CIPHER_CTX_free(a->ctx);
  OPENSSL_cleanse(a->nonce, NONCE);
  free(a);
}

static napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, "ERR_NATIVE_AEAD", msg);
  return NULL;
}

static int get_bytes(napi_env env, napi_value v, unsigned char **data, size_t *len) {
  napi_typedarray_type type;
  size_t length, offset;
  void *base;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, &base, &ab, &offset) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *data = (unsigned char *)base;
  *len = length;
  return 1;
}

static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_error(env, "create(cipher, key, encrypt)");
  int32_t which;
  bool enc;
  unsigned char *key;
  size_t keylen;
  if (napi_get_value_int32(env, argv[0], &which) != napi_ok) return throw_error(env, "cipher must be a number");
  if (!get_bytes(env, argv[1], &key, &keylen)) return throw_error(env, "key must be a Uint8Array");
  if (napi_get_value_bool(env, argv[2], &enc) != napi_ok) return throw_error(env, "encrypt must be a boolean");
  const EVP_CIPHER *cipher;
  size_t want;
  switch (which) {
    case 0: cipher = EVP_aes_128_gcm(); want = 16; break;
    case 1: cipher = EVP_aes_256_gcm(); want = 32; break;
    case 2: cipher = EVP_chacha20_poly1305(); want = 32; break;
    default: return throw_error(env, "unknown cipher");
  }
  if (keylen != want) return throw_error(env, "wrong key length");
  Aead *a = (Aead *)calloc(1, sizeof(Aead));
  if (!a) return throw_error(env, "out of memory");
  a->ctx = EVP_CIPHER_CTX_new();
  a->encrypt = enc ? 1 : 0;
  if (!a->ctx || EVP_CipherInit_ex(a->ctx, cipher, NULL, NULL, NULL, a->encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_IVLEN, NONCE, NULL) != 1 ||
      EVP_CipherInit_ex(a->ctx, NULL, NULL, key, NULL, a->encrypt) != 1) {
    if (a->ctx) EVP_CIPHER_CTX_free(a->ctx);
    free(a);
    return throw_error(env, "cipher initialisation failed");
  }
  napi_value ext;
  if (napi_create_external(env, a, finalize, NULL, &ext) != napi_ok) {
    EVP_CIPHER_CTX_free(a->ctx);
    free(a);
    return throw_error(env, "napi_create_external failed");
  }
  return ext;
}

static Aead *get_aead(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return (Aead *)data;
}

static napi_value make_int(napi_env env, int64_t n) {
  napi_value r;
  napi_create_int64(env, n, &r);
  return r;
}

static napi_value seal(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) return throw_error(env, "seal(ctx, plaintext, out, offset)");
  Aead *a = get_aead(env, argv[0]);
  unsigned char *pt, *out;
  size_t ptlen, outlen;
  int64_t off;
  if (!a || !a->encrypt) return throw_error(env, "not a sealing context");
  if (!get_bytes(env, argv[1], &pt, &ptlen) || !get_bytes(env, argv[2], &out, &outlen)) return throw_error(env, "buffers must be Uint8Array");
  if (napi_get_value_int64(env, argv[3], &off) != napi_ok || off < 0) return throw_error(env, "bad offset");
  if ((size_t)off > outlen || outlen - (size_t)off < ptlen + TAG || ptlen > 0x7fffffff) return throw_error(env, "output too small");
  unsigned char *dst = out + off;
  int len = 0, fin = 0;
  if (EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, a->nonce) != 1 ||
      EVP_EncryptUpdate(a->ctx, dst, &len, pt, (int)ptlen) != 1 ||
      EVP_EncryptFinal_ex(a->ctx, dst + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TAG, dst + ptlen) != 1) {
    return throw_error(env, "seal failed");
  }
  increment(a->nonce);
  return make_int(env, (int64_t)ptlen + TAG);
}

static napi_value open_(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) return throw_error(env, "open(ctx, sealed, out, offset)");
  Aead *a = get_aead(env, argv[0]);
  unsigned char *ct, *out;
  size_t ctlen, outlen;
  int64_t off;
  if (!a || a->encrypt) return throw_error(env, "not an opening context");
  if (!get_bytes(env, argv[1], &ct, &ctlen) || !get_bytes(env, argv[2], &out, &outlen)) return throw_error(env, "buffers must be Uint8Array");
  if (napi_get_value_int64(env, argv[3], &off) != napi_ok || off < 0) return throw_error(env, "bad offset");
  if (ctlen < TAG || ctlen > 0x7fffffff) return make_int(env, -1);
  size_t n = ctlen - TAG;
  if ((size_t)off > outlen || outlen - (size_t)off < n) return throw_error(env, "output too small");
  unsigned char tag[TAG];
  memcpy(tag, ct + n, TAG); /* copy first: an in-place open may overwrite it */
  unsigned char *dst = out + off;
  int len = 0, fin = 0;
  if (EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, a->nonce) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TAG, tag) != 1 ||
      EVP_DecryptUpdate(a->ctx, dst, &len, ct, (int)n) != 1) {
    return throw_error(env, "open failed");
  }
  if (EVP_DecryptFinal_ex(a->ctx, dst + len, &fin) != 1) return make_int(env, -1);
  increment(a->nonce);
  return make_int(env, (int64_t)n);
}

/* HMAC-SHA1 (RFC 2104): the key's inner and outer states are set up once, then each message is
 * hashed from copies of them. */
typedef struct {
  SHA_CTX inner, outer;
} HmacSha1;

static void hmac_sha1_key(HmacSha1 *h, const unsigned char *key, size_t keylen) {
  unsigned char block[SHA_CBLOCK], digest[SHA_DIGEST_LENGTH];
  if (keylen > SHA_CBLOCK) {
    SHA1(key, keylen, digest);
    key = digest;
    keylen = SHA_DIGEST_LENGTH;
  }
  memset(block, 0, sizeof block);
  memcpy(block, key, keylen);
  for (int i = 0; i < SHA_CBLOCK; i++) block[i] ^= 0x36;
  SHA1_Init(&h->inner);
  SHA1_Update(&h->inner, block, SHA_CBLOCK);
  for (int i = 0; i < SHA_CBLOCK; i++) block[i] ^= 0x36 ^ 0x5c;
  SHA1_Init(&h->outer);
  SHA1_Update(&h->outer, block, SHA_CBLOCK);
  OPENSSL_cleanse(block, sizeof block);
  OPENSSL_cleanse(digest, sizeof digest);
}

/* HMAC(key, a || b || c) into out (20 bytes); any part may be empty. */
static void hmac_sha1(const HmacSha1 *h, const unsigned char *a, size_t alen, const unsigned char *b,
                      size_t blen, const unsigned char *c, size_t clen, unsigned char *out) {
  SHA_CTX ctx = h->inner;
  unsigned char inner[SHA_DIGEST_LENGTH];
  SHA1_Update(&ctx, a, alen);
  SHA1_Update(&ctx, b, blen);
  SHA1_Update(&ctx, c, clen);
  SHA1_Final(inner, &ctx);
  ctx = h->outer;
  SHA1_Update(&ctx, inner, sizeof inner);
  SHA1_Final(out, &ctx);
  OPENSSL_cleanse(inner, sizeof inner);
  OPENSSL_cleanse(&ctx, sizeof ctx);
}

static napi_value hkdf_sha1(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) return throw_error(env, "hkdfSha1(ikm, salt, info, out)");
  unsigned char *ikm, *salt, *inf, *out;
  size_t ikmlen, saltlen, inflen, outlen;
  if (!get_bytes(env, argv[0], &ikm, &ikmlen) || !get_bytes(env, argv[1], &salt, &saltlen) ||
      !get_bytes(env, argv[2], &inf, &inflen) || !get_bytes(env, argv[3], &out, &outlen))
    return throw_error(env, "buffers must be Uint8Array");
  if (outlen > 255 * SHA_DIGEST_LENGTH) return throw_error(env, "output too long");
  HmacSha1 h;
  unsigned char prk[SHA_DIGEST_LENGTH], t[SHA_DIGEST_LENGTH];
  /* RFC 5869 2.2: PRK = HMAC(salt, IKM); no salt means HashLen zero bytes (the same HMAC key). */
  hmac_sha1_key(&h, salt, saltlen);
  hmac_sha1(&h, ikm, ikmlen, NULL, 0, NULL, 0, prk);
  /* 2.3: T(i) = HMAC(PRK, T(i-1) || info || i) */
  hmac_sha1_key(&h, prk, sizeof prk);
  size_t done = 0, tlen = 0;
  for (unsigned char i = 1; done < outlen; i++) {
    hmac_sha1(&h, t, tlen, inf, inflen, &i, 1, t);
    tlen = SHA_DIGEST_LENGTH;
    size_t n = outlen - done < tlen ? outlen - done : tlen;
    memcpy(out + done, t, n);
    done += n;
  }
  OPENSSL_cleanse(&h, sizeof h);
  OPENSSL_cleanse(prk, sizeof prk);
  OPENSSL_cleanse(t, sizeof t);
  return NULL;
}

/* TLS 1.3 records (RFC 8446 §5.2): the caller gives the per-record nonce (IV XOR sequence number)
 * and the record header as additional data; the context's own nonce is not used. In place allowed. */
static napi_value tls_record(napi_env env, napi_callback_info info, int sealing) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) return throw_error(env, "sealTls/openTls(ctx, nonce, aad, input, out, offset)");
  Aead *a = get_aead(env, argv[0]);
  unsigned char *nonce, *aad, *in, *out;
  size_t noncelen, aadlen, inlen, outlen;
  int64_t off;
  if (!a || a->encrypt != sealing) return throw_error(env, "wrong context for this direction");
  if (!get_bytes(env, argv[1], &nonce, &noncelen) || !get_bytes(env, argv[2], &aad, &aadlen) ||
      !get_bytes(env, argv[3], &in, &inlen) || !get_bytes(env, argv[4], &out, &outlen))
    return throw_error(env, "buffers must be Uint8Array");
  if (noncelen != NONCE || aadlen > 64) return throw_error(env, "bad nonce or aad");
  if (napi_get_value_int64(env, argv[5], &off) != napi_ok || off < 0) return throw_error(env, "bad offset");
  if (inlen > 0x7fffffff) return throw_error(env, "input too large");
  int len = 0, fin = 0;
  unsigned char *dst = out + off;
  if (sealing) {
    if ((size_t)off > outlen || outlen - (size_t)off < inlen + TAG) return throw_error(env, "output too small");
    if (EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(a->ctx, NULL, &len, aad, (int)aadlen) != 1 ||
        EVP_EncryptUpdate(a->ctx, dst, &len, in, (int)inlen) != 1 ||
        EVP_EncryptFinal_ex(a->ctx, dst + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, TAG, dst + inlen) != 1)
      return throw_error(env, "seal failed");
    return make_int(env, (int64_t)inlen + TAG);
  }
  if (inlen < TAG) return make_int(env, -1);
  size_t n = inlen - TAG;
  if ((size_t)off > outlen || outlen - (size_t)off < n) return throw_error(env, "output too small");
  unsigned char tag[TAG];
  memcpy(tag, in + n, TAG);
  if (EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) != 1 ||
      EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, TAG, tag) != 1 ||
      EVP_DecryptUpdate(a->ctx, NULL, &len, aad, (int)aadlen) != 1 ||
      EVP_DecryptUpdate(a->ctx, dst, &len, in, (int)n) != 1)
    return throw_error(env, "open failed");
  if (EVP_DecryptFinal_ex(a->ctx, dst + len, &fin) != 1) return make_int(env, -1);
  return make_int(env, (int64_t)n);
}

static napi_value seal_tls(napi_env env, napi_callback_info info) { return tls_record(env, info, 1); }
static napi_value open_tls(napi_env env, napi_callback_info info) { return tls_record(env, info, 0); }

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
    {"seal", NULL, seal, NULL, NULL, NULL, napi_default, NULL},
    {"open", NULL, open_, NULL, NULL, NULL, napi_default, NULL},
    {"hkdfSha1", NULL, hkdf_sha1, NULL, NULL, NULL, napi_default, NULL},
    {"sealTls", NULL, seal_tls, NULL, NULL, NULL, napi_default, NULL},
    {"openTls", NULL, open_tls, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 6, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
