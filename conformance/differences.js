// The deliberate differences between this tool's JSON and the npm tool's
// (@balena/release-update 0.1.0), written as code: one function per
// difference that shows on stdout, each pointing at its bullet in README.md
// ("## Differences from the npm tool", numbered, and the additive keys of
// "### Output"). dropin.js uses it to prove the drop-in promise: once these
// are applied, both tools print the same JSON for the same scenario.
//
// Two directions:
// - `expected(mode, npmRuns, context)` turns what the npm tool printed into
//   what this tool should print: its keys plus the additive keys that follow
//   from the npm tool's output (`change`);
// - `comparable(ours, context)` checks the additive keys that do not follow
//   from it (`delta_failure`, `removed_services`, the `*size_unknown` flags)
//   and removes them.
// Anything that still differs is not a documented difference.
'use strict';

const util = require('util');

const STATUS_ORDER = ['pending', 'preparing', 'ready'];

// Every numbered bullet of README.md's list, with its opening words (so a
// renumbered or new bullet is noticed) and either the function below that
// applies it (`fn`) or why it cannot show on stdout in the compared runs
// (`noEffect`: the same valid arguments, no faults, every run ends with
// exit 0 inside its timeout).
const BULLETS = {
	1: { opens: '`apiUrl` (and `balenaUrl`) are honoured', noEffect: 'stdout unchanged: the npm tool is pointed at the simulator by preload.js' },
	2: { opens: 'Services removed by the target release are reported', fn: removedServices },
	3: { opens: 'An unchanged service', fn: unchangedServices },
	4: {
		opens: 'A successful delta wins over a newer running one',
		noEffect: 'cannot arise: neither tool triggers a pair that already has a successful delta, and the npm tool never triggers twice',
	},
	5: { opens: '`--prepare` prints the state after triggering', fn: stateAfterTriggering },
	6: { opens: 'A delta that fails or goes stale while waiting', noEffect: 'cannot arise: every delta built during a run succeeds (the demo scripts no failure)' },
	7: { opens: '502 and 504 from the delta server', noEffect: 'cannot arise: no faults; the delta server answers 504 or 200' },
	8: { opens: '`--timeout` is a hard deadline', noEffect: 'stdout unchanged when the run ends before its timeout' },
	9: { opens: 'A flag given twice is an error', noEffect: 'stdout unchanged: every argument used is valid for both tools' },
	10: { opens: 'A commit prefix is resolved within', noEffect: 'stdout unchanged: both tools resolve the demo prefixes to the same releases' },
	11: { opens: 'Sizes are exact unsigned 64-bit integers', fn: byteOrder },
	12: { opens: 'One information round costs', noEffect: 'stdout unchanged (requests and polling only)' },
	13: { opens: 'A session token is never refreshed', noEffect: 'stdout unchanged (the demo token is not a JWT)' },
	14: { opens: 'Error messages are this tool', noEffect: 'stdout unchanged (stderr only; every run ends with exit 0)' },
	15: { opens: 'A changed service that the target release labels `delete-then-download`', fn: deleteThenDownload },
};

// --- the npm tool's output, turned into this tool's -----------------------

// Bullet 5: "`--prepare` prints the state after triggering, read again."
// The npm tool prints the state it read before triggering. The state after
// triggering is what the npm tool itself reads when it runs again, without
// flags, on the same simulator right after its `--prepare`.
function stateAfterTriggering(mode, npmRuns, notes) {
	if (mode !== 'prepare') return npmRuns.printed;
	if (!util.isDeepStrictEqual(npmRuns.printed, npmRuns.readAgain)) notes.push('5: the state read again after triggering');
	return npmRuns.readAgain;
}

// Bullet 3: "An unchanged service (the same image, or another image with the
// same `content_hash` …) is `ready`, triggers no delta and adds 0 bytes".
// The npm tool reports such a service `pending` (or `preparing`, or `ready`
// through a delta from the image to itself) and counts its delta or image in
// the estimate; the overall status and the estimate are worked out again.
function unchangedServices(report, notes) {
	const changed = [];
	for (const su of report.is_produced_by__service_update) {
		if (changeOf(su) !== 'unchanged') continue;
		const { is_produced_by__delta: delta, ...image } = su.produces__image;
		if (su.status !== 'ready' || delta) changed.push(su.service_name);
		su.status = 'ready';
		su.produces__image = image;
	}
	if (changed.length === 0) return report;
	notes.push(`3: unchanged ${changed.join(', ')}`);
	return withTotals(report, contribution);
}

