#!/usr/bin/env node
/**
 * The `ladder` command: the composition root. Each subcommand lives in its own file and is loaded
 * on demand so that `ladder keys new` does not pay for the server's imports.
 * @module
 */
import { LadderError, hasCode } from '../errors.js';
import { configureNativeAead } from '../crypto/native-aead.js';

const USAGE = `ladder <command> [options]

commands:
  server   run a server: ladder server --listen <host:port> --key <ss-uri> [--key ...]
  client   run a client: ladder client --server <ss-uri> --socks <host:port> --http <host:port>
  keys     make and inspect access keys: ladder keys new --method <method>
  demo     start a server and a client on loopback with a fresh key (what npm start runs)
  lab      the adversary lab: ladder lab up | down | run | exec <ns> -- <cmd>
  probe    what is blocked from here, and how: ladder probe --key <uri> [URL ...]
  build-client  make a signed single-file client: ladder build-client --operator-key <file> --out <file> [--platform <name>]
  update   replace this single-file client with a newer signed one: ladder update --from <url>

Run 'ladder <command> --help' for a command's options.`;

/** How long a finished command's process may linger on open handles before it exits. */
const EXIT_GRACE_MS = 5_000;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  server: async () => (await import('./server-command.js')).run,
  client: async () => (await import('./client-command.js')).run,
  keys: async () => (await import('./keys-command.js')).run,
  demo: async () => (await import('./demo-command.js')).run,
  lab: async () => (await import('./lab-command.js')).run,
  probe: async () => (await import('./probe-command.js')).run,
  'build-client': async () => (await import('./build-client-command.js')).run,
  update: async () => (await import('./update-command.js')).run,
};

async function main(argv: string[]): Promise<number> {
  // LADDER_NO_NATIVE=1: node:crypto instead of the native AEAD addon (docs/benchmarks.md)
  if (process.env.LADDER_NO_NATIVE === '1') configureNativeAead({ enabled: false });
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    console.log('ladder 0.1.0');
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(
      `ladder: unknown command '${name}'. Commands: ${Object.keys(COMMANDS).join(', ')}.`,
    );
    return 2;
  }
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
    // Every command awaits its own work and closes what it opened before it returns, so the
    // process ends now; should something still hold the event loop (a pooled connection, a
    // stuck socket), it ends anyway shortly after, as a stopped service must.
    setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
  },
  (err: unknown) => {
    if (err instanceof LadderError) {
      console.error(`ladder: ${err.message}`);
      // 2: the command line (or a file it names for --rules, --geoip) must change to start at all
      process.exitCode = hasCode(err, 'ERR_USAGE', 'ERR_RULES', 'ERR_GEOIP') ? 2 : 1;
    } else {
      console.error('ladder: unexpected error:', err);
      process.exitCode = 70;
    }
  },
);
