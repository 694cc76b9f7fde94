/**
 * A worker thread that runs the fleet's control-plane writes for the main thread, which waits for
 * each reply (fleet-store.ts, `SyncPg`). The key manager's store interface is synchronous; a write
 * to the fleet's key list must be committed in PostgreSQL before the API answers, so the main
 * thread blocks on one round trip (or the timeout) for a key change, never for the data plane.
 *
 * Protocol: the main thread posts `{ seq, op, args }` on the port; the worker replies
 * `{ seq, ok, value | code }`, then stores 1 in the shared flag and notifies it.
 * @module
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import pg from 'pg';
import {
  deleteKeyPg,
  insertKeyPg,
  migratePg,
  nextKeyIdPg,
  setDefaultLimitPg,
  updateKeyPg,
} from './pg-fleet.js';
import type { AccessKeyRecord, DataLimit } from '../access/access-key.js';

interface Request {
  seq: number;
  op: 'insertKey' | 'updateKey' | 'deleteKey' | 'nextKeyId' | 'setDefaultLimit' | 'ping';
  args: unknown[];
}

const { url, flag, port, connectTimeoutMs } = workerData as {
  url: string;
  flag: SharedArrayBuffer;
  port: MessagePort;
  connectTimeoutMs: number;
};
const signal = new Int32Array(flag);
let client: pg.Client | null = null;

async function connected(): Promise<pg.Client> {
  if (client) return client;
  const c = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: connectTimeoutMs,
    query_timeout: connectTimeoutMs,
  });
  c.on('error', () => {
    if (client === c) client = null;
    c.end().catch(() => undefined);
  });
  await c.connect();
  await migratePg(c);
  client = c;
  return c;
}

async function run(r: Request): Promise<unknown> {
  const c = await connected();
  switch (r.op) {
    case 'insertKey':
      return insertKeyPg(c, r.args[0] as AccessKeyRecord);
    case 'updateKey':
      return updateKeyPg(c, r.args[0] as AccessKeyRecord);
    case 'deleteKey':
      return deleteKeyPg(c, r.args[0] as string);
    case 'nextKeyId':
      return nextKeyIdPg(c);
    case 'setDefaultLimit':
      return setDefaultLimitPg(c, r.args[0] as DataLimit | null);
    case 'ping':
      return true;
  }
}

port.on('message', (r: Request) => {
  run(r).then(
    (value) => reply({ seq: r.seq, ok: true, value }),
    (err: unknown) => {
      // A broken connection is dropped and made again on the next request.
      const old = client;
      client = null;
      old?.end().catch(() => undefined);
      // Only the error's code travels: pg's messages can name the database's address.
      reply({ seq: r.seq, ok: false, code: (err as { code?: string }).code ?? 'unknown' });
    },
  );
});

function reply(m: unknown): void {
  port.postMessage(m);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

parentPort?.postMessage('ready');
