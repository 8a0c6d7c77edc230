// The library API beyond the npm tool's: results deep-equal to the
// command's --output json, fleets, a balena-sdk-like client, events, errors
// with stable codes, AbortSignal, and a process that exits when done.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';

import { getFleetUpdateInfo, getUpdateInfo, prepareFleetUpdate, prepareUpdate, UpdateStatus } from 'balena-release-update';
import cjs from 'balena-release-update';

import { CLI_BIN, FROM, TO, run, sessionEnv, startSim, tempDir } from './helpers.mjs';

let sim; // manual clock: deltas never finish, so waits go on until stopped
let env;
let servers;
before(async () => {
	sim = await startSim({ manual: true });
	env = sessionEnv(sim, tempDir('api'));
	servers = {
		apiUrl: sim.api,
		deltaUrl: sim.delta,
		token: sim.token,
		registryMap: { 'registry2.balena-cloud.com': sim.registry },
	};
});
after(() => sim.stop());

function cli(args) {
	return JSON.parse(execFileSync(CLI_BIN, [...args, '--output', 'json'], { env, cwd: env.HOME, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
}

test('both entry points export the same functions; UpdateStatus as the npm tool', () => {
	assert.equal(cjs.getUpdateInfo, getUpdateInfo);
	assert.deepEqual({ ...UpdateStatus }, { 0: 'pending', 1: 'preparing', 2: 'ready', pending: 0, preparing: 1, ready: 2 });
});

test('getUpdateInfo deep-equals the command --output json, by ids and by commits', async () => {
	assert.deepEqual(await getUpdateInfo(FROM, TO, servers), cli(['--from-release', String(FROM), '--to-release', String(TO)]));
	assert.deepEqual(await getUpdateInfo('84d3d8', 'b2cf2db7a4e6', servers), cli(['--from-release', '84d3d8', '--to-release', 'b2cf2db7a4e6']));
	assert.deepEqual(
		await getUpdateInfo(FROM, TO, { ...servers, registry: false }),
		cli(['--from-release', String(FROM), '--to-release', String(TO), '--no-registry']),
	);
});

test('getFleetUpdateInfo deep-equals the command --fleet --output json', async () => {
	for (const fleet of ['gh_demo/kiosk-fleet', 'gh_demo/sensor-hub']) {
		assert.deepEqual(await getFleetUpdateInfo(fleet, servers), cli(['--fleet', fleet]));
	}
	assert.deepEqual(
		await getFleetUpdateInfo('gh_demo/kiosk-fleet', { ...servers, toRelease: TO }),
		cli(['--fleet', 'gh_demo/kiosk-fleet', '--to-release', String(TO)]),
	);
});

test('a balena-sdk-like client gives the servers and the token', async () => {
	const settings = { apiUrl: sim.api, deltaUrl: sim.delta };
	const client = { settings: { get: async (key) => settings[key] }, auth: { getToken: async () => sim.token } };
	const viaClient = await getUpdateInfo(FROM, TO, { client, registry: false });
	assert.deepEqual(viaClient, await getUpdateInfo(FROM, TO, { ...servers, registry: false }));
	const loggedOut = { settings: client.settings, auth: { getToken: async () => Promise.reject(new Error('BalenaNotLoggedIn')) } };
	await assert.rejects(getUpdateInfo(FROM, TO, { client: loggedOut }), (err) => {
		assert.equal(err.code, 'ERR_NOT_LOGGED_IN');
		assert.equal(err.cause.message, 'BalenaNotLoggedIn');
		return true;
	});
});

test('errors carry a stable code and their cause', async () => {
	const expectCode = (promise, code) => assert.rejects(promise, (err) => err instanceof Error && err.code === code);
	await expectCode(getUpdateInfo(999999, TO, servers), 'ERR_RELEASE_NOT_FOUND');
	await expectCode(getUpdateInfo(FROM, TO, { ...servers, token: 'notTheToken0123' }), 'ERR_TOKEN_REJECTED');
	await expectCode(getUpdateInfo('zz', TO, servers), 'ERR_INVALID_ARG_VALUE');
	await expectCode(getUpdateInfo({}, TO, servers), 'ERR_INVALID_ARG_TYPE');
	await expectCode(prepareUpdate(FROM, TO, { ...servers, timeout: -1 }), 'ERR_INVALID_ARG_VALUE');
	await expectCode(getFleetUpdateInfo('gh_demo/no-such-fleet', servers), 'ERR_FLEET_NOT_FOUND');
	await assert.rejects(getUpdateInfo(FROM, TO, { ...servers, apiUrl: 'http://127.0.0.1:1' }), (err) => {
		assert.equal(err.code, 'ERR_NETWORK');
		assert.ok(err.cause instanceof Error, 'the transport failure is the cause');
		return true;
	});
	// No session at all: the balena CLI is not logged in.
	const saved = { ...process.env };
	try {
		for (const key of Object.keys(process.env)) if (/^(BALENARC_|RESINRC_|BALENA_RELEASE_UPDATE_)/i.test(key)) delete process.env[key];
		process.env.HOME = tempDir('no-session');
		await expectCode(getUpdateInfo(FROM, TO, { apiUrl: sim.api, deltaUrl: sim.delta }), 'ERR_NOT_LOGGED_IN');
	} finally {
		process.env = saved;
	}
});

test('a wait past its timeout rejects with ERR_TIMEOUT and the last state read', async () => {
	const started = Date.now();
	await assert.rejects(prepareUpdate(FROM, TO, { ...servers, timeout: 1 }), (err) => {
		assert.equal(err.code, 'ERR_TIMEOUT');
		assert.equal(err.lastState.produces__release.id, TO);
		assert.notEqual(err.lastState.overall_status, 'ready');
		return true;
	});
	const ms = Date.now() - started;
	assert.ok(ms >= 1000 && ms < 3000, `${ms} ms`);
});

test('onEvent gets the library events as plain objects', async () => {
	const events = [];
	const prepared = await prepareFleetUpdate('gh_demo/sensor-hub', { ...servers, onEvent: (e) => events.push(e) });
	assert.ok(['pending', 'preparing', 'ready'].includes(prepared.overall_status));
	const types = new Set(events.map((e) => e.type));
	assert.ok(types.has('round'), JSON.stringify([...types]));
	for (const e of events.filter((e) => e.type === 'triggered')) {
		assert.equal(typeof e.service_name, 'string');
		assert.equal(typeof e.source_image, 'number');
	}
});

test('an AbortSignal stops a wait within 100 ms with an AbortError', async (t) => {
	const controller = new AbortController();
	const events = [];
	const waiting = prepareUpdate(FROM, TO, { ...servers, wait: true, signal: controller.signal, onEvent: (e) => events.push(e.type) });
	await new Promise((resolve) => setTimeout(resolve, 1500));
	const abortedAt = performance.now();
	controller.abort();
	await assert.rejects(waiting, (err) => {
		assert.equal(err.name, 'AbortError');
		assert.equal(err.code, 'ABORT_ERR');
		return true;
	});
	const ms = performance.now() - abortedAt;
	t.diagnostic(`rejected ${ms.toFixed(1)} ms after abort(); events before: ${events.join(', ')}`);
	assert.ok(ms < 100, `${ms} ms`);
	assert.ok(events.includes('round'), 'it was waiting');
	await assert.rejects(getUpdateInfo(FROM, TO, { ...servers, signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('the process exits once the caller is done, also after an aborted wait', async () => {
	const script = `
		import { prepareUpdate, getUpdateInfo } from 'balena-release-update';
		const servers = JSON.parse(process.argv[1]);
		await getUpdateInfo(${FROM}, ${TO}, servers);
		const c = new AbortController();
		setTimeout(() => c.abort(), 300);
		await prepareUpdate(${FROM}, ${TO}, { ...servers, wait: true, signal: c.signal }).catch((e) => console.log(e.name));
	`;
	const result = await run(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(servers)], { env: process.env });
	assert.equal(result.code, 0, result.stderr);
	assert.equal(result.stdout.trim(), 'AbortError');
	assert.ok(result.ms < 5000, `exited after ${result.ms} ms`);
});
