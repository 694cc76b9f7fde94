/**
 * The probe's manners: bounded parallelism, a cap on the connections one run may open, and backoff
 * between repeated attempts. Nothing here retries: a failed step is a measurement, not a reason to
 * try again at once.
 * @module
 */

/**
 * A cap on the connections (TCP connects, tunnel dials, DNS queries) of one run. Work reserves what
 * it may need before it starts, so that a measurement is either made whole or not at all, and gives
 * back what it did not use.
 */
export class ConnectionBudget {
  readonly max: number;
  #committed = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** Connections reserved or used so far. */
  get committed(): number {
    return this.#committed;
  }

  /** Reserves `n` connections; undefined when the cap does not leave that many. */
  reserve(n: number): Reservation | undefined {
    if (this.#committed + n > this.max) return undefined;
    this.#committed += n;
    let left = n;
    return {
      take: () => {
        if (left <= 0) return false;
        left--;
        return true;
      },
      release: () => {
        this.#committed -= left;
        left = 0;
      },
      get left() {
        return left;
      },
    };
  }
}

export interface Reservation {
  /** Uses one reserved connection; false if the reservation is spent. */
  take(): boolean;
  /** Gives back what was not used. */
  release(): void;
  readonly left: number;
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/** Longest wait between two attempts. */
export const MAX_BACKOFF_MS = 60_000;

/** The wait before attempt `attempt` (2, 3, ...): base, 2×base, 4×base, ... capped. */
export function backoffMs(baseMs: number, attempt: number): number {
  if (attempt <= 1) return 0;
  return Math.min(MAX_BACKOFF_MS, baseMs * 2 ** (attempt - 2));
}

/** A timer as a promise; an aborted signal ends the wait early. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
