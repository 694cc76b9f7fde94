/**
 * The client side of the WebSocket transports: a WebSocket to a server's secret path, over TLS or
 * plain TCP (to a CDN or reverse proxy in front of the server), and what rides in it:
 *
 * - Shadowsocks as v2ray-plugin carries it: the raw AEAD stream in binary messages (`mux=0`), or in
 *   Mux.Cool sessions that share WebSockets as v2ray's client shares them (v2ray-plugin's default
 *   `mux=1`, which a real v2ray-plugin server expects; mux-pool.ts); see {@link wsConnector} with
 *   SsStreamDialer's `connect` option.
 * - Trojan as v2ray carries it (`type=ws` keys): TrojanDialer's `connect` option.
 *
 * Over TLS the ClientHello is tls.ts's browser-shaped one, with ALPN http/1.1 only (a browser opens
 * its WebSockets on HTTP/1.1 connections; a server that picked h2 could not take the upgrade). The
 * upgrade request carries a browser's User-Agent. `wsConnect` resolves once the server's 101 answer
 * has been checked, so a wrong path is reported as such rather than as a dead tunnel.
 * @module
 */
import { deadline } from './deadline.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../core/defaults.js';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { DialError } from '../errors.js';
import { decodeResponseHead } from '../codec/http1.js';
import { checkUpgradeResponse, upgradeRequest } from '../codec/websocket-handshake.js';
import { ByteQueue } from '../codec/ss-stream.js';
import { WebSocketStream } from '../stream/websocket-stream.js';
import { MuxPool } from './mux-pool.js';
import { tlsConnect, type TlsClientOptions } from './tls.js';
import { connectTo } from './ss-dialer.js';
import type { Target } from './types.js';

export interface WsClientOptions {
  /** The secret path, starting with '/'. */
  path: string;
  /** The Host header (and, over TLS, the default SNI): the site's name. */
  host: string;
  /** Over TLS (wss) with these settings; plain TCP (ws) without. */
  tls?: TlsClientOptions;
  /** For connecting and for the whole handshake (default 10 s). */
  timeoutMs?: number;
  /** A connection to the server the caller opened: the WebSocket (and its TLS) goes over it. */
  socket?: Duplex;
}

/** Opens a WebSocket: TCP (and TLS), the upgrade request, the 101 answer checked. */
export async function wsConnect(
  server: Target,
  o: WsClientOptions,
  signal?: AbortSignal,
): Promise<WebSocketStream> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const over = o.socket;
  const socket: Duplex = o.tls
    ? await tlsConnect(
        server,
        { ...o.tls, alpn: ['http/1.1'], timeoutMs, ...(over ? { socket: over } : {}) },
        signal,
      )
    : (over ?? (await connectTo(server, timeoutMs, signal)));
  const what = `WebSocket ${o.tls ? 'wss' : 'ws'}://${o.host}${o.path} at ${server.host}:${server.port}`;
  const key = randomBytes(16).toString('base64');
  try {
    socket.write(upgradeRequest({ path: o.path, host: o.host, key }));
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return new Promise((resolve, reject) => {
    const q = new ByteQueue();
    const clear = deadline(
      timeoutMs,
      signal,
      () =>
        fail(new DialError('ERR_SERVER_UNREACHABLE', `${what}: no answer within ${timeoutMs} ms`)),
      () => fail(new DialError('ERR_ABORTED', `${what}: aborted`)),
    );
    const cleanup = (): void => {
      clear();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    function fail(err: DialError): void {
      cleanup();
      socket.destroy();
      reject(err);
    }
    const onData = (chunk: Buffer): void => {
      q.push(chunk);
      let d;
      try {
        d = decodeResponseHead(q.peek(q.length), 0);
      } catch (err) {
        fail(new DialError('ERR_DIAL', `${what}: not an HTTP answer (${(err as Error).message})`));
        return;
      }
      if (d === null) return;
      const why = checkUpgradeResponse(d.value, key);
      if (why !== null) {
        fail(new DialError('ERR_DIAL', `${what}: ${why}; check the key's path and host`));
        return;
      }
      cleanup();
      socket.pause();
      q.take(d.bytesRead);
      const ws = new WebSocketStream(socket, { role: 'client', head: q.takeAll() });
      socket.resume();
      resolve(ws);
    };
    const onEnd = (): void =>
      fail(new DialError('ERR_DIAL', `${what}: the server closed without answering the upgrade`));
    const onError = (err: Error): void =>
      fail(new DialError('ERR_SERVER_UNREACHABLE', `${what}: ${err.message}`, { cause: err }));
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
  });
}

/**
 * A `connect` function for the Shadowsocks and Trojan dialers: each call opens one WebSocket and
 * returns it; or, with `mux` (v2ray-plugin's option: the sessions one WebSocket carries at once),
 * one Mux.Cool session on a WebSocket that may already be open (see MuxPool).
 */
export function wsConnector(
  server: Target,
  o: WsClientOptions & { mux?: boolean | number; muxSessionsPerConnection?: number },
): (dialerServer: Target, signal?: AbortSignal) => Promise<Duplex> {
  // The dialers pass their server too; it is the same one, given here once.
  if (!o.mux) return (_s, signal) => wsConnect(server, o, signal);
  const pool = new MuxPool({
    connect: () => wsConnect(server, o),
    concurrency: o.mux === true ? 1 : o.mux,
    ...(o.muxSessionsPerConnection ? { sessionsPerConnection: o.muxSessionsPerConnection } : {}),
  });
  // v2ray-plugin's dokodemo-door names no target the server uses (its freedom outbound has a
  // fixed destination); v2ray sends 127.0.0.1 and the port 0 here.
  return (_s, signal) => pool.open({ host: '127.0.0.1', port: 0 }, signal);
}
