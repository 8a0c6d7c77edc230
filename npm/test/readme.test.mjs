// The npm tool's README example against the simulator: this package's
// results must deep-equal what @balena/release-update 0.1.0's own library
// returns, called the same way on the same simulator state, once the
// documented differences are applied (conformance/differences.js).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { CONFORMANCE_DIR, deltaRows, run, sessionEnv, startSim, tempDir } from './helpers.mjs';

const require = createRequire(import.meta.url);
const differences = require(path.join(CONFORMANCE_DIR, 'differences.js'));
const here = path.dirname(fileURLToPath(import.meta.url));
const example = fs.readFileSync(path.join(here, 'readme-example.mjs'), 'utf8');

async function runExample(which) {
	const sim = await startSim();
	try {
		const initialDeltas = await deltaRows(sim);
		const dir = tempDir(`readme-${which}`);
		const env = sessionEnv(sim, dir);
		let script;
		let args;
		if (which === 'ours') {
			script = path.join(here, 'readme-example.mjs');
			args = [script];
		} else {
			// The npm tool's copy, next to a node_modules that holds it; its
			// API URL is hard-coded, so conformance/preload.js points the
			// balena-sdk it loads at the simulator (as conformance/run.sh does).
			fs.symlinkSync(path.join(CONFORMANCE_DIR, 'node_modules'), path.join(dir, 'node_modules'));
			script = path.join(dir, 'readme-example.mjs');
			fs.writeFileSync(script, example.replace("from 'balena-release-update'", "from '@balena/release-update'"));
			env.SIM_API_URL = sim.api;
			args = ['-r', path.join(CONFORMANCE_DIR, 'preload.js'), script];
		}
		const result = await run(process.execPath, args, { env, cwd: path.join(dir, 'home') });
		assert.equal(result.code, 0, `${which}: exit ${result.code}\n${result.stderr}`);
		return { value: JSON.parse(result.stdout), initialDeltas, ms: result.ms };
	} finally {
		sim.stop();
	}
}

test('the README example equals @balena/release-update 0.1.0, documented differences applied', async (t) => {
	const [ours, theirs] = await Promise.all([runExample('ours'), runExample('npm tool')]);
	t.diagnostic(`this package: ${ours.ms} ms; the npm tool: ${theirs.ms} ms`);
	const npmImages = new Map();
	for (const report of Object.values(theirs.value)) differences.imagesOf(report, npmImages);
	for (const [key, mode] of [
		['updateInfo', 'plain'],
		['ready', 'wait'],
		['within', 'wait'],
	]) {
		const notes = [];
		const expected = differences.expected(mode, { printed: theirs.value[key] }, { initialDeltas: theirs.initialDeltas, notes });
		const problems = [];
		const actual = differences.comparable(ours.value[key], { initialDeltas: ours.initialDeltas, npmImages, problems });
		assert.deepEqual(problems, [], `${key}: additive keys`);
		assert.deepEqual(actual, expected, `${key} (differences applied: ${notes.join('; ') || 'none'})`);
		t.diagnostic(`${key}: equal (differences applied: ${notes.join('; ') || 'none'})`);
	}
	assert.equal(ours.value.updateInfo.overall_status, 'pending');
	assert.equal(ours.value.ready.overall_status, 'ready');
	assert.equal(typeof ours.value.ready.estimated_total_payload_size, 'number');
});
