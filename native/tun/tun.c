/*
 * ladder_tun: attach to a Linux TUN device and read its packets in batches.
 *
 * Node cannot issue the TUNSETIFF ioctl, and a TUN descriptor is a character device that libuv
 * treats as a file, so reading it through fs.read would cost one thread-pool round trip per packet.
 * Here one reader thread polls the descriptor and drains every queued packet into a batch buffer,
 * then hands the batch to JavaScript through a thread-safe function. Writes stay in JavaScript
 * (fs.writeSync on the descriptor): a write to a TUN device enters the network stack at once and
 * never blocks.
 *
 * JS API:
 *   open(name: string) -> fd            attach (IFF_TUN | IFF_NO_PI) to `name`, non-blocking
 *   start(fd, onBatch(batch: Buffer)) -> handle
 *       batch = repeated { u16 big-endian length, packet bytes }
 *   stop(handle)                        the reader thread exits within POLL_MS, then closes fd
 *   writeBatch(fd, batch) -> count      writes every packet of a batch in the format above back
 *       into the device, one write(2) each, skipping entries whose length is 0 (the caller zeroes
 *       those it drops); one call per batch instead of one per packet. Returns the packets the
 *       stack took (a refused packet, e.g. ENOBUFS, is dropped as the network would).
 *   poll(fd, onBatch(batch: Buffer, length: number) -> boolean) -> handle
 *       the same batches without the reader thread: the descriptor joins the event loop (uv_poll),
 *       is drained on the JavaScript thread when readable, and `batch` is one buffer reused for
 *       every call (valid only during the call; bytes past `length` are stale). When onBatch
 *       returns true, the batch's entries whose length is not 0 are written back into the device
 *       at once, as writeBatch does. No thread hop per batch: a packet that a short request waits
 *       for is read by the thread that handles it, in the same wake-up.
 *   unpoll(handle)                      stops polling and closes fd
 */
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define BATCH_BYTES (512 * 1024)
#define MAX_PACKET 65535
#define MAX_PER_BATCH 512
#define POLL_MS 100

typedef struct {
  int fd;
  atomic_int stop;
  napi_threadsafe_function tsfn;
  pthread_t thread;
} Reader;

typedef struct {
  unsigned char *data;
  size_t len;
} Batch;

static napi_value throw_errno(napi_env env, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, "ERR_LAB_TUN", msg);
  return NULL;
}

static void free_batch(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  Batch *b = (Batch *)data;
  if (env == NULL) {
    free(b->data);
    free(b);
    return;
  }
  napi_value buf, undef;
  if (napi_create_external_buffer(env, b->len, b->data, free_batch, NULL, &buf) != napi_ok) {
    free(b->data);
    free(b);
    return;
  }
  free(b);
  napi_get_undefined(env, &undef);
  napi_call_function(env, undef, cb, 1, &buf, NULL);
}

