// The requests whose status codes are compared between balena-sim and the
// real pinejs engine: every distinct API query the CLI sent to the simulator
// during the output comparison (from the simulator's journal), and requests
// that real pinejs answers with each of its error codes.

// How the real engine answers (shared/docs/platform.md §1): 401 with an empty
// body for a resource the model does not have, 500 for a field or navigation
// it cannot translate, 400 only for what the OData grammar rejects.
const FIXED = [
	{
		name: 'unknown resource',
		path: '/v7/nope',
		status: 401,
		empty_401: true,
		expect: '401 with an empty body',
	},
	{
		name: 'unknown resource by id',
		path: '/v7/nope(1)?$select=id',
		status: 401,
		empty_401: true,
		expect: '401 with an empty body',
	},
	{
		name: 'unknown field in $select',
		path: '/v7/release?$select=id,nope',
		status: 500,
		expect: '500',
	},
	{
		name: 'unknown field in $filter',
		path: '/v7/release?$select=id&$filter=nope%20eq%201',
		status: 500,
		expect: '500',
	},
	{
		name: 'unknown navigation in $expand',
		path: '/v7/release?$select=id&$expand=nope',
		status: 500,
		expect: '500',
	},
	{
		name: 'lambda through an unknown navigation',
		path: '/v7/delta?$select=id&$filter=originates_from__image/nope/any(ri:ri/is_part_of__release%20eq%201)',
		status: 500,
		expect: '500',
	},
	{
		name: "grammar error: %2C is not $select's separator",
		path: '/v7/release?$select=id%2Ccommit',
		status: 400,
		expect: '400 Malformed url',
	},
	{
		name: 'grammar error: $filter without its operand',
		path: '/v7/release?$select=id&$filter=id%20eq',
		status: 400,
		expect: '400 Malformed url',
	},
	{
		name: 'missing id: 200 with no rows',
		path: '/v7/release(999999999)?$select=id',
		status: 200,
		expect: '200 {"d":[]}',
	},
	{
		// The body of a refused token differs by design (the simulator's
		// text "Unauthorized", pinejs's empty body): only the code is compared.
		name: 'wrong token',
		path: '/v7/release?$select=id',
		token: 'not-a-key-of-this-api',
		status: 401,
		expect: '401',
	},
];

// Valid queries that the describe runs do not send: the delta lookup by image
// ids (later rounds of --prepare/--wait), and the fleet queries that need the
// devices' own targets. For these the rows must be the same too.
const app = (scenario) => (scenario.name === 'demo' ? 1952390 : 1);
// The supervisor's delta settings the CLI reads with --fleet (device and
// fleet configuration variables), as it sends them.
const DELTA_SETTINGS =
	"name%20in%20('BALENA_SUPERVISOR_DELTA','RESIN_SUPERVISOR_DELTA','BALENA_SUPERVISOR_DELTA_VERSION','RESIN_SUPERVISOR_DELTA_VERSION')";
const VALID = (scenario) => [
	{
		// The CLI's release query: `composition` (JSON) carries the services'
		// update strategies.
		name: "the releases with their composition (the CLI's release query)",
		path: `/v7/release?$select=id,commit,status,belongs_to__application,composition&$filter=belongs_to__application%20eq%20${app(scenario)}&$orderby=id%20asc`,
		status: 200,
		same_body: true,
		expect: '200, the same rows',
	},
	{
		// Without $orderby, as the CLI sends it: the rows are compared in any order.
		name: "the fleet's delta settings (application_config_variable, the CLI's query)",
		path: `/v7/application_config_variable?$filter=application%20eq%20${app(scenario)}%20and%20${DELTA_SETTINGS}&$select=name,value`,
		status: 200,
		same_rows: true,
		expect: '200, the same rows in any order',
	},
	{
		name: "the devices' delta settings (device_config_variable with its device, the CLI's query)",
		path:
			`/v7/device_config_variable?$filter=device/belongs_to__application%20eq%20${app(scenario)}%20and%20${DELTA_SETTINGS}` +
			'&$select=name,value&$expand=device($select=id,is_running__release,is_pinned_on__release)',
		status: 200,
		same_rows: true,
		expect: '200, the same rows in any order',
	},
	{
		// Every row, so that rows are compared whatever the two above select.
		name: 'every device configuration variable, in full',
		path: `/v7/device_config_variable?$select=id,device,name,value&$orderby=id%20asc`,
		status: 200,
		same_body: true,
		expect: '200, the same rows',
	},
	{
		name: 'delta lookup by image ids',
		path:
			'/v7/delta?$select=id,status,version,is_stored_at__location,size,originates_from__image,produces__image,update_timestamp,error_message' +
			'&$filter=version%20eq%203%20and%20originates_from__image%20in%20(1115249,1115290,1)%20and%20produces__image%20in%20(1115320,2)&$orderby=id%20desc',
		status: 200,
		same_body: true,
		expect: '200, the same rows',
	},
	{
		name: "devices' own targets (pin, else the fleet's target)",
		path: `/v7/device?$select=id,is_running__release,is_pinned_on__release,should_be_running__release&$filter=belongs_to__application%20eq%20${app(scenario)}&$orderby=id%20asc`,
		status: 200,
		same_body: true,
		expect: '200, the same rows',
	},
	{
		// `created_at` is set by pinejs itself when the rows are seeded, so
		// which release is the newest differs: only the status is compared.
		name: "the watch's idle poll: the fleet's target and newest successful release at once",
		path:
			`/v7/application?$filter=id%20eq%20${app(scenario)}&$select=id,slug` +
			'&$expand=should_be_running__release($select=id,commit,created_at),' +
			"owns__release($select=id,commit,created_at;$filter=status%20eq%20'success';$orderby=created_at%20desc;$top=1)",
		status: 200,
		expect: '200 (rows not compared: pinejs sets created_at itself)',
	},
	{
		name: 'devices of each release that follow the fleet, counted',
		path: `/v7/release?$filter=belongs_to__application%20eq%20${app(scenario)}&$select=id&$expand=is_running_on__device/$count($filter=is_pinned_on__release%20eq%20null)&$orderby=id%20asc`,
		status: 200,
		same_body: true,
		expect: '200, the same counts',
	},
];

export const statusRequests = (scenario, journal) => {
	const both = { 'balena-sim': scenario.sim_api, pinejs: scenario.pine_cloud };
	const out = [...FIXED, ...VALID(scenario)].map((r) => ({ ...r, engines: both }));
	out.push({
		name: 'openBalena: /v7/delta (no such resource)',
		path: '/v7/delta?$select=id',
		status: 401,
		empty_401: true,
		expect: '401 with an empty body',
		engines: { 'pinejs openBalena': scenario.pine_openbalena },
	});

	const seen = new Set();
	for (const e of journal.entries) {
		if (e.server !== 'api' || e.status !== 200 || !e.path.startsWith('/v7/')) {
			continue;
		}
		// The journal keeps the query percent-decoded; fetch re-encodes
		// spaces and quotes, which pinejs reads like the CLI's own encoding.
		const path = e.query == null ? e.path : `${e.path}?${e.query}`;
		if (seen.has(path)) {
			continue;
		}
		seen.add(path);
		const engines = { ...both };
		if (e.resource !== 'delta') {
			engines['pinejs openBalena'] = scenario.pine_openbalena;
		}
		out.push({
			name: `the CLI's query ${e.path}?${(e.query ?? '').slice(0, 90)}${(e.query ?? '').length > 90 ? '…' : ''}`,
			path,
			status: 200,
			expect: '200',
			engines,
		});
	}
	return out;
};
