// @ts-check
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/** Modules that do I/O, keep time or touch the process: the pure core must not import them. */
const IO_MODULES = [
  'node:net',
  'node:fs',
  'node:fs/promises',
  'node:dgram',
  'node:child_process',
  'node:timers',
  'node:timers/promises',
  'node:process',
  'winston'
]

export default tseslint.config(
  {
    ignores: ['dist/**', 'node_modules/**', 'native/build/**', 'eslint.config.js', 'scripts/*.mjs']
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unnecessary-condition': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.object.name='process'][callee.property.name='exit']",
          message: 'process.exit belongs in main.ts only.'
        }
      ]
    }
  },
  {
    // Rule 1 of the house style: the codec and the core do no I/O and keep no time.
    files: ['src/common/**/*.ts', 'src/core/**/*.ts'],
    ignores: ['src/common/log/winston.ts', 'src/common/config/load.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: IO_MODULES.map((name) => ({
            name,
            message: 'The core does no I/O (house style rule 1).'
          })),
          patterns: [
            {
              group: ['**/native/**', '**/trunk/**', '**/tx-proxy/**', '**/rx-proxy/**'],
              message: 'The core does not import the edges.'
            }
          ]
        }
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'Time is a parameter in the core.' },
        { name: 'setInterval', message: 'Time is a parameter in the core.' },
        { name: 'process', message: 'The core never reads the process.' }
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Time is a parameter in the core.' }
      ]
    }
  },
  {
    files: ['**/main.ts', 'lab/**/*.ts', 'test/**/*.ts'],
    rules: { 'no-restricted-syntax': 'off' }
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-invalid-void-type': 'off'
    }
  }
)