static void *reader_main(void *arg) {
  Reader *r = (Reader *)arg;
  /* One scratch buffer for the reader's life; each batch leaves in a buffer of exactly its size.
     A fresh BATCH_BYTES block per wake-up would be an mmap and munmap (glibc's threshold is
     128 KiB) plus page faults for every batch, most of which hold one or two packets. */
  unsigned char *buf = malloc(BATCH_BYTES);
  while (buf != NULL && !atomic_load(&r->stop)) {
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    int pr = poll(&p, 1, POLL_MS);
    if (pr <= 0) continue;
    size_t off = 0;
    int count = 0;
    while (count < MAX_PER_BATCH && BATCH_BYTES - off >= MAX_PACKET + 2) {
      ssize_t n = read(r->fd, buf + off + 2, MAX_PACKET);
      if (n <= 0) break; /* EAGAIN: drained */
      buf[off] = (unsigned char)(n >> 8);
      buf[off + 1] = (unsigned char)(n & 0xff);
      off += 2 + (size_t)n;
      count++;
    }
    if (off == 0) continue;
    Batch *b = malloc(sizeof *b);
    unsigned char *data = malloc(off);
    if (b == NULL || data == NULL) {
      free(b);
      free(data);
      break;
    }
    memcpy(data, buf, off);
    b->data = data;
    b->len = off;
    /* Non-blocking so that stop() never waits on a full queue; a full queue means JavaScript is
       behind, so back off briefly and let the kernel's TUN queue absorb (or drop) the burst. */
    for (;;) {
      napi_status s = napi_call_threadsafe_function(r->tsfn, b, napi_tsfn_nonblocking);
      if (s == napi_ok) break;
      if (s != napi_queue_full || atomic_load(&r->stop)) {
        free(b->data);
        free(b);
        break;
      }
      struct timespec ts = {0, 200 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  free(buf);
  close(r->fd);
  napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
  return NULL;
}

static void finalize_reader(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Reader *r = (Reader *)data;
  atomic_store(&r->stop, 1);
  pthread_join(r->thread, NULL);
  free(r);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[IFNAMSIZ];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_LAB_TUN", "open(name): name must be a string");
    return NULL;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  memcpy(ifr.ifr_name, name, len < IFNAMSIZ - 1 ? len : IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return throw_errno(env, "TUNSETIFF");
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return throw_errno(env, "O_NONBLOCK");
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "ERR_LAB_TUN", "start(fd, onBatch)");
    return NULL;
  }
  Reader *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, "calloc");
  r->fd = fd;
  atomic_init(&r->stop, 0);
  napi_value name;
  napi_create_string_utf8(env, "ladder_tun_reader", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 16, 1, NULL, NULL, NULL, call_js,
                                      &r->tsfn) != napi_ok) {
    free(r);
    napi_throw_error(env, "ERR_LAB_TUN", "could not create the thread-safe function");
    return NULL;
  }
  if (pthread_create(&r->thread, NULL, reader_main, r) != 0) {
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
    free(r);
    return throw_errno(env, "pthread_create");
  }
  napi_value handle;
  napi_create_external(env, r, finalize_reader, NULL, &handle);
  return handle;
}

static napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_LAB_TUN", "stop(handle)");
    return NULL;
  }
  atomic_store(&((Reader *)data)->stop, 1);
  return NULL;
}

/* Writes back the entries of a batch whose length is not 0 (the format of writeBatch). */
static int32_t write_entries(int fd, const unsigned char *b, size_t len) {
  size_t o = 0;
  int32_t written = 0;
  while (o + 2 <= len) {
    size_t n = ((size_t)b[o] << 8) | b[o + 1];
    if (o + 2 + n > len) break;
    if (n > 0 && write(fd, b + o + 2, n) == (ssize_t)n) written++;
    o += 2 + n;
  }
  return written;
}

static napi_value js_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  void *data = NULL;
  size_t len = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_TUN", "writeBatch(fd, batch)");
    return NULL;
  }
  int32_t written = write_entries(fd, (const unsigned char *)data, len);
  napi_value out;
  napi_create_int32(env, written, &out);
  return out;
}

/* The poll API: the descriptor in the event loop, the batch read on the JavaScript thread. */
typedef struct {
  uv_poll_t poll; /* first: the uv handle's address is the Poller's */
  int fd;
  napi_env env;
  napi_ref cb;
  napi_ref buffer; /* the JS Buffer over `buf`; the Buffer's finalizer frees `buf` */
  napi_async_context ctx;
  unsigned char *buf;
  int stopped;
  /* Freed when both have happened: the uv handle is closed and the JS handle is collected. */
  int closed;
  int finalized;
} Poller;

