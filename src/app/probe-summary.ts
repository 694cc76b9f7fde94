/**
 * What the control page shows after running the probe on a key: each transport's result, the
 * censorship techniques recognised (src/probe/censors.ts), and the transport to use. Pure.
 * @module
 */
import { recognise, type Finding } from '../probe/censors.js';
import type { TransportCheck } from '../probe/transport-check.js';

export interface ProbeSummary {
  readonly transports: readonly {
    name: string;
    status: 'ok' | 'partial' | 'blocked';
    technique: string;
    okAttempts: number;
    attempts: number;
    explanation: string;
  }[];
  readonly findings: readonly {
    technique: string;
    transports: readonly string[];
    evidence: string;
    useInstead: readonly string[];
    advice: string;
  }[];
  /** The transport to use, or undefined when none got through. */
  readonly recommended?: string;
  /** Why that one (or why none). */
  readonly reason: string;
}

/**
 * Picks the transport to use: the first a finding names as working instead of a blocked one, else
 * the one with the most successful attempts (the key's order breaks ties, as the client tries it).
 */
export function summariseProbe(
  checks: readonly TransportCheck[],
  findings: readonly Finding[] = recognise(checks),
): ProbeSummary {
  const transports = checks.map((c) => ({
    name: c.transport.name,
    status: c.verdict.status,
    technique: c.verdict.technique,
    okAttempts: c.verdict.okAttempts,
    attempts: c.attempts.length,
    explanation: c.verdict.explanation,
  }));
  const base = {
    transports,
    findings: findings.map((f) => ({
      technique: f.technique,
      transports: f.transports,
      evidence: f.evidence,
      useInstead: f.useInstead,
      advice: f.advice,
    })),
  };
  const instead = findings.flatMap((f) => f.useInstead)[0];
  if (instead !== undefined)
    return { ...base, recommended: instead, reason: 'it works where the others were blocked' };
  let best: (typeof transports)[number] | undefined;
  for (const t of transports)
    if (t.okAttempts > 0 && (!best || t.okAttempts > best.okAttempts)) best = t;
  if (best)
    return {
      ...base,
      recommended: best.name,
      reason: `it got through ${best.okAttempts} of ${best.attempts} attempts`,
    };
  return {
    ...base,
    reason:
      transports.length === 0
        ? 'the key has no transport the probe can check'
        : 'no transport of the key got through from here: ask the operator for another server or transport',
  };
}
