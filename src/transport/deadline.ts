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
): ClearDeadline {
  const timer = setTimeout(onTimeout, timeoutMs);
  signal?.addEventListener('abort', onAbort, { once: true });
  return () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
}
