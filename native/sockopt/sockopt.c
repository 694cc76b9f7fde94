/*
 * ladder_sockopt: the one socket option Node does not expose that Ladder sets, TCP_CONGESTION
 * (tcp(7)): which congestion control a TCP socket runs, e.g. "bbr" on a lossy long path where the
 * machine's default is "cubic". Set on a listening socket, it is inherited by every connection the
 * listener accepts.
 *
 * JS API (fd: a socket's descriptor, from its libuv handle):
 *   setCongestion(fd: number, name: string) -> void   throws Error with .code = errno name
 *   getCongestion(fd: number) -> string
 *   tcpState(fd: number) -> [caState, unacked]   TCP_INFO's tcpi_ca_state (0: open, no loss being
 *                                                 repaired) and tcpi_unacked (segments in flight)
 *   bbrPacingGain(fd: number) -> number | null    TCP_CC_INFO's bbr_pacing_gain (256 = 1.0; about
 *                                                 739 in BBR's start-up), null when the socket's
 *                                                 congestion control is not BBR
 */
#include <node_api.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/inet_diag.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* TCP_CA_NAME_MAX in the kernel: 16 bytes with the terminating NUL. */
#define CA_NAME_MAX 16

static const char *errno_code(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    default: return "EIO";
  }
}

static napi_value throw_errno(napi_env env, const char *what, int e) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, errno_code(e), msg);
  return NULL;
}

static int get_fd(napi_env env, napi_value v, int *fd) {
  int32_t n;
  if (napi_get_value_int32(env, v, &n) != napi_ok || n < 0) {
    napi_throw_type_error(env, "EINVAL", "fd must be a non-negative integer");
    return 0;
  }
  *fd = n;
  return 1;
}

/* The one argument of a getter: a socket's descriptor. 0 with a TypeError thrown when it is not. */
static int fd_arg(napi_env env, napi_callback_info info, const char *usage, int *fd) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, "EINVAL", usage);
    return 0;
  }
  return get_fd(env, argv[0], fd);
}

/* The socket's congestion control's name into name[CA_NAME_MAX]; 0 with an Error thrown on failure. */
static int read_congestion(napi_env env, int fd, char *name) {
  socklen_t len = CA_NAME_MAX;
  memset(name, 0, CA_NAME_MAX);
  if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) != 0) {
    throw_errno(env, "getsockopt TCP_CONGESTION", errno);
    return 0;
  }
  return 1;
}

static napi_value set_congestion(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc < 2 || !get_fd(env, argv[0], &fd)) {
    if (argc < 2) napi_throw_type_error(env, "EINVAL", "setCongestion(fd, name)");
    return NULL;
  }
  char name[CA_NAME_MAX];
  size_t len = 0;
  if (napi_get_value_string_latin1(env, argv[1], NULL, 0, &len) != napi_ok || len == 0 ||
      len >= CA_NAME_MAX ||
      napi_get_value_string_latin1(env, argv[1], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "name must be 1-15 characters");
    return NULL;
  }
  if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)len) != 0)
    return throw_errno(env, "setsockopt TCP_CONGESTION", errno);
  return NULL;
}

static napi_value get_congestion(napi_env env, napi_callback_info info) {
  int fd;
  char name[CA_NAME_MAX];
  if (!fd_arg(env, info, "getCongestion(fd)", &fd) || !read_congestion(env, fd, name)) return NULL;
  napi_value out;
  napi_create_string_latin1(env, name, strnlen(name, sizeof name), &out);
  return out;
}

static napi_value tcp_state(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, "tcpState(fd)", &fd)) return NULL;
  struct tcp_info ti;
  memset(&ti, 0, sizeof ti);
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
    return throw_errno(env, "getsockopt TCP_INFO", errno);
  napi_value out, ca, unacked;
  napi_create_array_with_length(env, 2, &out);
  napi_create_uint32(env, ti.tcpi_ca_state, &ca);
  napi_create_uint32(env, ti.tcpi_unacked, &unacked);
  napi_set_element(env, out, 0, ca);
  napi_set_element(env, out, 1, unacked);
  return out;
}

static napi_value bbr_pacing_gain(napi_env env, napi_callback_info info) {
  int fd;
  char name[CA_NAME_MAX];
  if (!fd_arg(env, info, "bbrPacingGain(fd)", &fd) || !read_congestion(env, fd, name)) return NULL;
  napi_value out;
  if (strncmp(name, "bbr", sizeof name) != 0) {
    napi_get_null(env, &out);
    return out;
  }
  union tcp_cc_info cc;
  memset(&cc, 0, sizeof cc);
  socklen_t len = sizeof cc;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CC_INFO, &cc, &len) != 0)
    return throw_errno(env, "getsockopt TCP_CC_INFO", errno);
  if (len < sizeof cc.bbr) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_uint32(env, cc.bbr.bbr_pacing_gain, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setCongestion", NULL, set_congestion, NULL, NULL, NULL, napi_default, NULL},
      {"getCongestion", NULL, get_congestion, NULL, NULL, NULL, napi_default, NULL},
      {"tcpState", NULL, tcp_state, NULL, NULL, NULL, napi_default, NULL},
      {"bbrPacingGain", NULL, bbr_pacing_gain, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
