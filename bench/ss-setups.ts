/**
 * The Shadowsocks and node-floor setups on loopback that `npm run bench` and
 * bench/latency-phases.ts share: a Ladder server and client with one key of a method, and the node
 * floor (bench/node-floor.ts). Every process is started by its PID and stopped by `stop()`.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { formatSsUri } from '../src/codec/access-key-uri.js';
import { SS_METHODS, type SsMethod } from '../src/crypto/methods.js';
import { freePort, startLadder, startProcess, type Peer } from '../test/helpers/peers.js';

export interface LoopbackSetup {
  name: string;
  kind: 'ladder' | 'floor';
  method?: SsMethod;
  socksPort: number;
  server: Peer;
  client: Peer;
  stop(): Promise<void>;
}

/** A Ladder server and client on loopback with one key of `method`, no UDP. */
export async function setupLadderSs(method: SsMethod): Promise<LoopbackSetup> {
  const sp = await freePort();
  const socks = await freePort();
  const http = await freePort();
  const spec = SS_METHODS[method];
  const password =
    spec.edition === 2022
      ? randomBytes(spec.keySize).toString('base64')
      : 'ladder-bench-password-1';
  const key = formatSsUri({ method, password, host: '127.0.0.1', port: sp });
  const server = await startLadder([
    'server',
    '--allow-private-targets',
    '--listen',
    `127.0.0.1:${sp}`,
    '--key',
    key,
    '--no-udp',
  ]);
  let client: Peer;
  try {
    client = await startLadder(
      ['client', '--server', key, '--socks', `127.0.0.1:${socks}`, '--http', `127.0.0.1:${http}`],
      /HTTP proxy listening/,
    );
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    name: `ladder ${method}`,
    kind: 'ladder',
    method,
    socksPort: socks,
    server,
    client,
    stop: async () => void (await Promise.all([client.stop(), server.stop()])),
  };
}

/**
 * The node floor (bench/node-floor.ts): Ladder's two hops in plain Node, no crypto and no checks —
 * what Node itself costs here, to read the latency and concurrency ratios against.
 */
export async function setupFloor(): Promise<LoopbackSetup> {
  const script = fileURLToPath(new URL('./node-floor.js', import.meta.url));
  const server = await startProcess([process.execPath, script, 'server'], /listening (\d+)/);
  let client;
  try {
    client = await startProcess(
      [process.execPath, script, 'client', server.match[1]!],
      /listening (\d+)/,
    );
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    name: 'node floor (no crypto)',
    kind: 'floor',
    socksPort: Number(client.match[1]),
    server,
    client,
    stop: async () => void (await Promise.all([client.stop(), server.stop()])),
  };
}
