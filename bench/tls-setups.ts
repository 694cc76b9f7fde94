/**
 * The TLS transports in the benchmark (issue #4 item 9), each a SOCKS5 client and a server on
 * loopback, with one certificate made by openssl for all of them:
 *
 *   ladder trojan/tls         ladder client (trojan:// key, pinned)         -> ladder server
 *   ladder trojan/tls mux     the same key with mux=8: Mux.Cool sessions share TLS connections
 *   ladder ws/tls trojan      ladder client (trojan:// type=ws)             -> ladder server (Trojan inside WebSocket over TLS)
 *   ladder ws/tls trojan mux  the same with mux=8
 *   ladder ws/tls ss          ladder client (ss:// + v2ray-plugin, mux=0)    -> ladder server (SS aes-256-gcm inside WebSocket over TLS)
 *   ladder ws/tls ss mux      the same with v2ray-plugin's default Mux.Cool: sessions share WebSockets
 *   libev+v2ray-plugin ws/tls (mux)
 *                             ss-local + v2ray-plugin (tls, mux=0 / default) -> ss-server + v2ray-plugin (server;tls):
 *                             the same SS-in-WebSocket design in C and Go, the yardstick of the ws/tls ss rows
 *   trojan-gfw                trojan -c client.json                          -> trojan -c server.json
 *   node tls floor            node-floor.js client --tls                     -> node-floor.js server --recycle --tls: what
 *                             any Node TLS relay pays (tls.createServer, a 6-byte header, net.connect, reads
 *                             from the target into one shared buffer)
 *   node tls floor pipe       the same with `pipe()` both ways (a fresh 64 KiB buffer per read)
 *   v2ray trojan/tls          v2ray (socks in, trojan out, tls)              -> v2ray (trojan in, tls)
 *   v2ray vless/tls           v2ray (socks in, vless out, tls)               -> v2ray (vless in, tls)
 *
 * Configs of the Debian peers: test/helpers/peer-configs.ts (from the team's reference configs).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { formatSsUri } from '../src/codec/access-key-uri.js';
import { formatTrojanUri } from '../src/codec/trojan-uri.js';
import { v2rayPlugin } from '../src/codec/v2ray-plugin.js';
import {
  freePort,
  hasCommand,
  startDaemon,
  startLadder,
  startProcess,
  type Peer,
} from '../test/helpers/peers.js';
import { makeCert, type TestCert } from '../test/helpers/tls-cert.js';
import {
  trojanClientConfig,
  trojanServerConfig,
  v2rayClientConfig,
  v2rayServerConfig,
} from '../test/helpers/peer-configs.js';

export interface TlsSetup {
  name: string;
  kind: 'ladder-tls' | 'peer-tls' | 'floor-tls';
  socksPort: number;
  server: Peer;
  client: Peer;
  stop(): Promise<void>;
}

let cert: TestCert | null = null;
/** The one certificate of the run (removed by {@link removeCert}). */
function certificate(): TestCert {
  cert ??= makeCert();
  return cert;
}
export function removeCert(): void {
  cert?.remove();
  cert = null;
}

/** What the TLS setups need; null when all is there. */
export function missingForTls(): string | null {
  const missing = ['openssl', 'trojan', 'v2ray'].filter((c) => !hasCommand(c));
  return missing.length > 0
    ? `${missing.join(', ')} missing: apt-get install -y openssl trojan v2ray`
    : null;
}

async function pair(
  name: string,
  kind: TlsSetup['kind'],
  startServer: () => Promise<Peer>,
  startClient: (socks: number) => Promise<Peer>,
): Promise<TlsSetup> {
  const server = await startServer();
  const socks = await freePort();
  let client: Peer;
  try {
    client = await startClient(socks);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    name,
    kind,
    socksPort: socks,
    server,
    client,
    stop: async () => void (await Promise.all([client.stop(), server.stop()])),
  };
}

const PASSWORD = 'ladder-bench-password-1';

/** Mux.Cool sessions per connection in the mux rows: v2ray's default concurrency. */
const MUX = 8;

