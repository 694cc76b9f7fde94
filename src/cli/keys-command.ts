/**
 * `ladder keys`: make and inspect access keys (docs/access-keys.md).
 *
 * `ladder keys new` prints the key URI as the first line of stdout, so scripts can take it with
 * `head -n1`; on a terminal a QR code follows for phones. `ladder keys parse` shows what a key holds
 * and never prints the password unless asked with `--show-secret`.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { LadderError, hasCode } from '../errors.js';
import { SS_METHOD_NAMES, SS_METHODS, type SsMethod } from '../crypto/methods.js';
import {
  MAX_PREFIX_BYTES,
  decodePrefix,
  encodePrefix,
  formatSsUri,
  generateSsPassword,
  maxPrefixLength,
  parseSsUri,
  resolveMethod,
  type SsAccessKey,
} from '../codec/access-key-uri.js';
import {
  MAX_MUX_CONCURRENCY,
  formatTrojanUri,
  parseTrojanUri,
  type TrojanAccessKey,
} from '../codec/trojan-uri.js';
import { v2rayPlugin, v2rayPluginOptions } from '../codec/v2ray-plugin.js';
import { normalizeFingerprint } from '../transport/tls.js';
import { parseFlags } from './args.js';
import { PREFIX_PRESETS, prefixPreset, prefixWeakness } from '../codec/ss-prefix.js';
import { printQr } from './qr.js';

const DEFAULT_METHOD: SsMethod = '2022-blake3-aes-256-gcm';

const HELP = `ladder keys new [--method <method>] [--host <host>] [--port <port>] [--name <tag>] [--prefix <text> | --prefix-preset <name>] [--json]
ladder keys new --transport ws [--path <path>] [--ws-host <name>] [--no-tls] [--no-mux] [--pin <sha256>] ...
ladder keys new --protocol trojan [--transport tls|ws] [--sni <name>] [--pin <sha256>] [--mux <n>] ...
ladder keys parse <ss-uri> [--json] [--show-secret]        (trojan:// keys too)

keys new     makes a fresh key and prints its URI on the first line (a QR code follows on a
             terminal; never into a pipe)
  --protocol   ss (default: Shadowsocks, ss://) or trojan (trojan://, over TLS)
  --transport  how it crosses the network:
                 ss:     tcp (default: raw Shadowsocks), or ws (inside a WebSocket, as the SIP003
                         plugin v2ray-plugin carries it: plugin=v2ray-plugin;path=...;host=...;tls)
                 trojan: tls (default), or ws (inside a WebSocket over TLS: type=ws&path=...)
  --method     the cipher of an ss key (default ${DEFAULT_METHOD}: replay-proof; the
               AEAD-2017 methods for older clients), one of:
                 ${SS_METHOD_NAMES.slice(0, 3).join(', ')},
                 ${SS_METHOD_NAMES.slice(3).join(', ')}
  --host       the server address clients dial (default 127.0.0.1)
  --port       the server port (default 8388; 443 for trojan and ws)
  --name       the key's display name (#tag)
  --prefix     Outline's connection prefix, percent-encoded, e.g. POST%20 or %16%03%01%00%C2%A8%01%01
               (at most ${MAX_PREFIX_BYTES} bytes, fewer for 16-byte salts; ss tcp keys only)
  --prefix-preset  a prefix whose first packet the GFW's fully-encrypted-traffic detector exempts:
${PREFIX_PRESETS.map((p) => `               ${p.name.padEnd(14)} ${p.looksLike} (${p.exemption}; port ${p.port})`).join('\n')}
  --path       the WebSocket's secret path (default: a fresh random one)
  --ws-host    the WebSocket Host header and TLS name (default: --sni, else --host); behind a
               CDN, the site's name
  --sni        the TLS server name (default: --ws-host, else --host)
  --no-tls     a WebSocket without TLS, for a CDN or reverse proxy that adds TLS in front of the
               server (which then listens with --ws-listen)
  --no-mux     write mux=0: one WebSocket per connection, for ss clients whose v2ray-plugin lacks
               Mux.Cool (by default keys leave v2ray-plugin's default, Mux.Cool on: connections share
               WebSockets, so most skip the TLS and upgrade round trips)
  --mux <n>    trojan keys: carry connections as Mux.Cool sessions, up to n at once on one TLS
               connection (mux=n; v2ray's default concurrency is 8), so most connections skip the
               TLS handshake. For Ladder and v2ray servers only: trojan-gfw has no Mux.Cool
  --pin        SHA-256 of the server's certificate (what 'ladder server' prints for a self-signed
               one), so that clients check it instead of a CA
  --json       print {"uri", "method" or "protocol", "host", "port", "tag", ...} as one JSON line

keys parse   shows what a key holds: method (or protocol), address, tag, prefix (hex), plugin,
             WebSocket path and TLS settings
  --json         one JSON line
  --show-secret  include the password (it is the key: anyone who has it can use the server)

keys publish  writes a signed key document for online keys (ladder keys publish --help)

Formats accepted and written: docs/access-keys.md`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(
      `${HELP}\n\nKeys kept by a server (--data) or managed through its API:\n${(await import('./keys-admin.js')).ADMIN_HELP}`,
    );
    return 0;
  }
  if (sub === undefined) {
    console.error(HELP);
    return 2;
  }
  if (sub === 'new') return keysNew(rest);
  if (sub === 'parse') return keysParse(rest);
  if (sub === 'publish') return (await import('./keys-publish.js')).keysPublish(rest);
  const admin = await import('./keys-admin.js');
  if ((admin.ADMIN_SUBCOMMANDS as readonly string[]).includes(sub))
    return admin.runAdmin(sub as (typeof admin.ADMIN_SUBCOMMANDS)[number], rest);
  throw new LadderError(
    'ERR_USAGE',
    `keys: unknown subcommand '${sub}'; use 'keys new', 'keys parse' or one of ${admin.ADMIN_SUBCOMMANDS.join(', ')} (see 'ladder keys --help')`,
  );
}

function usageMethod(name: string): SsMethod {
  try {
    return resolveMethod(name);
  } catch (err) {
    if (hasCode(err, 'ERR_UNKNOWN_METHOD'))
      throw new LadderError(
        'ERR_USAGE',
        `keys new: --method: unknown method '${name}'; supported: ${SS_METHOD_NAMES.join(', ')}`,
        { cause: err },
      );
    throw err;
  }
}

/** A fresh random WebSocket path: 16 base64url characters (96 bits) after the slash. */
function randomPath(): string {
  return `/${randomBytes(12).toString('base64url')}`;
}

