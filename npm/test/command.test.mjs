// The command from the global install (the JS launcher of the main package
// starting the platform package's binary) against the Rust binary itself:
// the same stdout, stderr and exit code for the drop-in subset (plain,
// --prepare, --wait --timeout), for failures (1, 2, 3) and for signals
// (129, 130, 143, and a signal that kills the command).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

import { CLI_BIN, FROM, GLOBAL_BIN, TO, deltaRows, run, sessionEnv, startSim, tempDir, withoutNewRowIds } from './helpers.mjs';

const pair = ['--from-release', String(FROM), '--to-release', String(TO)];

/** Runs `args` with `bin` on a fresh simulator; `act(child)` may signal it. */
async function once(bin, args, { manual = true, act } = {}) {
	const sim = await startSim({ manual });
	try {
		const initial = await deltaRows(sim);
		const dir = tempDir('command');
		const env = sessionEnv(sim, dir);
		const result = await run(bin, args, { env, cwd: env.HOME, onSpawn: act });
		return { ...result, initial, dir };
	} finally {
		sim.stop();
	}
}

/** Both, side by side. */
async function both(args, options) {
	const [launched, direct] = await Promise.all([once(GLOBAL_BIN, args, options), once(CLI_BIN, args, options)]);
	return { launched, direct };
}

/** Stderr without what differs between two runs: paths of the throw-away directories, times. */
function comparableStderr(result) {
	return result.stderr.split(result.dir).join('<dir>').replace(/\d+(\.\d+)? ?(ms|s)\b/g, '<t>');
}

function sameRun(t, what, { launched, direct }, { code, json = true } = {}) {
	assert.equal(launched.code, code, `${what}: launcher exit ${launched.code}\n${launched.stderr}`);
	assert.equal(direct.code, code, `${what}: binary exit ${direct.code}\n${direct.stderr}`);
	if (json && launched.stdout) {
		assert.deepEqual(
			withoutNewRowIds(JSON.parse(launched.stdout), launched.initial),
			withoutNewRowIds(JSON.parse(direct.stdout), direct.initial),
			`${what}: stdout`,
		);
	} else {
		assert.equal(launched.stdout, direct.stdout, `${what}: stdout`);
	}
	assert.equal(comparableStderr(launched), comparableStderr(direct), `${what}: stderr`);
	t.diagnostic(`${what}: exit ${code}, launcher ${launched.ms} ms, binary ${direct.ms} ms`);
}

test('the global command is the installed launcher', () => {
	const version = execFileSync(GLOBAL_BIN, ['--version'], { encoding: 'utf8' });
	assert.equal(version, execFileSync(CLI_BIN, ['--version'], { encoding: 'utf8' }));
	assert.equal(execFileSync(GLOBAL_BIN, ['--help'], { encoding: 'utf8' }), execFileSync(CLI_BIN, ['--help'], { encoding: 'utf8' }));
});

test('plain: the same JSON and exit 0', async (t) => {
	const result = await both(pair);
	sameRun(t, 'plain', result, { code: 0, json: false });
	assert.equal(JSON.parse(result.launched.stdout).overall_status, 'pending');
});

test('--prepare: the same state after triggering and exit 0', async (t) => {
	const result = await both(['--prepare', ...pair]);
	sameRun(t, '--prepare', result, { code: 0, json: false });
});

test('--wait --timeout: ready, exit 0', async (t) => {
	const result = await both(['--wait', '--timeout', '60', ...pair], { manual: false });
	sameRun(t, '--wait --timeout 60', result, { code: 0 });
	assert.equal(JSON.parse(result.launched.stdout).overall_status, 'ready');
});

test('exit 1 (bad argument), 2 (timeout) and 3 (over --max-download)', async (t) => {
	sameRun(t, 'bad release', await both(['--from-release', 'zz', '--to-release', '1']), { code: 1, json: false });
	sameRun(t, '--timeout 1, never ready', await both(['--wait', '--timeout', '1', ...pair]), { code: 2 });
	sameRun(t, '--max-download 1', await both(['--max-download', '1', ...pair]), { code: 3, json: false });
});

for (const [signal, code] of [
	['SIGINT', 130],
	['SIGTERM', 143],
	['SIGHUP', 129],
]) {
	test(`${signal} during a wait is passed on: exit ${code}, the last state on stdout`, async (t) => {
		// Signal once the first state is read (the live block is off: no terminal).
		const act = (child) => setTimeout(() => child.kill(signal), 1500);
		const result = await both(['--wait', '--timeout', '60', ...pair], { act });
		sameRun(t, signal, result, { code });
		assert.ok(result.launched.stdout.length > 0, 'the last state is printed');
	});
}

test('a command killed by a signal kills the launcher with the same signal', async () => {
	const act = (child) =>
		setTimeout(() => {
			// The launcher's child: the compiled command.
			const pids = execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).trim().split('\n');
			for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
		}, 1000);
	const result = await once(GLOBAL_BIN, ['--wait', '--timeout', '60', ...pair], { act });
	assert.equal(result.signal, 'SIGKILL', `code ${result.code}, signal ${result.signal}\n${result.stderr}`);
});
