/**
 * The lab's agents: the small programs the lab runs inside its namespaces (services, the censor, a
 * test connection, the active prober, the naive TLS-in-TLS client). The lab starts them through
 * src/lab/agent-main.ts; `ladder lab <agent>` runs the same code with the same flags.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { connect } from 'node:net';
import { LadderError } from '../errors.js';
import { parseFlags } from '../core/flags.js';
import { parseHostPort } from '../core/host-port.js';

/** The agents by name. */
const AGENTS: Record<string, (argv: string[]) => Promise<number>> = {
  serve: (argv) => serve(argv),
  censor: (argv) => censor(argv),
  connect: (argv) => connectCmd(argv),
  probe: (argv) => probeCmd(argv),
  'naive-client': (argv) => naiveClient(argv),
};

/** Runs agent `name` with its flags; resolves to the exit code. */
export async function runAgent(name: string, argv: string[]): Promise<number> {
  const agent = AGENTS[name];
  if (agent === undefined)
    throw new LadderError(
      'ERR_USAGE',
      `lab agent: unknown agent '${name}'; one of ${Object.keys(AGENTS).join(', ')}`,
    );
  return agent(argv);
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab serve', argv, {
    prefix: { type: 'string' },
    role: { type: 'string' },
  });
  const { planLab } = await import('./topology.js');
  const { startServices } = await import('./services.js');
  const role = values.role === 'domestic' ? 'domestic' : 'abroad';
  const stop = await startServices(planLab(values.prefix), role);
  console.log(`lab services (${role}) listening`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  stop();
  return 0;
}

async function censor(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab censor', argv, {
    prefix: { type: 'string' },
    policy: { type: 'string' },
    events: { type: 'string' },
  });
  const { planLab } = await import('./topology.js');
  const { loadPolicy } = await import('./policy.js');
  const { runCensor } = await import('./censor/run.js');
  const plan = planLab(values.prefix);
  const policy = values.policy ? loadPolicy(values.policy) : { modules: {} };
  const events = values.events;
  const c = runCensor(plan.tun, policy, plan.inside, (e) => {
    if (events) appendFileSync(events, JSON.stringify({ t: Date.now(), ...e }) + '\n');
  });
  console.log(
    `censor listening on ${plan.tun}: ${c.modules.map((m) => m.name).join(', ') || 'forwarding only'}`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  c.close();
  const s = c.engine.stats;
  console.log(
    `censor stopped: ${s.packets} packets, ${s.forwarded} forwarded, ${s.dropped} dropped, ${s.injected} injected, ${s.flows} flows`,
  );
  return 0;
}

/** One TCP connection with a chosen first payload; exit 0 if the server echoes it back in time. */
async function connectCmd(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab connect', argv, {
    to: { type: 'string' },
    mode: { type: 'string' },
    bytes: { type: 'string' },
    timeout: { type: 'string' },
  });
  const target = parseHostPort(values.to ?? '', '--to');
  const n = Number(values.bytes ?? 256);
  if (values.mode === 'udp' || values.mode?.startsWith('quic:'))
    return udpConnect(target, values.mode, n, Number(values.timeout ?? 4) * 1000);
  let payload: Buffer = randomBytes(n);
  if (values.mode === 'printable-prefix') payload.write('GETXYZ', 0, 'latin1');
  if (values.mode?.startsWith('hello:')) {
    // hello:<sni>[:<ext>,<ext>…]: Node's ClientHello for <sni> with extensions (hex types) appended;
    // success is any answer (the server's flight or an alert)
    const [, sni, exts] = values.mode.split(':');
    payload = await clientHelloWith(sni ?? '', (exts ?? '').split(',').filter(Boolean));
  }
  const want = values.mode?.startsWith('hello:') ? 1 : n;
  const timeoutMs = Number(values.timeout ?? 4) * 1000;
  return new Promise((resolve) => {
    const s = connect({ host: target.host, port: target.port });
    let got = 0;
    const done = (code: number, why: string) => {
      clearTimeout(timer);
      s.destroy();
      if (code !== 0) console.log(why);
      resolve(code);
    };
    const timer = setTimeout(() => done(1, `timeout after ${got} of ${n} bytes`), timeoutMs);
    s.on('connect', () => s.write(payload));
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= want) done(0, 'ok');
    });
    s.on('error', (err: NodeJS.ErrnoException) => done(1, err.code ?? err.message));
    s.on('end', () => done(1, `closed after ${got} bytes`));
  });
}

