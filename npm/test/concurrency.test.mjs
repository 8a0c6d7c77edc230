// 1,000 concurrent getUpdateInfo calls in one process: one shared runtime
// and client, every result right; the resident memory is reported.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { getUpdateInfo } from 'balena-release-update';

import { FROM, TO, startSim } from './helpers.mjs';

let sim;
before(async () => (sim = await startSim({ manual: true })));
after(() => sim.stop());

test('1,000 concurrent getUpdateInfo calls, every result right', async (t) => {
	const options = {
		apiUrl: sim.api,
		deltaUrl: sim.delta,
		token: sim.token,
		registryMap: { 'registry2.balena-cloud.com': sim.registry },
	};
	const expected = await getUpdateInfo(FROM, TO, options);
	const rssBefore = process.memoryUsage().rss;
	const started = performance.now();
	const results = await Promise.all(Array.from({ length: 1000 }, () => getUpdateInfo(FROM, TO, options)));
	const ms = performance.now() - started;
	const rss = process.memoryUsage().rss;
	let right = 0;
	for (const result of results) {
		assert.deepEqual(result, expected);
		right += 1;
	}
	const line = `1000 concurrent getUpdateInfo: ${right} right in ${ms.toFixed(0)} ms; RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB before, ${(rss / 2 ** 20).toFixed(1)} MiB after`;
	t.diagnostic(line);
	console.log(line);
	assert.equal(right, 1000);
});
