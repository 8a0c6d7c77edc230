// The drop-in check: for every demo transition, this tool and the npm tool
// @balena/release-update 0.1.0 each run against a fresh simulator of the same
// scenario, plain, with `--prepare` and with `--wait --timeout`, and their
// stdout JSON must be equal once the README's deliberate differences
// (differences.js) are applied. Prints one PASS/FAIL line per comparison,
// then `N passed, M failed`; exits 1 when anything failed.
//
// usage: node dropin.js   (dropin.sh installs and builds what it needs first)
//   BALENA_SIM_BIN, BALENA_RELEASE_UPDATE_BIN   the two binaries (required)
//   DROPIN_JOBS=N   runs at a time (default 6; the `--wait` runs mostly sleep)
//   KEEP_WORK=1     keep the work directory (every run's stdout and stderr)
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const util = require('util');
const differences = require('./differences');

const CONF_DIR = __dirname;
const ROOT = path.dirname(CONF_DIR);
const NPM_TOOL = path.join(CONF_DIR, 'node_modules/@balena/release-update/bin/balena-release-update.js');
const SIM_BIN = process.env.BALENA_SIM_BIN && path.resolve(process.env.BALENA_SIM_BIN);
const OUR_BIN = process.env.BALENA_RELEASE_UPDATE_BIN && path.resolve(process.env.BALENA_RELEASE_UPDATE_BIN);
const JOBS = Math.max(1, Number(process.env.DROPIN_JOBS) || 6);
// Kills a run that takes longer than this (the `--wait` runs give up at 120 s).
const RUN_LIMIT_MS = 180_000;

// The transitions: those conformance/run.sh and scripts/demo.sh run, and
// each release a demo device runs → its fleet's target release
// (crates/balena-sim/README.md, "The demo fleet").
const PAIRS = [
	['900813', '900835'], // RELEASE_1 → RELEASE_2 (run.sh plain and --prepare, demo.sh --wait)
	['84d3d8', 'b2cf2db7a4e6'], // the same by commit prefixes (run.sh --wait)
	['84d3d8', '900835'], // demo.sh, last step
	['900813', '900871'], // kiosk-gate, kiosk-west → kiosk-fleet's target RELEASE_3
	['900835', '900871'], // kiosk-cafe, kiosk-east
	['900871', '900871'], // kiosk-lobby, already on the target
	['900900', '900900'], // hub-01, on sensor-hub's target
];
const FLEETS = ['gh_demo/kiosk-fleet', 'gh_demo/sensor-hub'];
// Plain and `--prepare` on a manual clock: nothing builds, so the state after
// triggering is the same whenever it is read. `--wait` on the demo's real
// clock: every delta is built within 1.6 s, and both tools end once all are.
const MODES = {
	plain: { args: [], clock: ['--clock', 'manual'] },
	prepare: { args: ['--prepare'], clock: ['--clock', 'manual'] },
	wait: { args: ['--wait', '--timeout', '120'], clock: [] },
};

