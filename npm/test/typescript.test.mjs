// The TypeScript declarations: an example using every export compiles
// with `tsc --noEmit --strict` against the installed package.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { run } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

test('tsc --noEmit --strict on an example that uses every export', async () => {
	const tsc = path.join(process.env.BRU_TYPESCRIPT_DIR, 'bin', 'tsc');
	const result = await run(process.execPath, [tsc, '--noEmit', '--strict', '-p', path.join(here, 'tsconfig.json')], { cwd: here, env: process.env });
	assert.equal(result.code, 0, result.stdout + result.stderr);
});
