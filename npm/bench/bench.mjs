// The npm package against the npm tool's library, side by side in one run
// (driven by run.sh, which installs both and sets the environment below).
//
//   node bench.mjs [--runs N] [--cold-runs N] [--services 10,50] [--latency-ms 50]
//                  [--write FILE]      replace or append the section in FILE
//   node bench.mjs --first-result ours|ours-registry|theirs   (a child: see below)
//
// For each service count, one fresh `balena-sim --scenario
// generated:services=N,releases=3` with a fixed latency on every request to
// the API, the delta server and the registry, and the transition from
// release 2 to release 3 (no delta built: getUpdateInfo only reads). In this
// process, the calls of one repetition run one after the other, their order
// rotated from one repetition to the next:
//
//   ours            getUpdateInfo(2, 3, { registry: false, apiUrl, deltaUrl, token })
//   theirs          the npm tool's getUpdateInfo(2, 3, { client }), one balena-sdk
//                   client (getSdk({ apiUrl, dataDirectory: false }) + loginWithToken)
//   ours-registry   ours with the registry (registryMap: the scenario's registry
//                   host → the simulator), its manifests cached after the warm-up
//   ours-cold       ours, registry off, with a client of its own (an unused extra
//                   registryMap entry makes the addon build a new Client: no
//                   connection, no cache)
//   ours-cold-registry   the same with the registry: what reading it costs a first call
//   floor           the requests ours sent in its warm-up call (from the simulator's
//                   journal), sent together by Node's fetch, answers parsed: what any
//                   client pays for them
//
// One warm-up call of each comes first (not timed); its requests are counted
// from the simulator's counters, as are those of one timed call.
//
// Then, per service count, fresh `node` processes (this file with
// --first-result): from before `import()` to the first result, and the whole
// process from spawn to exit, for ours (registry off and on) and theirs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { getJson, startSimWith } from '../test/helpers.mjs';

const OURS = process.env.BRU_BENCH_OURS; // …/lib/node_modules/balena-release-update (a global prefix)
const THEIRS = process.env.BRU_BENCH_THEIRS; // a directory whose node_modules holds @balena/release-update
const SIM_BIN = process.env.BALENA_SIM_BIN;
const REGISTRY_HOST = 'registry2.balena-cloud.com'; // the generated fleet's image locations
const FROM = 2;
const TO = 3;

function need(name, value) {
	if (!value) {
		console.error(`bench.mjs: ${name} is not set (run npm/bench/run.sh)`);
		process.exit(2);
	}
}
need('BRU_BENCH_OURS', OURS);
need('BRU_BENCH_THEIRS', THEIRS);

async function loadOurs() {
	return import(pathToFileURL(`${OURS}/index.mjs`).href);
}
function loadTheirs() {
	const require = createRequire(`${THEIRS}/node_modules/`);
	const tool = require('@balena/release-update');
	const sdk = require(require.resolve('balena-sdk', { paths: [require.resolve('@balena/release-update')] }));
	return { tool, sdk };
}
async function theirsClient(sdk, sim) {
	const client = sdk.getSdk({ apiUrl: sim.api, dataDirectory: false });
	await client.auth.loginWithToken(sim.token);
	return client;
}
const servers = (sim) => ({ apiUrl: sim.api, deltaUrl: sim.delta, token: sim.token });
const registryMap = (sim) => ({ [REGISTRY_HOST]: sim.registry });

// --- a child: import to first result ----------------------------------------

const args = process.argv.slice(2);
const opt = (name, fallback) => {
	const at = args.indexOf(name);
	return at >= 0 ? args[at + 1] : fallback;
};

async function firstResult() {
	const which = args[1];
	const sim = JSON.parse(process.env.BRU_BENCH_SIM);
	const t0 = performance.now();
	let result;
	let imported;
	if (which === 'theirs') {
		const { tool, sdk } = loadTheirs();
		imported = performance.now();
		const client = await theirsClient(sdk, sim);
		result = await tool.getUpdateInfo(FROM, TO, { client });
	} else {
		const ours = await loadOurs();
		imported = performance.now();
		const options = { ...servers(sim), registry: which === 'ours-registry' };
		if (options.registry) options.registryMap = registryMap(sim);
		result = await ours.getUpdateInfo(FROM, TO, options);
	}
	const done = performance.now();
	process.stdout.write(
		JSON.stringify({
			import_ms: imported - t0,
			first_result_ms: done - t0,
			services: result.is_produced_by__service_update.length,
			// since the process started, as Node counts it
			uptime_ms: done,
		}),
	);
	// Nothing is closed by hand: the process must end by itself.
}

