/**
 * `ladder keys list|show|create|rename|disable|enable|delete|limit|expire|speed|devices`: the key
 * lifecycle, against a local data directory (`--data DIR`, the same SQLite file a running server
 * uses; it picks changes up within a quarter second) or a server's management API
 * (`--api URL --cert-sha256 HEX`). Output for people, or `--json` for scripts.
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LadderError } from '../errors.js';
import { DB_FILE, KeyStore } from '../store/key-store.js';
import { KeyManager } from '../server/access/key-manager.js';
import { AdminService, type ApiKey } from '../admin/service.js';
import { ApiClient } from '../admin/api-client.js';
import { LIMIT_PERIODS } from '../access/access-key.js';
import { parseFlags } from './args.js';
import { printQr } from './qr.js';

export const ADMIN_SUBCOMMANDS = [
  'list',
  'show',
  'create',
  'rename',
  'disable',
  'enable',
  'delete',
  'limit',
  'expire',
  'speed',
  'devices',
  'transports',
] as const;

export const ADMIN_HELP = `ladder keys <subcommand> (--data <dir> | --api <url> --cert-sha256 <hex>) [--json]

  list                         every key: id, name, state, usage, limits
  show <id>                    one key with its URIs (and a QR code on a terminal)
  create [--name N] [--method M] [--limit SIZE] [--period P] [--expires WHEN]
         [--speed RATE] [--devices N] [--transports ss,trojan] [--id ID]
  rename <id> <name>
  disable <id> | enable <id>   a disabled key is refused exactly as a wrong key is
  delete <id>
  limit <id> <SIZE|none> [--period 30d|month|day|total]   data limit (default period: 30d)
  expire <id> <WHEN|never>     WHEN: 2027-01-31, 2027-01-31T18:00Z, or +30d, +12h
  speed <id> <RATE|none>       a cap each way, shared by the key's connections: 2MB/s, 500kB/s
  devices <id> <N|none>        client addresses connected at once
  transports <id> <list>       which transports take the key: ss, trojan (default both)

  --data <dir>                 the server's data directory (works while it runs)
  --api <url> --cert-sha256 <hex>
                               a server's management API, as printed at its first start
  --json                       JSON for scripts
SIZE: 500MB, 10GB, 1.5TB, 2GiB or a number of bytes.`;

interface Backend {
  list(): Promise<ApiKey[]>;
  get(id: string): Promise<ApiKey>;
  create(body: Record<string, unknown>): Promise<ApiKey>;
  patch(id: string, body: Record<string, unknown>): Promise<ApiKey>;
  remove(id: string): Promise<void>;
  close(): void;
}

function localBackend(dir: string): Backend {
  // Opening would create the directory: a mistyped --data would show "no access keys yet".
  if (!existsSync(join(dir, DB_FILE)))
    throw new LadderError(
      'ERR_USAGE',
      `--data ${dir}: no server data there (no ${DB_FILE}); give the directory 'ladder server --data' uses, or start 'ladder server --data ${dir}' once`,
    );
  const store = KeyStore.open(dir);
  const keys = new KeyManager({ store, onKeysChanged: () => {} });
  const svc = new AdminService(store, keys);
  return {
    list: async () => keys.list().map((k) => svc.keyJson(k)),
    get: async (id) => svc.keyJson(keys.get(id)),
    create: async (b) => {
      svc.reachability(); // the key's URI needs the server's port: fail before making it
      const { id, ...rest } = b;
      return svc.keyJson(svc.createKey(rest, id as string | undefined));
    },
    patch: async (id, b) => svc.keyJson(svc.patchKey(id, b)),
    remove: async (id) => keys.delete(id),
    close: () => store.close(),
  };
}

function remoteBackend(api: ApiClient): Backend {
  const id = (s: string): string => encodeURIComponent(s);
  return {
    list: async () =>
      ((await api.must('GET', '/access-keys')) as { accessKeys: ApiKey[] }).accessKeys,
    get: async (k) => (await api.must('GET', `/access-keys/${id(k)}`)) as ApiKey,
    create: async (b) => (await api.must('POST', '/ladder/v1/access-keys', b)) as ApiKey,
    patch: async (k, b) =>
      (await api.must('PATCH', `/ladder/v1/access-keys/${id(k)}`, b)) as ApiKey,
    remove: async (k) => {
      await api.must('DELETE', `/access-keys/${id(k)}`);
    },
    close: () => {},
  };
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** "10GB", "1.5 TB", "2GiB", "500000" → bytes (decimal units as disks and data plans count). */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new LadderError(
      'ERR_USAGE',
      `${what} '${text}' is not a size; write e.g. 500MB, 10GB or 2GiB`,
    );
  return Math.round(Number(m[1]) * unit);
}

