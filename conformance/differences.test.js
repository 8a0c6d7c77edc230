// Tests of differences.js on small hand-written outputs: each documented
// difference is applied, and a difference that is not documented survives.
//
// usage: node --test conformance/differences.test.js
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const test = require('node:test');
const util = require('node:util');
const differences = require('./differences');

const image = (id, hash, size, delta) => ({
	id,
	is_stored_at__image_location: `registry/${id}`,
	content_hash: hash,
	image_size: size,
	...(delta && { is_produced_by__delta: delta }),
});
const delta = (id, dest, size) => ({ id, version: 3, is_stored_at__location: `registry/${dest}:delta-0123456789abcdef`, size });
const report = (services, overall, payload) => ({
	originates_from__release: { id: 1, commit: 'aaaaaaa' },
	produces__release: { id: 2, commit: 'bbbbbbb' },
	is_produced_by__service_update: services,
	overall_status: overall,
	...(payload !== undefined && { estimated_total_payload_size: payload }),
});
const context = () => ({
	initialDeltas: new Map([[500, { id: 500, status: 'success', error_message: null }], [499, { id: 499, status: 'failed', error_message: 'no space' }]]),
	npmImages: new Map([[13, image(13, 'h-o', 9)]]),
	notes: [],
	problems: [],
});

// What the npm tool prints once every delta, self-deltas included, is built:
// `api` new, `main` changed (delta 500, there before the run), `proxy` the
// same content hash under a new id, `worker` the same image (delta 502, new).
const npmReady = () =>
	report(
		[
			{ service_name: 'api', status: 'ready', produces__image: image(20, 'h-api', 1000) },
			{ service_name: 'main', status: 'ready', originates_from__image: image(10, 'h1', 300), produces__image: image(21, 'h2', 310, delta(500, 21, 30)) },
			{ service_name: 'proxy', status: 'ready', originates_from__image: image(11, 'h-p', 50), produces__image: image(22, 'h-p', 50, delta(501, 22, 4)) },
			{ service_name: 'worker', status: 'ready', originates_from__image: image(12, 'h-w', 70), produces__image: image(12, 'h-w', 70, delta(502, 12, 4)) },
		],
		'ready',
		1000 + 30 + 4 + 4,
	);
// What this tool prints for the same state.
const oursReady = () => {
	const r = report(
		[
			{ service_name: 'api', status: 'ready', produces__image: image(20, 'h-api', 1000), change: 'new' },
			{ service_name: 'main', status: 'ready', originates_from__image: image(10, 'h1', 300), produces__image: image(21, 'h2', 310, delta(500, 21, 30)), change: 'changed' },
			{ service_name: 'proxy', status: 'ready', originates_from__image: image(11, 'h-p', 50), produces__image: image(22, 'h-p', 50), change: 'unchanged' },
			{ service_name: 'worker', status: 'ready', originates_from__image: image(12, 'h-w', 70), produces__image: image(12, 'h-w', 70), change: 'unchanged' },
		],
		'ready',
		1030,
	);
	r.removed_services = [{ service_name: 'old', originates_from__image: image(13, 'h-o', 9) }];
	return r;
};

test('unchanged services are ready without a delta and count 0 bytes (bullet 3)', () => {
	const ctx = context();
	const expected = differences.expected('wait', { printed: npmReady() }, ctx);
	assert.deepEqual(expected, differences.comparable(oursReady(), ctx));
	assert.deepEqual(ctx.notes, ['3: unchanged proxy, worker']);
	assert.deepEqual(ctx.problems, []);
	assert.deepEqual(Object.keys(expected), ['originates_from__release', 'produces__release', 'is_produced_by__service_update', 'overall_status', 'estimated_total_payload_size']);
});

test('a pending unchanged service no longer holds back the overall status (bullet 3)', () => {
	const npm = npmReady();
	npm.is_produced_by__service_update[3].status = 'pending';
	delete npm.is_produced_by__service_update[3].produces__image.is_produced_by__delta;
	npm.overall_status = 'pending';
	delete npm.estimated_total_payload_size;
	const expected = differences.expected('plain', { printed: npm }, context());
	assert.equal(expected.overall_status, 'ready');
	assert.equal(expected.estimated_total_payload_size, 1030);
});

