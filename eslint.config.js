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

/**
 * One layer's import rule: files matching `files` may not import from the `forbidden` folders
 * (and, with `io`, no module that does I/O or keeps time). One block per folder, because a later
 * `no-restricted-imports` block replaces an earlier one rather than adding to it.
 * @param {string[]} files
 * @param {string[]} forbidden
 * @param {{ io?: boolean, ignores?: string[] }} [opts]
 */
function layer(files, forbidden, opts = {}) {
  return {
    files,
    ...(opts.ignores ? { ignores: opts.ignores } : {}),
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: opts.io
            ? IO_MODULES.map((name) => ({
                name,
                message: 'The core does no I/O and keeps no time: take it as a parameter.'
              }))
            : [],
          patterns: forbidden.map((folder) => ({
            group: [folder === 'native' ? '**/native/**' : `**/${folder}/**`],
            message: `${files[0]} may not import from ${folder}/ (layering: see docs/architecture.md).`
          }))
        }
      ]
    }
  }
}

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
    // The codec and the core do no I/O and keep no time: they are tested with a fake clock and
    // fake ports, and run the same in both roles.
    files: ['src/common/**/*.ts', 'src/core/**/*.ts'],
    ignores: ['src/common/log/winston.ts', 'src/common/config/load.ts'],
    rules: {
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
  // The layers, lowest first: common < core < trunk < app (process shell) < tx-proxy, rx-proxy.
  // A folder imports only from layers below it; the two roles never import each other; tools
  // use the binaries and public modules (common, app/control, native), never trunk internals.
  layer(
    ['src/common/**/*.ts'],
    ['core', 'trunk', 'app', 'tx-proxy', 'rx-proxy', 'tools', 'native'],
    {
      io: true,
      ignores: ['src/common/log/winston.ts', 'src/common/config/load.ts']
    }
  ),
  layer(['src/core/**/*.ts'], ['trunk', 'app', 'tx-proxy', 'rx-proxy', 'tools', 'native'], {
    io: true
  }),
  layer(['src/trunk/**/*.ts'], ['app', 'tx-proxy', 'rx-proxy', 'tools']),
  layer(['src/app/**/*.ts'], ['tx-proxy', 'rx-proxy', 'tools']),
  layer(['src/tx-proxy/**/*.ts'], ['rx-proxy', 'tools']),
  layer(['src/rx-proxy/**/*.ts'], ['tx-proxy', 'tools']),
  layer(['src/tools/**/*.ts'], ['trunk', 'core', 'tx-proxy', 'rx-proxy']),
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