/** One probe campaign (the censor's prober, without the censor): results as JSON lines. */
async function probeCmd(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab probe', argv, {
    to: { type: 'string' },
    'first-hex': { type: 'string' },
    seed: { type: 'string' },
    'timeout-ms': { type: 'string' },
    'random-probes': { type: 'string' },
    'random-length-probes': { type: 'string' },
    'tls-probes': { type: 'string' },
    source: { type: 'string' },
    tor: { type: 'boolean' },
    sni: { type: 'string' },
  });
  const target = parseHostPort(values.to ?? '', '--to');
  if (values.tor) {
    // §12: TLS to the server, a VERSIONS cell; does it answer like Tor?
    const { torProbe } = await import('./modules/tor.js');
    const { versionsReply } = await import('./packet/tor-cell.js');
    const out = await torProbe(
      target,
      Number(values['timeout-ms'] ?? 2000),
      values.source,
      values.sni,
    );
    const versions = versionsReply(out.reply);
    console.log(
      JSON.stringify({
        probe: 'VERSIONS',
        layer: 'tls',
        reaction: out.reaction,
        reply: out.reply.toString('base64'),
        verdict: versions ? 'tor' : 'not-tor',
        ...(versions ? { versions } : {}),
      }),
    );
    return 0;
  }
  const first = Buffer.from(values['first-hex'] ?? '', 'hex');
  if (first.length === 0)
    throw new LadderError(
      'ERR_USAGE',
      'lab probe: give the recorded first payload with --first-hex',
    );
  const { runCampaign, PROBER_DEFAULTS, classifyServer } = await import('./modules/prober.js');
  const { seededRandom } = await import('./censor/run.js');
  const count = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  const results = await runCampaign(target, first, {
    random: seededRandom(count(values.seed, 1)),
    timeoutMs: count(values['timeout-ms'], 2000),
    params: {
      randomProbes: count(values['random-probes'], PROBER_DEFAULTS.randomProbes),
      randomLengthProbes: count(values['random-length-probes'], PROBER_DEFAULTS.randomLengthProbes),
      tlsProbes: count(values['tls-probes'], PROBER_DEFAULTS.tlsProbes),
    },
    ...(values.source ? { sourceAddresses: [values.source] } : {}),
    onResult: (r) =>
      console.log(
        JSON.stringify({
          probe: r.probe,
          layer: r.layer,
          length: r.length,
          reaction: r.reaction,
          reply: (r.reply ?? Buffer.alloc(0)).toString('base64'),
        }),
      ),
  });
  const v = classifyServer(results, first[0] === 0x16 && first[5] === 0x01);
  console.log(JSON.stringify({ verdict: v.confirmed ? 'confirmed' : 'cleared', reason: v.reason }));
  return 0;
}

/**
 * UDP through the wall to the echo sink. `udp`: one random datagram. `quic:<sni>`: first a QUIC v1
 * Initial carrying a real (Node) ClientHello for <sni> from one source port, then a random datagram
 * from another source port on the same 3-tuple. Exit 0 if the last datagram is echoed.
 */