// Bullet 15: "A changed service that the target release labels
// `delete-then-download` is `ready` with no delta, triggers none and counts
// its whole image". The npm tool reports the state of that service's delta
// and counts the delta once it is ready.
function deleteThenDownload(report, compositions, notes) {
	const composition = compositions?.get(report.produces__release.id);
	const pulled = [];
	for (const su of report.is_produced_by__service_update) {
		if (changeOf(su) !== 'changed' || labelOf(composition, su.service_name) !== 'delete-then-download') continue;
		const { is_produced_by__delta: _, ...image } = su.produces__image;
		su.status = 'ready';
		su.produces__image = image;
		pulled.push(su.service_name);
	}
	if (pulled.length === 0) return report;
	notes.push(`15: pulled whole ${pulled.join(', ')}`);
	return withTotals(report, contribution);
}

// A service's part of the estimate once bullets 3 and 15 are applied: 0 when
// unchanged, else the npm tool's rule (reference-behaviour.md §3), the delta
// when one is shown, else the whole target image.
function contribution(su) {
	if (changeOf(su) === 'unchanged') return 0;
	return su.produces__image.is_produced_by__delta?.size ?? su.produces__image.image_size;
}

// Bullet 11: "service order is the byte order of `service_name` (the npm
// tool uses ICU collation …)". Sizes need nothing here: both outputs are read
// with JSON.parse, which rounds this tool's exact sizes to doubles as the npm
// tool's `parseInt` does. (No demo size comes near 2^53; above it, dropin.js's
// format check would flag this tool's output, which JSON.stringify cannot
// reproduce.)
function byteOrder(report, notes) {
	const services = report.is_produced_by__service_update;
	const sorted = [...services].sort((a, b) => Buffer.compare(Buffer.from(a.service_name), Buffer.from(b.service_name)));
	if (sorted.some((su, i) => su !== services[i])) {
		notes.push(`11: byte order ${sorted.map((su) => su.service_name).join(', ')} (ICU: ${services.map((su) => su.service_name).join(', ')})`);
	}
	report.is_produced_by__service_update = sorted;
	return report;
}

// README "### Output": "`change` on each service: `new`, `changed` or
// `unchanged`", after the npm tool's keys. It follows from the images the
// npm tool prints: no source image is new; the same image id, or the same
// `content_hash`, is unchanged (bullet 3).
function changeOf(su) {
	const from = su.originates_from__image;
	const to = su.produces__image;
	if (!from) return 'new';
	if (from.id === to.id) return 'unchanged';
	if (from.content_hash != null && from.content_hash === to.content_hash) return 'unchanged';
	return 'changed';
}
function changeKey(report) {
	for (const su of report.is_produced_by__service_update) su.change = changeOf(su);
	return report;
}

// Not a README difference but a property of the simulator: a delta built
// during the run gets the next free row id in arrival order, and its
// location ends in `:delta-<16 hex>` derived from that id. The npm tool
// triggers more deltas than this tool (bullet 3) and both send their
// triggers concurrently, so new rows get different ids in the two runs.
// Rows that existed before the run are compared as they are; for new ones
// the location must still be the target image's location plus a delta tag.
function newDeltaRows(report, initialDeltas) {
	for (const su of report.is_produced_by__service_update ?? []) {
		const delta = su.produces__image?.is_produced_by__delta;
		if (!delta || initialDeltas.has(delta.id)) continue;
		const prefix = `${su.produces__image.is_stored_at__image_location}:delta-`;
		const location = delta.is_stored_at__location;
		if (typeof location === 'string' && location.startsWith(prefix) && /^[0-9a-f]{16}$/.test(location.slice(prefix.length))) {
			delta.id = '<new row>';
			delta.is_stored_at__location = `${prefix}<new row>`;
		}
	}
	return report;
}

// The overall status and the estimate (only when `ready`), from the
// services, in the npm tool's key order.
function withTotals(report, contribution) {
	const services = report.is_produced_by__service_update;
	let overall = 'ready';
	for (const su of services) {
		if (STATUS_ORDER.indexOf(su.status) < STATUS_ORDER.indexOf(overall)) overall = su.status;
	}
	const { estimated_total_payload_size: _, overall_status: __, ...rest } = report;
	const out = { ...rest, overall_status: overall };
	if (overall === 'ready') out.estimated_total_payload_size = services.reduce((sum, su) => sum + contribution(su), 0);
	return out;
}

