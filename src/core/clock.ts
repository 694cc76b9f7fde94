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
