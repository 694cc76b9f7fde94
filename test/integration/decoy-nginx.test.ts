/**
 * The decoy site against Debian's nginx 1.22 serving the same files: a battery of raw probes (methods,
 * versions, malformed and oversized request lines and headers, pipelining, keep-alive and idle
 * behaviour, CONNECT, absolute URIs, bad Host, the HTTP/2 preface, conditional and range requests,
 * early close), over TCP and over TLS, each answered byte for byte as nginx answers it, apart from
 * the Date header and the port number in redirects; the way each connection ends (FIN or reset)
 * must match too. Timeouts are shortened on both sides (nginx's keepalive_timeout,
 * client_header_timeout and lingering_timeout; the decoy's options) and the test waits for the
 * close itself, never for a duration.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, utimesSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tcpConnect, createServer, type AddressInfo, type Server } from 'node:net';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { DecoySite } from '../../src/server/decoy/decoy-site.js';
import { DECOY_PAGES } from '../../src/server/decoy/pages.js';
import { systemZlibVersion } from '../../src/server/decoy/nginx-gzip.js';
import { issueCertificate } from '../../src/server/certificates.js';
import { decoySecureContext } from '../../src/server/decoy/tls-context.js';
import { startNginx, type RunningNginx } from '../helpers/nginx.js';
import { makeCipherKey } from '../../src/crypto/ss-key.js';
import { SsServer } from '../../src/server/ss-server.js';
import { PortMux } from '../../src/server/port-mux.js';
import { PreAuthGuard } from '../../src/server/pre-auth.js';
import { TrojanHandler } from '../../src/server/trojan-server.js';
import { TlsInnerFront, WsFront } from '../../src/server/ws-front.js';
import { DirectDialer } from '../../src/transport/direct.js';
import { trojanPasswordHash } from '../../src/codec/trojan.js';

const MTIME_S = 1_767_225_600; // the files' modification time, the same for both servers
const SHORT = {
  keepaliveTimeoutMs: 2000,
  headerTimeoutMs: 2000,
  lingeringTimeoutMs: 1000,
  keepaliveRequests: 3,
};
const NGINX_SHORT = [
  // Debian's /etc/nginx/nginx.conf has `gzip on;` (every other gzip setting at its default).
  'gzip on;',
  'keepalive_timeout 2s;',
  'client_header_timeout 2s;',
  'lingering_timeout 1s;',
  'keepalive_requests 3;',
];

let dir: string;
let nginx: RunningNginx;
let decoy: DecoySite;
let plain: Server;
let tls: Server;
let builtin: DecoySite;
let builtinPlain: Server;
/** Ladder's one port (Shadowsocks + TLS): Trojan behind TLS, and Trojan with WebSockets. */
let ports: { trojan: number; web: number; close(): Promise<void> } | undefined;