// --- the parent ---------------------------------------------------------------

function startSim(scenario, latencyMs) {
	const latency = { type: 'latency', fixed_ms: latencyMs };
	const faults = {
		seed: 1,
		rules: [
			{ scope: 'both', fault: latency },
			{ scope: 'registry', fault: latency },
		],
	};
	return startSimWith(['--scenario', scenario, '--faults', JSON.stringify(faults)]);
}

async function counters(sim) {
	const c = await getJson(`${sim.api}/__sim/counters`);
	return { api: c.api?.total ?? 0, delta: c.delta?.total ?? 0, registry: c.registry?.total ?? 0 };
}
async function clearJournal(sim) {
	const res = await fetch(`${sim.api}/__sim/journal`, { method: 'DELETE' });
	if (!res.ok) throw new Error(`DELETE /__sim/journal answered ${res.status}`);
}
/** The URLs of the API and delta-server requests in the simulator's journal. */
async function journalUrls(sim) {
	const { entries } = await getJson(`${sim.api}/__sim/journal`);
	return entries
		.filter((e) => e.server === 'api' || e.server === 'delta')
		.map((e) => `${e.server === 'delta' ? sim.delta : sim.api}${e.path}${e.query ? `?${e.query}` : ''}`);
}
const minus = (a, b) => ({ api: a.api - b.api, delta: a.delta - b.delta, registry: a.registry - b.registry });