async function udpConnect(
  target: { host: string; port: number },
  mode: string,
  n: number,
  timeoutMs: number,
): Promise<number> {
  const { createSocket } = await import('node:dgram');
  const echo = (payload: Buffer): Promise<boolean> =>
    new Promise((resolve) => {
      const s = createSocket('udp4');
      const t = setTimeout(() => finish(false), timeoutMs);
      const finish = (ok: boolean) => {
        clearTimeout(t);
        s.close();
        resolve(ok);
      };
      s.on('message', (m) => finish(m.equals(payload)));
      s.on('error', () => finish(false));
      s.send(payload, target.port, target.host);
    });
  if (mode.startsWith('quic:')) {
    const { cryptoFrame, sealQuicInitial } = await import('./packet/quic.js');
    const hello = await localClientHello(mode.slice(5));
    const initial = sealQuicInitial({
      dcid: randomBytes(8),
      scid: randomBytes(8),
      frames: cryptoFrame(hello),
    });
    console.log(`initial ${(await echo(initial)) ? 'echoed' : 'not echoed'}`);
  }
  const ok = await echo(randomBytes(n));
  console.log(ok ? 'ok' : 'datagram not echoed');
  return ok ? 0 : 1;
}

/** Node's own TLS ClientHello for `servername` (its handshake message), captured on loopback. */
async function localClientHello(servername: string): Promise<Buffer> {
  const { nodeClientHelloRecord } = await import('./packet/node-hello.js');
  return (await nodeClientHelloRecord(servername)).subarray(5);
}

/**
 * The client half of the lab's naive TLS-in-TLS tunnel (src/lab/services.ts, §14 control): a local
 * HTTP proxy that answers CONNECT at once, waits for the application's first bytes (its inner
 * ClientHello), then opens TLS to the tunnel server and sends the CONNECT head and those bytes
 * together, without waiting for any answer.
 */
async function naiveClient(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab naive-client', argv, {
    listen: { type: 'string' },
    server: { type: 'string' },
    servername: { type: 'string' },
    ca: { type: 'string' },
  });
  const listenAt = parseHostPort(values.listen ?? '', '--listen');
  const server = parseHostPort(values.server ?? '', '--server');
  const { readFileSync } = await import('node:fs');
  const { createServer } = await import('node:net');
  const tls = await import('node:tls');
  const ca = values.ca ? readFileSync(values.ca) : undefined;
  const proxy = createServer((local) => {
    local.on('error', () => local.destroy());
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 4096) local.destroy();
        return;
      }
      local.off('data', onData);
      if (!head.subarray(0, 8).equals(Buffer.from('CONNECT '))) return local.destroy();
      local.write('HTTP/1.1 200 Connection established\r\n\r\n');
      // the application's first bytes (its inner ClientHello) leave with the head, in the first
      // flight after the outer handshake, as a Trojan client sends its request and first payload
      local.once('data', (first: Buffer) => {
        local.pause();
        const outer = tls.connect({
          host: server.host,
          port: server.port,
          ...(values.servername ? { servername: values.servername } : {}),
          ...(ca ? { ca } : {}),
        });
        outer.on('error', () => local.destroy());
        local.on('close', () => outer.destroy());
        outer.write(Buffer.concat([head, first])); // sent once the handshake is done
        local.pipe(outer).pipe(local);
        local.resume();
      });
    };
    local.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    proxy.once('error', reject);
    proxy.listen(listenAt.port, listenAt.host, () => resolve());
  });
  console.log(`naive tunnel client listening on ${listenAt.host}:${listenAt.port}`);
  return new Promise<number>(() => {});
}

/** Node's ClientHello record for `sni`, with the given extension types (hex) appended, empty. */
async function clientHelloWith(sni: string, exts: string[]): Promise<Buffer> {
  const { Duplex } = await import('node:stream');
  const tls = await import('node:tls');
  const { withExtension } = await import('./packet/tls-client-hello.js');
  let hello = await new Promise<Buffer>((resolve) => {
    const wire = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        resolve(chunk);
        cb();
      },
    });
    const t = tls.connect({ socket: wire, servername: sni, rejectUnauthorized: false });
    t.on('error', () => {});
    setTimeout(() => t.destroy(), 100);
  });
  for (const e of exts) {
    const next = withExtension(hello, parseInt(e, 16), randomBytes(32));
    if (!next) throw new LadderError('ERR_USAGE', `lab connect: cannot add extension ${e}`);
    hello = next;
  }
  return hello;
}