const WORK = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'balena-dropin.'));
const children = new Set();
function cleanup() {
	for (const child of children) child.kill('SIGKILL');
	if (process.env.KEEP_WORK === '1') console.error(`work directory kept: ${WORK}`);
	else fs.rmSync(WORK, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

// Runs a program to its end; resolves with its exit code, stdout and stderr.
function run(file, args, options, limitMs = RUN_LIMIT_MS) {
	return new Promise((resolve) => {
		const child = spawn(file, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
		children.add(child);
		let stdout = '';
		let stderr = '';
		child.stdout.on('data', (d) => (stdout += d));
		child.stderr.on('data', (d) => (stderr += d));
		const timer = setTimeout(() => {
			stderr += `\n(killed after ${limitMs / 1000} s)`;
			child.kill('SIGKILL');
		}, limitMs);
		const done = (code) => {
			clearTimeout(timer);
			children.delete(child);
			resolve({ code, stdout, stderr });
		};
		child.on('error', (err) => {
			stderr += `\n${err.message}`;
			done(-1);
		});
		child.on('close', (code, signal) => done(code ?? `signal ${signal}`));
	});
}

// Starts a fresh demo simulator and waits for its ready line.
function startSim(dir, clockArgs) {
	return new Promise((resolve, reject) => {
		const child = spawn(SIM_BIN, ['--scenario', 'demo', ...clockArgs], {
			stdio: ['ignore', 'pipe', fs.openSync(path.join(dir, 'sim.err'), 'w')],
		});
		children.add(child);
		let out = '';
		const timer = setTimeout(() => {
			child.kill('SIGKILL');
			reject(new Error('the simulator did not report ready within 30 s'));
		}, 30_000);
		child.stdout.on('data', (d) => {
			out += d;
			if (!out.includes('\n')) return;
			clearTimeout(timer);
			try {
				const ready = JSON.parse(out.split('\n')[0]);
				resolve({
					child,
					api: ready.api_url,
					delta: ready.delta_url,
					registry: ready.registry_url,
					token: ready.token,
				});
			} catch (err) {
				reject(new Error(`the simulator's ready line is not JSON: ${out}`));
			}
		});
		child.on('exit', (code) => {
			children.delete(child);
			clearTimeout(timer);
			reject(new Error(`the simulator exited with ${code} before it was ready`));
		});
	});
}
// Stops a simulator; returns a message when it had died on its own.
async function stopSim(sim) {
	if (sim.child.exitCode !== null || sim.child.signalCode !== null) {
		return `the simulator died during the run (${sim.child.exitCode ?? sim.child.signalCode})`;
	}
	const exited = new Promise((resolve) => sim.child.once('exit', resolve));
	sim.child.kill('SIGTERM');
	const timer = setTimeout(() => sim.child.kill('SIGKILL'), 5_000);
	await exited;
	clearTimeout(timer);
	children.delete(sim.child);
	return null;
}

// The delta rows the scenario starts with, by id.
async function deltaRows(sim) {
	const res = await fetch(`${sim.api}/v7/delta?$select=id,status,error_message`, { headers: { Authorization: `Bearer ${sim.token}` } });
	if (!res.ok) throw new Error(`GET /v7/delta answered ${res.status}`);
	return new Map((await res.json()).d.map((row) => [row.id, row]));
}

// GET /v7/<query> on the simulator: its rows.
async function rowsOf(sim, query) {
	const res = await fetch(`${sim.api}/v7/${query}`, { headers: { Authorization: `Bearer ${sim.token}` } });
	if (!res.ok) throw new Error(`GET /v7/${query} answered ${res.status}`);
	return (await res.json()).d;
}
const idOf = (link) => (link != null && typeof link === 'object' ? link.__id : link);

// Each release's composition, by id: the update strategies the additive
// `update_strategy` keys must name.
async function compositions(sim) {
	const rows = await rowsOf(sim, 'release?$select=id,composition');
	return new Map(rows.map((r) => [r.id, r.composition ?? null]));
}

// How many devices of each (release run, target release) pair of a fleet
// do not use image deltas, read from the scenario's configuration variables
// (README "### Output", `devices_without_deltas`): each setting is the
// device's own, else the fleet's, else on; deltas are off when
// `…_SUPERVISOR_DELTA` is 0 or false, or `…_SUPERVISOR_DELTA_VERSION` is not
// 3 (`BALENA_` before `RESIN_`). By "<from id>-><to id>".
async function devicesWithoutDeltas(sim, slug) {
	const [app] = await rowsOf(sim, `application?$select=id&$filter=slug%20eq%20'${encodeURIComponent(slug)}'`);
	if (!app) throw new Error(`no application ${slug}`);
	const devices = await rowsOf(sim, `device?$select=id,is_running__release,should_be_running__release&$filter=belongs_to__application%20eq%20${app.id}`);
	const own = await rowsOf(sim, `device_config_variable?$select=device,name,value&$filter=device/belongs_to__application%20eq%20${app.id}`);
	const fleet = await rowsOf(sim, `application_config_variable?$select=name,value&$filter=application%20eq%20${app.id}`);
	const setting = (vars, suffix) => {
		for (const prefix of ['BALENA_SUPERVISOR_', 'RESIN_SUPERVISOR_']) {
			const v = vars.find((x) => x.name === `${prefix}${suffix}`);
			if (v) return String(v.value).trim();
		}
		return undefined;
	};
	const counts = new Map();
	for (const d of devices) {
		const from = idOf(d.is_running__release);
		const to = idOf(d.should_be_running__release);
		if (from == null || to == null || from === to) continue;
		const mine = own.filter((v) => idOf(v.device) === d.id);
		const delta = setting(mine, 'DELTA') ?? setting(fleet, 'DELTA');
		const version = setting(mine, 'DELTA_VERSION') ?? setting(fleet, 'DELTA_VERSION');
		const off = ['0', 'false', 'False', 'FALSE'].includes(delta) || (version !== undefined && version !== '3');
		const key = `${from}->${to}`;
		counts.set(key, (counts.get(key) ?? 0) + (off ? 1 : 0));
	}
	return counts;
}

// Each run gets a throw-away HOME and working directory and a clean
// environment, so no real balena settings or token can leak in.
function npmTool(dir, sim, args) {
	fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
	fs.writeFileSync(path.join(dir, 'data/token'), sim.token);
	const env = {
		PATH: process.env.PATH,
		HOME: dir,
		BALENARC_DATA_DIRECTORY: path.join(dir, 'data'),
		BALENARC_DELTA_URL: sim.delta,
		SIM_API_URL: sim.api,
		NO_PROXY: '127.0.0.1,localhost',
	};
	return run(process.execPath, ['-r', path.join(CONF_DIR, 'preload.js'), NPM_TOOL, ...args], { cwd: dir, env });
}
function ourTool(dir, sim, args) {
	const env = {
		PATH: process.env.PATH,
		HOME: dir,
		BALENARC_API_URL: sim.api,
		BALENARC_DELTA_URL: sim.delta,
		BALENA_RELEASE_UPDATE_TOKEN: sim.token,
		// The scenario's registry is the simulator's own: nothing leaves
		// the machine, and the download keys are real figures.
		BALENA_RELEASE_UPDATE_REGISTRY_MAP: `registry2.balena-cloud.com=${sim.registry}`,
		NO_PROXY: '127.0.0.1,localhost',
		CI: 'true',
	};
	return run(OUR_BIN, args, { cwd: dir, env });
}

// One job: a fresh simulator, then each step ([label, tool, args]) on it in
// turn; for a fleet run (`fleet`, its slug) the devices without deltas too.
async function withSim(name, clockArgs, steps, fleet) {
	const dir = path.join(WORK, name);
	fs.mkdirSync(dir, { recursive: true });
	let sim;
	try {
		sim = await startSim(dir, clockArgs);
	} catch (err) {
		return { error: err.message };
	}
	try {
		const initialDeltas = await deltaRows(sim);
		const releaseCompositions = await compositions(sim);
		const withoutDeltas = fleet ? await devicesWithoutDeltas(sim, fleet) : undefined;
		const runs = [];
		for (const [label, tool, args] of steps) {
			const result = await tool(dir, sim, args);
			fs.writeFileSync(path.join(dir, `${label}.stdout`), result.stdout);
			fs.writeFileSync(path.join(dir, `${label}.stderr`), result.stderr);
			runs.push({ label, args, ...result });
		}
		const died = await stopSim(sim);
		return { runs, initialDeltas, compositions: releaseCompositions, withoutDeltas, error: died };
	} catch (err) {
		await stopSim(sim);
		return { error: err.message };
	}
}

// Runs the jobs, at most JOBS at a time, in the order given.
async function pool(jobs) {
	const results = new Array(jobs.length);
	let next = 0;
	const worker = async () => {
		while (next < jobs.length) {
			const i = next++;
			results[i] = await jobs[i]();
		}
	};
	await Promise.all(Array.from({ length: Math.min(JOBS, jobs.length) }, worker));
	return results;
}

// --- comparing ---------------------------------------------------------------

let passed = 0;
let failed = 0;
const pass = (what) => {
	console.log(`PASS ${what}`);
	passed++;
};
const fail = (what, details = []) => {
	console.log(`FAIL ${what}`);
	for (const line of details) console.log(`     ${line}`);
	failed++;
};

// Every place where two JSON values differ, as `$.path: expected …, got …`.
function jsonDiff(expected, actual, at = '$', out = []) {
	const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
	if (Array.isArray(expected) && Array.isArray(actual)) {
		for (let i = 0; i < Math.max(expected.length, actual.length); i++) {
			// A service is named next to its index: `[2 proxy]`.
			const name = expected[i]?.service_name ?? actual[i]?.service_name;
			const here = `${at}[${i}${typeof name === 'string' ? ` ${name}` : ''}]`;
			if (i >= actual.length) out.push(`${here}: expected ${JSON.stringify(expected[i])}, missing`);
			else if (i >= expected.length) out.push(`${here}: not expected, got ${JSON.stringify(actual[i])}`);
			else jsonDiff(expected[i], actual[i], here, out);
		}
	} else if (isObject(expected) && isObject(actual)) {
		for (const key of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
			if (!(key in actual)) out.push(`${at}.${key}: expected ${JSON.stringify(expected[key])}, missing`);
			else if (!(key in expected)) out.push(`${at}.${key}: not expected, got ${JSON.stringify(actual[key])}`);
			else jsonDiff(expected[key], actual[key], `${at}.${key}`, out);
		}
		if (!out.length && Object.keys(expected).join() !== Object.keys(actual).join()) {
			out.push(`${at}: keys in order ${Object.keys(actual).join(', ')}, expected ${Object.keys(expected).join(', ')}`);
		}
	} else if (!util.isDeepStrictEqual(expected, actual)) {
		out.push(`${at}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
	}
	return out;
}

// Parses a run's stdout; null (and a FAIL line) when the run failed.
function parsed(what, result) {
	if (result.code !== 0) {
		fail(`${what}: exit code ${result.code}, expected 0`, result.stderr.trim().split('\n').slice(-10));
		return null;
	}
	try {
		const value = JSON.parse(result.stdout);
		// The npm tool writes JSON.stringify(…, null, 2) and a newline.
		if (result.stdout !== `${JSON.stringify(value, null, 2)}\n`) {
			fail(`${what}: stdout is not formatted as JSON.stringify(value, null, 2) plus a newline`);
			return null;
		}
		return value;
	} catch (err) {
		fail(`${what}: stdout is not JSON (${err.message})`, result.stdout.split('\n').slice(0, 10));
		return null;
	}
}

// Compares one output of this tool with the npm tool's, differences applied.
function compare(what, npmExpected, oursRaw, context) {
	const problems = [];
	const actual = differences.comparable(oursRaw, { ...context, problems });
	const found = jsonDiff(npmExpected.value, actual);
	const applied = npmExpected.notes.length ? ` (differences applied: ${npmExpected.notes.join('; ')})` : '';
	if (problems.length || found.length) {
		fail(`${what}: differs from the npm tool's JSON${applied}`, [
			...problems.map((p) => `additive key: ${p}`),
			...found,
		]);
	} else {
		pass(`${what}: equals the npm tool's JSON${applied}`);
	}
}

async function main() {
	const readmeProblems = differences.checkBullets(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
	if (readmeProblems.length) fail('differences.js accounts for every README difference', readmeProblems);
	else pass(`differences.js accounts for all ${Object.keys(differences.BULLETS).length} README differences`);

	// Jobs, the slow `--wait` ones first.
	const jobs = [];
	const order = ['wait', 'prepare', 'plain'];
	for (const mode of order) {
		const { args, clock } = MODES[mode];
		PAIRS.forEach(([from, to], i) => {
			const pairArgs = ['--from-release', from, '--to-release', to];
			const npmSteps = [['npm', npmTool, [...args, ...pairArgs]]];
			// Bullet 5: the same simulator, read again without flags.
			if (mode === 'prepare') npmSteps.push(['npm-again', npmTool, pairArgs]);
			jobs.push({ kind: 'npm', mode, i, run: () => withSim(`${mode}-${i}-npm`, clock, npmSteps) });
			jobs.push({ kind: 'ours', mode, i, run: () => withSim(`${mode}-${i}-ours`, clock, [['ours', ourTool, [...args, ...pairArgs]]]) });
		});
		FLEETS.forEach((fleet, i) => {
			const fleetArgs = [...args, '--fleet', fleet];
			jobs.push({ kind: 'fleet', mode, i, run: () => withSim(`${mode}-fleet-${i}`, clock, [['ours', ourTool, fleetArgs]], fleet) });
		});
	}
	const started = Date.now();
	// Outputs whose service order under ICU collation is not the byte order.
	const icuDiffers = [];
	const results = await pool(jobs.map((job) => job.run));
	const get = (kind, mode, i) => results[jobs.findIndex((j) => j.kind === kind && j.mode === mode && j.i === i)];

	// Every image the npm tool printed in any run, to check removed services by.
	const npmImages = new Map();
	for (const [j, job] of jobs.entries()) {
		for (const { stdout } of job.kind === 'npm' ? (results[j].runs ?? []) : []) {
			try {
				differences.imagesOf(JSON.parse(stdout), npmImages);
			} catch {
				// A run that printed no JSON fails below.
			}
		}
	}

	for (const mode of ['plain', 'prepare', 'wait']) {
		// Expected outputs per release pair (ids), for the fleet transitions.
		const byIds = new Map();
		PAIRS.forEach(([from, to], i) => {
			const what = `${mode} ${from} -> ${to}`;
			const npm = get('npm', mode, i);
			const ours = get('ours', mode, i);
			if (npm.error) return fail(`${what}: npm tool run`, [npm.error]);
			if (ours.error) return fail(`${what}: this tool's run`, [ours.error]);
			const printed = parsed(`${what}: npm tool`, npm.runs[0]);
			const readAgain = npm.runs[1] && parsed(`${what}: npm tool read again`, npm.runs[1]);
			const oursValue = parsed(`${what}: this tool`, ours.runs[0]);
			if (!printed || (mode === 'prepare' && !readAgain) || !oursValue) return;
			const notes = [];
			const value = differences.expected(mode, { printed, readAgain }, { initialDeltas: npm.initialDeltas, compositions: npm.compositions, notes });
			const expected = { value, notes };
			if (notes.some((n) => n.startsWith('11:'))) icuDiffers.push(what);
			compare(what, expected, oursValue, { initialDeltas: ours.initialDeltas, compositions: ours.compositions, npmImages });
			byIds.set(`${value.originates_from__release.id}->${value.produces__release.id}`, expected);
		});
		FLEETS.forEach((fleet, i) => {
			const what = `${mode} --fleet ${fleet}`;
			const result = get('fleet', mode, i);
			if (result.error) return fail(`${what}: this tool's run`, [result.error]);
			const value = parsed(what, result.runs[0]);
			if (!value) return;
			if (!Array.isArray(value.transitions)) return fail(`${what}: has a transitions array`);
			if (value.transitions.length === 0) console.log(`note: ${what} lists no transition`);
			for (const { device_count: deviceCount, ...transition } of value.transitions) {
				const key = `${transition.originates_from__release?.id}->${transition.produces__release?.id}`;
				const expected = byIds.get(key);
				if (!expected) {
					fail(`${what}: transition ${key} has an npm tool output to compare with (not a compared pair, or its npm run failed)`);
					continue;
				}
				compare(`${what}, transition ${key.replace('->', ' -> ')}`, expected, transition, {
					initialDeltas: result.initialDeltas,
					compositions: result.compositions,
					npmImages,
					fleet: { deviceCount, devicesWithoutDeltas: result.withoutDeltas.get(key) ?? 0 },
				});
			}
		});
	}
	console.log(
		icuDiffers.length
			? `note: the npm tool's ICU order differs from byte order in: ${icuDiffers.join(', ')}`
			: "note: the npm tool's ICU order of service names is their byte order in every compared output",
	);
	console.log(`${passed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
	process.exitCode = failed === 0 ? 0 : 1;
}

if (!SIM_BIN || !OUR_BIN) {
	console.error('set BALENA_SIM_BIN and BALENA_RELEASE_UPDATE_BIN (dropin.sh does)');
	process.exit(2);
}
main().catch((err) => {
	console.log(`FAIL the drop-in check crashed: ${err.stack}`);
	process.exitCode = 1;
});
