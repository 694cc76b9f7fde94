/**
 * Strict flag parsing with messages that name the bad flag, for the `ladder` command and for the
 * lab's agents (src/lab/agents.ts), which take the same flags when the lab starts them directly.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LadderError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs in strict mode, its errors turned into ERR_USAGE messages for people. */
export function parseFlags<O extends Options>(
  command: string,
  argv: string[],
  options: O,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new LadderError(
      'ERR_USAGE',
      `${command}: ${msg}. Run 'ladder ${command} --help' for the options.`,
    );
  }
}
