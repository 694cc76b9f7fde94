/**
 * A key parser's fuzz property: any text after `<scheme>://` made of the characters that carry a
 * key's structure and its percent-escapes (so malformed escapes, stray # @ : ? & = and empty parts
 * are common) parses or is refused with a ConfigError, never another error.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError } from '../../src/errors.js';

export function checkKeyParserRefusesCleanly(
  scheme: string,
  parse: (uri: string) => unknown,
  extraPieces: string[] = [],
): void {
  const piece = fc.constantFrom(...'%#@:?&=/.ZzE09A_-'.split(''), '%2', '%E0', ...extraPieces);
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), (parts) => {
      const uri = `${scheme}://${parts.join('')}`;
      try {
        parse(uri);
      } catch (err) {
        assert.ok(err instanceof ConfigError, `${uri}: ${String(err)}`);
      }
    }),
    { numRuns: 3000 },
  );
}