/** The one port as `ladder server` builds it, with nginx's client_header_timeout as its deadline. */
async function onePort(site: DecoySite, secureContext: ReturnType<typeof decoySecureContext>) {
  const key = makeCipherKey('chacha20-ietf-poly1305', 'decoy-nginx');
  const dialer = new DirectDialer({ allow: () => false });
  const make = (
    handler: (
      ss: SsServer,
      trojan: TrojanHandler,
    ) => { handle(c: import('node:stream').Duplex): void },
  ): { mux: PortMux; ss: SsServer } => {
    const preAuth = new PreAuthGuard({ deadlineMs: SHORT.headerTimeoutMs });
    const ss = new SsServer({
      keys: [{ id: 'k', key }],
      dialer,
      preAuth,
      authTimeoutMs: SHORT.headerTimeoutMs,
    });
    const trojan = new TrojanHandler({
      users: [{ id: 't', hash: trojanPasswordHash('decoy-nginx') }],
      dialer,
      fallback: site,
    });
    const mux = new PortMux({
      ss,
      preAuth,
      authTimeoutMs: SHORT.headerTimeoutMs,
      tls: { secureContext, handler: handler(ss, trojan), plainHttp: site.handlePlainOnTlsPort },
    });
    return { mux, ss };
  };
  let webFront: WsFront | undefined;
  const trojanOnly = make((_ss, trojan) => trojan);
  const web = make((ss, trojan) => {
    webFront = new WsFront({ paths: ['/decoy-nginx-ws'], ss, trojan, fallback: site });
    return new TlsInnerFront({ trojan, web: webFront });
  });
  const a = await trojanOnly.mux.listen('127.0.0.1', 0);
  const b = await web.mux.listen('127.0.0.1', 0);
  return {
    trojan: a.port,
    web: b.port,
    close: async () => {
      await trojanOnly.mux.close(0);
      await web.mux.close(0);
      webFront?.close();
    },
  };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ladder-nginx-'));
  const www = join(dir, 'www');
  mkdirSync(join(www, 'notes'), { recursive: true });
  mkdirSync(join(www, 'empty'), { recursive: true });
  for (const [path, page] of DECOY_PAGES) writeFileSync(join(www, path), page.body);
  writeFileSync(join(www, 'notes', 'index.html'), '<p>notes</p>\n');
  writeFileSync(join(www, 'logo.png'), randomBytes(100_000));
  // Large enough that nginx's gzip sends it in several chunks.
  writeFileSync(
    join(www, 'big.html'),
    Array.from({ length: 20_000 }, (_, i) => `<p>line ${i} ${(i * i) % 997}</p>`).join('\n'),
  );
  for (const f of [...DECOY_PAGES.keys(), '/notes/index.html', '/logo.png', '/big.html'])
    utimesSync(join(www, f), MTIME_S, MTIME_S);
  const made = issueCertificate({ commonName: 'decoy.test', serial: randomBytes(16) });
  writeFileSync(join(dir, 'cert.pem'), made.cert);
  writeFileSync(join(dir, 'key.pem'), made.key, { mode: 0o600 });
  nginx = await startNginx({
    dir,
    root: www,
    http: NGINX_SHORT,
    tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') },
  });
  // The directory with a trailing slash, as operators type it: it must serve the same files.
  decoy = new DecoySite({ dir: www + '/', ...SHORT });
  builtin = new DecoySite({ builtinMtimeMs: MTIME_S * 1000, ...SHORT });
  builtinPlain = createServer((s) => builtin.handle(s, Buffer.alloc(0)));
  await new Promise<void>((r) => builtinPlain.listen(0, '127.0.0.1', r));
  plain = createServer((s) => decoy.handle(s, Buffer.alloc(0)));
  const secureContext = decoySecureContext(made.cert, made.key);
  tls = createServer((raw) => {
    raw.on('error', () => raw.destroy());
    const s = new TLSSocket(raw, { isServer: true, secureContext } as never);
    s.on('error', () => s.destroy());
    s.once('secure', () => decoy.handle(s, Buffer.alloc(0)));
  });
  await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  ports = await onePort(decoy, secureContext);
});

