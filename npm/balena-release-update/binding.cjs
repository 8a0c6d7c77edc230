// Finds this platform's compiled parts: the Node-API addon
// (`balena-release-update.<platform>.node`) and the command
// (`balena-release-update`, `.exe` on Windows). They ship in the platform
// package `balena-release-update-<platform>` (as napi-rs, esbuild and Biome
// lay it out); a copy next to this file (a development build written by
// `npm run build`) wins.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const PACKAGE = 'balena-release-update';

// The platforms built by .github/workflows/npm-release.yml.
const PLATFORMS = [
	'linux-x64-gnu',
	'linux-x64-musl',
	'linux-arm64-gnu',
	'darwin-x64',
	'darwin-arm64',
	'win32-x64-msvc',
];

function isMusl() {
	// glibc reports its version in the process report; musl has none.
	try {
		const report = process.report && process.report.getReport();
		const header = report && (typeof report === 'string' ? JSON.parse(report) : report).header;
		if (header) return !header.glibcVersionRuntime;
	} catch {
		// fall through
	}
	try {
		return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
	} catch {
		return false;
	}
}

/** This machine's platform, as napi-rs names it: `linux-x64-gnu`, `darwin-arm64`, ... */
function platformKey() {
	const { platform, arch } = process;
	if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`;
	if (platform === 'win32') return `win32-${arch}-msvc`;
	return `${platform}-${arch}`;
}

function unsupported(key, what) {
	const err = new Error(
		`${PACKAGE} has no ${what} for this platform (${key}); ` +
			`supported: ${PLATFORMS.join(', ')}. Install the package \`${PACKAGE}-${key}\` next to \`${PACKAGE}\`, ` +
			'or build from source (cargo install balena-release-update)',
	);
	err.code = 'ERR_BALENA_RELEASE_UPDATE_PLATFORM';
	return err;
}

/** The directory holding this platform's files, or null. */
function platformDir(key) {
	try {
		return path.dirname(require.resolve(`${PACKAGE}-${key}/package.json`));
	} catch {
		return null;
	}
}

function find(key, file, what) {
	const local = path.join(__dirname, file);
	if (fs.existsSync(local)) return local;
	const dir = platformDir(key);
	if (dir) {
		const shipped = path.join(dir, file);
		if (fs.existsSync(shipped)) return shipped;
	}
	throw unsupported(key, what);
}

/** The path of the `balena-release-update` executable for this platform. */
function binaryPath() {
	const key = platformKey();
	return find(key, process.platform === 'win32' ? `${PACKAGE}.exe` : PACKAGE, 'command');
}

/** The loaded addon. */
function loadAddon() {
	const key = platformKey();
	return require(find(key, `${PACKAGE}.${key}.node`, 'native addon'));
}

module.exports = { PLATFORMS, platformKey, binaryPath, loadAddon };
