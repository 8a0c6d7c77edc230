// Shared by the tests of the installed package: simulators, the balena
// CLI's session pointed at one, and child processes.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const PREFIX = process.env.BRU_PREFIX; // the global install
export const GLOBAL_BIN = path.join(PREFIX ?? '', 'bin', 'balena-release-update');
export const CLI_BIN = process.env.BRU_CLI_BIN; // the Rust binary, for comparisons
export const SIM_BIN = process.env.BALENA_SIM_BIN;
export const CONFORMANCE_DIR = process.env.BRU_CONFORMANCE_DIR;

export const FROM = 900813;
export const TO = 900835;

/** A fresh `balena-sim --scenario demo` (`manual`: builds never finish). */
export function startSim({ manual = false } = {}) {
	return startSimWith(['--scenario', 'demo', ...(manual ? ['--clock', 'manual'] : [])]);
}

/** A fresh `balena-sim` with these arguments, once it says where it listens. */
export async function startSimWith(args) {
	const child = spawn(SIM_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
	let stderr = '';
	child.stderr.on('data', (d) => (stderr += d));
	const line = await new Promise((resolve, reject) => {
		let buf = '';
		child.stdout.on('data', (d) => {
			buf += d;
			const at = buf.indexOf('\n');
			if (at >= 0) resolve(buf.slice(0, at));
		});
		child.on('exit', (code) => reject(new Error(`balena-sim exited with ${code} before it was ready: ${stderr}`)));
	});
	const info = JSON.parse(line);
	child.stdout.resume();
	child.stderr.removeAllListeners('data');
	child.stderr.resume();
	child.removeAllListeners('exit');
	return {
		api: info.api_url,
		delta: info.delta_url,
		token: info.token,
		registry: info.registry_url,
		stop() {
			child.kill('SIGTERM');
		},
	};
}

/** A GET's JSON answer, with `token` as the bearer when given; any other status than 2xx throws. */
export async function getJson(url, token) {
	const res = await fetch(url, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
	if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
	return res.json();
}

/** The delta rows a simulator holds, by id (as conformance/dropin.js reads them). */
export async function deltaRows(sim) {
	const rows = await getJson(`${sim.api}/v7/delta?$select=id,status,error_message`, sim.token);
	return new Map(rows.d.map((row) => [row.id, row]));
}

export function tempDir(name) {
	return fs.mkdtempSync(path.join(os.tmpdir(), `bru-${name}-`));
}

/**
 * A clean environment whose balena CLI session points at `sim`, as after
 * `balena login`: the token in the data directory's `token` file, the
 * servers in BALENARC_* variables, a throw-away HOME and working directory.
 */
export function sessionEnv(sim, dir) {
	fs.mkdirSync(path.join(dir, 'home'), { recursive: true });
	fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
	fs.writeFileSync(path.join(dir, 'data', 'token'), sim.token, { mode: 0o600 });
	return {
		PATH: process.env.PATH,
		HOME: path.join(dir, 'home'),
		BALENARC_API_URL: sim.api,
		BALENARC_DELTA_URL: sim.delta,
		BALENARC_DATA_DIRECTORY: path.join(dir, 'data'),
		BALENA_RELEASE_UPDATE_REGISTRY_MAP: `registry2.balena-cloud.com=${sim.registry}`,
		NO_PROXY: '127.0.0.1,localhost',
	};
}

/** Runs a command to its end: { code, signal, stdout, stderr, ms }. */
export function run(command, args, { env, cwd, input, onSpawn } = {}) {
	return new Promise((resolve, reject) => {
		const started = Date.now();
		const child = spawn(command, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
		let stdout = '';
		let stderr = '';
		child.stdout.on('data', (d) => (stdout += d));
		child.stderr.on('data', (d) => (stderr += d));
		child.on('error', reject);
		child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - started }));
		// A command that exits at once (a bad argument) may close its stdin
		// before this write lands: that is not the test's failure.
		child.stdin.on('error', (error) => {
			if (error.code !== 'EPIPE') reject(error);
		});
		child.stdin.end(input ?? '');
		onSpawn?.(child);
	});
}

/** New delta rows (built during a run) without their row-derived id and location tag. */
export function withoutNewRowIds(report, initial) {
	const copy = structuredClone(report);
	for (const su of copy.is_produced_by__service_update ?? []) {
		const delta = su.produces__image?.is_produced_by__delta;
		if (delta && !initial.has(delta.id)) {
			delta.id = '<new row>';
			delta.is_stored_at__location = String(delta.is_stored_at__location).replace(/:delta-[0-9a-f]{16}$/, ':delta-<new row>');
		}
	}
	return copy;
}