test('a changed service labelled delete-then-download is ready, whole, without a delta (bullet 15)', () => {
	const labelled = (value) => new Map([[2, { services: { main: { labels: { 'io.balena.update.strategy': value } } } }]]);
	// The npm tool waited for main's delta and counted it; while it builds,
	// main holds the overall status back.
	const building = npmReady();
	building.is_produced_by__service_update[1].status = 'preparing';
	delete building.is_produced_by__service_update[1].produces__image.is_produced_by__delta;
	building.overall_status = 'preparing';
	delete building.estimated_total_payload_size;
	for (const npm of [npmReady(), building]) {
		const ctx = { ...context(), compositions: labelled('delete-then-download') };
		const expected = differences.expected('wait', { printed: npm }, ctx);
		const ours = oursReady();
		ours.is_produced_by__service_update[1].produces__image = image(21, 'h2', 310);
		ours.is_produced_by__service_update[1].update_strategy = 'delete-then-download';
		ours.estimated_total_payload_size = 1000 + 310;
		assert.deepEqual(expected, differences.comparable(ours, ctx));
		assert.deepEqual(ctx.problems, []);
		assert.ok(ctx.notes.includes('15: pulled whole main'), ctx.notes.join('; '));
	}
	// Another label keeps the delta.
	const ctx = { ...context(), compositions: labelled('kill-then-download') };
	const expected = differences.expected('wait', { printed: npmReady() }, ctx);
	assert.equal(expected.estimated_total_payload_size, 1000 + 30);
	assert.ok(!ctx.notes.some((n) => n.startsWith('15:')));
});

test('--prepare compares with the state read again after triggering (bullet 5)', () => {
	const before = npmReady();
	const after = npmReady();
	after.is_produced_by__service_update[1].produces__image = image(21, 'h2', 310);
	after.is_produced_by__service_update[1].status = 'preparing';
	const ctx = context();
	const expected = differences.expected('prepare', { printed: before, readAgain: after }, ctx);
	assert.equal(expected.overall_status, 'preparing');
	assert.equal(expected.estimated_total_payload_size, undefined);
	assert.match(ctx.notes[0], /^5: /);
	// Plain runs have nothing to read again.
	assert.equal(differences.expected('plain', { printed: before }, context()).overall_status, 'ready');
});

test('services follow the byte order of their names (bullet 11)', () => {
	const names = ['a', 'a-b', 'a_b', 'B', 'é'];
	const npm = report(
		names.map((name, i) => ({ service_name: name, status: 'ready', produces__image: image(i + 1, `h${i}`, 1) })),
		'ready',
		names.length,
	);
	const ctx = context();
	const expected = differences.expected('plain', { printed: npm }, ctx);
	assert.deepEqual(
		expected.is_produced_by__service_update.map((su) => su.service_name),
		['B', 'a', 'a-b', 'a_b', 'é'],
	);
	assert.match(ctx.notes[0], /^11: /);
});

test('`change` follows from the images the npm tool prints', () => {
	const expected = differences.expected('wait', { printed: npmReady() }, context());
	assert.deepEqual(
		expected.is_produced_by__service_update.map((su) => su.change),
		['new', 'changed', 'unchanged', 'unchanged'],
	);
});

test('new delta rows are compared without their row id', () => {
	const npm = npmReady();
	const ours = oursReady();
	npm.is_produced_by__service_update[1].produces__image.is_produced_by__delta = delta(503, 21, 30);
	ours.is_produced_by__service_update[1].produces__image.is_produced_by__delta = delta(501, 21, 30);
	const ctx = context();
	assert.deepEqual(differences.expected('wait', { printed: npm }, ctx), differences.comparable(ours, ctx));
	// A delta stored elsewhere than the target image is still a difference.
	ours.is_produced_by__service_update[1].produces__image.is_produced_by__delta.is_stored_at__location = 'registry/99:delta-0123456789abcdef';
	assert.notDeepEqual(differences.expected('wait', { printed: npm }, ctx), differences.comparable(ours, ctx));
	// So is another id for a row that was there before the run.
	const old = oursReady();
	old.is_produced_by__service_update[1].produces__image.is_produced_by__delta.id = 499;
	assert.notDeepEqual(differences.expected('wait', { printed: npmReady() }, ctx), differences.comparable(old, ctx));
});

