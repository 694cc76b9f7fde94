/**
 * The deadline of one step (a dial, a handshake, a probe operation): a timer and an optional
 * AbortSignal, one handler for each. The caller's failure path runs at most once anyway (it clears
 * the deadline); this helper only keeps the timer and the listener paired, so that no step leaves
 * one of them behind.
 * @module
 */

/** Ends a deadline: stops its timer and drops its abort listener. Safe to call more than once. */
export type ClearDeadline = () => void;

/**
 * Calls `onTimeout` after `timeoutMs`, or `onAbort` when `signal` aborts, whichever comes first,
 * until the returned function is called. A signal that is already aborted is the caller's to check.
 */
export function deadline(
  timeoutMs: number,
  signal: AbortSignal | undefined,
  onTimeout: () => void,
  onAbort: () => void,
  o: { unref?: boolean } = {},
): ClearDeadline {
  const timer = setTimeout(onTimeout, timeoutMs);
  // A background step (a measurement nobody waits for) must not keep the process alive.
  if (o.unref) timer.unref?.();
  signal?.addEventListener('abort', onAbort, { once: true });
  return () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
}

/** A step's own AbortSignal: aborted at its deadline or when the caller's signal aborts. */
export interface StepSignal {
  readonly signal: AbortSignal;
  /** True once the deadline (not the caller's signal) aborted the step. */
  timedOut(): boolean;
  /** Ends the deadline; the signal stays as it is. Safe to call more than once. */
  readonly clear: ClearDeadline;
}

/**
 * A signal for one step that aborts after `timeoutMs` or when `parent` aborts (at once if it
 * already has), so a dial or an exchange takes one signal and the caller can tell a timeout from
 * its own cancellation.
 */
export function signalWithin(
  timeoutMs: number,
  parent?: AbortSignal,
  o: { unref?: boolean } = {},
): StepSignal {
  const ac = new AbortController();
  let timedOut = false;
  const clear = deadline(
    timeoutMs,
    parent,
    () => {
      timedOut = true;
      ac.abort();
    },
    () => {
      clear();
      ac.abort();
    },
    o,
  );
  if (parent?.aborted) {
    clear();
    ac.abort();
  }
  return { signal: ac.signal, timedOut: () => timedOut, clear };
}