/** "2MB/s", "500kB/s", "1000000" → bytes per second. */
export function parseRate(text: string): number {
  const n = parseSize(text.replace(/\/s$/i, ''), 'the speed');
  if (n <= 0) throw new LadderError('ERR_USAGE', 'the speed must be above 0 (or none)');
  return n;
}

/** "2027-01-31", "2027-01-31T18:00Z", "+30d", "+12h" → ms since 1970. */
export function parseWhen(text: string, now = Date.now()): number {
  const rel = /^\+(\d+)([dhm])$/.exec(text.trim());
  if (rel) return now + Number(rel[1]) * { d: 86_400_000, h: 3_600_000, m: 60_000 }[rel[2] as 'd'];
  const t = /^\d{4}-\d{2}-\d{2}$/.test(text.trim())
    ? Date.parse(`${text.trim()}T00:00:00Z`)
    : Date.parse(text);
  if (!Number.isFinite(t))
    throw new LadderError(
      'ERR_USAGE',
      `'${text}' is not a date; write 2027-01-31, 2027-01-31T18:00Z or +30d`,
    );
  return t;
}

function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

function describe(k: ApiKey): Record<string, string> {
  const l = k.ladder;
  const limit = l.effectiveLimit;
  return {
    id: k.id,
    name: k.name || '-',
    state: l.state,
    used: limit
      ? `${formatBytes(l.usedBytes)} of ${formatBytes(limit.bytes)} (${limit.period})`
      : formatBytes(l.totalBytes),
    expires:
      l.expiresMs === null
        ? 'never'
        : new Date(l.expiresMs).toISOString().replace(/:\d\d\.\d+Z$/, 'Z'),
    speed: l.speedLimitBps === null ? '-' : `${formatBytes(l.speedLimitBps)}/s`,
    devices: l.deviceLimit === null ? `${l.devices}` : `${l.devices}/${l.deviceLimit}`,
    conns: String(l.connections),
  };
}

function table(rows: Record<string, string>[]): string {
  if (rows.length === 0)
    return 'no access keys yet; make one with: ladder keys create --name <name> --data <dir>';
  const cols = Object.keys(rows[0]!);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c]!.length)));
  const line = (vals: string[]): string =>
    vals
      .map((v, i) => v.padEnd(w[i]!))
      .join('  ')
      .trimEnd();
  return [
    line(cols.map((c) => c.toUpperCase())),
    ...rows.map((r) => line(cols.map((c) => r[c]!))),
  ].join('\n');
}

