#!/usr/bin/env node
// Starts the compiled `balena-release-update` of this platform's package
// with these arguments and the same standard streams (so a terminal on
// stderr still gets the live progress block), passes SIGINT, SIGTERM and
// SIGHUP on to it, and ends as it ended: with its exit code, or by the
// same signal.
'use strict';

const { spawn } = require('node:child_process');
const { binaryPath } = require('../binding.cjs');

let command;
try {
	command = binaryPath();
} catch (err) {
	process.stderr.write(`ERROR: ${err.message}\n`);
	process.exit(1);
}

const child = spawn(command, process.argv.slice(2), { stdio: 'inherit', windowsHide: false });

// A terminal's Ctrl-C reaches both processes; the command stops at the
// first signal and treats a second one the same way, so passing it on
// again is harmless. A signal sent to this launcher alone is passed on.
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const forward = (signal) => {
	if (child.exitCode === null && child.signalCode === null) {
		try {
			child.kill(signal);
		} catch {
			// already gone
		}
	}
};
for (const signal of FORWARDED) process.on(signal, forward);

child.on('error', (err) => {
	process.stderr.write(`ERROR: cannot start \`${command}\`: ${err.message}\n`);
	process.exit(1);
});

child.on('exit', (code, signal) => {
	if (signal) {
		// End by the same signal, with its default action.
		for (const s of FORWARDED) process.removeListener(s, forward);
		process.kill(process.pid, signal);
		// A signal whose default is not to end the process (or that cannot
		// be raised on this platform): exit as a shell reports it.
		const number = require('node:os').constants.signals[signal] || 0;
		setTimeout(() => process.exit(128 + number), 100).unref();
		return;
	}
	process.exit(code ?? 1);
});
