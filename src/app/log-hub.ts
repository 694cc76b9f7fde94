/**
 * The client's log lines for its control page and Clash's /logs stream: the last few kept, each new
 * one handed to the subscribers. Lines name transports and failures, never a destination or a
 * client address (the same rule as the terminal's log).
 * @module
 */

export interface LogLine {
  readonly level: 'info' | 'warning' | 'error' | 'debug';
  readonly text: string;
  readonly time: Date;
}

/** Lines kept for a page that opens later. */
export const MAX_KEPT_LINES = 200;
/** Subscribers at most (each is a stream the API caps separately). */
const MAX_SUBSCRIBERS = 64;

export class LogHub {
  readonly #kept: LogLine[] = [];
  readonly #subscribers = new Set<(l: LogLine) => void>();

  log(level: LogLine['level'], text: string): void {
    const line = { level, text, time: new Date() };
    this.#kept.push(line);
    if (this.#kept.length > MAX_KEPT_LINES) this.#kept.shift();
    for (const s of this.#subscribers) s(line);
  }

  recent(): readonly LogLine[] {
    return [...this.#kept];
  }

  /** Calls `f` with each new line; returns the function that stops it. */
  subscribe(f: (l: LogLine) => void): () => void {
    if (this.#subscribers.size >= MAX_SUBSCRIBERS) return () => {};
    this.#subscribers.add(f);
    return () => this.#subscribers.delete(f);
  }
}
