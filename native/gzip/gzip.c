/*
 * ladder_gzip: gzip through the system's own zlib (libz.so.1), for the decoy web site.
 *
 * The decoy answers as Debian's nginx, which compresses with the system's zlib. node:zlib is a
 * different zlib (Chromium's fork, built into Node): at the same level, window and memory level it
 * picks other matches, so its bytes differ from nginx's. This addon opens libz.so.1 itself and
 * looks its functions up in that library (RTLD_DEEPBIND where the C library has it), because the
 * Node binary exports zlib symbols of its own that would otherwise be bound instead.
 *
 * Only the stable zlib ABI is used: z_stream as zlib.h has declared it since 1.0, and
 * deflateInit2_, deflate, deflateEnd, zlibVersion.
 *
 * JS API:
 *   version() -> the system zlib's version string, or null when libz.so.1 cannot be loaded
 *   create(level, windowBits, memLevel) -> a gzip stream (windowBits + 16: zlib writes the gzip
 *     header and trailer, as nginx asks it to)
 *   push(stream, input, finish) -> every byte of output the input produced (Z_NO_FLUSH, or
 *     Z_FINISH when finish is true; the stream is freed after finishing)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const unsigned char *next_in;
  unsigned avail_in;
  unsigned long total_in;
  unsigned char *next_out;
  unsigned avail_out;
  unsigned long total_out;
  const char *msg;
  void *state;
  void *zalloc;
  void *zfree;
  void *opaque;
  int data_type;
  unsigned long adler;
  unsigned long reserved;
} ZStream;

typedef int (*deflate_init2_fn)(ZStream *, int, int, int, int, int, const char *, int);
typedef int (*deflate_fn)(ZStream *, int);
typedef int (*deflate_end_fn)(ZStream *);
typedef const char *(*version_fn)(void);

#define Z_OK 0
#define Z_STREAM_END 1
#define Z_BUF_ERROR (-5)
#define Z_NO_FLUSH 0
#define Z_FINISH 4
#define Z_DEFLATED 8
#define Z_DEFAULT_STRATEGY 0

static struct {
  int tried;
  deflate_init2_fn init2;
  deflate_fn deflate;
  deflate_end_fn end;
  version_fn version;
} z;

static int load_zlib(void) {
  if (z.tried) return z.init2 != NULL;
  z.tried = 1;
  int flags = RTLD_NOW | RTLD_LOCAL;
#ifdef RTLD_DEEPBIND
  flags |= RTLD_DEEPBIND;
#endif
  void *h = dlopen("libz.so.1", flags);
  if (!h) return 0;
  z.init2 = (deflate_init2_fn)dlsym(h, "deflateInit2_");
  z.deflate = (deflate_fn)dlsym(h, "deflate");
  z.end = (deflate_end_fn)dlsym(h, "deflateEnd");
  z.version = (version_fn)dlsym(h, "zlibVersion");
  if (!z.init2 || !z.deflate || !z.end || !z.version) {
    z.init2 = NULL;
    return 0;
  }
  return 1;
}

typedef struct {
  ZStream s;
  int open;
} Gz;

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Gz *g = (Gz *)data;
  if (g->open) z.end(&g->s);
  free(g);
}

static napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, "ERR_NATIVE_GZIP", msg);
  return NULL;
}

static napi_value version(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  if (!load_zlib()) {
    napi_get_null(env, &out);
    return out;
  }
  const char *v = z.version();
  napi_create_string_utf8(env, v, strlen(v), &out);
  return out;
}

static napi_value create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_error(env, "create(level, windowBits, memLevel)");
  if (!load_zlib()) return throw_error(env, "libz.so.1 cannot be loaded");
  int32_t level, wbits, mem;
  if (napi_get_value_int32(env, argv[0], &level) != napi_ok ||
      napi_get_value_int32(env, argv[1], &wbits) != napi_ok ||
      napi_get_value_int32(env, argv[2], &mem) != napi_ok)
    return throw_error(env, "create: numbers expected");
  Gz *g = calloc(1, sizeof(Gz));
  if (!g) return throw_error(env, "out of memory");
  const char *v = z.version();
  if (z.init2(&g->s, level, Z_DEFLATED, wbits + 16, mem, Z_DEFAULT_STRATEGY, v,
              (int)sizeof(ZStream)) != Z_OK) {
    free(g);
    return throw_error(env, "deflateInit2 refused the parameters");
  }
  g->open = 1;
  napi_value out;
  if (napi_create_external(env, g, finalize, NULL, &out) != napi_ok) {
    z.end(&g->s);
    free(g);
    return throw_error(env, "cannot wrap the stream");
  }
  return out;
}

static napi_value push(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_error(env, "push(stream, input, finish)");
  Gz *g;
  if (napi_get_value_external(env, argv[0], (void **)&g) != napi_ok || !g->open)
    return throw_error(env, "push: not an open stream");
  void *in;
  size_t in_len;
  if (napi_get_buffer_info(env, argv[1], &in, &in_len) != napi_ok)
    return throw_error(env, "push: input must be a Buffer");
  bool finish;
  napi_get_value_bool(env, argv[2], &finish);
  size_t cap = in_len + in_len / 8 + 64, used = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) return throw_error(env, "out of memory");
  g->s.next_in = (const unsigned char *)in;
  g->s.avail_in = (unsigned)in_len;
  for (;;) {
    if (used == cap) {
      unsigned char *more = realloc(buf, cap * 2);
      if (!more) {
        free(buf);
        return throw_error(env, "out of memory");
      }
      buf = more;
      cap *= 2;
    }
    g->s.next_out = buf + used;
    g->s.avail_out = (unsigned)(cap - used);
    int rc = z.deflate(&g->s, finish ? Z_FINISH : Z_NO_FLUSH);
    used = cap - g->s.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      free(buf);
      return throw_error(env, "deflate failed");
    }
    if (!finish && g->s.avail_in == 0 && g->s.avail_out > 0) break;
  }
  if (finish) {
    z.end(&g->s);
    g->open = 0;
  }
  napi_value out;
  void *data;
  napi_create_buffer_copy(env, used, buf, &data, &out);
  free(buf);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"version", NULL, version, NULL, NULL, NULL, napi_default, NULL},
      {"create", NULL, create, NULL, NULL, NULL, napi_default, NULL},
      {"push", NULL, push, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
