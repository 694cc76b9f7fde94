/**
 * The report card's rows, built on first use: the reference rows, Ladder's rows, the reference
 * VPNs, Tor and `--tun`. Add one with {@link registerTransport}.
 * @module
 */
import { stopTracked } from './process-runner.js';
import type { TransportEntry } from './card-transport.js';
import { referenceRows, torTransport, vpnTransports } from './card-rows-reference.js';
import { ladderTransports, ladderTunEntry } from './card-rows-ladder.js';

let rows: TransportEntry[] | undefined;

/** Every row of the card, in the card's order. */
export function transports(): TransportEntry[] {
  rows ??= [
    ...referenceRows(),
    ...ladderTransports(),
    ...vpnTransports(),
    torTransport(),
    ladderTunEntry(),
  ];
  return rows;
}

/** Adds a transport to the report card (e.g. a new Ladder transport). */
export function registerTransport(t: TransportEntry): void {
  transports().push(t);
}

/** Stops every process the transports' setup started (by the PIDs it recorded). */
export function stopTransports(): void {
  stopTracked();
}
