#!/usr/bin/env node
/**
 * Entry point of the lab's agents (src/lab/agents.ts), so that the lab starts its own programs
 * without going through the `ladder` command: `node agent-main.js <agent> [flags]`.
 * @module
 */
import { LadderError } from '../errors.js';
import { runAgent } from './agents.js';

const [name = '', ...argv] = process.argv.slice(2);
try {
  process.exitCode = await runAgent(name, argv);
} catch (err) {
  console.error(err instanceof LadderError ? err.message : err);
  process.exitCode = err instanceof LadderError && err.code === 'ERR_USAGE' ? 2 : 1;
}
