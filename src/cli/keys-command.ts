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
  formatSsUri,
  generateSsPassword,
  maxPrefixLength,
  parseSsUri,
  resolveMethod,
  type SsAccessKey,
} from '../codec/access-key-uri.js';
import { parseFlags } from './args.js';
import { printQr } from './qr.js';

const DEFAULT_METHOD: SsMethod = '2022-blake3-aes-256-gcm';

const HELP = `ladder keys new [--method <method>] [--host <host>] [--port <port>] [--name <tag>] [--prefix <text>] [--json]
ladder keys parse <ss-uri> [--json] [--show-secret]

keys new     makes a fresh key and prints its ss:// URI on the first line (a QR code follows on a
             terminal; never into a pipe)
  --method   the cipher (default ${DEFAULT_METHOD}: replay-proof; the AEAD-2017 methods
             for older clients), one of:
               ${SS_METHOD_NAMES.slice(0, 3).join(', ')},
               ${SS_METHOD_NAMES.slice(3).join(', ')}
  --host     the server address clients dial (default 127.0.0.1)
  --port     the server port (default 8388)
  --name     the key's display name (#tag)
  --prefix   Outline's connection prefix, percent-encoded, e.g. POST%20 or %16%03%01%00%C2%A8%01%01
             (at most ${MAX_PREFIX_BYTES} bytes, fewer for 16-byte salts)
  --json     print {"uri", "method", "host", "port", "tag"} as one JSON line instead

keys parse   shows the method, address, tag, prefix (hex) and plugin of a key
  --json         one JSON line
  --show-secret  include the password (it is the key: anyone who has it can use the server)

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

async function keysNew(argv: string[]): Promise<number> {
  const { values } = parseFlags('keys new', argv, {
    method: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    name: { type: 'string' },
    prefix: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const method = usageMethod(values.method ?? DEFAULT_METHOD);
  const portText = values.port ?? '8388';
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw new LadderError(
      'ERR_USAGE',
      `keys new: --port '${portText}' is not a number from 1 to 65535`,
    );
  }
  const key: SsAccessKey = {
    method,
    password: generateSsPassword(method, (n) => randomBytes(n)),
    host: values.host ?? '127.0.0.1',
    port,
  };
  if (values.name) key.tag = values.name;
  if (values.prefix) {
    key.prefix = decodePrefix(values.prefix);
    const max = maxPrefixLength(method);
    if (key.prefix.length > max) {
      throw new LadderError(
        'ERR_USAGE',
        `keys new: --prefix is ${key.prefix.length} bytes; with ${method} (a ${SS_METHODS[method].saltSize}-byte salt) keep it to ${max} or fewer so that salts stay unique`,
      );
    }
  }
  let uri: string;
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
  if (values.json) {
    console.log(
      JSON.stringify({ uri, method, host: key.host, port, ...(key.tag ? { tag: key.tag } : {}) }),
    );
    return 0;
  }
  console.log(uri);
  await printQr(uri);
  return 0;
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
  const k = parseSsUri(positionals[0]!);
  const spec = SS_METHODS[k.method];
  const info = {
    method: k.method,
    host: k.host,
    port: k.port,
    ...(k.tag !== undefined ? { tag: k.tag } : {}),
    ...(k.prefix ? { prefixHex: Buffer.from(k.prefix).toString('hex') } : {}),
    ...(k.plugin ? { plugin: k.plugin } : {}),
    // SIP023: every PSK but the last is an identity PSK (multi-user server or relay).
    ...(spec.edition === 2022 ? { identityPsks: k.password.split(':').length - 1 } : {}),
    ...(values['show-secret'] ? { password: k.password } : {}),
  };
  if (values.json) console.log(JSON.stringify(info));
  else
    for (const [name, v] of Object.entries(info))
      console.log(`${name.padEnd(13)} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return 0;
}