const median = (xs) => {
	const s = [...xs].sort((a, b) => a - b);
	const m = s.length >> 1;
	return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * The parts of a report both tools write alike, for a sanity check (the
 * statuses differ as the README documents: an unchanged service is `ready`
 * here, `pending` for the npm tool).
 */
function shape(report) {
	return JSON.stringify({
		from: report.originates_from__release.id,
		to: report.produces__release.id,
		services: report.is_produced_by__service_update
			.map((s) => [s.service_name, s.originates_from__image?.id ?? null, s.produces__image.id, s.produces__image.image_size])
			.sort(),
	});
}

function runChild(which, sim) {
	return new Promise((resolve, reject) => {
		const started = performance.now();
		const child = spawn(process.execPath, [process.argv[1], '--first-result', which], {
			env: { ...process.env, BRU_BENCH_SIM: JSON.stringify(sim) },
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		let out = '';
		let err = '';
		child.stdout.on('data', (d) => (out += d));
		child.stderr.on('data', (d) => (err += d));
		child.on('error', reject);
		child.on('close', (code) => {
			const wall = performance.now() - started;
			if (code !== 0) return reject(new Error(`${which}: a fresh process exited with ${code}\n${err}`));
			resolve({ ...JSON.parse(out), process_ms: wall });
		});
	});
}

async function measureServices(n, cfg, ours, theirs, log) {
	const scenario = `generated:services=${n},releases=3`;
	const sim = await startSim(scenario, cfg.latencyMs);
	try {
		const client = await theirsClient(theirs.sdk, sim);
		let cold = 0;
		const coldMap = () => ({ ...registryMap(sim), [`cold-${n}-${cold++}.bench.invalid`]: sim.registry });
		const variants = {
			ours: () => ours.getUpdateInfo(FROM, TO, { ...servers(sim), registry: false }),
			theirs: () => theirs.tool.getUpdateInfo(FROM, TO, { client }),
			'ours-registry': () => ours.getUpdateInfo(FROM, TO, { ...servers(sim), registry: true, registryMap: registryMap(sim) }),
			'ours-cold': () => ours.getUpdateInfo(FROM, TO, { ...servers(sim), registry: false, registryMap: coldMap() }),
			'ours-cold-registry': () => ours.getUpdateInfo(FROM, TO, { ...servers(sim), registry: true, registryMap: coldMap() }),
			// The requests ours sent in its warm-up call, by Node's own fetch, sent together, answers parsed:
			// what any client pays for them here, the floor ours is measured against.
			floor: () => Promise.all(floorRequests.map((url) => getJson(url, sim.token))),
		};
		let floorRequests = [];
		const names = Object.keys(variants);
		const times = Object.fromEntries(names.map((k) => [k, []]));
		const requests = {};
		const shapes = {};
		for (const name of names) {
			if (name === 'ours') await clearJournal(sim);
			const before = await counters(sim);
			const report = await variants[name]();
			requests[name] = { first: minus(await counters(sim), before) };
			if (name === 'ours') floorRequests = await journalUrls(sim);
			if (name === 'floor') continue;
			shapes[name] = shape(report);
			if (report.is_produced_by__service_update.length !== n) throw new Error(`${name}: ${report.is_produced_by__service_update.length} services, expected ${n}`);
		}
		for (const name of Object.keys(shapes)) {
			if (shapes[name] !== shapes.theirs) throw new Error(`${n} services: ${name}'s report differs from the npm tool's:\n${shapes[name]}\n${shapes.theirs}`);
		}
		for (let i = 0; i < cfg.runs; i++) {
			const order = names.map((_, j) => names[(i + j) % names.length]);
			for (const name of order) {
				const before = i === 0 ? await counters(sim) : null;
				const t = performance.now();
				await variants[name]();
				times[name].push(performance.now() - t);
				if (before) requests[name].timed = minus(await counters(sim), before);
			}
			log(`  ${n} services, run ${i + 1}: ${names.map((k) => `${k} ${times[k].at(-1).toFixed(0)}`).join(', ')} ms`);
		}

		// Fresh processes: import to the first result.
		const fresh = { ours: [], 'ours-registry': [], theirs: [] };
		const kinds = Object.keys(fresh);
		for (let i = 0; i < cfg.coldRuns; i++) {
			for (const which of kinds.map((_, j) => kinds[(i + j) % kinds.length])) {
				const r = await runChild(which, sim);
				if (r.services !== n) throw new Error(`${which}: a fresh process saw ${r.services} services`);
				fresh[which].push(r);
			}
			log(`  ${n} services, fresh processes ${i + 1}: ${kinds.map((k) => `${k} ${fresh[k].at(-1).first_result_ms.toFixed(0)}/${fresh[k].at(-1).process_ms.toFixed(0)}`).join(', ')} ms`);
		}
		return { services: n, scenario, times, requests, fresh };
	} finally {
		sim.stop();
	}
}

const fmt = (ms) => `${Math.round(ms)} ms`;
const ms1 = (ms) => `${ms.toFixed(1)} ms`;
const reqs = (r) => `${r.api} / ${r.delta} / ${r.registry}`;

function report(cfg, rows, meta) {
	const lines = [];
	const w = (s = '') => lines.push(s);
	w('## From Node.js: the npm package against the npm tool\'s library');
	w();
	w('Written by `bash npm/bench/run.sh` (see bench/README.md); do not edit by hand.');
	w();
	w(
		`Measured ${meta.date} on ${meta.nproc} cores (${meta.cpu}), ${meta.os}, Node ${process.version}, commit \`${meta.commit}\`; ` +
			`load average ${meta.loadStart} when it began and ${meta.loadEnd} at the end (a shared machine: compare the ratios, measured side by side in one run).`,
	);
	w();
	w(
		`Packages: \`balena-release-update\` ${meta.oursVersion} from the tarballs of \`scripts/pack-npm.sh\` (installed with ` +
			`\`npm install --global --offline\` into a fresh prefix), and \`@balena/release-update\` ${meta.theirsVersion} with balena-sdk ${meta.sdkVersion} ` +
			'(`npm ci` of conformance/\'s package.json and lockfile in a fresh directory).',
	);
	w();
	w(
		`Each service count: a fresh \`balena-sim --scenario generated:services=N,releases=3\` with ${cfg.latencyMs} ms of latency on every ` +
			'request to the API, the delta server and the registry; `getUpdateInfo(2, 3, …)` (no delta exists: a read only). ' +
			`In one Node process, after one warm-up call each, ${cfg.runs} repetitions of every call one after the other, the order rotated ` +
			'from one repetition to the next; medians. Ours: `getUpdateInfo(2, 3, { registry: false, apiUrl, deltaUrl, token })`; ' +
			'the npm tool: `getUpdateInfo(2, 3, { client })` with one balena-sdk client (`getSdk({ apiUrl, dataDirectory: false })`, ' +
			'`auth.loginWithToken(token)`) reused by every call, as ours reuses its connections.',
	);
	w();
	w('| services | ours, `registry: false` | the npm tool | ours / npm tool (of the medians) | per repetition, lowest – highest | target | met (the medians\' ratio) | floor: ours\' requests by Node\'s `fetch` | floor / npm tool |');
	w('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
	for (const r of rows) {
		const ours = median(r.times.ours);
		const theirs = median(r.times.theirs);
		const floor = median(r.times.floor);
		const ratio = ours / theirs;
		const each = r.times.ours.map((x, i) => x / r.times.theirs[i]);
		const target = cfg.targets[r.services];
		w(
			`| ${r.services} | ${ms1(ours)} | ${ms1(theirs)} | ${ratio.toFixed(3)}× | ${Math.min(...each).toFixed(2)}× – ${Math.max(...each).toFixed(2)}× ` +
				`| ${target ? `≤ ${target}×` : '—'} | ${target ? (ratio <= target ? 'yes' : '**no**') : '—'} | ${ms1(floor)} | ${(floor / theirs).toFixed(3)}× |`,
		);
	}
	w();
	w(
		'The floor is what any client pays for the requests ours sends: the same URLs (read from the simulator\'s journal of ours\' warm-up call), ' +
			'sent together by Node\'s built-in `fetch` on kept-alive connections, each answer parsed with `JSON.parse` and nothing more, timed in the same rotation.',
	);
	w();
	const close = rows.filter((r) => cfg.targets[r.services] && Math.abs(median(r.times.ours) / median(r.times.theirs) - cfg.targets[r.services]) < 0.02);
	if (close.length) {
		w(
			`At ${close.map((r) => r.services).join(' and ')} services the ratio is within 0.02 of its target: repeated runs on the same ` +
				'machine land on either side of it, so read it as at the target, not safely under it. Ours is within ' +
				`${close.map((r) => ms1(median(r.times.ours) - median(r.times.floor))).join(' and ')} of the floor there; ` +
				"the npm tool's time is two round trips plus its handling of every answer, which a busier machine makes longer.",
		);
		w();
	}
	w(
		'The npm tool reads both releases, then every service\'s two images and its delta, all at once (three requests per service, ' +
			'two round trips of latency plus the handling of every answer); this package reads the releases and their delta rows in two requests sent together: one round trip.',
	);
	w();
	w(
		'Requests of one warmed call (API / delta server / registry, from the simulator\'s counters), and of the first call ' +
			'(the warm-up) where it differs:',
	);
	w();
	w('| services | ours, `registry: false` | the npm tool | ours with the registry | ours, new client, no registry | ours, new client, registry |');
	w('| --- | --- | --- | --- | --- | --- |');
	for (const r of rows) {
		const cell = (k) => {
			const { first, timed } = r.requests[k];
			return reqs(timed) === reqs(first) ? reqs(timed) : `${reqs(timed)} (first: ${reqs(first)})`;
		};
		w(`| ${r.services} | ${cell('ours')} | ${cell('theirs')} | ${cell('ours-registry')} | ${cell('ours-cold')} | ${cell('ours-cold-registry')} |`);
	}
	w();
	w('### The registry\'s own cost');
	w();
	w(
		'Ours with the registry (`registry: true`, `registryMap` from the scenario\'s registry host to the simulator\'s) minus ours ' +
			'without, same repetitions. Warm: the shared client, whose manifests are cached after the warm-up call (a long-running ' +
			'process calling again). New client: every call with a client of its own (an unused extra `registryMap` entry), so no ' +
			'connection and no cached manifest: what the registry costs a first call.',
	);
	w();
	w('| services | warm: with / without | warm: registry\'s cost | new client: with / without | new client: registry\'s cost |');
	w('| --- | --- | --- | --- | --- |');
	for (const r of rows) {
		const on = median(r.times['ours-registry']);
		const off = median(r.times.ours);
		const con = median(r.times['ours-cold-registry']);
		const coff = median(r.times['ours-cold']);
		const lat = (d) => `${d >= 0 ? '+' : ''}${Math.round(d)} ms (${(d / cfg.latencyMs).toFixed(1)} × latency)`;
		w(`| ${r.services} | ${fmt(on)} / ${fmt(off)} | ${lat(on - off)} | ${fmt(con)} / ${fmt(coff)} | ${lat(con - coff)} |`);
	}
	w();
	w('### Installed size and the first result');
	w();
	w('| package | installed (`du -s` of the prefix after install) |');
	w('| --- | --- |');
	w(`| \`balena-release-update\` ${meta.oursVersion} (main + linux-x64-gnu package: addon and command) | ${meta.oursSize} |`);
	w(`| \`@balena/release-update\` ${meta.theirsVersion} (with its dependencies) | ${meta.theirsSize} |`);
	w();
	w(
		`A fresh \`node\` process per run (${cfg.coldRuns} runs each, interleaved, against the same simulators): from before \`import()\` ` +
			'(ours; `require()` for the npm tool, which also builds and logs in its balena-sdk client) to the first `getUpdateInfo` result, ' +
			'and the whole process from spawn to exit; medians.',
	);
	w();
	w('| services | import → first result: ours / ours with the registry / the npm tool | of which `import`: ours / the npm tool | process, spawn → exit: ours / ours with the registry / the npm tool |');
	w('| --- | --- | --- | --- |');
	for (const r of rows) {
		const m = (k, f) => fmt(median(r.fresh[k].map((x) => x[f])));
		w(
			`| ${r.services} | ${m('ours', 'first_result_ms')} / ${m('ours-registry', 'first_result_ms')} / ${m('theirs', 'first_result_ms')} ` +
				`| ${m('ours', 'import_ms')} / ${m('theirs', 'import_ms')} | ${m('ours', 'process_ms')} / ${m('ours-registry', 'process_ms')} / ${m('theirs', 'process_ms')} |`,
		);
	}
	w();
	w('Per-call times (ms), in the order measured:');
	w();
	for (const r of rows) {
		for (const k of Object.keys(r.times)) w(`- ${r.services} services, ${k}: ${r.times[k].map((x) => x.toFixed(0)).join(', ')}`);
	}
	return `${lines.join('\n')}\n`;
}

const START = '<!-- npm:start -->';
const END = '<!-- npm:end -->';
function writeSection(file, section) {
	let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
	const block = `${START}\n${section}${END}\n`;
	if (text.includes(START) && text.includes(END)) {
		const [head, rest] = text.split(START);
		const tail = rest.slice(rest.indexOf(END) + END.length).replace(/^\n+/, '');
		text = head + block + tail;
	} else {
		text = text ? `${text.replace(/\n*$/, '')}\n\n${block}` : block;
	}
	fs.writeFileSync(file, text);
}

async function main() {
	need('BALENA_SIM_BIN', SIM_BIN);
	const cfg = {
		runs: Number(opt('--runs', '11')),
		coldRuns: Number(opt('--cold-runs', '5')),
		latencyMs: Number(opt('--latency-ms', '50')),
		services: opt('--services', '10,50').split(',').map(Number),
		write: opt('--write', null),
		results: opt('--results', null),
		targets: { 10: 0.5, 50: 0.35 },
	};
	const log = (s) => console.error(s);
	const loadStart = os.loadavg().map((x) => x.toFixed(2)).join(' / ');
	const ours = await loadOurs();
	const theirs = loadTheirs();
	const rows = [];
	for (const n of cfg.services) {
		log(`${n} services`);
		rows.push(await measureServices(n, cfg, ours, theirs, log));
	}
	const require = createRequire(`${THEIRS}/node_modules/`);
	const cpu = os.cpus()[0]?.model ?? 'unknown';
	const meta = {
		date: new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC',
		nproc: os.availableParallelism(),
		cpu,
		os: `${os.type()} ${os.release()} ${os.arch()}`,
		commit: process.env.BRU_BENCH_COMMIT ?? 'unknown',
		loadStart,
		loadEnd: os.loadavg().map((x) => x.toFixed(2)).join(' / '),
		oursVersion: JSON.parse(fs.readFileSync(`${OURS}/package.json`, 'utf8')).version,
		theirsVersion: require('@balena/release-update/package.json').version,
		sdkVersion: require(require.resolve('balena-sdk/package.json', { paths: [require.resolve('@balena/release-update')] })).version,
		oursSize: process.env.BRU_BENCH_OURS_SIZE,
		theirsSize: process.env.BRU_BENCH_THEIRS_SIZE,
	};
	const section = report(cfg, rows, meta);
	process.stdout.write(section);
	if (cfg.results) fs.writeFileSync(cfg.results, JSON.stringify({ cfg, meta, rows }, null, 1));
	if (cfg.write) {
		writeSection(cfg.write, section);
		log(`wrote the section to ${cfg.write}`);
	}
}

// Last: every declaration above is initialised by now.
if (args[0] === '--first-result') await firstResult();
else await main();