test('additive keys are checked, then left out', () => {
	const ours = oursReady();
	ours.is_produced_by__service_update[1].delta_failure = { delta_id: 7, error_message: 'boom', attempts: 1 };
	ours.is_produced_by__service_update[0].produces__image.size_unknown = true;
	ours.payload_size_unknown = true;
	const ctx = context();
	const comparable = differences.comparable(ours, ctx);
	assert.equal('removed_services' in comparable, false);
	assert.equal('payload_size_unknown' in comparable, false);
	assert.deepEqual(ctx.problems, [
		'main: delta_failure on a service that is ready and changed',
		'api: size_unknown true with image_size 1000',
	]);
	const bad = oursReady();
	bad.removed_services = [{ service_name: 'main', originates_from__image: image(10, 'h1', 300) }];
	const ctx2 = context();
	differences.comparable(bad, ctx2);
	assert.equal(ctx2.problems.length, 1);
	// The removed image must read as the npm tool printed it.
	const moved = oursReady();
	moved.removed_services[0].originates_from__image.image_size = 10;
	const ctx3 = context();
	differences.comparable(moved, ctx3);
	assert.match(ctx3.problems[0], /^removed service old: image/);
});

test('download sizes are checked, then left out', () => {
	const ours = oursReady();
	const services = ours.is_produced_by__service_update;
	services.forEach((su) => Object.assign(su, { pull_size: 5, download_size: su.change === 'unchanged' ? 0 : 5 }));
	ours.estimated_download_size = 10;
	const ctx = context();
	const comparable = differences.comparable(ours, ctx);
	assert.deepEqual(ctx.problems, []);
	assert.equal(JSON.stringify(comparable).includes('download_size'), false);
	assert.equal(JSON.stringify(comparable).includes('pull_size'), false);

	const unknown = oursReady();
	unknown.is_produced_by__service_update.forEach((su) => (su.download_size_unknown = true));
	unknown.download_size_unknown = true;
	const ctx2 = context();
	differences.comparable(unknown, ctx2);
	assert.deepEqual(ctx2.problems, []);

	const bad = oursReady();
	bad.is_produced_by__service_update.forEach((su) => Object.assign(su, { download_size_unknown: true, download_size: 3 }));
	bad.estimated_download_size = 3;
	const ctx3 = context();
	differences.comparable(bad, ctx3);
	assert.equal(ctx3.problems.length, bad.is_produced_by__service_update.length + 1, ctx3.problems.join('\n'));
});

test('an upper-bound download is a changed service awaiting its delta', () => {
	// `main` pending without its delta: its pull is an upper bound.
	const awaiting = () => {
		const ours = oursReady();
		const main = ours.is_produced_by__service_update[1];
		main.status = 'pending';
		delete main.produces__image.is_produced_by__delta;
		ours.is_produced_by__service_update.forEach((su) => Object.assign(su, { pull_size: 5, download_size: su.change === 'unchanged' ? 0 : 5 }));
		ours.estimated_download_size = 10;
		return ours;
	};
	const problems = (ours) => {
		const ctx = context();
		const comparable = differences.comparable(ours, ctx);
		assert.equal(JSON.stringify(comparable).includes('upper_bound'), false);
		return ctx.problems;
	};
	const good = awaiting();
	good.is_produced_by__service_update[1].download_size_is_upper_bound = true;
	good.download_size_is_upper_bound = true;
	assert.deepEqual(problems(good), []);
	// Not flagged, on the service or on the result.
	assert.equal(problems(awaiting()).length, 1);
	const noTop = awaiting();
	noTop.is_produced_by__service_update[1].download_size_is_upper_bound = true;
	assert.equal(problems(noTop).length, 1);
	// delete-then-download uses no delta, a refused delta is not awaited.
	const deleted = awaiting();
	deleted.is_produced_by__service_update[1].update_strategy = 'delete-then-download';
	assert.deepEqual(problems(deleted), []);
	const refused = awaiting();
	refused.is_produced_by__service_update[1].delta_failure = { error_message: 'refused', attempts: 1, http_status: 400 };
	assert.deepEqual(problems(refused), []);
	// Flagged where a delta is ready, or with no size.
	const ready = oursReady();
	ready.is_produced_by__service_update.forEach((su) => Object.assign(su, { pull_size: 5, download_size: 5, download_size_is_upper_bound: true }));
	ready.is_produced_by__service_update[2].download_size = 0;
	ready.is_produced_by__service_update[3].download_size = 0;
	ready.estimated_download_size = 10;
	ready.download_size_is_upper_bound = true;
	assert.equal(problems(ready).length, 4);
});

