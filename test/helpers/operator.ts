/**
 * A real `ladder server --data DIR` process with its management API, and a small client for that
 * API that pins the certificate by the SHA-256 the server printed, as Outline Manager does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { freePort, startLadder, type Peer } from './peers.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsStreamDialer } from '../../src/transport/ss-dialer.js';
import { ApiClient as LadderApiClient, type ApiReply } from '../../src/admin/api-client.js';

export interface OperatorServer {
  peer: Peer;
  port: number;
  apiUrl: string;
  certSha256: string;
  metricsUrl: string | undefined;
  api: ApiClient;
}

export type ApiClient = (method: string, path: string, body?: unknown) => Promise<ApiReply>;

export function tempDataDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-data-'));
  return { dir: join(dir, 'data'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The API at `apiUrl` through Ladder's own client (src/admin/api-client.ts), pinned by its SHA-256. */
export function apiClient(apiUrl: string, certSha256: string): ApiClient {
  const c = new LadderApiClient(apiUrl, certSha256);
  return (method, path, body) => c.call(method, path, body);
}

/** Starts `ladder server --data dir` on loopback with its API and metrics; `port` keeps the one of an earlier run. */
export async function startOperatorServer(
  dir: string,
  extra: string[] = [],
  port?: number,
  env?: NodeJS.ProcessEnv,
  timeoutMs?: number,
): Promise<OperatorServer> {
  const p = port ?? (await freePort());
  const peer = await startLadder(
    [
      'server',
      '--allow-private-targets',
      '--listen',
      `127.0.0.1:${p}`,
      '--data',
      dir,
      '--api',
      '127.0.0.1:0',
      '--metrics',
      '127.0.0.1:0',
      ...extra,
    ],
    /metrics at (http:\/\/\S+)/,
    { ...(env ? { env } : {}), ...(timeoutMs ? { timeoutMs } : {}) },
  );
  const m = /\{"apiUrl":"([^"]+)","certSha256":"([0-9A-F]{64})"\}/.exec(peer.output());
  if (!m) throw new Error(`no apiUrl line in:\n${peer.output()}`);
  const metricsUrl = /metrics at (http:\/\/\S+)/.exec(peer.output())?.[1];
  return {
    peer,
    port: p,
    apiUrl: m[1]!,
    certSha256: m[2]!,
    metricsUrl,
    api: apiClient(m[1]!, m[2]!),
  };
}

/** A Shadowsocks dialer for a key as the API returned it, optionally from a given local address. */
export function dialerFor(
  port: number,
  key: { method: string; password: string },
  localAddress?: string,
): SsStreamDialer {
  return new SsStreamDialer({ host: '127.0.0.1', port }, makeCipherKey(key.method, key.password), {
    ...(localAddress ? { localAddress } : {}),
  });
}

/**
 * HTTP GET of `path` on the origin through `dialer`; resolves with the status line and how many
 * body bytes arrived before the end (or the close) of the stream.
 */
export async function fetchThrough(
  dialer: SsStreamDialer,
  originPort: number,
  path: string,
  host = '127.0.0.1',
): Promise<{ head: string; bodyBytes: number; ended: 'end' | 'close' | 'error' }> {
  const s = await dialer.dial({ host, port: originPort });
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let head = '';
    let body = 0;
    s.on('data', (c: Buffer) => {
      if (head) {
        body += c.length;
        return;
      }
      buf = Buffer.concat([buf, c]);
      const i = buf.indexOf('\r\n\r\n');
      if (i >= 0) {
        head = buf.subarray(0, i).toString('latin1');
        body = buf.length - i - 4;
      }
    });
    let settled = false;
    const done = (ended: 'end' | 'close' | 'error'): void => {
      if (settled) return;
      settled = true;
      resolve({ head, bodyBytes: body, ended });
    };
    s.on('end', () => done('end'));
    s.on('error', () => done('error'));
    s.on('close', () => done('close'));
  });
}

/**
 * Sends bytes to the server raw, as a client would, and reports what came back within `waitMs`:
 * how many bytes, and whether the server closed first. A refused key gets 0 bytes and no close.
 */
export function rawExchange(
  port: number,
  bytes: Buffer,
  waitMs: number,
  localAddress?: string,
): Promise<{ received: number; serverClosed: boolean }> {
  return new Promise((resolve) => {
    const s: Socket = connect({
      host: '127.0.0.1',
      port,
      ...(localAddress ? { localAddress } : {}),
    });
    let received = 0;
    let serverClosed = false;
    s.on('connect', () => s.write(bytes));
    s.on('data', (c: Buffer) => (received += c.length));
    s.on('end', () => (serverClosed = true));
    s.on('close', () => (serverClosed = true));
    s.on('error', () => (serverClosed = true));
    setTimeout(() => {
      const r = { received, serverClosed };
      s.destroy();
      resolve(r);
    }, waitMs);
  });
}
