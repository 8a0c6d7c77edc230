// The tool triggers its deltas concurrently, so which pending service gets
// which new `delta` row id (and so which `…:delta-<hex>` location, derived
// from the row) depends on arrival order. expected/wait.json is written for
// one order (service order); expected/wait-delta-rows.json lists, per service,
// the location each candidate row id gives. This prints expected/wait.json
// re-labelled with the row ids the actual output used, when those ids are a
// permutation of the candidates; otherwise it prints it unchanged (the byte
// comparison that follows then fails and shows the difference).
//
// usage: node delta-rows.js <expected.json> <delta-rows.json> <actual stdout>
'use strict';

const fs = require('fs');

const [expectedFile, rowsFile, actualFile] = process.argv.slice(2);
const text = fs.readFileSync(expectedFile, 'utf8');
const expected = JSON.parse(text);
if (text !== JSON.stringify(expected, null, 2) + '\n') {
	console.error(`${expectedFile} is not in the tool's own format (JSON.stringify with 2 spaces)`);
	process.exit(2);
}
const rows = JSON.parse(fs.readFileSync(rowsFile, 'utf8'));

let actual;
try {
	actual = JSON.parse(fs.readFileSync(actualFile, 'utf8'));
} catch {
	actual = undefined;
}
const deltaOf = (result, name) =>
	result?.is_produced_by__service_update?.find((su) => su.service_name === name)?.produces__image
		?.is_produced_by__delta;

const names = Object.keys(rows);
const ids = names.map((name) => String(deltaOf(actual, name)?.id));
const candidates = Object.keys(rows[names[0]]);
const permutation =
	new Set(ids).size === ids.length && ids.every((id) => candidates.includes(id)) && candidates.length === ids.length;
if (permutation) {
	names.forEach((name, i) => {
		const delta = deltaOf(expected, name);
		delta.id = Number(ids[i]);
		delta.is_stored_at__location = rows[name][ids[i]];
	});
	console.error(names.map((name, i) => `${name}=${ids[i]}`).join(' '));
} else {
	console.error('new delta rows are not a permutation of the candidates');
}
process.stdout.write(JSON.stringify(expected, null, 2) + '\n');
