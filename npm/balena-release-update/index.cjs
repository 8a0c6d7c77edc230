// balena-release-update for Node.js: the library API of the npm tool
// @balena/release-update 0.1.0 (getUpdateInfo, prepareUpdate, UpdateStatus),
// and more (fleets, apiUrl, deltaUrl, token, registry, registryMap, signal,
// onEvent), over the Rust library balena-release through a Node-API addon.
//
// Each call sends one JSON request to the addon and gets one JSON answer
// back: the report exactly as `balena-release-update --output json` writes
// it, or an error with a stable `code`. The work runs on the addon's own
// threads; nothing here blocks the event loop.
'use strict';

const { loadAddon } = require('./binding.cjs');

const native = loadAddon();

/** The statuses, as the npm tool's TypeScript enum compiles. */
const UpdateStatus = {};
UpdateStatus[(UpdateStatus.pending = 0)] = 'pending';
UpdateStatus[(UpdateStatus.preparing = 1)] = 'preparing';
UpdateStatus[(UpdateStatus.ready = 2)] = 'ready';

let nextId = 1;

function argumentError(message, Kind = TypeError) {
	const err = new Kind(message);
	err.code = Kind === TypeError ? 'ERR_INVALID_ARG_TYPE' : 'ERR_INVALID_ARG_VALUE';
	return err;
}

/** Node's own shape of an abort: name `AbortError`, code `ABORT_ERR`. */
function abortError(signal) {
	const err = new Error('The operation was aborted', { cause: signal.reason });
	err.name = 'AbortError';
	err.code = 'ABORT_ERR';
	return err;
}

function releaseArg(value, name) {
	if (typeof value === 'number') {
		if (!Number.isSafeInteger(value) || value < 0) {
			throw argumentError(`${name} must be a release id (a whole number) or a commit, not ${value}`, RangeError);
		}
		return String(value);
	}
	if (typeof value === 'string') return value;
	throw argumentError(`${name} must be a release id (number) or a commit (string), not ${typeof value}`);
}

function optionalString(options, key) {
	const value = options[key];
	if (value == null) return undefined;
	if (typeof value !== 'string') throw argumentError(`options.${key} must be a string, not ${typeof value}`);
	return value;
}

function optionalBoolean(options, key) {
	const value = options[key];
	if (value == null) return undefined;
	if (typeof value !== 'boolean') throw argumentError(`options.${key} must be a boolean, not ${typeof value}`);
	return value;
}

function registryMapArg(value) {
	if (value == null) return undefined;
	const entries = value instanceof Map ? [...value.entries()] : typeof value === 'object' ? Object.entries(value) : null;
	if (!entries) throw argumentError('options.registryMap must be an object of registry host to URL');
	return entries.map(([host, url]) => {
		const text = url instanceof URL ? url.href : url;
		if (typeof text !== 'string') throw argumentError(`options.registryMap[${JSON.stringify(host)}] must be a URL string`);
		return [host, text];
	});
}

function makeError(error) {
	let cause;
	for (const message of [...(error.causes ?? [])].reverse()) {
		cause = cause ? new Error(message, { cause }) : new Error(message);
	}
	const Kind = error.code === 'ERR_INVALID_ARG_VALUE' ? RangeError : Error;
	const err = cause ? new Kind(error.message, { cause }) : new Kind(error.message);
	err.code = error.code;
	if (error.status !== undefined) err.status = error.status;
	if (error.lastState !== undefined) err.lastState = error.lastState;
	return err;
}

// Warnings of the session discovery (a settings file in the working
// directory that chooses the servers, a token file others can read):
// each shown once per process, the Node.js way, and sent to onEvent.
const warned = new Set();
function warn(message, onEvent) {
	if (onEvent) deliver(onEvent, { type: 'warning', message });
	if (warned.has(message)) return;
	warned.add(message);
	process.emitWarning(message, { code: 'BALENA_RELEASE_UPDATE_SESSION' });
}

// An exception thrown by the caller's onEvent is theirs: rethrown as an
// uncaught exception, as an EventEmitter listener's would be.
function deliver(onEvent, event) {
	try {
		onEvent(event);
	} catch (err) {
		process.nextTick(() => {
			throw err;
		});
	}
}

/** The URLs and token of a balena-sdk instance, read through its public API. */
async function fromClient(client) {
	if (typeof client !== 'object' || client === null) {
		throw argumentError('options.client must be a balena-sdk instance');
	}
	const settings = client.settings;
	const auth = client.auth;
	if (!settings || typeof settings.get !== 'function' || !auth || typeof auth.getToken !== 'function') {
		throw argumentError('options.client must be a balena-sdk instance (with settings.get and auth.getToken)');
	}
	const out = {};
	out.apiUrl = await settings.get('apiUrl');
	try {
		out.deltaUrl = await settings.get('deltaUrl');
	} catch {
		// Not every settings store knows it; the balena CLI's settings then decide.
	}
	try {
		out.token = await auth.getToken();
	} catch (cause) {
		const err = new Error('not logged in: the balena-sdk client has no token; log it in first', { cause });
		err.code = 'ERR_NOT_LOGGED_IN';
		throw err;
	}
	for (const key of Object.keys(out)) {
		if (out[key] == null || out[key] === '') delete out[key];
		else if (typeof out[key] !== 'string') out[key] = String(out[key]);
	}
	return out;
}