export async function runAdmin(
  sub: (typeof ADMIN_SUBCOMMANDS)[number],
  argv: string[],
): Promise<number> {
  const { values, positionals } = parseFlags(
    `keys ${sub}`,
    argv,
    {
      data: { type: 'string' },
      api: { type: 'string' },
      'cert-sha256': { type: 'string' },
      json: { type: 'boolean' },
      name: { type: 'string' },
      method: { type: 'string' },
      id: { type: 'string' },
      limit: { type: 'string' },
      period: { type: 'string' },
      expires: { type: 'string' },
      speed: { type: 'string' },
      devices: { type: 'string' },
      transports: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help) {
    console.log(ADMIN_HELP);
    return 0;
  }
  if (!values.data === !values.api)
    throw new LadderError(
      'ERR_USAGE',
      `keys ${sub}: give --data <dir> (a local server's data directory) or --api <url> --cert-sha256 <hex> (a server's management API)`,
    );
  if (values.api && !values['cert-sha256'])
    throw new LadderError(
      'ERR_USAGE',
      `keys ${sub}: --api needs --cert-sha256 <hex>, the certSha256 the server printed with its apiUrl`,
    );
  const backend = values.data
    ? localBackend(values.data)
    : remoteBackend(new ApiClient(values.api!, values['cert-sha256']!));
  try {
    return await dispatch(sub, positionals, values, backend);
  } finally {
    backend.close();
  }
}

function arg(positionals: string[], i: number, what: string, sub: string): string {
  const v = positionals[i];
  if (v === undefined)
    throw new LadderError('ERR_USAGE', `keys ${sub}: missing ${what} (see 'ladder keys --help')`);
  return v;
}

function period(p: string | undefined): string {
  const v = p ?? '30d';
  if (!(LIMIT_PERIODS as readonly string[]).includes(v))
    throw new LadderError('ERR_USAGE', `--period must be one of ${LIMIT_PERIODS.join(', ')}`);
  return v;
}

/** The API body of `keys create` from its flags (the same fields the Outline API takes). */
function createBody(v: Record<string, string | boolean | undefined>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (typeof v.id === 'string') body.id = v.id;
  if (typeof v.name === 'string') body.name = v.name;
  if (typeof v.method === 'string') body.method = v.method;
  if (typeof v.limit === 'string')
    body.dataLimit = {
      bytes: parseSize(v.limit, '--limit'),
      period: period(v.period as string | undefined),
    };
  if (typeof v.expires === 'string') body.expiresMs = parseWhen(v.expires);
  if (typeof v.speed === 'string') body.speedLimitBps = parseRate(v.speed);
  if (typeof v.devices === 'string') body.deviceLimit = Number(v.devices);
  if (typeof v.transports === 'string') body.transports = v.transports.split(',');
  return body;
}

async function dispatch(
  sub: (typeof ADMIN_SUBCOMMANDS)[number],
  pos: string[],
  v: Record<string, string | boolean | undefined>,
  b: Backend,
): Promise<number> {
  const json = v.json === true;
  const out = async (k: ApiKey, qr = false): Promise<number> => {
    if (json) console.log(JSON.stringify(k));
    else {
      for (const [name, val] of Object.entries(describe(k)))
        console.log(`${name.padEnd(8)} ${val}`);
      console.log(`uri      ${k.accessUrl}`);
      if (k.ladder.trojanUrl) console.log(`trojan   ${k.ladder.trojanUrl}`);
      if (qr) await printQr(k.accessUrl);
    }
    return 0;
  };
  const id = (): string => arg(pos, 0, 'the key id', sub);
  switch (sub) {
    case 'list': {
      const keys = await b.list();
      console.log(json ? JSON.stringify(keys) : table(keys.map(describe)));
      return 0;
    }
    case 'show':
      return out(await b.get(id()), true);
    case 'create': {
      const k = await b.create(createBody(v));
      if (json) console.log(JSON.stringify(k));
      else {
        console.log(k.accessUrl);
        await printQr(k.accessUrl);
      }
      return 0;
    }
    case 'rename':
      return out(await b.patch(id(), { name: arg(pos, 1, 'the new name', sub) }));
    case 'disable':
    case 'enable':
      return out(await b.patch(id(), { disabled: sub === 'disable' }));
    case 'delete':
      await b.remove(id());
      if (json) console.log(JSON.stringify({ deleted: id() }));
      else console.log(`deleted key ${id()}`);
      return 0;
    case 'limit': {
      const size = arg(pos, 1, "the limit (e.g. 10GB, or 'none')", sub);
      return out(
        await b.patch(id(), {
          dataLimit:
            size === 'none'
              ? null
              : {
                  bytes: parseSize(size, 'the limit'),
                  period: period(v.period as string | undefined),
                },
        }),
      );
    }
    case 'expire': {
      const when = arg(pos, 1, "the expiry (e.g. 2027-01-31, +30d, or 'never')", sub);
      return out(await b.patch(id(), { expiresMs: when === 'never' ? null : parseWhen(when) }));
    }
    case 'speed': {
      const rate = arg(pos, 1, "the speed (e.g. 2MB/s, or 'none')", sub);
      return out(await b.patch(id(), { speedLimitBps: rate === 'none' ? null : parseRate(rate) }));
    }
    case 'transports':
      return out(
        await b.patch(id(), {
          transports: arg(pos, 1, 'the transports, e.g. ss,trojan', sub).split(','),
        }),
      );
    case 'devices': {
      const n = arg(pos, 1, "the number of devices (or 'none')", sub);
      if (n !== 'none' && !/^\d+$/.test(n))
        throw new LadderError('ERR_USAGE', `keys devices: '${n}' is not a number`);
      return out(await b.patch(id(), { deviceLimit: n === 'none' ? null : Number(n) }));
    }
  }
}
