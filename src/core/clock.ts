/**
 * Time as a seam, so that tests can drive timestamps and timeouts. Only cli/ (and defaults at the
 * edges) use {@link systemClock}; codecs take `now` as an argument instead.
 * @module
 */

/** Wall-clock time. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** The real clock: the one place below cli/ that reads the wall clock. */
// eslint-disable-next-line no-restricted-properties -- this is the Clock every other layer is handed
export const systemClock: Clock = { now: () => Date.now() };

/** The timer seam: the system's (unref'd) timers, or a test's manual ones. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real timers, unref'd: the one place below cli/ that starts them for the seam's users. */
export const systemTimers: Timers = {
  setTimeout(fn, ms) {
    // eslint-disable-next-line no-restricted-globals -- these are the Timers other layers are handed
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};