test('update strategies follow the releases\' compositions', () => {
	const compositions = new Map([
		[2, { services: { worker: { labels: { 'io.balena.update.strategy': 'kill-then-download' } }, main: { labels: ['io.balena.update.strategy=download-then-kill'] } } }],
		[1, { services: { old: { labels: ['io.balena.update.strategy=delete-then-download'] } } }],
	]);
	const problems = (change) => {
		const ours = oursReady();
		ours.is_produced_by__service_update[3].update_strategy = 'kill-then-download';
		ours.removed_services[0].update_strategy = 'delete-then-download';
		change(ours);
		const ctx = { ...context(), compositions };
		const comparable = differences.comparable(ours, ctx);
		assert.equal(JSON.stringify(comparable).includes('update_strategy'), false);
		return ctx.problems;
	};
	assert.deepEqual(problems(() => {}), []);
	assert.equal(problems((r) => delete r.is_produced_by__service_update[3].update_strategy).length, 1);
	assert.equal(problems((r) => (r.is_produced_by__service_update[1].update_strategy = 'download-then-kill')).length, 2);
	assert.equal(problems((r) => (r.removed_services[0].update_strategy = 'hand-over')).length, 1);
});

test('devices without deltas appear on fleet transitions only, counted as the scenario says', () => {
	const problems = (change, fleet) => {
		const ours = oursReady();
		ours.is_produced_by__service_update.forEach((su) => Object.assign(su, { pull_size: 5, download_size: su.change === 'unchanged' ? 0 : 5 }));
		ours.estimated_download_size = 10;
		change(ours);
		const ctx = { ...context(), fleet };
		const comparable = differences.comparable(ours, ctx);
		assert.equal(JSON.stringify(comparable).includes('without_deltas'), false);
		return ctx.problems;
	};
	const withOne = (r) => Object.assign(r, { devices_without_deltas: 1, download_size_without_deltas: 40 });
	assert.deepEqual(problems(withOne, { deviceCount: 2, devicesWithoutDeltas: 1 }), []);
	assert.deepEqual(problems(() => {}, { deviceCount: 2, devicesWithoutDeltas: 0 }), []);
	assert.equal(problems(withOne, undefined).length, 1);
	assert.equal(problems(() => {}, { deviceCount: 2, devicesWithoutDeltas: 1 }).length, 1);
	assert.equal(problems((r) => (r.devices_without_deltas = 1), { deviceCount: 2, devicesWithoutDeltas: 1 }).length, 1);
	assert.equal(problems(withOne, { deviceCount: 3, devicesWithoutDeltas: 2 }).length, 1);
});

test('a delta failure names a failed row with its message', () => {
	const failure = (f) => {
		const ours = oursReady();
		const main = ours.is_produced_by__service_update[1];
		main.status = 'pending';
		delete main.produces__image.is_produced_by__delta;
		main.delta_failure = f;
		const ctx = context();
		differences.comparable(ours, ctx);
		return ctx.problems;
	};
	assert.deepEqual(failure({ delta_id: 499, error_message: 'no space', attempts: 0 }), []);
	assert.deepEqual(failure({ delta_id: 777, error_message: 'built during the run', attempts: 1 }), []);
	assert.deepEqual(failure({ error_message: 'refused (400): no', attempts: 1, http_status: 400 }), []);
	assert.equal(failure({ delta_id: 499, error_message: 'other', attempts: 0 }).length, 1);
	assert.equal(failure({ delta_id: 500, attempts: 0 }).length, 1);
});

test('a difference the README does not document survives', () => {
	const ctx = context();
	const expected = differences.expected('wait', { printed: npmReady() }, ctx);
	for (const change of [
		(r) => (r.is_produced_by__service_update[1].status = 'pending'),
		(r) => (r.estimated_total_payload_size += 1),
		(r) => (r.is_produced_by__service_update[0].produces__image.image_size = '1000'),
		(r) => (r.produces__release.commit = 'bbbbbbc'),
		(r) => r.is_produced_by__service_update.reverse(),
		(r) => (r.extra = 1),
	]) {
		const ours = oursReady();
		change(ours);
		assert.equal(util.isDeepStrictEqual(expected, differences.comparable(ours, ctx)), false, change.toString());
	}
});

test('every README difference is accounted for, and only those', () => {
	const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
	assert.deepEqual(differences.checkBullets(readme), []);
	const last = Math.max(...Object.keys(differences.BULLETS).map(Number));
	const added = readme.replace(new RegExp(`^${last}\\. .*$`, 'm'), (line) => `${line}\n${last + 1}. Something new.`);
	assert.match(differences.checkBullets(added)[0], new RegExp(`bullet ${last + 1} is not accounted for`));
	const reworded = readme.replace(/^3\. An unchanged service/m, '3. A service that did not change');
	assert.match(differences.checkBullets(reworded)[0], /bullet 3 now reads/);
});