/** The flags of `ladder keys new`. */
const KEYS_NEW_FLAGS = {
  method: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  name: { type: 'string' },
  prefix: { type: 'string' },
  'prefix-preset': { type: 'string' },
  protocol: { type: 'string' },
  transport: { type: 'string' },
  path: { type: 'string' },
  'ws-host': { type: 'string' },
  sni: { type: 'string' },
  'no-tls': { type: 'boolean' },
  'no-mux': { type: 'boolean' },
  mux: { type: 'string' },
  pin: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type KeysNewFlags = ReturnType<typeof parseFlags<typeof KEYS_NEW_FLAGS>>['values'];

/** The checked options of `keys new`: what kind of key, where it points, how it is carried. */
interface NewKeyOptions {
  values: KeysNewFlags;
  protocol: 'ss' | 'trojan';
  transport: string;
  ws: boolean;
  mux: number | undefined;
  port: number;
  host: string;
  pin: string | undefined;
  path: string;
  tls: boolean;
  wsHost: string;
  sni: string | undefined;
}

/** A new key as a URI, and its fields for --json. */
interface NewKey {
  uri: string;
  info: Record<string, unknown>;
}

const keysNewUsage = (msg: string): LadderError => new LadderError('ERR_USAGE', `keys new: ${msg}`);

async function keysNew(argv: string[]): Promise<number> {
  const { values } = parseFlags('keys new', argv, KEYS_NEW_FLAGS);
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const o = parseKeysNewOptions(values);
  const { uri, info } = o.protocol === 'trojan' ? newTrojanKey(o) : newSsKey(o);
  if (values.json) {
    console.log(JSON.stringify(info));
    return 0;
  }
  console.log(uri);
  await printQr(uri);
  return 0;
}

/** Checks the flags of `keys new` against each other; usage errors name the flag. */
function parseKeysNewOptions(values: KeysNewFlags): NewKeyOptions {
  const protocol = values.protocol ?? 'ss';
  if (protocol !== 'ss' && protocol !== 'trojan')
    throw new LadderError(
      'ERR_USAGE',
      `keys new: --protocol '${protocol}' is not one of ss, trojan`,
    );
  const transport = values.transport ?? (protocol === 'ss' ? 'tcp' : 'tls');
  const allowed = protocol === 'ss' ? ['tcp', 'ws'] : ['tls', 'ws'];
  if (!allowed.includes(transport))
    throw new LadderError(
      'ERR_USAGE',
      `keys new: --transport '${transport}' is not one of ${allowed.join(', ')} for ${protocol} keys`,
    );
  const ws = transport === 'ws';
  const usage = keysNewUsage;
  if (!ws) {
    for (const f of ['path', 'ws-host', 'no-tls', 'no-mux'] as const)
      if (values[f] !== undefined) throw usage(`--${f} is for WebSocket keys (--transport ws)`);
  }
  if (protocol === 'ss' && !ws && (values.sni !== undefined || values.pin !== undefined))
    throw usage('--sni and --pin are for TLS keys (--transport ws, or --protocol trojan)');
  if (protocol === 'trojan' && values['no-mux'] !== undefined)
    throw usage(
      '--no-mux is for ss keys over WebSocket (v2ray-plugin); a trojan key has Mux.Cool only when --mux <n> asks for it',
    );
  const mux = parseMuxAndPrefix(values, protocol);
  if (protocol === 'trojan' && (values.method !== undefined || values.prefix !== undefined))
    throw usage('--method and --prefix are for ss keys; a trojan key has a password only');
  if (ws && values.prefix !== undefined)
    throw usage('--prefix is for raw Shadowsocks keys (--transport tcp)');
  const portText = values.port ?? (protocol === 'ss' && !ws ? '8388' : '443');
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw usage(`--port '${portText}' is not a number from 1 to 65535`);
  }
  const host = values.host ?? '127.0.0.1';
  let pin: string | undefined;
  if (values.pin !== undefined) {
    try {
      pin = normalizeFingerprint(values.pin).replace(/:/g, '').toLowerCase();
    } catch {
      throw usage(`--pin must be the 64 hex digits of a SHA-256 certificate fingerprint`);
    }
  }
  const path = values.path ?? randomPath();
  if (ws && (!path.startsWith('/') || /[\s?#]/.test(path)))
    throw usage(`--path '${path.slice(0, 60)}' must start with '/' and have no spaces, ? or #`);
  const tls = !values['no-tls'];
  if (!tls && pin) throw usage('--pin needs TLS; drop --no-tls or --pin');
  const wsHost = values['ws-host'] ?? values.sni ?? host;
  const sni = values.sni ?? values['ws-host'];
  return { values, protocol, transport, ws, mux, port, host, pin, path, tls, wsHost, sni };
}

/** --mux (trojan keys) and --prefix-preset (turned into --prefix). */
function parseMuxAndPrefix(values: KeysNewFlags, protocol: 'ss' | 'trojan'): number | undefined {
  const usage = keysNewUsage;
  let mux: number | undefined;
  if (values.mux !== undefined) {
    if (protocol !== 'trojan')
      throw usage(
        '--mux is for trojan keys; ss keys over WebSocket use Mux.Cool already (v2ray-plugin), --no-mux turns it off',
      );
    mux = Number(values.mux);
    if (!/^[0-9]{1,4}$/.test(values.mux) || mux < 1 || mux > MAX_MUX_CONCURRENCY)
      throw usage(
        `--mux '${values.mux.slice(0, 20)}' must be the sessions per connection, 1 to ${MAX_MUX_CONCURRENCY} (v2ray's default is 8)`,
      );
  }
  if (values['prefix-preset'] !== undefined) {
    if (values.prefix !== undefined) throw usage('give --prefix or --prefix-preset, not both');
    const preset = prefixPreset(values['prefix-preset']);
    if (!preset)
      throw usage(
        `--prefix-preset: unknown preset '${values['prefix-preset']}'; presets: ${PREFIX_PRESETS.map((p) => p.name).join(', ')}`,
      );
    values.prefix = encodePrefix(preset.bytes);
  }
  return mux;
}

function newTrojanKey(o: NewKeyOptions): NewKey {
  const { values, protocol, transport, ws, mux, port, host, pin, path, tls, wsHost, sni } = o;
  const key: TrojanAccessKey = {
    password: randomBytes(24).toString('base64url'),
    host,
    port,
    ...(sni ? { sni } : {}),
    ...(pin ? { pinSha256: pin } : {}),
    ...(values.name ? { tag: values.name } : {}),
    ...(ws
      ? { type: 'ws' as const, path, wsHost, ...(tls ? {} : { security: 'none' as const }) }
      : {}),
    ...(mux ? { mux } : {}),
  };
  const uri = formatTrojanUri(key);
  const info = {
    uri,
    protocol,
    transport,
    host,
    port,
    ...(key.tag ? { tag: key.tag } : {}),
    ...(ws ? { path, tls } : {}),
    ...(mux ? { mux } : {}),
  };
  return { uri, info };
}

function newSsKey(o: NewKeyOptions): NewKey {
  const { values, transport, ws, port, host, pin, path, tls, wsHost } = o;
  const usage = keysNewUsage;
  let uri: string;
  const method = usageMethod(values.method ?? DEFAULT_METHOD);
  const key: SsAccessKey = {
    method,
    password: generateSsPassword(method, (n) => randomBytes(n)),
    host,
    port,
  };
  if (values.name) key.tag = values.name;
  if (values.prefix) {
    key.prefix = decodePrefix(values.prefix);
    const max = maxPrefixLength(method);
    if (key.prefix.length > max) {
      throw usage(
        `--prefix is ${key.prefix.length} bytes; with ${method} (a ${SS_METHODS[method].saltSize}-byte salt) keep it to ${max} or fewer so that salts stay unique`,
      );
    }
    const weak = prefixWeakness(method, key.prefix);
    if (weak) console.error(`ladder keys new: warning: ${weak}`);
  }
  if (ws)
    key.plugin = v2rayPlugin({
      path,
      host: wsHost,
      tls,
      mux: !values['no-mux'],
      ...(pin ? { pinSha256: pin } : {}),
    });
  try {
    uri = formatSsUri(key);
  } catch (err) {
    // Only --host can be wrong here (the rest is checked above): a usage mistake, named as such.
    if (err instanceof LadderError)
      throw new LadderError('ERR_USAGE', `keys new: ${err.message.replace(/^ss:\/\/ key: /, '')}`, {
        cause: err,
      });
    throw err;
  }
  const info = {
    uri,
    method,
    host,
    port,
    ...(key.tag ? { tag: key.tag } : {}),
    ...(ws ? { transport, path, tls } : {}),
  };
  return { uri, info };
}

async function keysParse(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    'keys parse',
    argv,
    {
      json: { type: 'boolean' },
      'show-secret': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1)
    throw new LadderError(
      'ERR_USAGE',
      `keys parse: give exactly one key URI (got ${positionals.length}), e.g. ladder keys parse 'ss://...' (quote it: it may hold # and &)`,
    );
  const text = positionals[0]!;
  let info: Record<string, unknown>;
  if (/^\s*trojan:/i.test(text)) {
    const t = parseTrojanUri(text);
    info = {
      protocol: 'trojan',
      host: t.host,
      port: t.port,
      ...(t.tag !== undefined ? { tag: t.tag } : {}),
      transport: t.type === 'ws' ? 'ws' : 'tls',
      ...(t.type === 'ws' ? { path: t.path, wsHost: t.wsHost ?? t.sni ?? t.host } : {}),
      tls: t.security !== 'none',
      ...(t.sni ? { sni: t.sni } : {}),
      ...(t.pinSha256 ? { pin: t.pinSha256.replace(/:/g, '').toLowerCase() } : {}),
      ...(t.mux ? { mux: t.mux } : {}),
      ...(values['show-secret'] ? { password: t.password } : {}),
    };
  } else {
    const k = parseSsUri(text);
    const spec = SS_METHODS[k.method];
    const ws = v2rayPluginOptions(k.plugin);
    info = {
      method: k.method,
      host: k.host,
      port: k.port,
      ...(k.tag !== undefined ? { tag: k.tag } : {}),
      ...(k.prefix ? { prefixHex: Buffer.from(k.prefix).toString('hex') } : {}),
      ...(k.plugin ? { plugin: k.plugin } : {}),
      ...(ws ? { transport: 'ws', path: ws.path, wsHost: ws.host, tls: ws.tls, mux: ws.mux } : {}),
      // SIP023: every PSK but the last is an identity PSK (multi-user server or relay).
      ...(spec.edition === 2022 ? { identityPsks: k.password.split(':').length - 1 } : {}),
      ...(values['show-secret'] ? { password: k.password } : {}),
    };
  }
  if (values.json) console.log(JSON.stringify(info));
  else
    for (const [name, v] of Object.entries(info))
      console.log(`${name.padEnd(13)} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return 0;
}