function expected(mode, npmRuns, { initialDeltas, compositions, notes }) {
	let report = structuredClone(stateAfterTriggering(mode, npmRuns, notes));
	report = unchangedServices(report, notes);
	report = deleteThenDownload(report, compositions, notes);
	report = byteOrder(report, notes);
	report = changeKey(report);
	return newDeltaRows(report, initialDeltas);
}

// --- this tool's output, without the additive keys the npm tool cannot show

// README "### Output": "`delta_failure` on a service whose delta failed or
// was refused by the delta server". Such a service has no delta to use, so
// it can only be a changed service that is `pending`; a row that was there
// before the run must be a failed one, with the same message.
function deltaFailure(report, initialDeltas, problems) {
	for (const su of report.is_produced_by__service_update) {
		if (!('delta_failure' in su)) continue;
		const failure = su.delta_failure;
		if (su.status !== 'pending' || su.change !== 'changed') {
			problems.push(`${su.service_name}: delta_failure on a service that is ${su.status} and ${su.change}`);
		}
		const row = initialDeltas.get(failure?.delta_id);
		if (row && (['success', 'running'].includes(row.status) || (failure.error_message ?? null) !== row.error_message)) {
			problems.push(`${su.service_name}: delta_failure ${JSON.stringify(failure)} for row ${JSON.stringify(row)}`);
		}
		delete su.delta_failure;
	}
	return report;
}

// README "### Output": "`size_unknown: true` on an image or delta whose size
// the API does not know (the npm-compatible size key then reads 0), and
// `payload_size_unknown: true` next to the estimate when it counts such a size".
function sizeUnknown(report, problems) {
	const image = (name, img) => {
		if (!img) return;
		if ('size_unknown' in img) {
			if (img.size_unknown !== true || img.image_size !== 0) problems.push(`${name}: size_unknown ${img.size_unknown} with image_size ${img.image_size}`);
			delete img.size_unknown;
		}
		const delta = img.is_produced_by__delta;
		if (delta && 'size_unknown' in delta) {
			if (delta.size_unknown !== true || delta.size !== 0) problems.push(`${name}: delta size_unknown ${delta.size_unknown} with size ${delta.size}`);
			delete delta.size_unknown;
		}
	};
	for (const su of report.is_produced_by__service_update) {
		image(su.service_name, su.originates_from__image);
		image(su.service_name, su.produces__image);
	}
	if ('payload_size_unknown' in report) {
		if (report.payload_size_unknown !== true || !('estimated_total_payload_size' in report)) {
			problems.push(`payload_size_unknown ${report.payload_size_unknown} with estimate ${report.estimated_total_payload_size}`);
		}
		delete report.payload_size_unknown;
	}
	return report;
}

