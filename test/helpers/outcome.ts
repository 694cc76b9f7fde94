/**
 * How a stream ended, for tests that assert "no byte back, then closed": everything it delivered,
 * and whether it ended (FIN), was destroyed (error or close without FIN) or was still open when the
 * test's limit ran out. Never rejects, so the caller asserts each part and a stream that stays open
 * fails the test instead of being mistaken for one that closed.
 */
import type { Duplex } from 'node:stream';

export interface StreamOutcome {
  /** Every byte delivered before the end. */
  readonly bytes: Buffer;
  /** 'end': FIN; 'error' or 'close': torn down; 'open': nothing happened within the limit. */
  readonly how: 'end' | 'error' | 'close' | 'open';
  readonly error?: Error;
}

/**
 * Reads `d` until it ends, errs or closes, or `limitMs` passes (a bound for a hung test, not a
 * measurement: the caller asserts `how !== 'open'`).
 */
export function streamOutcome(d: Duplex, limitMs: number): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    const done = (how: StreamOutcome['how'], error?: Error) => {
      clearTimeout(timer);
      d.off('data', onData);
      resolve({ bytes: Buffer.concat(parts), how, ...(error ? { error } : {}) });
    };
    const onData = (c: Buffer) => parts.push(Buffer.from(c));
    const timer = setTimeout(() => done('open'), limitMs);
    d.on('data', onData);
    d.once('end', () => done('end'));
    d.once('error', (e) => done('error', e));
    d.once('close', () => done('close'));
  });
}
