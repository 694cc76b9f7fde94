// The layer rule: a file under src/ imports only from its own folder or from a lower layer.
// Imports are resolved against the importing file, so `../transport/x.js`, `../../transport/x.js`
// and a dynamic `import('../cli/y.js')` are all checked. Type-only imports count: a type that a lower
// layer needs belongs in that layer (or in core/).
import { dirname, relative, resolve, sep } from 'node:path';

/**
 * Layers, bottom to top. A folder may import its own files and any folder of a lower rank, never a
 * folder of the same or a higher rank. `errors.ts` (the one error hierarchy) is the bottom, under
 * core/ (the seams every layer shares: Target, Clock, host:port text, flag parsing).
 */
export const LAYERS = [
  ['errors.ts'],
  ['core'],
  ['crypto'],
  ['codec'],
  ['stream'],
  ['transport'],
  ['access', 'proxy', 'routing'],
  ['store'],
  ['server'],
  ['admin'],
  ['lab', 'probe'],
  ['app'],
  ['cli'],
];

const RANK = new Map(LAYERS.flatMap((names, rank) => names.map((n) => [n, rank])));

/** The layer a path under `srcDir` belongs to, or undefined outside src/ or in an unknown folder. */
function layerOf(srcDir, file) {
  const rel = relative(srcDir, file);
  if (rel.startsWith('..') || rel === '') return undefined;
  const first = rel.split(sep)[0];
  return RANK.has(first) ? first : undefined;
}

/** @type {import('eslint').Rule.RuleModule} */
export const layersRule = {
  meta: {
    type: 'problem',
    docs: { description: 'imports point down the layer list (docs/architecture.md)' },
    schema: [],
    messages: {
      up: "{{from}}/ may not import {{to}}/ ('{{source}}'): imports point down the layers {{order}} (docs/architecture.md). Move the shared piece down, or pass it in from cli/.",
      unknown:
        'src/{{folder}}/ is in no layer: add it to LAYERS in eslint/layers.js (and to docs/architecture.md).',
    },
  },
  create(context) {
    const file = context.filename;
    const srcDir = resolve(context.cwd, 'src');
    const relFile = relative(srcDir, file);
    if (relFile.startsWith('..')) return {};
    const first = relFile.split(sep)[0];
    const from = RANK.has(first) ? first : undefined;
    const check = (node, source) => {
      if (typeof source !== 'string' || !source.startsWith('.')) return;
      if (from === undefined) {
        context.report({ node, messageId: 'unknown', data: { folder: first } });
        return;
      }
      const to = layerOf(srcDir, resolve(dirname(file), source.replace(/\.js$/, '.ts')));
      if (to === undefined || to === from) return;
      if (RANK.get(to) < RANK.get(from)) return;
      context.report({
        node,
        messageId: 'up',
        data: {
          from: from.replace(/\.ts$/, ''),
          to: to.replace(/\.ts$/, ''),
          source,
          order: LAYERS.map((l) => l.join('|')).join(' < '),
        },
      });
    };
    const fromSource = (node) => {
      if (node.source && node.source.type === 'Literal') check(node, node.source.value);
    };
    return {
      ImportDeclaration: fromSource,
      ExportNamedDeclaration: fromSource,
      ExportAllDeclaration: fromSource,
      ImportExpression(node) {
        if (node.source.type === 'Literal') check(node, node.source.value);
      },
      TSImportType(node) {
        const arg = node.argument;
        const lit = arg && arg.type === 'TSLiteralType' ? arg.literal : arg;
        if (lit && lit.type === 'Literal') check(node, lit.value);
      },
    };
  },
};

export default { rules: { layers: layersRule } };
