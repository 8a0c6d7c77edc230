// Compares the simulator's request journal for one run of the npm tool with
// the requests the tool is known to send (reference-behaviour.md §5,
// platform.md §3). Prints one `PASS …` or `FAIL …` line per check; run.sh
// counts them.
//
// usage: node check-journal.js <mode> <journal.json> <expected.json> <from> <to> <startMs> <endMs>
//   mode      plain | prepare | wait
//   journal   the simulator's journal entries (JSON array, or {entries: [...]})
//   expected  the tool's expected round-1 result (what plain mode prints):
//             image ids and pending services come from it
//   from, to  the release arguments given to the tool (id or commit prefix)
//   startMs, endMs  wall-clock bounds of the run, for the delta lookup's datetime
'use strict';

const fs = require('fs');

const [mode, journalFile, expectedFile, fromArg, toArg, startMs, endMs] = process.argv.slice(2);
if (!['plain', 'prepare', 'wait'].includes(mode) || endMs == null) {
	console.error('usage: node check-journal.js <plain|prepare|wait> <journal.json> <expected.json> <from> <to> <startMs> <endMs>');
	process.exit(2);
}

const pass = (what) => console.log(`PASS ${mode}: ${what}`);
const fail = (what, details) => {
	console.log(`FAIL ${mode}: ${what}`);
	for (const line of details ?? []) console.log(`     ${line}`);
};

// --- the requests the tool sends, decoded, as in platform.md §3 ---

const RELEASE_EXPAND =
	'$expand=release_image($expand=image($select=id;$expand=is_a_build_of__service($select=service_name))),is_created_by__user($select=id,username)';
const isId = (arg) => String(parseInt(arg, 10)) === arg;
const releaseRequest = (arg) =>
	isId(arg)
		? `GET api /v7/release(${arg})?${RELEASE_EXPAND}&$filter=status eq 'success'`
		: `GET api /v7/release?$filter=startswith(commit,'${arg}') and status eq 'success'&${RELEASE_EXPAND}`;
const imageRequest = (id) =>
	`GET api /v7/image(${id})?$select=id,is_stored_at__image_location,content_hash,image_size&$filter=status eq 'success'`;
const DATETIME = '<datetime>';
const deltaLookup = (src, dest) =>
	`GET api /v7/delta?$top=1&$select=id,status,version,is_stored_at__location,size&$filter=version eq 3 and originates_from__image eq ${src} and produces__image eq ${dest} and (status eq 'success' or (status eq 'running' and update_timestamp gt datetime'${DATETIME}'))&$orderby=id desc`;
const trigger = (src, dest) => `GET delta /api/v3/delta?src=${src}&dest=${dest}`;

const expected = JSON.parse(fs.readFileSync(expectedFile, 'utf8'));
const services = expected.is_produced_by__service_update.map((su) => ({
	name: su.service_name,
	status: su.status,
	src: su.originates_from__image?.id,
	dest: su.produces__image.id,
}));

// One info round: the two release GETs, then per target service the target
// image, and for a service also in the source the source image and a lookup.
const round = (from, to) => [
	[releaseRequest(from), releaseRequest(to)],
	services.flatMap((s) =>
		s.src == null ? [imageRequest(s.dest)] : [imageRequest(s.src), imageRequest(s.dest), deltaLookup(s.src, s.dest)],
	),
];

// Every service pending in round 1 that has a source image gets exactly one
// trigger (the tool never re-triggers while waiting).
const triggers = services
	.filter((s) => s.status === 'pending' && s.src != null)
	.map((s) => trigger(s.src, s.dest));

const phases = [];
const addRound = (label, from, to) => {
	const [releases, perService] = round(from, to);
	phases.push({ label: `${label} releases`, requests: releases });
	phases.push({ label: `${label} images and delta lookups`, requests: perService });
};
addRound('round 1', fromArg, toArg);
const readyAtOnce = expected.overall_status === 'ready';
if (mode !== 'plain' && !readyAtOnce) phases.push({ label: 'delta triggers', requests: triggers });
if (mode === 'wait' && !readyAtOnce) {
	// Later rounds ask for the releases by the ids round 1 found.
	addRound('round 2', String(expected.originates_from__release.id), String(expected.produces__release.id));
}

// --- the journal ---

const raw = JSON.parse(fs.readFileSync(journalFile, 'utf8'));
const entries = (Array.isArray(raw) ? raw : raw.entries)
	.filter((e) => e.server !== 'control')
	.sort((a, b) => a.seq - b.seq);

const lo = Number(startMs) - 3 * 60 * 1000 - 1000;
const hi = Number(endMs) - 3 * 60 * 1000 + 1000;
const datetimeProblems = [];
const normalise = (e) => {
	let line = `${e.method} ${e.server} ${e.path}${e.query == null ? '' : `?${e.query}`}`;
	// The lookup's datetime is the client clock minus 3 minutes, in
	// toISOString() form; check it, then mask it.
	line = line.replace(/datetime'([^']*)'/g, (_, value) => {
		const ms = Date.parse(value);
		if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(value) || !(ms >= lo && ms <= hi)) {
			datetimeProblems.push(`datetime '${value}' is not now - 3 min in toISOString() form`);
		}
		return `datetime'${DATETIME}'`;
	});
	return line;
};
const actual = entries.map(normalise);

// --- checks ---

const total = phases.reduce((n, p) => n + p.requests.length, 0);
if (actual.length === total) {
	pass(`${total} requests in total`);
} else {
	fail(`${actual.length} requests in total, expected ${total}`, actual);
}

const multiset = (lines) => {
	const m = new Map();
	for (const l of lines) m.set(l, (m.get(l) ?? 0) + 1);
	return m;
};
let offset = 0;
for (const phase of phases) {
	const got = actual.slice(offset, offset + phase.requests.length);
	offset += phase.requests.length;
	const want = multiset(phase.requests);
	const have = multiset(got);
	const missing = [];
	const extra = [];
	for (const [l, n] of want) for (let i = have.get(l) ?? 0; i < n; i++) missing.push(`missing: ${l}`);
	for (const [l, n] of have) for (let i = want.get(l) ?? 0; i < n; i++) extra.push(`unexpected: ${l}`);
	if (missing.length === 0 && extra.length === 0) {
		pass(`${phase.label}: ${phase.requests.length} requests as expected`);
	} else {
		fail(`${phase.label}: requests differ`, [...missing, ...extra]);
	}
}

const lookups = actual.filter((l) => l.startsWith('GET api /v7/delta?')).length;
if (datetimeProblems.length === 0) {
	pass(`delta lookup datetimes are now - 3 min (${lookups} lookups)`);
} else {
	fail('delta lookup datetimes', datetimeProblems);
}

const triggered = actual.filter((l) => l.startsWith('GET delta '));
const wantTriggers = mode === 'plain' || readyAtOnce ? [] : triggers;
if (JSON.stringify([...triggered].sort()) === JSON.stringify([...wantTriggers].sort())) {
	pass(`no other delta triggers: ${triggered.length} in all, once per pending service`);
} else {
	fail("delta triggers over the whole run differ", [`got: ${JSON.stringify(triggered)}`, `expected: ${JSON.stringify(wantTriggers)}`]);
}

// Every API request answered 200; a trigger may also be answered 504.
const badStatus = entries.filter((e) => !(e.status === 200 || (e.server === 'delta' && e.status === 504)));
if (badStatus.length === 0) {
	pass('every request answered 200 (triggers: 200 or 504)');
} else {
	fail('unexpected status codes', badStatus.map((e) => `${e.status} ${normalise(e)}`));
}
