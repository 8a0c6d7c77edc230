// The TypeScript declarations: an example using every export compiles
// with `tsc --noEmit --strict` against the installed package, and every key
// the calls return is declared on its interface.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { getFleetUpdateInfo, getUpdateInfo } from 'balena-release-update';

import { PREFIX, run, startSim } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

test('tsc --noEmit --strict on an example that uses every export', async () => {
	const tsc = path.join(process.env.BRU_TYPESCRIPT_DIR, 'bin', 'tsc');
	const result = await run(process.execPath, [tsc, '--noEmit', '--strict', '-p', path.join(here, 'tsconfig.json')], { cwd: here, env: process.env });
	assert.equal(result.code, 0, result.stdout + result.stderr);
});

/** Interface name → the property names index.d.ts declares on it (with those of the interface it extends). */
function declaredKeys() {
	const text = fs.readFileSync(path.join(PREFIX, 'lib', 'node_modules', 'balena-release-update', 'index.d.ts'), 'utf8');
	const own = new Map();
	const parents = new Map();
	for (const [, name, parent, body] of text.matchAll(/^export interface (\w+)(?: extends (\w+))? \{\n([\s\S]*?)^\}/gm)) {
		own.set(name, new Set([...body.matchAll(/^\t(\w+)\??:/gm)].map((m) => m[1])));
		if (parent) parents.set(name, parent);
	}
	const all = (name) => new Set([...(own.get(name) ?? []), ...(parents.has(name) ? all(parents.get(name)) : [])]);
	return new Map([...own.keys()].map((name) => [name, all(name)]));
}

let sim;
before(async () => {
	sim = await startSim();
});
after(() => sim.stop());

test('every key of the results is declared in index.d.ts', async () => {
	const declared = declaredKeys();
	const undeclared = new Set();
	const check = (value, name, where) => {
		const keys = declared.get(name);
		assert.ok(keys, `index.d.ts declares no interface ${name}`);
		for (const key of Object.keys(value)) if (!keys.has(key)) undeclared.add(`${name}.${key} (${where})`);
	};
	const checkUpdate = (info, name, where) => {
		check(info, name, where);
		for (const su of info.is_produced_by__service_update) {
			check(su, 'ServiceUpdate', where);
			for (const image of [su.originates_from__image, su.produces__image].filter(Boolean)) {
				const { is_produced_by__delta: delta, ...rest } = image;
				check(rest, 'ImageInfo', where);
				if (delta) check(delta, 'DeltaInfo', where);
			}
			if (su.delta_failure) check(su.delta_failure, 'DeltaFailure', where);
		}
		for (const removed of info.removed_services) check(removed, 'RemovedService', where);
	};
	const servers = { apiUrl: sim.api, deltaUrl: sim.delta, token: sim.token, registryMap: { 'registry2.balena-cloud.com': sim.registry } };
	let services = 0;
	for (const registry of [true, false]) {
		for (const [from, to] of [[900813, 900835], [900835, 900871], [900813, 900871]]) {
			const info = await getUpdateInfo(from, to, { ...servers, registry });
			services += info.is_produced_by__service_update.length;
			checkUpdate(info, 'ReleaseUpdate', `${from} → ${to}`);
		}
		for (const fleet of ['gh_demo/kiosk-fleet', 'gh_demo/sensor-hub']) {
			const info = await getFleetUpdateInfo(fleet, { ...servers, registry });
			check(info, 'FleetUpdate', fleet);
			for (const t of info.transitions) checkUpdate(t, 'FleetTransition', fleet);
		}
	}
	assert.ok(services > 0);
	assert.deepEqual([...undeclared], []);
});