/** Ladder's Trojan, over TLS or inside a WebSocket over TLS, with or without Mux.Cool. */
export function setupLadderTrojan(
  o: { ws?: boolean; mux?: boolean; split?: boolean; fp?: 'chrome' | 'node' } = {},
): Promise<TlsSetup> {
  const c = certificate();
  const path = `/${randomBytes(12).toString('base64url')}`;
  let port = 0;
  const ws = o.ws ? { type: 'ws' as const, path, wsHost: 'localhost' } : {};
  return pair(
    `ladder ${o.ws ? 'ws/tls trojan' : 'trojan/tls'}${o.mux ? ' mux' : ''}${o.split ? ' split' : ''}${o.fp ? ` fp=${o.fp}` : ''}`,
    'ladder-tls',
    async () => {
      port = await freePort();
      return startLadder(
        [
          'server',
          '--allow-private-targets',
          '--listen',
          `127.0.0.1:${port}`,
          '--key',
          formatTrojanUri({ password: PASSWORD, host: '127.0.0.1', port, ...ws }),
          '--tls-cert',
          c.certFile,
          '--tls-key',
          c.keyFile,
          '--no-udp',
        ],
        o.ws ? /secret path/ : /listening/,
      );
    },
    (socks) =>
      startLadder(
        [
          'client',
          '--server',
          formatTrojanUri({
            password: PASSWORD,
            host: '127.0.0.1',
            port,
            sni: 'localhost',
            pinSha256: c.pin,
            ...ws,
            ...(o.mux ? { mux: MUX } : {}),
            ...(o.split ? { split: true as const } : {}),
            ...(o.fp ? { fp: o.fp } : {}),
          }),
          '--socks',
          `127.0.0.1:${socks}`,
          '--no-http',
        ],
        /carrying traffic/,
      ),
  );
}

/** Debian's v2ray-plugin binary (the package names it ss-v2ray-plugin), or null. */
export function v2rayPluginBinary(): string | null {
  return ['ss-v2ray-plugin', 'v2ray-plugin'].find((b) => hasCommand(b)) ?? null;
}

/**
 * shadowsocks-libev with v2ray-plugin on both sides (SIP003): ss-local + plugin (client mode, tls,
 * the cert file to verify) -> plugin (server mode, tls) + ss-server, aes-256-gcm, TCP only as the
 * other libev rows. `mux` false writes mux=0; true leaves the plugin's default (Mux.Cool, 1 at once).
 */
export function setupLibevV2rayPlugin(mux: boolean): Promise<TlsSetup> {
  const c = certificate();
  const plugin = v2rayPluginBinary();
  if (!plugin)
    return Promise.reject(
      new Error('v2ray-plugin missing: apt-get install -y shadowsocks-v2ray-plugin'),
    );
  const path = `/${randomBytes(12).toString('base64url')}`;
  let port = 0;
  const common = {
    password: PASSWORD,
    method: 'aes-256-gcm',
    timeout: 60,
    mode: 'tcp_only',
    no_delay: true,
    plugin,
  };
  return pair(
    `libev+v2ray-plugin ws/tls${mux ? ' mux' : ''}`,
    'peer-tls',
    async () => {
      port = await freePort();
      return startDaemon(
        (file) => ['ss-server', '-c', file],
        {
          server: '127.0.0.1',
          server_port: port,
          ...common,
          // v2ray-plugin's server reads Mux.Cool unless it too is told mux=0.
          plugin_opts: `server;tls;host=localhost;path=${path};cert=${c.certFile};key=${c.keyFile}${mux ? '' : ';mux=0'}`,
        },
        port,
      );
    },
    (socks) =>
      startDaemon(
        (file) => ['ss-local', '-c', file],
        {
          server: '127.0.0.1',
          server_port: port,
          local_address: '127.0.0.1',
          local_port: socks,
          ...common,
          plugin_opts: [
            `tls`,
            `host=localhost`,
            `path=${path}`,
            `cert=${c.certFile}`,
            ...(mux ? [] : ['mux=0']),
          ].join(';'),
        },
        socks,
      ),
  );
}