async function run(request, options) {
	if (options == null) options = {};
	if (typeof options !== 'object') throw argumentError('options must be an object');
	const { signal, onEvent } = options;
	if (signal != null && (typeof signal !== 'object' || typeof signal.aborted !== 'boolean')) {
		throw argumentError('options.signal must be an AbortSignal');
	}
	if (onEvent != null && typeof onEvent !== 'function') throw argumentError('options.onEvent must be a function');
	if (signal?.aborted) throw abortError(signal);

	const given = {
		apiUrl: optionalString(options, 'apiUrl'),
		deltaUrl: optionalString(options, 'deltaUrl'),
		token: optionalString(options, 'token'),
	};
	const registry = optionalBoolean(options, 'registry');
	const registryMap = registryMapArg(options.registryMap);
	const fromSdk = options.client == null ? {} : await fromClient(options.client);
	if (signal?.aborted) throw abortError(signal);
	// The caller's own options win over the client's, which win over the
	// balena CLI's session (read by the addon).
	const full = { ...request };
	for (const key of ['apiUrl', 'deltaUrl', 'token']) {
		const value = given[key] ?? fromSdk[key];
		if (value !== undefined) full[key] = value;
	}
	if (registry !== undefined) full.registry = registry;
	if (registryMap !== undefined) full.registryMap = registryMap;

	const id = nextId;
	nextId = nextId >= 0xffffffff ? 1 : nextId + 1;
	const events = onEvent ? (json) => deliver(onEvent, JSON.parse(json)) : undefined;
	const answer = native.call(JSON.stringify(full), id, events);
	let outcome;
	if (signal) {
		let onAbort;
		const aborted = new Promise((_, reject) => {
			onAbort = () => {
				native.abort(id);
				reject(abortError(signal));
			};
			signal.addEventListener('abort', onAbort, { once: true });
		});
		try {
			outcome = await Promise.race([answer, aborted]);
		} finally {
			signal.removeEventListener('abort', onAbort);
		}
	} else {
		outcome = await answer;
	}
	const parsed = JSON.parse(outcome);
	for (const message of parsed.warnings ?? []) warn(message, onEvent);
	if (parsed.error) {
		if (parsed.error.code === 'ABORT_ERR' && signal) throw abortError(signal);
		throw makeError(parsed.error);
	}
	return parsed.ok;
}

/** Whether a prepare call waits: `wait: true`, or a `timeout` without `wait: false` (as the npm tool). */
function waits(options) {
	const wait = options?.wait;
	if (wait != null && typeof wait !== 'boolean') throw argumentError('options.wait must be a boolean');
	const timeout = options?.timeout;
	if (timeout != null && typeof timeout !== 'number') throw argumentError('options.timeout must be a number of seconds');
	return { wait: wait === true || (wait !== false && timeout != null), timeout: timeout ?? undefined };
}

function getUpdateInfo(fromRelease, toRelease, options) {
	return (async () =>
		run({ kind: 'info', from: releaseArg(fromRelease, 'fromRelease'), to: releaseArg(toRelease, 'toRelease') }, options))();
}

function prepareUpdate(fromRelease, toRelease, options) {
	return (async () => {
		const { wait, timeout } = waits(options);
		return run(
			{
				kind: 'prepare',
				from: releaseArg(fromRelease, 'fromRelease'),
				to: releaseArg(toRelease, 'toRelease'),
				wait,
				timeout,
			},
			options,
		);
	})();
}

function fleetArg(fleet) {
	if (typeof fleet === 'number') {
		if (!Number.isSafeInteger(fleet) || fleet < 0) throw argumentError(`fleet must be a fleet id or slug, not ${fleet}`, RangeError);
		return String(fleet);
	}
	if (typeof fleet === 'string') return fleet;
	throw argumentError(`fleet must be a fleet id (number) or slug (string), not ${typeof fleet}`);
}

function toReleaseArg(options) {
	return options?.toRelease == null ? undefined : releaseArg(options.toRelease, 'options.toRelease');
}

function getFleetUpdateInfo(fleet, options) {
	return (async () => run({ kind: 'fleetInfo', fleet: fleetArg(fleet), toRelease: toReleaseArg(options) }, options))();
}

function prepareFleetUpdate(fleet, options) {
	return (async () => {
		const { wait, timeout } = waits(options);
		return run({ kind: 'fleetPrepare', fleet: fleetArg(fleet), toRelease: toReleaseArg(options), wait, timeout }, options);
	})();
}

module.exports = { UpdateStatus, getUpdateInfo, prepareUpdate, getFleetUpdateInfo, prepareFleetUpdate };
