// The real pinejs engine serving the balena v7 model subset of model/ at /v7,
// on the PostgreSQL database named by DATABASE_URL, seeded with the rows of
// one simulator scenario.
//
// usage: node server.js --port N --variant cloud|openbalena --rows FILE --token TOKEN
//
// Prints one line `{"api_url":"http://127.0.0.1:N"}` on stdout once it
// accepts requests; everything pinejs logs goes to stderr.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import express from 'express';

const { values: args } = parseArgs({
	options: {
		port: { type: 'string' },
		variant: { type: 'string' },
		rows: { type: 'string' },
		token: { type: 'string' },
	},
});
for (const name of ['port', 'variant', 'rows', 'token']) {
	if (!args[name]) {
		console.error(`server.js: --${name} is required`);
		process.exit(2);
	}
}
if (!['cloud', 'openbalena'].includes(args.variant)) {
	console.error(`server.js: --variant must be cloud or openbalena, not ${args.variant}`);
	process.exit(2);
}

// pinejs reads DATABASE_URL when its module is loaded; its informational
// logging goes to stdout, which is kept for the ready line.
console.info = console.log = (...a) => console.error(...a);
const pine = await import('@balena/pinejs');
const { sbvrUtils, permissions } = pine;
const { optimizeSchema } = (await import('@balena/abstract-sql-compiler')).postgres;

const modelDir = new URL('./model/', import.meta.url);
let modelText = readFileSync(new URL('v7.sbvr', modelDir), 'utf8');
if (args.variant === 'cloud') {
	modelText += readFileSync(new URL('delta.sbvr', modelDir), 'utf8');
}
const abstractSql = sbvrUtils.generateAbstractSqlModel(sbvrUtils.generateLfModel(modelText));

// `device.should_be_running__release` is not stored: like the real API, it
// is the device's pin, else its application's target release.
const target = abstractSql.tables.device.fields.find(
	(f) => f.fieldName === 'should be running-release',
);
target.computed = {
	parallel: 'SAFE',
	volatility: 'STABLE',
	definition: [
		'Case',
		[
			'When',
			['Exists', ['ReferencedField', 'device', 'is pinned on-release']],
			['ReferencedField', 'device', 'is pinned on-release'],
		],
		[
			'Else',
			[
				'SelectQuery',
				['Select', [['ReferencedField', 'a', 'should be running-release']]],
				['From', ['Alias', ['Table', 'application'], 'a']],
				[
					'Where',
					[
						'Equals',
						['ReferencedField', 'a', 'id'],
						['ReferencedField', 'device', 'belongs to-application'],
					],
				],
			],
		],
	],
};

// What compiling the schema would do to the model anyway (a table definition
// that computes the field), done here so that it also holds when pinejs
// takes the compiled schema from its cache and skips that step.
optimizeSchema(abstractSql, { createCheckConstraints: false });

const app = express();
// pinejs reads req.body (and query) for an `apikey`, on GETs too.
app.use(express.urlencoded({ extended: true }));
app.use(express.json());
// `Authorization: Bearer <key>` is looked up among the Auth model's API keys,
// as an API key sent by the balena CLI is. pinejs's own
// `authorizationMiddleware` leaves the rejection for an unknown key unhandled
// (which ends the process): here an unknown key is no key, so the request
// gets the guest's permissions (none) and pinejs answers 401.
app.use(async (req, _res, next) => {
	try {
		const apiKey = await permissions.resolveAuthHeader(req);
		if (apiKey) {
			req.apiKey = apiKey;
		}
	} catch (e) {
		if (!(e instanceof pine.errors.PermissionError)) {
			next(e);
			return;
		}
	}
	next();
});

await pine.init(app, {
	models: [{ modelName: 'balena v7 subset', apiRoot: 'v7', abstractSql }],
	// pinejs needs a guest user; it gets no permission, so a request without
	// a valid key can read nothing.
	users: [{ username: 'guest', password: ' ', permissions: [] }],
});

const rows = JSON.parse(readFileSync(args.rows, 'utf8'));
await sbvrUtils.db.transaction(async (tx) => {
	const root = { tx, req: permissions.root };
	const auth = sbvrUtils.api.Auth.clone({ passthrough: root });
	const v7 = sbvrUtils.api.v7.clone({ passthrough: root });

	// One user owning one API key that may read every resource of the model.
	const { id: userId } = await auth.post({
		resource: 'user',
		body: { username: 'release-reader', password: 'not used' },
	});
	const [user] = await auth.get({ resource: 'user', options: { $select: 'actor', $filter: { id: userId } } });
	const { id: keyId } = await auth.post({
		resource: 'api_key',
		body: { key: args.token, is_of__actor: user.actor.__id },
	});
	const { id: permissionId } = await auth.post({ resource: 'permission', body: { name: 'v7.read' } });
	await auth.post({ resource: 'api_key__has__permission', body: { api_key: keyId, permission: permissionId } });

	// Targets point at releases, which point at applications: applications
	// first without their target, which is set once the releases exist.
	const post = async (resource, list) => {
		for (const body of list ?? []) {
			await v7.post({ resource, body, options: { returnResource: false } });
		}
	};
	await post(
		'application',
		rows.application.map(({ should_be_running__release: _, ...a }) => a),
	);
	await post('service', rows.service);
	await post('release', rows.release);
	await post('image', rows.image);
	await post('release_image', rows.release_image);
	for (const a of rows.application) {
		if (a.should_be_running__release != null) {
			await v7.patch({
				resource: 'application',
				id: a.id,
				body: { should_be_running__release: a.should_be_running__release },
			});
		}
	}
	await post('device', rows.device);
	await post('application_config_variable', rows.application_config_variable);
	await post('device_config_variable', rows.device_config_variable);
	if (args.variant === 'cloud') {
		await post('delta', rows.delta);
	}
});

const server = app.listen(Number(args.port), '127.0.0.1', () => {
	process.stdout.write(`${JSON.stringify({ api_url: `http://127.0.0.1:${args.port}` })}\n`);
});
server.on('error', (e) => {
	console.error(`server.js: cannot listen on 127.0.0.1:${args.port}: ${e.message}`);
	process.exit(1);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