export function setupLadderWs(mux: boolean): Promise<TlsSetup> {
  const c = certificate();
  const path = `/${randomBytes(12).toString('base64url')}`;
  let port = 0;
  const key = (pin: boolean): string =>
    formatSsUri({
      method: 'aes-256-gcm',
      password: PASSWORD,
      host: '127.0.0.1',
      port,
      plugin: v2rayPlugin({
        path,
        host: 'localhost',
        tls: true,
        mux,
        ...(pin ? { pinSha256: c.pin } : {}),
      }),
    });
  return pair(
    `ladder ws/tls ss${mux ? ' mux' : ''}`,
    'ladder-tls',
    async () => {
      port = await freePort();
      return startLadder(
        [
          'server',
          '--allow-private-targets',
          '--listen',
          `127.0.0.1:${port}`,
          '--key',
          key(false),
          '--tls-cert',
          c.certFile,
          '--tls-key',
          c.keyFile,
          '--no-udp',
        ],
        /secret path/,
      );
    },
    (socks) =>
      startLadder(
        ['client', '--server', key(true), '--socks', `127.0.0.1:${socks}`, '--no-http'],
        /carrying traffic/,
      ),
  );
}

/**
 * The node TLS floor (bench/node-floor.ts with `--tls`): the smallest Trojan-like relay in Node, with
 * the run's certificate, so that the TLS rows' memory and latency can be read against what any Node
 * TLS server pays. `recycle`: the target's reads share one buffer (the floor); without it, `pipe()`
 * both ways, as a first Node relay would be written.
 */
export async function setupTlsFloor(recycle: boolean): Promise<TlsSetup> {
  const c = certificate();
  const script = fileURLToPath(new URL('./node-floor.js', import.meta.url));
  const server = await startProcess(
    [
      process.execPath,
      script,
      'server',
      ...(recycle ? ['--recycle'] : []),
      '--tls',
      c.certFile,
      c.keyFile,
    ],
    /listening (\d+)/,
  );
  let client;
  try {
    client = await startProcess(
      [process.execPath, script, 'client', server.match[1]!, '--tls', c.certFile],
      /listening (\d+)/,
    );
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    name: recycle ? 'node tls floor' : 'node tls floor pipe',
    kind: 'floor-tls',
    socksPort: Number(client.match[1]),
    server,
    client,
    stop: async () => void (await Promise.all([client.stop(), server.stop()])),
  };
}

export function setupTrojanGfw(originPort: number): Promise<TlsSetup> {
  const c = certificate();
  let port = 0;
  return pair(
    'trojan-gfw',
    'peer-tls',
    async () => {
      port = await freePort();
      return startDaemon(
        (file) => ['trojan', '-c', file],
        trojanServerConfig({
          port,
          fallbackPort: originPort,
          password: PASSWORD,
          certFile: c.certFile,
          keyFile: c.keyFile,
        }),
        port,
      );
    },
    (socks) =>
      startDaemon(
        (file) => ['trojan', '-c', file],
        trojanClientConfig({
          socksPort: socks,
          serverPort: port,
          password: PASSWORD,
          certFile: c.certFile,
        }),
        socks,
      ),
  );
}

export function setupV2ray(protocol: 'trojan' | 'vless'): Promise<TlsSetup> {
  const c = certificate();
  const secret = protocol === 'trojan' ? PASSWORD : randomUUID();
  const stream = { network: 'tcp' as const, tls: true };
  let port = 0;
  return pair(
    `v2ray ${protocol}/tls`,
    'peer-tls',
    async () => {
      port = await freePort();
      return startDaemon(
        (file) => ['v2ray', '-config', file],
        v2rayServerConfig({
          protocol,
          port,
          secret,
          certFile: c.certFile,
          keyFile: c.keyFile,
          stream,
        }),
        port,
      );
    },
    (socks) =>
      startDaemon(
        (file) => ['v2ray', '-config', file],
        v2rayClientConfig({
          protocol,
          socksPort: socks,
          serverPort: port,
          secret,
          certFile: c.certFile,
          stream,
        }),
        socks,
      ),
  );
}
