// The checks of the real-engine stage, given running servers (run.sh starts
// them): the CLI's output on the real pinejs engine against its output on
// balena-sim for the same scenario, what it does on openBalena (the model
// without `delta`), and the status codes both engines give to the same raw
// requests. Prints one PASS/FAIL line per check and `N passed, N failed`.
//
// usage: node check.js <config.json>
//   { "cli": "<balena-release-update binary>", "work": "<scratch dir>",
//     "scenarios": [{ "name", "token", "sim_api", "sim_delta",
//                     "pine_cloud", "pine_openbalena" }] }
// The runs of each scenario are in cases.js.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { join } from 'node:path';
import { expectedOnOpenBalena } from './openbalena.js';
import { statusRequests } from './requests.js';
import { SCENARIOS } from './cases.js';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const verbose = process.env.VERBOSE === '1';

let passed = 0;
let failed = 0;
const failures = [];
const pass = (what) => {
	passed += 1;
	console.log(`PASS ${what}`);
};
const fail = (what, detail) => {
	failed += 1;
	failures.push(what);
	console.log(`FAIL ${what}`);
	if (detail) {
		for (const line of String(detail).split('\n').slice(0, 40)) {
			console.log(`     ${line}`);
		}
	}
};
const check = (ok, what, detail) => (ok ? pass(what) : fail(what, detail));

// Runs the CLI against one API; the delta server is the simulator's, so a
// describe run on either engine sees the same one (and sends it nothing).
const runCli = (scenario, apiUrl, args, tag) => {
	const home = join(config.work, 'home');
	mkdirSync(home, { recursive: true });
	const started = process.hrtime.bigint();
	// The registry is not part of this comparison: the API engine is.
	const r = spawnSync(config.cli, ['--no-registry', ...args], {
		env: {
			PATH: process.env.PATH,
			HOME: home,
			CI: 'true',
			NO_COLOR: '1',
			NO_PROXY: '127.0.0.1,localhost',
			BALENARC_API_URL: apiUrl,
			BALENARC_DELTA_URL: scenario.sim_delta,
			BALENA_RELEASE_UPDATE_TOKEN: scenario.token,
		},
		encoding: 'utf8',
		timeout: 60_000,
	});
	const ms = Number(process.hrtime.bigint() - started) / 1e6;
	// Ports differ between the servers: error lines name them.
	const stderr = (r.stderr ?? '')
		.replaceAll(apiUrl, '<api>')
		.replaceAll(apiUrl.replace('http://', ''), '<api>')
		.replaceAll(scenario.sim_delta, '<delta>');
	const out = { code: r.status ?? `signal ${r.signal}`, stdout: r.stdout ?? '', stderr, ms };
	const file = join(config.work, `${scenario.name}.${tag}.${args.join('_').replace(/[^\w.-]+/g, '')}`);
	writeFileSync(`${file}.stdout`, out.stdout);
	writeFileSync(`${file}.stderr`, r.stderr ?? '');
	return out;
};

const errorLines = (stderr) => stderr.split('\n').filter((l) => l.startsWith('ERROR:'));
const parse = (text) => {
	try {
		return JSON.parse(text);
	} catch {
		return undefined;
	}
};
const describe = (out) =>
	`exit ${out.code}; stderr: ${out.stderr.trim().split('\n').slice(-3).join(' | ') || '(empty)'}`;

const simCounters = async (scenario) => {
	const r = await fetch(`${scenario.sim_api}/__sim/counters`);
	return r.json();
};