after(async () => {
  await ports?.close();
  decoy?.close();
  builtin?.close();
  builtinPlain?.close();
  plain?.close();
  tls?.close();
  await nginx?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Probe {
  name: string;
  send: (string | Buffer)[];
  /** Send FIN after the last write. */
  end?: boolean;
}

const H = 'Host: a.example\r\n';
const big = (n: number, c: string): string =>
  Array.from({ length: n }, (_, i) => `X-Big-${i}: ${c.repeat(7000)}\r\n`).join('');
const etagOf = (path: string): string => {
  const st = statSync(join(dir, 'www', path));
  return `"${MTIME_S.toString(16)}-${st.size.toString(16)}"`;
};
const LAST_MODIFIED = new Date(MTIME_S * 1000).toUTCString();

function probes(): Probe[] {
  const one = (name: string, s: string | Buffer, end = false): Probe => ({ name, send: [s], end });
  return [
    one('GET /', `GET / HTTP/1.1\r\n${H}\r\n`),
    one('GET /index.html', `GET /index.html HTTP/1.1\r\n${H}\r\n`),
    one('GET /about.html', `GET /about.html HTTP/1.1\r\n${H}\r\n`),
    one('GET /robots.txt', `GET /robots.txt HTTP/1.1\r\n${H}\r\n`),
    one('GET missing', `GET /wp-login.php HTTP/1.1\r\n${H}\r\n`),
    one('HEAD /', `HEAD / HTTP/1.1\r\n${H}\r\n`),
    one('HEAD missing', `HEAD /nope HTTP/1.1\r\n${H}\r\n`),
    one('POST with a body', `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`),
    one(
      'POST chunked',
      `POST /x.html HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
    ),
    one('DELETE', `DELETE / HTTP/1.1\r\n${H}\r\n`),
    one('unknown method', `FOO /about.html HTTP/1.1\r\n${H}\r\n`),
    one('TRACE', `TRACE / HTTP/1.1\r\n${H}\r\n`),
    one('CONNECT authority', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'),
    one('CONNECT path', `CONNECT / HTTP/1.1\r\n${H}\r\n`),
    one('OPTIONS *', `OPTIONS * HTTP/1.1\r\n${H}\r\n`),
    one('HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
    one('HTTP/1.0', 'GET / HTTP/1.0\r\n\r\n'),
    one('HTTP/1.0 keep-alive', 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'),
    one('HTTP/0.9', 'GET /\r\n'),
    one('HTTP/0.9 missing', 'GET /nope\r\n'),
    one('HTTP/0.9 HEAD', 'HEAD /\r\n'),
    one('HTTP/2.0 version', `GET / HTTP/2.0\r\n${H}\r\n`),
    one('HTTP/1.2 version', `GET / HTTP/1.2\r\n${H}\r\n`),
    one('HTTP/01.1 version', `GET / HTTP/01.1\r\n${H}\r\n`),
    one('HTTP/1.100 version', `GET / HTTP/1.100\r\n${H}\r\n`),
    one('lower-case method', `get / HTTP/1.1\r\n${H}\r\n`),
    one('no Host', 'GET / HTTP/1.1\r\n\r\n'),
    one('Host with a space', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n'),
    one('Host a..b', 'GET / HTTP/1.1\r\nHost: a..b\r\n\r\n'),
    one('Host empty', 'GET / HTTP/1.1\r\nHost: \r\n\r\n'),
    one('two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'),
    one('Host upper case, port, dot', 'GET /notes HTTP/1.1\r\nHost: A.Example.:99\r\n\r\n'),
    one('absolute URI', `GET http://other.example/about.html HTTP/1.1\r\n${H}\r\n`),
    one('absolute URI redirect', `GET http://B.example:8/notes?x=1 HTTP/1.1\r\n${H}\r\n`),
    one('request line 9000 B', `GET /${'a'.repeat(9000)} HTTP/1.1\r\n${H}\r\n`),
    one('header line 9000 B', `GET / HTTP/1.1\r\n${H}X: ${'a'.repeat(9000)}\r\n\r\n`),
    one('4 headers of 7000 B', `GET / HTTP/1.1\r\n${H}${big(4, 'b')}\r\n`),
    one('5 headers of 7000 B', `GET / HTTP/1.1\r\n${H}${big(5, 'b')}\r\n`),
    one('obs-fold', `GET / HTTP/1.1\r\n${H}X: a\r\n b\r\n\r\n`),
    one('space in a header name', `GET / HTTP/1.1\r\n${H}X Y: z\r\n\r\n`),
    one('NUL in a header value', `GET / HTTP/1.1\r\n${H}X: a\0b\r\n\r\n`),
    one('header without colon', `GET / HTTP/1.1\r\n${H}nocolon\r\n\r\n`),
    one('invalid header name ignored', `GET / HTTP/1.1\r\n${H}@bad_name: 1\r\n\r\n`),
    one('bare LF line ends', 'GET / HTTP/1.1\nHost: a\n\n'),
    one('bare CR in a value', `GET / HTTP/1.1\r\n${H}X: a\rb\r\n\r\n`),
    one('leading empty lines', `\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`),
    one('tab in the target', `GET /\tx HTTP/1.1\r\n${H}\r\n`),
    one('spaces around the target', `GET  /  HTTP/1.1 \r\n${H}\r\n`),
    one('not HTTP', `GET / FOO/1.1\r\n${H}\r\n`),
    one('pipelined', `GET / HTTP/1.1\r\n${H}\r\nGET /robots.txt HTTP/1.1\r\n${H}\r\n`),
    one('pipelined then garbage', `GET /robots.txt HTTP/1.1\r\n${H}\r\n\x01\x02garbage\r\n\r\n`),
    one(
      'keep-alive request limit (keepalive_requests 3)',
      `GET / HTTP/1.1\r\n${H}\r\n`.repeat(2) +
        `GET /robots.txt HTTP/1.1\r\n${H}\r\n` +
        `GET /about.html HTTP/1.1\r\n${H}\r\n`,
    ),
    one('Connection: close', `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`),
    one(
      'Connection: keep-alive, close',
      `GET / HTTP/1.1\r\n${H}Connection: Keep-Alive, Close\r\n\r\n`,
    ),
    one('Range single', `GET /about.html HTTP/1.1\r\n${H}Range: bytes=0-3\r\n\r\n`),
    one('Range suffix', `GET /about.html HTTP/1.1\r\n${H}Range: bytes=-3\r\n\r\n`),
    one('Range multiple', `GET /robots.txt HTTP/1.1\r\n${H}Range: bytes=0-1,3-4\r\n\r\n`),
    one(
      'Range overlapping past size',
      `GET /robots.txt HTTP/1.1\r\n${H}Range: bytes=0-20,3-24\r\n\r\n`,
    ),
    one('Range unsatisfiable', `GET /robots.txt HTTP/1.1\r\n${H}Range: bytes=5000-\r\n\r\n`),
    one('Range malformed', `GET /robots.txt HTTP/1.1\r\n${H}Range: bytes=x\r\n\r\n`),
    one('Range on HEAD', `HEAD /logo.png HTTP/1.1\r\n${H}Range: bytes=10-19\r\n\r\n`),
    one(
      'If-Range mismatch',
      `GET /robots.txt HTTP/1.1\r\n${H}Range: bytes=0-1\r\nIf-Range: "nope"\r\n\r\n`,
    ),
    one(
      'If-None-Match match',
      `GET /about.html HTTP/1.1\r\n${H}If-None-Match: W/${etagOf('about.html')}\r\n\r\n`,
    ),
    one('If-None-Match other', `GET /about.html HTTP/1.1\r\n${H}If-None-Match: "x"\r\n\r\n`),
    one(
      'If-Modified-Since exact',
      `GET /about.html HTTP/1.1\r\n${H}If-Modified-Since: ${LAST_MODIFIED}\r\n\r\n`,
    ),
    one(
      'If-Modified-Since older',
      `GET /about.html HTTP/1.1\r\n${H}If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n`,
    ),
    one('If-Match mismatch', `GET /about.html HTTP/1.1\r\n${H}If-Match: "x"\r\n\r\n`),
    one(
      'Chrome 404 padding',
      `GET /nope HTTP/1.1\r\n${H}User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\r\n`,
    ),
    one(
      'Firefox 404',
      `GET /nope HTTP/1.1\r\n${H}User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\r\n`,
    ),
    one(
      'MSIE 6 POST',
      `POST / HTTP/1.1\r\n${H}User-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\nContent-Length: 0\r\n\r\n`,
    ),
    one('dot-dot above root', `GET /../etc/passwd HTTP/1.1\r\n${H}\r\n`),
    one('escaped NUL', `GET /%00 HTTP/1.1\r\n${H}\r\n`),
    one('bad escape', `GET /%zz HTTP/1.1\r\n${H}\r\n`),
    one('escaped letter', `GET /%61bout.html HTTP/1.1\r\n${H}\r\n`),
    one('slashes, query, fragment', `GET //notes//index.html?x=1#f HTTP/1.1\r\n${H}\r\n`),
    one('dot segments', `GET /a/../notes/./ HTTP/1.1\r\n${H}\r\n`),
    one('directory without slash', `GET /notes HTTP/1.1\r\n${H}\r\n`),
    one('directory without slash, HTTP/1.0 no Host', 'GET /notes HTTP/1.0\r\n\r\n'),
    one('directory index', `GET /notes/ HTTP/1.1\r\n${H}\r\n`),
    one('directory without index', `GET /empty/ HTTP/1.1\r\n${H}\r\n`),
    one('file with a trailing slash', `GET /about.html/ HTTP/1.1\r\n${H}\r\n`),
    one('Transfer-Encoding gzip', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n`),
    one(
      'Transfer-Encoding on HTTP/1.0',
      'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ),
    one(
      'Content-Length and chunked',
      `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc`,
    ),
    one('Content-Length not a number', `GET / HTTP/1.1\r\n${H}Content-Length: abc\r\n\r\n`),
    one(
      'two Content-Lengths',
      `GET / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 1\r\n\r\nx`,
    ),
    one('body over the limit', `POST / HTTP/1.1\r\n${H}Content-Length: 9999999\r\n\r\n`),
    one('body still coming', `POST / HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nabc`),
    one('TLS ClientHello bytes', Buffer.from('16030100a5010000a10303', 'hex')),
    one('random bytes', Buffer.from('8f3a0c9e71d2b45a6f0e1d2c3b4a59687766554433221100', 'hex')),
    one('large file', `GET /logo.png HTTP/1.1\r\n${H}\r\n`),
    one('large file range', `GET /logo.png HTTP/1.1\r\n${H}Range: bytes=1000-50999\r\n\r\n`),
    one('partial request, then FIN', 'GET / HTTP/1.1\r\nHo', true),
    one('request, then FIN', `GET / HTTP/1.1\r\n${H}\r\n`, true),
    one('bad request, then FIN', 'xyz\r\n\r\n', true),
    { name: 'nothing sent (header timeout)', send: [] },
    one('trickled header stops (header timeout)', 'GET / HTTP/1.1\r\nHost: a'),
    {
      name: 'request in pieces',
      send: ['GE', 'T /about', '.html HTTP/1.1\r\nHo', 'st: a\r\n', '\r\n'],
    },
  ];
}

interface Outcome {
  bytes: string;
  how: string;
}

function exchange(port: number, useTls: boolean, p: Probe): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = useTls
      ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'a.example' })
      : tcpConnect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let done = false;
    const finish = (how: string): void => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      s.destroy();
      resolve({ bytes: Buffer.concat(got).toString('latin1'), how });
    };
    // Not a measurement: a server that never closes fails the probe instead of hanging the test.
    const guard = setTimeout(() => finish('STILL OPEN after 20 s'), 20_000);
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => finish('FIN'));
    s.on('error', (e: NodeJS.ErrnoException) =>
      finish(e.code === 'ECONNRESET' ? 'RST' : (e.code ?? 'error')),
    );
    s.on('close', () => finish('closed'));
    s.once(useTls ? 'secureConnect' : 'connect', () => {
      const write = (i: number): void => {
        if (i >= p.send.length) {
          if (p.end) s.end();
          return;
        }
        s.write(p.send[i]!, () => setImmediate(() => write(i + 1)));
      };
      write(0);
    });
  });
}

function normalise(o: Outcome, port: number): string {
  const text = o.bytes
    .replace(/\r\nDate: [^\r]*\r\n/g, '\r\nDate: (date)\r\n')
    .split(`:${port}/`)
    .join(':(port)/');
  return `${o.how}\n${text}`;
}

async function battery(
  useTls: boolean,
  list: Probe[],
  site: { address(): AddressInfo | string | null } = useTls ? tls : plain,
  nginxPort = useTls ? nginx.tlsPort! : nginx.port,
): Promise<void> {
  const decoyPort = site.address() as AddressInfo;
  const results = await Promise.all(
    list.map(async (p) => {
      const [a, b] = await Promise.all([
        exchange(nginxPort, useTls, p),
        exchange(decoyPort.port, useTls, p),
      ]);
      return { name: p.name, nginx: normalise(a, nginxPort), decoy: normalise(b, decoyPort.port) };
    }),
  );
  const differ = results.filter((r) => r.nginx !== r.decoy);
  const show = (s: string): string => JSON.stringify(s.length > 700 ? s.slice(0, 700) + '…' : s);
  assert.deepEqual(
    differ.map((r) => `${r.name}\n  nginx: ${show(r.nginx)}\n  decoy: ${show(r.decoy)}`),
    [],
    `${differ.length} of ${results.length} probes differ from nginx`,
  );
  for (const r of results) assert.doesNotMatch(r.nginx, /STILL OPEN/, r.name);
}

test('the decoy answers every probe over TCP as nginx 1.22 does, byte for byte', async () => {
  const list = probes();
  assert.ok(list.length >= 40);
  await battery(false, list);
});

test('the decoy answers over TLS as nginx 1.22 does (https redirects, errors, timeouts)', async () => {
  const all = probes();
  const pick = new Set([
    'GET /',
    'GET missing',
    'POST with a body',
    'directory without slash',
    'directory without slash, HTTP/1.0 no Host',
    'request line 9000 B',
    'pipelined',
    'random bytes',
    'Chrome 404 padding',
    'request, then FIN',
    'nothing sent (header timeout)',
    'trickled header stops (header timeout)',
    'large file',
  ]);
  await battery(
    true,
    all.filter((p) => pick.has(p.name)),
  );
});

test('the built-in pages are served as nginx serves the same files', async () => {
  const pick = new Set([
    'GET /',
    'GET /index.html',
    'GET /about.html',
    'GET /robots.txt',
    'GET missing',
    'HEAD /',
    'Range single',
    'If-None-Match match',
    'If-Modified-Since exact',
    'escaped letter',
    'HTTP/0.9',
  ]);
  await battery(
    false,
    probes().filter((p) => pick.has(p.name)),
    builtinPlain,
  );
});

/** A ClientHello record: legacy version, cipher suites, no extensions. */
function clientHello(recordVersion: number, version: number, ciphers: number[]): Buffer {
  const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
  const suites = Buffer.concat(ciphers.map(u16));
  const body = Buffer.concat([
    u16(version),
    Buffer.alloc(32, 7), // random
    Buffer.from([0]), // session id
    u16(suites.length),
    suites,
    Buffer.from([1, 0]), // compression: null
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16]), u16(recordVersion), u16(hs.length), hs]);
}

test('odd ClientHellos get the alert nginx with OpenSSL sends, and the same close', async () => {
  const raw = (port: number, bytes: Buffer): Promise<string> =>
    new Promise((resolve) => {
      const s = tcpConnect(port, '127.0.0.1', () => s.write(bytes));
      const got: Buffer[] = [];
      let done = false;
      const finish = (how: string): void => {
        if (done) return;
        done = true;
        clearTimeout(guard);
        s.destroy();
        resolve(`${how} ${Buffer.concat(got).toString('hex')}`);
      };
      const guard = setTimeout(() => finish('STILL OPEN after 20 s'), 20_000);
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => finish('FIN'));
      s.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? 'error'));
    });
  const cases: [string, Buffer][] = [
    ['TLS 1.0 only', clientHello(0x0301, 0x0301, [0x002f])],
    ['SSL 3.0', clientHello(0x0300, 0x0300, [0x002f])],
    ['TLS 1.2, no common cipher', clientHello(0x0301, 0x0303, [0x0005])],
    ['TLS 1.2 with only a TLS 1.3 suite', clientHello(0x0301, 0x0303, [0x1301])],
    [
      'SSLv2-style hello',
      Buffer.from(
        '802e0103010015000000100000040000050000800100800300800700c006004000800200801a2b3c4d5e6f708192a3b4c5d6e7f8',
        'hex',
      ),
    ],
    ['record longer than allowed', Buffer.from([0x16, 3, 1, 0x48, 0x01, 1])],
  ];
  const decoyPort = (tls.address() as AddressInfo).port;
  for (const [name, bytes] of cases) {
    const [a, b] = await Promise.all([raw(nginx.tlsPort!, bytes), raw(decoyPort, bytes)]);
    assert.equal(b, a, name);
    assert.match(a, /^FIN 15/, name);
  }
});

/** Plain HTTP (and other bytes that do not start TLS) sent to the TLS port. */
function plainToTlsPortProbes(): Probe[] {
  const pick = new Set([
    'GET /',
    'GET missing',
    'HEAD /',
    'HTTP/1.0',
    'HTTP/1.0 keep-alive',
    'HTTP/0.9',
    'HTTP/0.9 HEAD',
    'no Host',
    'two Hosts',
    'absolute URI',
    'lower-case method',
    'leading empty lines',
    'HTTP/2 preface',
    'Chrome 404 padding',
    'POST with a body',
    'body still coming',
    'body over the limit',
    'Transfer-Encoding gzip',
    'pipelined',
    'CONNECT authority',
    'CONNECT path',
    'TRACE',
    'request line 9000 B',
    '5 headers of 7000 B',
    'random bytes',
    'partial request, then FIN',
    'request, then FIN',
    'bad request, then FIN',
    'nothing sent (header timeout)',
    'trickled header stops (header timeout)',
    'request in pieces',
  ]);
  const chosen = probes().filter((p) => pick.has(p.name));
  assert.equal(chosen.length, pick.size, 'every picked probe exists');
  return [
    ...chosen,
    { name: 'garbage first line', send: ['\x01\x02garbage\r\n\r\n'] },
    { name: 'one letter, then silence (header timeout)', send: ['G'] },
    { name: 'request line without its end (header timeout)', send: ['GET / HTTP/1.1'] },
    {
      name: 'a long plain request Shadowsocks must refuse first',
      send: [`GET /${'x'.repeat(300)} HTTP/1.1\r\n${H}\r\n`],
    },
    { name: 'an alert record', send: [Buffer.from('15030100020230', 'hex')] },
  ];
}

test('plain HTTP to the Trojan TLS port is answered as nginx answers it on its ssl port', async () => {
  await battery(
    false,
    plainToTlsPortProbes(),
    { address: () => ({ port: ports!.trojan }) as AddressInfo },
    nginx.tlsPort!,
  );
});

test('plain HTTP to the TLS port with WebSockets is answered as nginx answers it', async () => {
  await battery(
    false,
    plainToTlsPortProbes(),
    { address: () => ({ port: ports!.web }) as AddressInfo },
    nginx.tlsPort!,
  );
});

/** Requests with Accept-Encoding (Debian's `gzip on;`): what is compressed, and what is not. */
function gzipProbes(): Probe[] {
  const gz = 'Accept-Encoding: gzip, deflate, br\r\n';
  const one = (name: string, s: string): Probe => ({ name, send: [s] });
  const chrome =
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n';
  return [
    one('gzip GET /', `GET / HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip GET /about.html', `GET /about.html HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip large page in chunks', `GET /big.html HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip 404 page', `GET /nope HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip 404 page, Chrome padding', `GET /nope HTTP/1.1\r\n${H}${chrome}${gz}\r\n`),
    one('gzip 403 page', `GET /empty/ HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip 405 not compressed', `DELETE / HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip 301 not compressed', `GET /notes HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip HEAD /', `HEAD / HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip HEAD missing', `HEAD /nope HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip HTTP/1.0: not compressed', `GET / HTTP/1.0\r\n${gz}\r\n`),
    one('gzip HTTP/0.9', 'GET /\r\n'),
    one('gzip Range ignored', `GET /about.html HTTP/1.1\r\n${H}${gz}Range: bytes=0-3\r\n\r\n`),
    one(
      'gzip If-Modified-Since exact: 304',
      `GET /about.html HTTP/1.1\r\n${H}${gz}If-Modified-Since: ${LAST_MODIFIED}\r\n\r\n`,
    ),
    one(
      'gzip If-Modified-Since older',
      `GET /about.html HTTP/1.1\r\n${H}${gz}If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n`,
    ),
    one(
      'gzip If-None-Match weak',
      `GET /about.html HTTP/1.1\r\n${H}${gz}If-None-Match: W/${etagOf('about.html')}\r\n\r\n`,
    ),
    one('gzip text/plain not compressed', `GET /robots.txt HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip image not compressed', `GET /logo.png HTTP/1.1\r\n${H}${gz}\r\n`),
    one('gzip q=0 refused', `GET / HTTP/1.1\r\n${H}Accept-Encoding: gzip;q=0\r\n\r\n`),
    one('gzip q=0.5', `GET / HTTP/1.1\r\n${H}Accept-Encoding: deflate, gzip;q=0.5\r\n\r\n`),
    one('gzip upper case', `GET / HTTP/1.1\r\n${H}Accept-Encoding: GZIP\r\n\r\n`),
    one('gzip x-gzip only', `GET / HTTP/1.1\r\n${H}Accept-Encoding: x-gzip\r\n\r\n`),
    one('gzip br only', `GET / HTTP/1.1\r\n${H}Accept-Encoding: br\r\n\r\n`),
    one('gzip with Via', `GET / HTTP/1.1\r\n${H}${gz}Via: 1.1 proxy\r\n\r\n`),
    one(
      'gzip keep-alive, two requests',
      `GET /about.html HTTP/1.1\r\n${H}${gz}\r\nGET /nope HTTP/1.1\r\n${H}${gz}\r\n`,
    ),
  ];
}

test("with Accept-Encoding the decoy answers as Debian's nginx with gzip on, byte for byte", async () => {
  // Equal compressed bytes need the system's zlib, which nginx links (src/server/decoy/nginx-gzip.ts).
  assert.ok(systemZlibVersion(), 'native/gzip is not built (npm ci builds it): bytes would differ');
  await battery(false, gzipProbes());
});

test('gzip over TLS and on the built-in pages, as nginx serves the same files', async () => {
  const pick = new Set(['gzip GET /', 'gzip 404 page', 'gzip large page in chunks', 'gzip HEAD /']);
  await battery(
    true,
    gzipProbes().filter((p) => pick.has(p.name)),
  );
  const builtinPick = new Set([
    'gzip GET /',
    'gzip GET /about.html',
    'gzip 404 page',
    'gzip Range ignored',
    'gzip If-Modified-Since exact: 304',
  ]);
  await battery(
    false,
    gzipProbes().filter((p) => builtinPick.has(p.name)),
    builtinPlain,
  );
});
