// Refreshing an online key while connected: on a schedule (mock timers and a fake clock decide
// when), and when a dial fails on every transport; a changed key is applied without dropping open
// connections, a failed fetch keeps the current key and says so.
import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, type Duplex } from 'node:stream';
import { DialError } from '../errors.js';
import type { Target } from '../transport/types.js';
import { ClientController, type DialersBuilder, type OnlineFetch } from './client-controller.js';

const KEY_A = 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpvbmU@198.18.0.1:4321';
const KEY_B = 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTp0d28@198.18.0.2:4321';
const ONLINE = 'ssconf://keys.example/k#Home';
const TARGET: Target = { host: 'dest.example', port: 443 };
const EVERY_MS = 3_600_000;
const GAP_MS = 60_000;

/** The access key of each dial, in order. */
const dials: string[] = [];

/** Dialers that record which access key each dial used; a key in `down` fails every dial. */
function fakeBuild(down: Set<string>): DialersBuilder {
  return (uri) => {
    const stream = {
      dial: (): Promise<Duplex> => {
        if (down.has(uri))
          return Promise.reject(
            new DialError(
              'ERR_SERVER_UNREACHABLE',
              'no transport of the key could reach the server',
            ),
          );
        dials.push(uri);
        return Promise.resolve(new PassThrough());
      },
    };
    const packet = { open: () => ({ send: () => {}, close: () => {} }) };
    return {
      what: `test dialer for ${uri.slice(-14)}`,
      stream,
      packet,
      transports: [],
      skipped: [],
      rules: [],
    };
  };
}

/**
 * The online key's answers in turn (an import fetches; a connect right after it does not): a key
 * to serve, or an Error to fail with; the last one repeats.
 */
function fakeFetch(answers: (string | Error)[]): OnlineFetch & { calls: number } {
  const f = Object.assign(
    (): Promise<string> => {
      f.calls++;
      const a = answers.length > 1 ? answers.shift()! : answers[0]!;
      return a instanceof Error ? Promise.reject(a) : Promise.resolve(`${a}\n`);
    },
    { calls: 0 },
  );
  return f;
}

let now = 1_000_000;
const clock = { now: () => now };

beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout'] });
});
afterEach(() => {
  mock.timers.reset();
});

function controller(fetch: OnlineFetch, down = new Set<string>()): ClientController {
  return new ClientController({
    build: fakeBuild(down),
    fetch,
    refresh: { everyMs: EVERY_MS, minGapMs: GAP_MS, clock },
  });
}

/** Dials through the controller; the access key the dial used. */
async function dialKey(c: ClientController): Promise<string | undefined> {
  (await c.dialer.dial(TARGET)).destroy();
  return dials.at(-1);
}

test('a changed key is applied on schedule; open connections stay, new ones use it', async () => {
  const fetch = fakeFetch([KEY_A, KEY_B]);
  const c = controller(fetch);
  await c.connect(await c.importKey(ONLINE));
  assert.equal(c.activeUri(), `${KEY_A}#Home`);
  const before = await c.dialer.dial(TARGET);
  assert.equal(dials.at(-1), `${KEY_A}#Home`);
  const calls = fetch.calls;

  mock.timers.tick(EVERY_MS - 1);
  assert.equal(fetch.calls, calls, 'not before the hour');
  mock.timers.tick(1);
  assert.equal(fetch.calls, calls + 1, 'the timer fetched the key again');
  const st = await c.refresh(); // the refresh the timer started
  assert.equal(fetch.calls, calls + 1);
  assert.equal(st.ok, true);
  assert.match(st.note, /new key from https:\/\/keys\.example.*open ones stay/);
  assert.equal(c.activeUri(), `${KEY_B}#Home`);
  assert.equal(before.destroyed, false, 'the open connection was not dropped');
  assert.equal(c.connections.list().length, 1);
  assert.equal(await dialKey(c), `${KEY_B}#Home`);
  assert.deepEqual(c.state().refresh, st);
  before.destroy();
  c.disconnect();
});

test('a failed refresh keeps the current key and says so, without a destination', async () => {
  const fetch = fakeFetch([KEY_A, new Error('online key: no answer within 20 s')]);
  const c = controller(fetch);
  await c.connect(await c.importKey(ONLINE));
  await c.dialer.dial(TARGET).then((s) => s.destroy());
  mock.timers.tick(EVERY_MS);
  const st = await c.refresh();
  assert.equal(st.ok, false);
  assert.match(st.note, /refresh failed, keeping the current key: .*no answer within 20 s/);
  assert.equal(c.activeUri(), `${KEY_A}#Home`);
  assert.equal(await dialKey(c), `${KEY_A}#Home`);
  const warning = c.logs.recent().find((l) => l.level === 'warning');
  assert.match(warning?.text ?? '', /refresh failed/);
  for (const l of c.logs.recent()) assert.doesNotMatch(l.text, /dest\.example/);
  // The schedule goes on after a failure.
  const calls = fetch.calls;
  mock.timers.tick(EVERY_MS);
  assert.equal(fetch.calls, calls + 1);
  await c.refresh();
  c.disconnect();
});

test('every transport failing fetches the key again at once, at most once per gap', async () => {
  const fetch = fakeFetch([KEY_A, KEY_B]);
  const c = controller(fetch, new Set([`${KEY_A}#Home`]));
  await c.connect(await c.importKey(ONLINE));
  const calls = fetch.calls;
  // Within the gap of the connect's own fetch: no refresh.
  await assert.rejects(c.dialer.dial(TARGET), /could reach the server/);
  assert.equal(fetch.calls, calls);
  now += GAP_MS;
  await assert.rejects(c.dialer.dial(TARGET), /could reach the server/);
  assert.equal(fetch.calls, calls + 1, 'the failed dial asked the online key');
  await c.refresh();
  assert.equal(await dialKey(c), `${KEY_B}#Home`);
  c.disconnect();
});

test('a refresh that ends after a reconnect is not applied; disconnect stops the schedule', async () => {
  let release: (() => void) | undefined;
  const answers = [KEY_A, KEY_B];
  let calls = 0;
  const fetch: OnlineFetch = () => {
    calls++;
    const a = answers.length > 1 ? answers.shift()! : answers[0]!;
    if (calls !== 2) return Promise.resolve(a);
    return new Promise((r) => (release = () => r(a)));
  };
  const c = controller(fetch);
  await c.connect(await c.importKey(ONLINE));
  mock.timers.tick(EVERY_MS);
  assert.equal(calls, 2);
  c.disconnect();
  release!();
  const st = await c.refresh();
  assert.match(st.note, /not applied/);
  assert.equal(c.activeUri(), undefined);
  mock.timers.tick(EVERY_MS * 3);
  assert.equal(calls, 2, 'no refresh while disconnected');
});

test('a key that is not online is never fetched', async () => {
  const fetch = fakeFetch([KEY_B]);
  const c = controller(fetch);
  await c.connect(await c.importKey(KEY_A));
  mock.timers.tick(EVERY_MS * 2);
  assert.equal(fetch.calls, 0);
  c.disconnect();
});
