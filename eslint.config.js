// ESLint flat config. Layering rule: codec/ and crypto/ are pure (no I/O, no timers); imports point
// down the layer list in STYLE.md. The restricted-import rules below hold the purity part.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'native/build/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The dashboard runs in the browser, as plain ES modules without a build.
    files: ['assets/dashboard/**/*.js'],
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
        console: 'readonly',
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
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex:
                '^(fs|net|dgram|tls|http|https|crypto|stream|os|child_process|dns|util|events)$',
              message: 'Use the node: prefix.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/codec/**/*.ts', 'src/crypto/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            'node:net',
            'node:dgram',
            'node:tls',
            'node:fs',
            'node:http',
            'node:child_process',
            'node:timers',
          ].map((name) => ({ name, message: 'codec/ and crypto/ are pure: no I/O.' })),
          patterns: [
            {
              group: [
                '**/stream/**',
                '**/transport/**',
                '**/proxy/**',
                '**/server/**',
                '**/cli/**',
                '**/lab/**',
                '**/probe/**',
                '**/admin/**',
              ],
              message: 'codec/ and crypto/ import only each other and errors.ts.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**', '**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/cli/**'], message: 'Nothing imports cli/: it is the composition root.' },
          ],
        },
      ],
    },
  },
  {
    // The rule parser, matcher and MaxMind DB reader are pure: files arrive as text or bytes.
    files: [
      'src/routing/ip.ts',
      'src/routing/rules.ts',
      'src/routing/mmdb.ts',
      'src/routing/dns-cache.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            'node:dgram',
            'node:tls',
            'node:fs',
            'node:http',
            'node:child_process',
            'node:timers',
            'node:dns',
          ].map((name) => ({ name, message: 'routing/ matching is pure: no I/O.' })),
          patterns: [
            {
              group: [
                '**/stream/**',
                '**/transport/**',
                '**/proxy/**',
                '**/server/**',
                '**/cli/**',
                '**/lab/**',
                '**/probe/**',
                '**/admin/**',
                '**/routing/routed-dialer*',
              ],
              message: 'the pure routing files import only core/, codec/ and errors.ts.',
            },
          ],
        },
      ],
    },
  },
);