// README "### Exact download sizes": `pull_size`, `download_size`,
// `download_size_unknown` and `download_size_is_upper_bound` on each service,
// `estimated_download_size`, `download_size_unknown` and
// `download_size_is_upper_bound` on the result. Sizes are whole numbers,
// never null; an unknown download has no sizes; an unchanged service
// downloads 0; the result's figure is written exactly when every service's
// is. A known download is an upper bound exactly when the service is changed
// and awaits its delta: none ready, its strategy not `delete-then-download`
// (which uses no delta) and no delta server refusal (`http_status`); the
// result's figure is one exactly when a service's is.
function downloadSizes(report, problems) {
	const size = (v) => Number.isSafeInteger(v) && v >= 0;
	let allKnown = true;
	let any = false;
	let anyUpperBound = false;
	for (const su of report.is_produced_by__service_update) {
		const name = su.service_name;
		if ('download_size_is_upper_bound' in su) {
			if (su.download_size_is_upper_bound !== true || !('download_size' in su)) {
				problems.push(`${name}: download_size_is_upper_bound ${su.download_size_is_upper_bound} with download_size ${su.download_size}`);
			}
			anyUpperBound = true;
		}
		if ('download_size' in su) {
			const awaitsDelta =
				su.change === 'changed' &&
				!su.produces__image?.is_produced_by__delta &&
				su.update_strategy !== 'delete-then-download' &&
				su.delta_failure?.http_status == null;
			if (awaitsDelta !== ('download_size_is_upper_bound' in su)) {
				problems.push(
					`${name}: ${su.change}, ${su.produces__image?.is_produced_by__delta ? 'a delta ready' : 'no delta ready'}, ` +
						`strategy ${su.update_strategy ?? 'default'}, but download_size_is_upper_bound ${su.download_size_is_upper_bound ?? 'absent'}`,
				);
			}
		}
		delete su.download_size_is_upper_bound;
		const keys = ['pull_size', 'download_size', 'download_size_unknown'].filter((k) => k in su);
		if (keys.length === 0) {
			allKnown = false;
			continue;
		}
		any = true;
		if (su.download_size_unknown !== undefined) {
			if (su.download_size_unknown !== true || 'download_size' in su || 'pull_size' in su) {
				problems.push(`${name}: download_size_unknown ${su.download_size_unknown} with sizes ${su.pull_size}/${su.download_size}`);
			}
			allKnown = false;
		} else if (!size(su.download_size) || ('pull_size' in su && !size(su.pull_size))) {
			problems.push(`${name}: download sizes ${su.pull_size}/${su.download_size}`);
		} else if (su.change === 'unchanged' && su.download_size !== 0) {
			problems.push(`${name}: unchanged but download_size ${su.download_size}`);
		}
		for (const k of keys) delete su[k];
	}
	const top = ['estimated_download_size', 'download_size_unknown'].filter((k) => k in report);
	if (any && allKnown && !(size(report.estimated_download_size) && !('download_size_unknown' in report))) {
		problems.push(`every download is known but the result has ${JSON.stringify(top.map((k) => [k, report[k]]))}`);
	}
	if (any && !allKnown && (report.download_size_unknown !== true || 'estimated_download_size' in report)) {
		problems.push(`a download is unknown but the result has ${JSON.stringify(top.map((k) => [k, report[k]]))}`);
	}
	if (!any && top.length > 0) problems.push(`download keys on the result only: ${top.join(', ')}`);
	const estimated = 'estimated_download_size' in report;
	for (const k of top) delete report[k];
	const upper = report.download_size_is_upper_bound;
	if (upper !== undefined && upper !== true) problems.push(`download_size_is_upper_bound ${JSON.stringify(upper)} on the result`);
	if ((upper === true) !== (anyUpperBound && estimated)) {
		problems.push(`the result's download_size_is_upper_bound is ${upper ?? 'absent'}, a service's is ${anyUpperBound ? 'true' : 'absent'}`);
	}
	delete report.download_size_is_upper_bound;
	return report;
}

// Bullet 2 and README "### Output": "`removed_services`: services of the
// source release that the target drops". None of them is a target service,
// and an image the npm tool printed elsewhere must read the same here.
function removedServices(report, npmImages, problems) {
	const removed = report.removed_services;
	if (removed === undefined) return report;
	const targets = new Set(report.is_produced_by__service_update.map((su) => su.service_name));
	if (!Array.isArray(removed)) {
		problems.push(`removed_services is not an array: ${JSON.stringify(removed)}`);
	} else {
		for (const r of removed) {
			const known = npmImages.get(r?.originates_from__image?.id);
			if (typeof r?.service_name !== 'string' || typeof r?.originates_from__image?.id !== 'number' || targets.has(r.service_name)) {
				problems.push(`removed_services holds ${JSON.stringify(r)}`);
			} else if (known && !util.isDeepStrictEqual(known, withoutSizeUnknown(r.originates_from__image))) {
				problems.push(`removed service ${r.service_name}: image ${JSON.stringify(r.originates_from__image)}, the npm tool printed ${JSON.stringify(known)}`);
			}
		}
	}
	delete report.removed_services;
	return report;
}

// README "### Output": "`update_strategy` on a service, and on a removed
// service: its `io.balena.update.strategy` label". Only the strategies
// other than the default `download-then-kill` are written, and each must be
// the label of that service in the target release's composition (for a
// removed service: the source release's), when the release is known.
const STRATEGIES = ['kill-then-download', 'delete-then-download', 'hand-over'];
function labelOf(composition, service) {
	const labels = composition?.services?.[service]?.labels;
	if (Array.isArray(labels)) {
		const entry = labels.find((l) => typeof l === 'string' && l.split('=')[0].trim() === 'io.balena.update.strategy');
		return entry?.slice(entry.indexOf('=') + 1).trim();
	}
	const value = labels?.['io.balena.update.strategy'];
	return typeof value === 'string' ? value.trim() : undefined;
}
function updateStrategies(report, compositions, problems) {
	const check = (what, holder, releaseId) => {
		const strategy = holder.update_strategy;
		if (strategy !== undefined && !STRATEGIES.includes(strategy)) {
			problems.push(`${what}: update_strategy ${JSON.stringify(strategy)}`);
		}
		if (compositions?.has(releaseId)) {
			const label = labelOf(compositions.get(releaseId), holder.service_name);
			const wanted = STRATEGIES.includes(label) ? label : undefined;
			if (strategy !== wanted) {
				problems.push(`${what}: update_strategy ${strategy ?? 'absent'}, release ${releaseId}'s composition labels it ${label ?? '(no label)'}`);
			}
		}
		delete holder.update_strategy;
	};
	for (const su of report.is_produced_by__service_update) check(su.service_name, su, report.produces__release?.id);
	if (Array.isArray(report.removed_services)) {
		for (const r of report.removed_services) {
			if (r && typeof r === 'object') check(`removed service ${r.service_name}`, r, report.originates_from__release?.id);
		}
	}
	return report;
}

