/**
 * The censor process: runs in the wall namespace (`ladder lab censor`), attaches to the wall's TUN,
 * and runs the engine with the modules a policy switches on. Events go to `onEvent` (the CLI prints
 * them as JSON lines for `ladder lab run`); they name the module, the action and the server port,
 * never an address.
 * @module
 */
import { CensorEngine } from './engine.js';
import type { CensorEvent, CensorModule } from './types.js';
import { buildModules, type Policy } from '../policy.js';
import { TunDevice } from '../tun.js';
import { PathEmulator } from '../path-emulator.js';

export interface RunningCensor {
  readonly engine: CensorEngine;
  readonly modules: readonly CensorModule[];
  /** The path emulator between the engine and the TUN, when the policy has a path. */
  readonly path: PathEmulator | undefined;
  close(): void;
}

/** A small seedable generator (mulberry32) so that sampled outcomes can be reproduced. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function runCensor(
  tunName: string,
  policy: Policy,
  inside: readonly string[],
  onEvent: (e: CensorEvent) => void,
): RunningCensor {
  const tun = TunDevice.open(tunName);
  const modules = buildModules(policy);
  const random = policy.seed !== undefined ? seededRandom(policy.seed) : Math.random;
  const path = policy.path
    ? new PathEmulator({
        params: policy.path,
        send: (p) => tun.write(p),
        inside: policy.inside ?? inside,
        // its own stream, so the censor's sampled choices stay as they were for a given seed
        random: policy.seed !== undefined ? seededRandom(policy.seed ^ 0x9e3779b9) : Math.random,
      })
    : undefined;
  const engine = new CensorEngine({
    modules,
    send: path ? (p) => path.handle(p) : (p) => tun.write(p),
    inside: policy.inside ?? inside,
    timeFactor: policy.timeFactor ?? 1,
    random,
    onEvent,
  });
  tun.start((p) => engine.handle(p));
  return {
    engine,
    modules,
    path,
    close: () => {
      path?.close();
      tun.close();
      for (const m of modules) (m as { close?: () => void }).close?.();
    },
  };
}
