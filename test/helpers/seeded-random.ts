/** Deterministic bytes for vectors: SHA-256(label || counter) blocks, concatenated. */
import { createHash } from 'node:crypto';

export function seeded(label: string, n: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; out.length * 32 < n; i++)
    out.push(createHash('sha256').update(`${label}/${i}`).digest());
  return Buffer.concat(out).subarray(0, n);
}

/** A random source that hands out exactly these byte strings, in order, and fails on any other request. */
export function scripted(queue: Buffer[]): (n: number) => Buffer {
  const q = [...queue];
  return (n: number) => {
    const next = q.shift();
    if (!next || next.length !== n)
      throw new Error(
        `scripted random: asked for ${n} bytes, next is ${next?.length ?? 'nothing'}`,
      );
    return Buffer.from(next);
  };
}