static void free_scratch(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void poller_closed(uv_handle_t *h) {
  Poller *p = (Poller *)h;
  close(p->fd);
  p->closed = 1;
  if (p->finalized) free(p);
}

static void finalize_poller(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Poller *p = (Poller *)data;
  p->finalized = 1;
  if (p->closed) free(p);
}

static void poller_stop(Poller *p) {
  if (p->stopped) return;
  p->stopped = 1;
  uv_poll_stop(&p->poll);
  napi_delete_reference(p->env, p->cb);
  napi_delete_reference(p->env, p->buffer);
  napi_async_destroy(p->env, p->ctx);
  uv_close((uv_handle_t *)&p->poll, poller_closed);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  Poller *p = (Poller *)h;
  if (p->stopped) return;
  if (status < 0 || !(events & UV_READABLE)) return;
  size_t off = 0;
  int count = 0;
  while (count < MAX_PER_BATCH && BATCH_BYTES - off >= MAX_PACKET + 2) {
    ssize_t n = read(p->fd, p->buf + off + 2, MAX_PACKET);
    if (n <= 0) break; /* EAGAIN: drained; the poll wakes again when more arrive */
    p->buf[off] = (unsigned char)(n >> 8);
    p->buf[off + 1] = (unsigned char)(n & 0xff);
    off += 2 + (size_t)n;
    count++;
  }
  if (off == 0) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, buffer, argv[2], recv, result;
  napi_get_reference_value(env, p->cb, &cb);
  napi_get_reference_value(env, p->buffer, &buffer);
  napi_get_global(env, &recv); /* make_callback converts its receiver to an object */
  argv[0] = buffer;
  napi_create_uint32(env, (uint32_t)off, &argv[1]);
  /* make_callback, not call_function: the microtasks and nextTicks the callback queues run after it,
     as for any other I/O callback. */
  napi_status s = napi_make_callback(env, p->ctx, recv, cb, 2, argv, &result);
  bool pending = false;
  if (s != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  } else if (s == napi_ok && !p->stopped) {
    bool back = false;
    if (napi_get_value_bool(env, result, &back) == napi_ok && back) write_entries(p->fd, p->buf, off);
  }
  napi_close_handle_scope(env, scope);
}

static napi_value js_poll(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "ERR_TUN", "poll(fd, onBatch)");
    return NULL;
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_throw_error(env, "ERR_TUN", "no event loop");
    return NULL;
  }
  Poller *p = calloc(1, sizeof *p);
  unsigned char *buf = malloc(BATCH_BYTES);
  if (p == NULL || buf == NULL) {
    free(p);
    free(buf);
    return throw_errno(env, "malloc");
  }
  napi_value buffer, name, resource;
  if (napi_create_external_buffer(env, BATCH_BYTES, buf, free_scratch, NULL, &buffer) != napi_ok) {
    free(p);
    free(buf);
    napi_throw_error(env, "ERR_TUN", "could not create the batch buffer");
    return NULL;
  }
  p->fd = fd;
  p->env = env;
  p->buf = buf;
  napi_create_reference(env, argv[1], 1, &p->cb);
  napi_create_reference(env, buffer, 1, &p->buffer);
  napi_create_string_utf8(env, "ladder_tun_poll", NAPI_AUTO_LENGTH, &name);
  napi_create_object(env, &resource);
  napi_async_init(env, resource, name, &p->ctx);
  int e = uv_poll_init(loop, &p->poll, fd);
  if (e == 0) e = uv_poll_start(&p->poll, UV_READABLE, on_readable);
  if (e != 0) {
    napi_delete_reference(env, p->cb);
    napi_delete_reference(env, p->buffer);
    napi_async_destroy(env, p->ctx);
    free(p); /* uv_poll_init failed or the handle is inactive: nothing in the loop refers to it */
    char msg[128];
    snprintf(msg, sizeof msg, "uv_poll: %s", uv_strerror(e));
    napi_throw_error(env, "ERR_TUN", msg);
    return NULL;
  }
  napi_value handle;
  napi_create_external(env, p, finalize_poller, NULL, &handle);
  return handle;
}

static napi_value js_unpoll(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_TUN", "unpoll(handle)");
    return NULL;
  }
  poller_stop((Poller *)data);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, js_stop, NULL, NULL, NULL, napi_default, NULL},
      {"writeBatch", NULL, js_write_batch, NULL, NULL, NULL, napi_default, NULL},
      {"poll", NULL, js_poll, NULL, NULL, NULL, napi_default, NULL},
      {"unpoll", NULL, js_unpoll, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 6, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
