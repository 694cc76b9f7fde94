/**
 * Named defaults shared by more than one module: timeouts, caps and sizes that a flag or an option
 * may override. A default that one module alone uses stays beside its code.
 * @module
 */

/** How long a connection may stay without a key before it is closed (server --auth-timeout). */
export const DEFAULT_AUTH_TIMEOUT_MS = 60_000;

/** How long a relayed connection may stay idle before it is closed (server --idle-timeout). */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/** How long a dial (TCP connect, TLS or WebSocket handshake) may take. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Connections at once on every server listener (server --max-connections). */
export const DEFAULT_MAX_CONNECTIONS = 8192;

/** How long open connections get to finish when a server closes. */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;

/** Where `ladder server` listens without --listen. */
export const DEFAULT_SERVER_LISTEN = '0.0.0.0:8388';

/** The host a server flag's `host:port` takes when only `:port` is given. */
export const DEFAULT_SERVER_HOST = '0.0.0.0';

/** Where `ladder client` runs its SOCKS5 proxy without --socks. */
export const DEFAULT_SOCKS_LISTEN = '127.0.0.1:1080';

/** Where `ladder client` runs its HTTP proxy without --http. */
export const DEFAULT_HTTP_LISTEN = '127.0.0.1:8080';
