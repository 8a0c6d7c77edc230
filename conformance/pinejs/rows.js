// Reads a running simulator's rows through its own v7 API, with the columns
// of the model in model/, and prints them as the JSON that server.js seeds
// pinejs with. Ids stay the simulator's, so both servers describe the same
// fleet and the tool's outputs can be compared as they are.
//
// usage: node rows.js <api_url> <token>   (the token is read from stdin when "-")

import { readFileSync } from 'node:fs';

const [apiUrl, tokenArg] = process.argv.slice(2);
if (!apiUrl || !tokenArg) {
	console.error('usage: node rows.js <api_url> <token|->');
	process.exit(2);
}
const token = tokenArg === '-' ? readFileSync(0, 'utf8').trim() : tokenArg;

// resource → the columns server.js writes (every field of model/ but
// created_at/modified_at, which pinejs sets itself, and the computed
// device.should_be_running__release).
export const COLUMNS = {
	application: ['id', 'app_name', 'slug', 'should_be_running__release', 'is_public', 'should_track_latest_release'],
	service: ['id', 'application', 'service_name'],
	release: [
		'id',
		'belongs_to__application',
		'commit',
		'composition',
		'status',
		'semver',
		'is_final',
		'start_timestamp',
		'end_timestamp',
		'update_timestamp',
	],
	image: [
		'id',
		'is_a_build_of__service',
		'status',
		'image_size',
		'content_hash',
		'is_stored_at__image_location',
		'start_timestamp',
		'end_timestamp',
	],
	release_image: ['id', 'image', 'is_part_of__release'],
	device: [
		'id',
		'uuid',
		'device_name',
		'belongs_to__application',
		'is_online',
		'is_running__release',
		'is_pinned_on__release',
	],
	application_config_variable: ['id', 'application', 'name', 'value'],
	device_config_variable: ['id', 'device', 'name', 'value'],
	delta: [
		'id',
		'originates_from__image',
		'produces__image',
		'version',
		'status',
		'error_message',
		'is_stored_at__location',
		'size',
		'update_timestamp',
		'end_timestamp',
	],
};

const get = async (resource, columns) => {
	const url = `${apiUrl}/v7/${resource}?$select=${columns.join(',')}&$orderby=id%20asc`;
	const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
	return { status: res.status, text: await res.text() };
};

const out = {};
for (const [resource, columns] of Object.entries(COLUMNS)) {
	let answer = await get(resource, columns);
	let renamed = {};
	if (resource === 'device' && answer.status !== 200) {
		// A simulator without `is_pinned_on__release` stores the pin as
		// `device.should_be_running__release` (null: follows the fleet).
		const stored = columns.map((c) => (c === 'is_pinned_on__release' ? 'should_be_running__release' : c));
		const refused = answer.status;
		answer = await get(resource, stored);
		renamed = { is_pinned_on__release: 'should_be_running__release' };
		console.error(
			`rows.js: the simulator refused device.is_pinned_on__release (${refused}); its device.should_be_running__release is read as the pin`,
		);
	}
	if (answer.status !== 200) {
		console.error(`rows.js: GET /v7/${resource} answered ${answer.status}: ${answer.text.slice(0, 300)}`);
		process.exit(1);
	}
	out[resource] = JSON.parse(answer.text).d.map((row) => {
		const flat = {};
		for (const c of columns) {
			const v = row[renamed[c] ?? c];
			if (v === undefined) {
				console.error(`rows.js: ${resource}(${row.id}) has no ${c}`);
				process.exit(1);
			}
			// An unexpanded link reads {"__id": N}; it is written as N.
			flat[c] = v != null && typeof v === 'object' && '__id' in v ? v.__id : v;
		}
		return flat;
	});
}
process.stdout.write(`${JSON.stringify(out)}\n`);