for (const servers of config.scenarios) {
	const scenario = { ...SCENARIOS[servers.name], ...servers };
	// Only the CLI's own requests go into the journal read for the status
	// comparison below.
	await fetch(`${scenario.sim_api}/__sim/journal`, { method: 'DELETE' });

	console.log(`--- scenario ${scenario.name}: the model on pinejs`);
	for (const [variant, base] of [
		['with delta', scenario.pine_cloud],
		['openBalena', scenario.pine_openbalena],
	]) {
		const get = async (q) =>
			(await (await fetch(`${base}/v7/${q}`, { headers: { Authorization: `Bearer ${scenario.token}` } })).json()).d;
		const id = (link) => link?.__id ?? null;
		const apps = new Map((await get('application?$select=id,should_be_running__release')).map((a) => [a.id, a]));
		const devices = await get(
			'device?$select=id,belongs_to__application,is_pinned_on__release,should_be_running__release',
		);
		const wrong = devices.filter(
			(d) =>
				id(d.should_be_running__release) !==
				(id(d.is_pinned_on__release) ?? id(apps.get(id(d.belongs_to__application))?.should_be_running__release)),
		);
		check(
			devices.length > 0 && wrong.length === 0,
			`${scenario.name} (${variant}): device.should_be_running__release is the pin, else the fleet's target, for all ${devices.length} devices`,
			JSON.stringify(wrong.slice(0, 5)),
		);
	}

	console.log(`--- scenario ${scenario.name}: the CLI on pinejs (with delta) against balena-sim`);
	const cloud = new Map();
	for (const c of scenario.cases) {
		const onSim = runCli(scenario, scenario.sim_api, c.args, 'sim');
		const onPine = runCli(scenario, scenario.pine_cloud, c.args, 'pine');
		cloud.set(c.name, { onSim, onPine });
		const what = `${scenario.name}: ${c.name} (${c.args.join(' ')})`;
		if (verbose) {
			console.log(`     sim ${onSim.ms.toFixed(0)} ms, pinejs ${onPine.ms.toFixed(0)} ms`);
		}
		const same =
			onSim.code === onPine.code &&
			onSim.stdout === onPine.stdout &&
			isDeepStrictEqual(errorLines(onSim.stderr), errorLines(onPine.stderr));
		let detail;
		if (!same) {
			detail = [`balena-sim: ${describe(onSim)}`, `pinejs:     ${describe(onPine)}`];
			if (onSim.stdout !== onPine.stdout) {
				const [a, b] = [parse(onSim.stdout), parse(onPine.stdout)];
				if (a !== undefined && b !== undefined) {
					detail.push(...jsonDiff(a, b));
				} else {
					const [x, y] = [onSim.stdout.split('\n'), onPine.stdout.split('\n')];
					const i = x.findIndex((line, n) => line !== y[n]);
					detail.push(`first different line ${i + 1}:`, `  balena-sim: ${x[i]}`, `  pinejs:     ${y[i]}`);
				}
			}
			detail = detail.join('\n');
		}
		check(same, `${what}: same exit code (${onPine.code}), stdout and ERROR lines on pinejs as on balena-sim`, detail);
		const exit = c.expect_exit ?? 0;
		check(onPine.code === exit, `${what}: exits ${exit} on pinejs`, describe(onPine));
	}

	console.log(`--- scenario ${scenario.name}: openBalena (pinejs without delta)`);
	for (const c of scenario.cases) {
		const reference = cloud.get(c.name).onPine;
		const what = `${scenario.name} openBalena: ${c.name} (${c.args.join(' ')})`;
		const onOb = runCli(scenario, scenario.pine_openbalena, c.args, 'openbalena');
		if (reference.code !== 0) {
			// Bad input is refused the same way with or without deltas.
			check(
				onOb.code === reference.code &&
					isDeepStrictEqual(errorLines(onOb.stderr), errorLines(reference.stderr)),
				`${what}: refused as with delta (exit ${reference.code}, same ERROR line)`,
				`openBalena: ${describe(onOb)}\nwith delta: ${describe(reference)}`,
			);
			continue;
		}
		if (c.args.includes('table')) {
			// The table is made from the same result as the JSON, checked above.
			check(onOb.code === 0, `${what}: exit 0`, describe(onOb));
			continue;
		}
		const expected = expectedOnOpenBalena(parse(reference.stdout));
		const got = parse(onOb.stdout);
		const ok = onOb.code === 0 && isDeepStrictEqual(got, expected);
		check(
			ok,
			`${what}: exit 0, changed services pending without delta, the rest as with delta`,
			ok ? undefined : [describe(onOb), ...jsonDiff(expected, got)].join('\n'),
		);
	}
	for (const c of scenario.prepare_cases ?? []) {
		const what = `${scenario.name} openBalena: ${c.name} (${c.args.join(' ')})`;
		const before = await simCounters(scenario);
		const onOb = runCli(scenario, scenario.pine_openbalena, c.args, 'openbalena');
		const after = await simCounters(scenario);
		const errors = errorLines(onOb.stderr);
		check(
			onOb.code === 1 && errors.length === 1 && /delta/i.test(errors[0]),
			`${what}: exit 1 with one ERROR line about the missing delta server`,
			describe(onOb),
		);
		check(
			after.delta.total === before.delta.total,
			`${what}: nothing sent to the delta server`,
			`${after.delta.total - before.delta.total} request(s) reached it`,
		);
	}

	console.log(`--- scenario ${scenario.name}: status codes of the same requests on both engines`);
	const journal = await (await fetch(`${scenario.sim_api}/__sim/journal`)).json();
	for (const req of statusRequests(scenario, journal)) {
		const answers = {};
		for (const [engine, base] of Object.entries(req.engines)) {
			try {
				const r = await fetch(`${base}${req.path}`, {
					headers: { Authorization: `Bearer ${req.token ?? scenario.token}` },
				});
				answers[engine] = { status: r.status, body: await r.text() };
			} catch (e) {
				answers[engine] = { status: `no answer (${e.cause?.code ?? e.message})`, body: '' };
			}
		}
		const shown = Object.entries(answers)
			.map(([e, a]) => `${e} ${a.status}${a.status === 401 ? ` body ${JSON.stringify(a.body.slice(0, 40))}` : ''}`)
			.join(', ');
		const statuses = Object.values(answers).map((a) => a.status);
		let ok = statuses.every((s) => s === statuses[0]) && (req.status == null || statuses[0] === req.status);
		if (req.same_rows && ok) {
			// The same rows, in any order: the query has no $orderby.
			const sorted = (body) => body?.d?.map((row) => JSON.stringify(sortKeys(row))).sort();
			const bodies = Object.values(answers).map((a) => sorted(parse(a.body)));
			ok = bodies.every((b) => Array.isArray(b) && isDeepStrictEqual(b, bodies[0]));
			if (!ok) {
				req.expect += `\n${jsonDiff(bodies[0], bodies[1]).join('\n')}`;
			}
		}
		if (req.same_body && ok) {
			const bodies = Object.values(answers).map((a) => parse(a.body));
			ok = bodies.every((b) => b !== undefined && isDeepStrictEqual(b, bodies[0]));
			if (!ok) {
				req.expect += `\n${jsonDiff(bodies[0], bodies[1]).join('\n')}`;
			}
		}
		if (req.empty_401) {
			ok &&= Object.values(answers).every((a) => a.status !== 401 || a.body === '');
		}
		check(ok, `${scenario.name}: ${req.name}: ${shown}`, ok ? undefined : `GET ${req.path}\nexpected: ${req.expect}`);
	}
}

// A value with its object keys sorted, so that rows compare by content.
function sortKeys(v) {
	if (Array.isArray(v)) {
		return v.map(sortKeys);
	}
	if (v && typeof v === 'object') {
		return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
	}
	return v;
}

// A short list of the paths where two JSON values differ.
function jsonDiff(a, b, path = '$', out = []) {
	if (out.length >= 30) {
		return out;
	}
	if (isDeepStrictEqual(a, b)) {
		return out;
	}
	if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
		const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
		for (const k of keys) {
			jsonDiff(a[k], b[k], Array.isArray(a) ? `${path}[${k}]` : `${path}.${k}`, out);
		}
		if (!Array.isArray(a) && !isDeepStrictEqual(Object.keys(a), Object.keys(b))) {
			out.push(`${path}: key order ${JSON.stringify(Object.keys(a))} vs ${JSON.stringify(Object.keys(b))}`);
		}
		return out;
	}
	out.push(`${path}: ${JSON.stringify(a)?.slice(0, 200)} vs ${JSON.stringify(b)?.slice(0, 200)}`);
	return out;
}

console.log('');
if (failures.length > 0) {
	console.log('failed checks:');
	for (const f of failures) {
		console.log(`  - ${f}`);
	}
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
