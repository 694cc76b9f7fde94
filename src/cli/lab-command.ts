/**
 * `ladder lab`: the adversary lab (src/lab, docs/lab.md).
 *
 *   up [--prefix P] [--profile NAME[,path-NAME] | --policy FILE] [--path NAME] [--time-factor F]
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
import { writeFileSync } from 'node:fs';
import { LadderError } from '../errors.js';
import { parseFlags } from './args.js';

const USAGE = `ladder lab <subcommand>

  up      build the lab (root): namespaces <prefix>client|wall|abroad|domestic, services, censor
          --prefix P (default ldr-)  --policy FILE
          --profile gfw-2022|gfw-2025|henan-2024|sensitive-period|ru-2026|ru-2026-mobile|ir-2026|tm-2025|none
          --path path-good|path-cn-us|path-cn-peak (delay, jitter, loss and a bandwidth cap in the
          wall; also as --profile gfw-2022,path-cn-us)
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
  // `ladder lab down --help`: the help of every subcommand is this one page (what follows `--` in
  // exec is the command's own).
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    console.log(USAGE);
    return 0;
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
    case 'censor':
    case 'connect':
    case 'probe':
    case 'naive-client':
      return (await import('../lab/agents.js')).runAgent(sub, rest);
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
  path?: string,
): Promise<import('../lab/policy.js').Policy> {
  const pol = await import('../lab/policy.js');
  const p = file ? pol.loadPolicy(file) : pol.profilePolicy(profile ?? 'none', plan);
  if (timeFactor !== undefined) p.timeFactor = Number(timeFactor);
  if (path !== undefined) {
    if (p.path !== undefined)
      throw new LadderError(
        'ERR_USAGE',
        'lab up: the path is given twice; use either --path or a path-* name in --profile',
      );
    p.path = (await import('../lab/path.js')).pathProfile(path);
  }
  return pol.checkPolicy(p);
}

async function up(argv: string[]): Promise<number> {
  const { values } = parseFlags('lab up', argv, {
    prefix: { type: 'string' },
    profile: { type: 'string' },
    policy: { type: 'string' },
    path: { type: 'string' },
    'time-factor': { type: 'string' },
    mtu: { type: 'string' },
  });
  const lab = await needLab();
  const plan = lab.planLab(
    values.prefix,
    undefined,
    values.mtu !== undefined ? Number(values.mtu) : undefined,
  );
  const policy = await policyFrom(
    plan,
    values.profile,
    values.policy,
    values['time-factor'],
    values.path,
  );
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
  const card = await import('../lab/card.js');
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
