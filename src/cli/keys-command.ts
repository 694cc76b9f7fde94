/**
 * `ladder keys new --method <method> [--host H] [--port P] [--name TAG] [--prefix P] [--json]`
 * `ladder keys parse <uri> [--json] [--show-secret]`
 * The key URI is always the first line of `keys new` on stdout; a QR code follows on a terminal.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { LadderError } from '../errors.js';
import { SS_METHOD_NAMES, SS_METHODS, isSsMethod } from '../crypto/methods.js';
import {
  decodePrefix,
  formatSsUri,
  generateSsPassword,
  parseSsUri,
  type SsAccessKey,
} from '../codec/access-key-uri.js';
import { parseFlags } from './args.js';
import { printQr } from './qr.js';

const HELP = `ladder keys new --method <method> [--host <host>] [--port <port>] [--name <tag>] [--prefix <text>] [--json]
ladder keys parse <ss-uri> [--json] [--show-secret]

methods: ${SS_METHOD_NAMES.join(', ')}
  (2022-blake3-aes-256-gcm is recommended: replay-proof and fast)

'keys new' prints the key URI on its first line; on a terminal a QR code follows.
--prefix takes Outline's percent-encoded prefix text (e.g. %16%03%01%00%C2%A8%01%01).`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'new') return keysNew(rest);
  if (sub === 'parse') return keysParse(rest);
  throw new LadderError('ERR_USAGE', `keys: unknown subcommand '${sub}'; use 'new' or 'parse'`);
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
  const method = values.method ?? '2022-blake3-aes-256-gcm';
  if (!isSsMethod(method)) {
    throw new LadderError(
      'ERR_USAGE',
      `keys new: unknown method '${method}'; supported: ${SS_METHOD_NAMES.join(', ')}`,
    );
  }
  const port = values.port === undefined ? 8388 : Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new LadderError(
      'ERR_USAGE',
      `keys new: --port '${values.port}' is not a number from 1 to 65535`,
    );
  }
  const key: SsAccessKey = {
    method,
    password: generateSsPassword(method, randomBytes),
    host: values.host ?? '127.0.0.1',
    port,
  };
  if (values.name) key.tag = values.name;
  if (values.prefix) {
    key.prefix = decodePrefix(values.prefix);
    const salt = SS_METHODS[method].keySize;
    // A prefix replaces the first bytes of the salt; past a quarter of it the salt's randomness shrinks noticeably.
    if (key.prefix.length > salt / 4) {
      console.error(
        `ladder keys: warning: a ${key.prefix.length}-byte prefix takes ${key.prefix.length} of the ${salt} salt bytes; keep it to ${Math.floor(salt / 4)} or fewer`,
      );
    }
  }
  const uri = formatSsUri(key);
  if (values.json) {
    console.log(
      JSON.stringify({ uri, method, host: key.host, port, ...(key.tag ? { name: key.tag } : {}) }),
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
    { json: { type: 'boolean' }, 'show-secret': { type: 'boolean' } },
    true,
  );
  const uri = positionals[0];
  if (!uri)
    throw new LadderError(
      'ERR_USAGE',
      'keys parse: give the key URI, e.g. ladder keys parse ss://...',
    );
  const k = parseSsUri(uri);
  const info = {
    method: k.method,
    host: k.host,
    port: k.port,
    ...(k.tag ? { name: k.tag } : {}),
    ...(k.prefix ? { prefixHex: Buffer.from(k.prefix).toString('hex') } : {}),
    ...(k.plugin ? { plugin: k.plugin } : {}),
    ...(values['show-secret'] ? { password: k.password } : {}),
  };
  if (values.json) console.log(JSON.stringify(info));
  else
    for (const [name, v] of Object.entries(info))
      console.log(`${name.padEnd(10)} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
  return 0;
}
