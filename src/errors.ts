/**
 * One error hierarchy for all of Ladder. Every error carries a stable `code` from {@link ErrorCode};
 * the same strings are metric labels and are listed in docs/errors.md. Errors are translated only at
 * the edges: to a SOCKS reply code, an HTTP status, an exit code, and, before authentication, to
 * nothing at all (docs/probe-resistance.md).
 * @module
 */

/** Every error code Ladder uses. Add new ones here and in docs/errors.md. */
export type ErrorCode =
  // codec: malformed wire data
  | 'ERR_CODEC'
  | 'ERR_SOCKS_ADDR'
  | 'ERR_SOCKS_VERSION'
  | 'ERR_SOCKS_AUTH'
  | 'ERR_SOCKS_COMMAND'
  | 'ERR_HTTP_PARSE'
  | 'ERR_HTTP_TOO_LARGE'
  | 'ERR_SS_BAD_TAG'
  | 'ERR_SS_CHUNK_LENGTH'
  | 'ERR_SS2022_BAD_TIMESTAMP'
  | 'ERR_SS2022_BAD_HEADER'
  | 'ERR_SS2022_BAD_REQUEST_SALT'
  | 'ERR_SS2022_PADDING'
  | 'ERR_TROJAN'
  | 'ERR_WEBSOCKET'
  | 'ERR_MUX_COOL'
  | 'ERR_CARRIER'
  | 'ERR_TLS_PROTOCOL'
  | 'ERR_TLS_ALERT'
  | 'ERR_TLS_CERT'
  // server: authentication and replay
  | 'ERR_CIPHER'
  | 'ERR_REPLAY_CLIENT'
  | 'ERR_REPLAY_SERVER'
  | 'ERR_PROBE_TIMEOUT'
  | 'ERR_PROBE_SHORT'
  | 'ERR_ACCESS_DENIED'
  | 'ERR_UDP_BUDGET'
  // dialing and relaying
  | 'ERR_DIAL_REFUSED'
  | 'ERR_DIAL_UNREACHABLE'
  | 'ERR_DIAL_TIMEOUT'
  | 'ERR_DIAL_DNS'
  | 'ERR_DIAL_FORBIDDEN'
  | 'ERR_DIAL'
  | 'ERR_SERVER_UNREACHABLE'
  | 'ERR_RULE_REJECT'
  | 'ERR_IDLE_TIMEOUT'
  | 'ERR_ABORTED'
  // configuration and CLI
  | 'ERR_CONFIG'
  | 'ERR_KEY_URI'
  | 'ERR_ONLINE_KEY'
  | 'ERR_KEY_DOCUMENT'
  | 'ERR_UNKNOWN_METHOD'
  | 'ERR_LISTEN'
  | 'ERR_USAGE'
  | 'ERR_RULES'
  | 'ERR_GEOIP'
  // operator: key store and management API
  | 'ERR_NOT_FOUND'
  | 'ERR_CONFLICT'
  | 'ERR_API'
  | 'ERR_STORE_UNAVAILABLE'
  // lab
  | 'ERR_LAB'
  | 'ERR_LAB_NEEDS_ROOT'
  // tun: the full-device client (ladder client --tun)
  | 'ERR_TUN'
  | 'ERR_TUN_NEEDS_ADMIN';

/** Base class: a message for people, a stable code for programs, and the cause kept. */
export class LadderError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Malformed wire data. Thrown by pure codecs; `null` returns mean "need more bytes" instead. */
export class CodecError extends LadderError {}

/** Authentication or replay failure before a peer has proven it holds a key. Never shown to it. */
export class AuthError extends LadderError {}

/** A destination or server could not be reached. */
export class DialError extends LadderError {}

/** Bad configuration, key URI or command-line usage. The message names the part and the fix. */
export class ConfigError extends LadderError {}

/** True if `err` is a LadderError with one of the given codes. */
export function hasCode(err: unknown, ...codes: ErrorCode[]): err is LadderError {
  return err instanceof LadderError && codes.includes(err.code);
}

/** Maps a Node system error (ECONNREFUSED, ...) from a dial to a DialError with a stable code. */
export function dialErrorFromSystem(err: unknown, what: string): DialError {
  if (err instanceof DialError) return err;
  const sys = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (sys) {
    case 'ECONNREFUSED':
      return new DialError('ERR_DIAL_REFUSED', `${what}: connection refused`, { cause: err });
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
    case 'EADDRNOTAVAIL':
      return new DialError('ERR_DIAL_UNREACHABLE', `${what}: network unreachable`, { cause: err });
    case 'ETIMEDOUT':
      return new DialError('ERR_DIAL_TIMEOUT', `${what}: timed out`, { cause: err });
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_FAIL':
      return new DialError('ERR_DIAL_DNS', `${what}: name not resolved`, { cause: err });
    case 'ABORT_ERR':
      return new DialError('ERR_ABORTED', `${what}: aborted`, { cause: err });
    default:
      return new DialError(
        'ERR_DIAL',
        `${what}: ${(err as Error | undefined)?.message ?? String(err)}`,
        { cause: err },
      );
  }
}
