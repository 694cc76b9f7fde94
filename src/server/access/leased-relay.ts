/**
 * The relay of one authenticated stream under its key's lease (gate.ts): what every front runs
 * once a request is accepted and its target dialed.
 * @module
 */
import type { Duplex } from 'node:stream';
import type { LadderError } from '../../errors.js';
import { relay } from '../../transport/relay.js';
import type { Lease } from './gate.js';

/** Bytes client→target and target→client, and why the relay ended if not cleanly. */
export interface LeasedTraffic {
  up: number;
  down: number;
  error?: LadderError;
}

/**
 * Relays `client` and `up`, counting bytes both ways and letting the lease pace each direction
 * (speed caps). `first` (the client's bytes that came with its header) goes up ahead, counted and
 * paced like the rest; then `paused` (the client's socket, held while the header was read) is
 * resumed. The lease stays open: the caller closes it.
 */
export async function leasedRelay(
  client: Duplex,
  up: Duplex,
  lease: Lease,
  o: { idleTimeoutMs: number; first?: Buffer; paused?: Duplex },
): Promise<LeasedTraffic> {
  const first = o.first?.length ?? 0;
  if (o.first && first > 0) {
    up.write(o.first);
    lease.up(first);
  }
  o.paused?.resume();
  let upBytes = first;
  let downBytes = 0;
  const result = await relay(client, up, {
    idleTimeoutMs: o.idleTimeoutMs,
    onAToB: (n: number) => {
      upBytes += n;
    },
    onBToA: (n: number) => {
      downBytes += n;
    },
    paceAToB: (n: number) => lease.up(n),
    paceBToA: (n: number) => lease.down(n),
  });
  return { up: upBytes, down: downBytes, ...(result.error ? { error: result.error } : {}) };
}
