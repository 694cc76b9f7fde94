import { LadderError } from '../errors.js';

export async function run(_argv: string[]): Promise<number> {
  throw new LadderError('ERR_USAGE', "'ladder lab' is not built yet");
}
