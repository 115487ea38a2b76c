// The shipped TypeScript types: types-check.ts, which uses the API as the
// README does, must compile under `tsc --strict` against the installed package.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

test('the shipped types compile with tsc --strict', () => {
  const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
  const args = ['--noEmit', '--strict', '--lib', 'es2022,dom,dom.iterable', '--target', 'es2022', '--module', 'esnext',
    '--moduleResolution', 'bundler', join(here, 'types-check.ts')];
  let out = '';
  try {
    out = execFileSync(process.execPath, [tsc, ...args], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`);
  }
  assert.equal(out.trim(), '');
});
