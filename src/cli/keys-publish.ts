/**
 * `ladder keys publish`: writes a key document signed with the operator's Ed25519 key
 * (codec/key-document.ts) listing every current server and transport, and prints the online key
 * clients import. The operator key is made on first use and kept with mode 0600; the document's
 * serial grows by one over the document already at --out, so clients take it as newer.
 * @module
 */
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { ConfigError, LadderError } from '../errors.js';
import {
  checkKeyDocumentBody,
  openKeyDocument,
  rawPublicKey,
  signKeyDocument,
} from '../codec/key-document.js';
import { formatLadderOnlineKey } from '../codec/online-key.js';
import { parseFlags } from './args.js';

export const PUBLISH_HELP = `ladder keys publish --operator-key <file> --key <uri> [--key <uri> ...] --url <https://...>
                   [--mirror <https://...> ...] [--client-url <https://...> ...] [--out <file>]
                   [--serial <n>] [--name <name>]

keys publish  writes a signed key document (docs/client.md, "Online keys") and prints the online
              key to hand to users: the first --url with #ladder-pub=<the operator's public key>.
              Serve the document at every --url and --mirror (ladder server --publish, or any
              static host); when a server is blocked, publish again with the new keys: clients
              fetch it at their next connect and move.
  --operator-key  the Ed25519 signing key (PEM); made with mode 0600 if the file does not exist.
                  Keep it off the servers: whoever holds it can move every client
  --key       an access key of a current server and transport (repeat; the order is the order
              clients try them)
  --url       where the document is served (https://; a secret path keeps it from scanners)
  --mirror    another place serving the same document (repeat)
  --client-url  where the single-file client is served (ladder build-client; repeat): users run
              ladder update --from <it, as printed>
  --out       the document file (default: stdout); an existing one sets the next serial
  --serial    the serial (default: the one in --out plus 1, else 1)
  --name      the name clients show`;

/** Reads the operator's Ed25519 key, or makes one (mode 0600) if the file does not exist. */
export function operatorSigningKey(path: string): { privateKey: KeyObject; made: boolean } {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, pem, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
    return { privateKey, made: true };
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(path));
  } catch (err) {
    throw new ConfigError(
      'ERR_CONFIG',
      `--operator-key ${path} is not a PEM private key: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new ConfigError('ERR_CONFIG', `--operator-key ${path} is not an Ed25519 key`);
  return { privateKey: key, made: false };
}

export function operatorPublicKey(privateKey: KeyObject): Buffer {
  return rawPublicKey(createPublicKey(privateKey));
}

function httpsUrl(text: string, flag: string): string {
  let u: URL | undefined;
  try {
    u = new URL(text);
  } catch {
    u = undefined;
  }
  if (u?.protocol !== 'https:')
    throw new LadderError('ERR_USAGE', `${flag} '${text.slice(0, 80)}' must be an https:// URL`);
  u.hash = '';
  return u.href;
}

/**
 * The document's serial: `--serial` when given, else one more than the document at `out` (signed
 * with this operator key), else 1.
 */
function nextSerial(given: string | undefined, out: string | undefined, pub: Buffer): number {
  if (given !== undefined) {
    const serial = Number(given);
    if (!Number.isSafeInteger(serial) || serial < 1)
      throw new LadderError('ERR_USAGE', `--serial '${given}' must be a whole number from 1 up`);
    return serial;
  }
  if (!out || !existsSync(out)) return 1;
  try {
    return openKeyDocument(readFileSync(out, 'utf8'), pub).serial + 1;
  } catch {
    throw new ConfigError(
      'ERR_KEY_DOCUMENT',
      `--out ${out} holds no document signed with this operator key: give --serial, or another --out`,
    );
  }
}

export function keysPublish(argv: string[]): number {
  const { values } = parseFlags('keys publish', argv, {
    'operator-key': { type: 'string' },
    key: { type: 'string', multiple: true },
    url: { type: 'string' },
    mirror: { type: 'string', multiple: true },
    'client-url': { type: 'string', multiple: true },
    out: { type: 'string' },
    serial: { type: 'string' },
    name: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(PUBLISH_HELP);
    return 0;
  }
  if (!values['operator-key'])
    throw new LadderError(
      'ERR_USAGE',
      'keys publish: give --operator-key <file> (made if missing)',
    );
  if (!values.key?.length)
    throw new LadderError(
      'ERR_USAGE',
      'keys publish: give the current access keys with --key <uri>',
    );
  if (!values.url)
    throw new LadderError(
      'ERR_USAGE',
      'keys publish: give --url <https://...> where the document is served',
    );
  const url = httpsUrl(values.url, '--url');
  const mirrors = [url, ...(values.mirror ?? []).map((m) => httpsUrl(m, '--mirror'))];
  const { privateKey, made } = operatorSigningKey(values['operator-key']);
  const pub = operatorPublicKey(privateKey);
  const serial = nextSerial(values.serial, values.out, pub);
  const body = checkKeyDocumentBody({
    serial,
    issued: new Date().toISOString(),
    keys: values.key,
    mirrors,
    ...(values.name ? { name: values.name } : {}),
    ...(values['client-url']?.length
      ? {
          client: {
            urls: values['client-url'].map((u) =>
              formatLadderOnlineKey(httpsUrl(u, '--client-url'), pub),
            ),
          },
        }
      : {}),
  });
  const text = signKeyDocument(body, privateKey);
  if (values.out) {
    const tmp = `${values.out}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, values.out);
  } else process.stdout.write(text);
  const out = values.out ? console.log : console.error;
  out(formatLadderOnlineKey(url, pub, values.name));
  if (made)
    console.error(
      `ladder keys publish: made the operator key ${values['operator-key']} (mode 0600): keep it safe`,
    );
  console.error(
    `ladder keys publish: document serial ${serial}, ${body.keys.length} key(s), ${mirrors.length} place(s)`,
  );
  return 0;
}
