/**
 * `ladder lab`: the adversary lab (src/lab, docs/lab.md).
 *
 *   up [--prefix P] [--profile NAME | --policy FILE] [--time-factor F]
 *   down [--prefix P]
 *   status [--prefix P]
 *   exec <client|wall|abroad|domestic> [--prefix P] -- <cmd...>
 *   run [--prefix P] [--profile NAME] [--json FILE] [--quick] [--n N]
 *   probe --to <host:port> --first-hex H [--seed S] ...   one active-probing campaign (JSON lines)
 *   probe --to <host:port> --tor [--sni NAME]             the Tor prober's VERSIONS probe (§12)
 * Internal (run inside the namespaces by the lab itself): serve, censor, connect, naive-client.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { LadderError } from '../errors.js';
import { parseFlags, parseHostPort } from './args.js';

const USAGE = `ladder lab <subcommand>

  up      build the lab (root): namespaces <prefix>client|wall|abroad|domestic, services, censor
          --prefix P (default ldr-)  --profile gfw-2022|gfw-2025|sensitive-period|none  --policy FILE
          --time-factor F (multiplies published durations; default 1)  --mtu M (default 9000)
  down    remove everything the lab created (idempotent, also after a crash)
  status  show what is up
  exec    run a command in a namespace: ladder lab exec client -- curl http://allowed.lab/
  run     the report card: --profile P (one profile column only) --columns a,b --only t1,t2
          --quick --n N --json FILE --time-factor F (default 0.01 so residuals last seconds) --seed S
  probe   one active-probing campaign from the lab's prober (run it in the wall with exec):
          --to host:port --first-hex H (the recorded first payload) --seed S --timeout-ms T
          --random-probes N --random-length-probes N --tls-probes N --source ADDR; JSON lines out
          --tor: instead, the Tor prober's probe (TLS, then a VERSIONS cell; --sni NAME), one JSON line`;

const ROLE_NAMES = ['client', 'wall', 'abroad', 'domestic'] as const;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    console.log(USAGE);
    return sub === undefined ? 2 : 0;
  }
  switch (sub) {
    case 'up':
      return up(rest);
    case 'down':
      return down(rest);
    case 'status':
      return status(rest);
    case 'exec':
      return exec(rest);
    case 'run':
      return report(rest);
    case 'serve':
      return serve(rest);
    case 'censor':
      return censor(rest);
    case 'connect':
      return connectCmd(rest);
    case 'probe':
      return probeCmd(rest);
    case 'naive-client':
      return naiveClient(rest);
    default:
      throw new LadderError(
        'ERR_USAGE',
        `lab: unknown subcommand '${sub}'. Run 'ladder lab --help'.`,
      );
  }
}

async function needLab(): Promise<
  typeof import('../lab/lab.js') & typeof import('../lab/topology.js')
> {
  const topo = await import('../lab/topology.js');
  const why = topo.labUnavailable();
  if (why) throw new LadderError('ERR_LAB_NEEDS_ROOT', `lab: ${why}`);
  return { ...(await import('../lab/lab.js')), ...topo };
}

async function policyFrom(
  plan: import('../lab/topology.js').LabPlan,
  profile: string | undefined,
  file: string | undefined,
  timeFactor: string | undefined,
): Promise<import('../lab/policy.js').Policy> {
  const pol = await import('../lab/policy.js');
  const p = file ? pol.loadPolicy(file) : pol.profilePolicy(profile ?? 'none', plan);
  if (timeFactor !== undefined) p.timeFactor = Number(timeFactor);
  return pol.checkPolicy(p);
}

async function up(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab up', argv, {
    prefix: { type: 'string' },
    profile: { type: 'string' },
    policy: { type: 'string' },
    'time-factor': { type: 'string' },
    mtu: { type: 'string' },
  });
  const lab = await needLab();
  const plan = lab.planLab(
    values.prefix,
    undefined,
    values.mtu !== undefined ? Number(values.mtu) : undefined,
  );
  const policy = await policyFrom(plan, values.profile, values.policy, values['time-factor']);
  await lab.labUp(plan, { policy });
  console.log(`lab '${plan.prefix}' is up: ${Object.values(plan.ns).join(', ')}`);
  console.log(
    `  try: ladder lab exec client${values.prefix ? ` --prefix ${plan.prefix}` : ''} -- curl http://${plan.names.allowed}/`,
  );
  console.log(`  lab CA for HTTPS: ${lab.caPath(plan)}`);
  return 0;
}

async function down(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab down', argv, { prefix: { type: 'string' } });
  const lab = await needLab();
  const removed = lab.destroyLab(lab.planLab(values.prefix));
  console.log(removed.length ? `removed: ${removed.join(', ')}` : 'nothing to remove');
  return 0;
}

async function status(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab status', argv, { prefix: { type: 'string' } });
  const lab = await needLab();
  for (const l of lab.labStatus(lab.planLab(values.prefix))) console.log(l);
  return 0;
}

async function exec(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  if (dash < 0 || dash === argv.length - 1)
    throw new LadderError(
      'ERR_USAGE',
      'lab exec: write the command after --, e.g. ladder lab exec client -- curl http://allowed.lab/',
    );
  const { values, positionals } = parseFlags(
    'lab exec',
    argv.slice(0, dash),
    { prefix: { type: 'string' } },
    true,
  );
  const role = positionals[0];
  if (!role || !(ROLE_NAMES as readonly string[]).includes(role))
    throw new LadderError('ERR_USAGE', `lab exec: name a namespace: ${ROLE_NAMES.join(', ')}`);
  const lab = await needLab();
  return lab.labExec(
    lab.planLab(values.prefix),
    role as (typeof ROLE_NAMES)[number],
    argv.slice(dash + 1),
  );
}

async function report(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab run', argv, {
    prefix: { type: 'string' },
    profile: { type: 'string' },
    json: { type: 'string' },
    quick: { type: 'boolean' },
    n: { type: 'string' },
    'time-factor': { type: 'string' },
    seed: { type: 'string' },
    only: { type: 'string' },
    columns: { type: 'string' },
  });
  const lab = await needLab();
  const card = await import('../lab/report.js');
  const plan = lab.planLab(values.prefix);
  const wasUp = lab.labNamespaces(plan.prefix).length > 0;
  if (!wasUp) await lab.labUp(plan);
  const seed = values.seed !== undefined ? Number(values.seed) : randomBytes(4).readUInt32BE(0);
  const n = values.n !== undefined ? Number(values.n) : values.quick ? 5 : 50;
  console.log(`report card: N=${n} per cell, seed ${seed}`);
  // Ctrl-C or a kill mid-run: Node's default would exit without the finally below, leaving the
  // namespaces, their processes and the transports' servers behind. Stop them, then exit as signalled.
  const onSignal = (signal: NodeJS.Signals): void => {
    card.stopTransports();
    if (!wasUp) lab.destroyLab(plan);
    console.error(`lab run: stopped by ${signal}; ${wasUp ? 'the lab stays up' : 'lab removed'}`);
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const cells = await card.runReportCard(plan, {
      n,
      timeoutS: values.quick ? 2 : 4,
      timeFactor: values['time-factor'] !== undefined ? Number(values['time-factor']) : 0.01,
      seed,
      only: values.only?.split(','),
      columns: values.columns?.split(',') ?? (values.profile ? [values.profile] : undefined),
      onProgress: (l) => console.log(l),
    });
    console.log('\n' + card.formatCard(cells));
    if (values.json) writeFileSync(values.json, JSON.stringify({ seed, n, cells }, null, 2));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!wasUp) lab.destroyLab(plan);
  }
  return 0;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab serve', argv, {
    prefix: { type: 'string' },
    role: { type: 'string' },
  });
  const { planLab } = await import('../lab/topology.js');
  const { startServices } = await import('../lab/services.js');
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
  const { planLab } = await import('../lab/topology.js');
  const { loadPolicy } = await import('../lab/policy.js');
  const { runCensor } = await import('../lab/censor/run.js');
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
    const { torProbe } = await import('../lab/modules/tor.js');
    const { versionsReply } = await import('../lab/packet/tor-cell.js');
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
  const { runCampaign, PROBE_DEFAULTS, classifyServer } = await import('../lab/modules/probe.js');
  const { seededRandom } = await import('../lab/censor/run.js');
  const count = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  const results = await runCampaign(target, first, {
    random: seededRandom(count(values.seed, 1)),
    timeoutMs: count(values['timeout-ms'], 2000),
    params: {
      randomProbes: count(values['random-probes'], PROBE_DEFAULTS.randomProbes),
      randomLengthProbes: count(values['random-length-probes'], PROBE_DEFAULTS.randomLengthProbes),
      tlsProbes: count(values['tls-probes'], PROBE_DEFAULTS.tlsProbes),
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
    const { cryptoFrame, sealQuicInitial } = await import('../lab/packet/quic.js');
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
  const { nodeClientHelloRecord } = await import('../lab/packet/node-hello.js');
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
  const { withExtension } = await import('../lab/packet/tls-client-hello.js');
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