// README "### Output": "`devices_without_deltas` and
// `download_size_without_deltas` on a fleet's transition". Only on a fleet
// transition (`fleet`: its device count and how many of its devices the
// scenario's configuration variables set to pull); the count is written
// when not 0, and the size (whole bytes) only beside it, whenever the
// result's own download figure is known.
function fleetDeltaSettings(report, fleet, problems) {
	const count = report.devices_without_deltas;
	const size = report.download_size_without_deltas;
	if (!fleet) {
		if (count !== undefined || size !== undefined) problems.push(`devices_without_deltas ${count} / download_size_without_deltas ${size} outside a fleet`);
	} else {
		const wanted = Math.min(fleet.devicesWithoutDeltas, fleet.deviceCount);
		if ((count ?? 0) !== wanted || count === 0) {
			problems.push(`devices_without_deltas ${count ?? 'absent'}, the scenario has ${wanted} of ${fleet.deviceCount} devices with deltas off`);
		}
		if (size !== undefined && !(count > 0 && Number.isSafeInteger(size) && size >= 0)) {
			problems.push(`download_size_without_deltas ${JSON.stringify(size)} with devices_without_deltas ${count}`);
		}
		if (count > 0 && 'estimated_download_size' in report && size === undefined) {
			problems.push(`devices_without_deltas ${count} and estimated_download_size, but no download_size_without_deltas`);
		}
	}
	delete report.devices_without_deltas;
	delete report.download_size_without_deltas;
	return report;
}

function comparable(ours, { initialDeltas, npmImages, compositions, fleet, problems }) {
	let report = structuredClone(ours);
	if (!Array.isArray(report?.is_produced_by__service_update)) return report;
	// Before the keys it reads (delta_failure, update_strategy) are removed.
	report = fleetDeltaSettings(report, fleet, problems);
	report = downloadSizes(report, problems);
	report = deltaFailure(report, initialDeltas, problems);
	report = sizeUnknown(report, problems);
	report = updateStrategies(report, compositions, problems);
	report = removedServices(report, npmImages, problems);
	return newDeltaRows(report, initialDeltas);
}

function withoutSizeUnknown({ size_unknown: _, ...image }) {
	return image;
}

// Every image the npm tool printed (without its delta), by id.
function imagesOf(report, into = new Map()) {
	for (const su of report?.is_produced_by__service_update ?? []) {
		for (const img of [su.originates_from__image, su.produces__image]) {
			if (!img) continue;
			const { is_produced_by__delta: _, ...plain } = img;
			into.set(plain.id, plain);
		}
	}
	return into;
}

// The numbered bullets of README.md's "## Differences from the npm tool".
function readmeBullets(readme) {
	const section = readme.split(/^## Differences from the npm tool$/m)[1]?.split(/^## /m)[0];
	if (!section) return null;
	const bullets = {};
	for (const m of section.matchAll(/^(\d+)\. ([^\n]*)/gm)) bullets[m[1]] = m[2];
	return bullets;
}

// Whether BULLETS accounts for every bullet of the README, and for no other.
function checkBullets(readme) {
	const found = readmeBullets(readme);
	if (!found) return ['README.md has no "## Differences from the npm tool" section'];
	const problems = [];
	for (const [n, text] of Object.entries(found)) {
		const known = BULLETS[n];
		if (!known) problems.push(`README bullet ${n} is not accounted for in differences.js: ${text}`);
		else if (!text.startsWith(known.opens)) problems.push(`README bullet ${n} now reads "${text}", differences.js expects "${known.opens}…"`);
	}
	for (const n of Object.keys(BULLETS)) {
		if (!(n in found)) problems.push(`differences.js accounts for bullet ${n}, which README.md does not have`);
	}
	return problems;
}

module.exports = { BULLETS, expected, comparable, imagesOf, checkBullets };
