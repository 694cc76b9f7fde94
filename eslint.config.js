// ESLint flat config. A later block that sets a rule replaces that rule's options for the files it
// matches (flat config does not merge them), so every block that sets `no-restricted-imports` spells
// out the whole list, built from the pieces below.
//
// Layers (docs/architecture.md): src/ folders import only down the list in eslint/layers.js, and
// codec/, crypto/ and core/ are pure: no I/O, no timers, no environment, no wall clock; `now`, randomness
// and settings come in as arguments from cli/. test/eslint-layers.test.ts shows both rules fire.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import ladder from './eslint/layers.js';

/** Bare built-in names must carry the node: prefix. */
const NODE_PREFIX = {
  regex:
    '^(fs|net|dgram|tls|http|https|http2|crypto|stream|os|child_process|dns|util|events|path|url|zlib|timers|worker_threads|module|readline)(/.*)?$',
  message: 'Use the node: prefix.',
};

/** Modules that do I/O or keep time: not for the pure layers. */
const IO_MODULES = [
  'node:dgram',
  'node:tls',
  'node:fs',
  'node:fs/promises',
  'node:http',
  'node:https',
  'node:http2',
  'node:dns',
  'node:dns/promises',
  'node:child_process',
  'node:timers',
  'node:timers/promises',
  'node:os',
  'node:worker_threads',
];

// The routing rule parser and matcher, the MaxMind DB reader and the DNS cache are pure too: files
// arrive as text or bytes, the clock as a function.
const PURE = [
  'src/codec/**/*.ts',
  'src/crypto/**/*.ts',
  'src/core/**/*.ts',
  'src/routing/ip.ts',
  'src/routing/rules.ts',
  'src/routing/mmdb.ts',
  'src/routing/dns-cache.ts',
];
const PURE_MESSAGE =
  'codec/, crypto/, core/ and the routing matcher are pure: pass it in as an argument from cli/.';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'native/build/', 'test/fixtures/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The dashboard runs in the browser, as plain ES modules without a build.
    files: ['assets/dashboard/**/*.js', 'assets/client-ui/**/*.js'],
    languageOptions: {
      globals: {
        document: 'readonly',
        location: 'readonly',
        fetch: 'readonly',
        navigator: 'readonly',
        confirm: 'readonly',
        setInterval: 'readonly',
        FormData: 'readonly',
        URL: 'readonly',
        URLSearchParams: 'readonly',
        history: 'readonly',
        performance: 'readonly',
        console: 'readonly',
        createImageBitmap: 'readonly',
        globalThis: 'readonly',
      },
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' },
    },
  },
  {
    plugins: { ladder },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      'no-restricted-imports': ['error', { patterns: [NODE_PREFIX] }],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: { 'ladder/layers': 'error' },
  },
  {
    files: PURE,
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...IO_MODULES.map((name) => ({ name, message: PURE_MESSAGE })),
            {
              name: 'node:net',
              allowImportNames: ['isIP', 'isIPv4', 'isIPv6'],
              message: `only the address predicates: ${PURE_MESSAGE}`,
            },
          ],
          patterns: [NODE_PREFIX],
        },
      ],
      'no-restricted-globals': [
        'error',
        ...['process', 'setTimeout', 'setInterval', 'setImmediate', 'fetch'].map((name) => ({
          name,
          message: PURE_MESSAGE,
        })),
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: PURE_MESSAGE },
        { object: 'performance', property: 'now', message: PURE_MESSAGE },
      ],
    },
  },
);
