/**
 * Configs for the Debian peers (trojan-gfw 1.16, v2ray 4.34), built from the working loopback
 * configs the team keeps (reference/peer-configs: trojan-client.json, trojan-server.json,
 * v2ray-*-tls-*.json), with ports, passwords and certificate paths as parameters. Every address is
 * loopback. Used by the interop tests and the benchmark.
 */

const TROJAN_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384';
const TROJAN_CIPHERS_13 =
  'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384';
const TROJAN_TCP = {
  no_delay: true,
  keep_alive: true,
  reuse_port: false,
  fast_open: false,
  fast_open_qlen: 20,
};

/** trojan-gfw as a client: SOCKS5 on `socksPort`, to a Trojan server at `serverPort`. */
export function trojanClientConfig(o: {
  socksPort: number;
  serverPort: number;
  password: string;
  certFile: string;
}): Record<string, unknown> {
  return {
    run_type: 'client',
    local_addr: '127.0.0.1',
    local_port: o.socksPort,
    remote_addr: '127.0.0.1',
    remote_port: o.serverPort,
    password: [o.password],
    log_level: 2,
    ssl: {
      verify: true,
      verify_hostname: true,
      cert: o.certFile,
      cipher: TROJAN_CIPHERS,
      cipher_tls13: TROJAN_CIPHERS_13,
      sni: 'localhost',
      alpn: ['http/1.1'],
      reuse_session: true,
      session_ticket: false,
      curves: '',
    },
    tcp: TROJAN_TCP,
  };
}

/** trojan-gfw as a server on `port`; visitors without the password go to `fallbackPort`. */
export function trojanServerConfig(o: {
  port: number;
  fallbackPort: number;
  password: string;
  certFile: string;
  keyFile: string;
}): Record<string, unknown> {
  return {
    run_type: 'server',
    local_addr: '127.0.0.1',
    local_port: o.port,
    remote_addr: '127.0.0.1',
    remote_port: o.fallbackPort,
    password: [o.password],
    log_level: 2,
    ssl: {
      cert: o.certFile,
      key: o.keyFile,
      key_password: '',
      cipher: TROJAN_CIPHERS,
      cipher_tls13: TROJAN_CIPHERS_13,
      prefer_server_cipher: true,
      alpn: ['http/1.1'],
      reuse_session: true,
      session_ticket: false,
      session_timeout: 600,
      plain_http_response: '',
      curves: '',
      dhparam: '',
    },
    tcp: { prefer_ipv4: true, ...TROJAN_TCP },
    mysql: { enabled: false },
  };
}

const V2RAY_LOG = { loglevel: 'warning', access: '/dev/null' };

export interface V2rayStream {
  /** 'tcp' (Trojan/VLESS directly in TLS) or 'ws'. */
  network: 'tcp' | 'ws';
  tls: boolean;
  /** WebSocket path (ws). */
  path?: string;
}

function streamSettings(
  s: V2rayStream,
  certFile: string,
  role: 'client' | 'server',
  keyFile?: string,
) {
  return {
    network: s.network,
    ...(s.network === 'ws'
      ? { wsSettings: { path: s.path ?? '/', headers: { Host: 'localhost' } } }
      : {}),
    ...(s.tls
      ? {
          security: 'tls',
          tlsSettings:
            role === 'client'
              ? {
                  serverName: 'localhost',
                  alpn: ['http/1.1'],
                  certificates: [{ usage: 'verify', certificateFile: certFile }],
                }
              : {
                  certificates: [{ certificateFile: certFile, keyFile }],
                  alpn: ['http/1.1'],
                },
        }
      : {}),
  };
}

/** v2ray as a client: SOCKS5 on `socksPort`, a trojan or vless outbound to `serverPort`. */
export function v2rayClientConfig(o: {
  protocol: 'trojan' | 'vless';
  socksPort: number;
  serverPort: number;
  /** Trojan password or VLESS id. */
  secret: string;
  certFile: string;
  stream: V2rayStream;
  /** Mux.Cool with this concurrency (v2ray's outbound `mux`); absent: none. */
  mux?: number;
}): Record<string, unknown> {
  const settings =
    o.protocol === 'trojan'
      ? { servers: [{ address: '127.0.0.1', port: o.serverPort, password: o.secret }] }
      : {
          vnext: [
            {
              address: '127.0.0.1',
              port: o.serverPort,
              users: [{ id: o.secret, encryption: 'none' }],
            },
          ],
        };
  return {
    log: V2RAY_LOG,
    inbounds: [
      {
        listen: '127.0.0.1',
        port: o.socksPort,
        protocol: 'socks',
        settings: { auth: 'noauth', udp: false },
        tag: 'socks',
      },
    ],
    outbounds: [
      {
        protocol: o.protocol,
        settings,
        streamSettings: streamSettings(o.stream, o.certFile, 'client'),
        ...(o.mux ? { mux: { enabled: true, concurrency: o.mux } } : {}),
        tag: 'proxy',
      },
    ],
  };
}

/** v2ray as a server: a trojan or vless inbound on `port`. */
export function v2rayServerConfig(o: {
  protocol: 'trojan' | 'vless';
  port: number;
  secret: string;
  certFile: string;
  keyFile: string;
  stream: V2rayStream;
  /** v2ray's log level (default warning); 'info' logs each request it dispatches. */
  logLevel?: 'warning' | 'info' | 'debug';
}): Record<string, unknown> {
  const settings =
    o.protocol === 'trojan'
      ? { clients: [{ password: o.secret }] }
      : { clients: [{ id: o.secret }], decryption: 'none' };
  return {
    log: { ...V2RAY_LOG, loglevel: o.logLevel ?? V2RAY_LOG.loglevel },
    inbounds: [
      {
        protocol: o.protocol,
        settings,
        streamSettings: streamSettings(o.stream, o.certFile, 'server', o.keyFile),
        listen: '127.0.0.1',
        port: o.port,
        tag: 'in',
      },
    ],
    outbounds: [{ protocol: 'freedom', tag: 'direct' }],
  };
}
