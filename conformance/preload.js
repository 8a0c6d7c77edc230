// Loaded with `node -r ./preload.js <the tool's bin script>`.
//
// @balena/release-update 0.1.0 builds its client with balena-sdk's
// `fromSharedOptions()` but never sets shared options, so it always talks to
// https://api.balena-cloud.com (BALENARC_API_URL is ignored). This sets the
// shared `apiUrl` from SIM_API_URL before the tool starts. The delta URL and
// the token still come from balenarc settings (BALENARC_DELTA_URL,
// BALENARC_DATA_DIRECTORY), exactly as for a real user.
'use strict';

const path = require('path');

const apiUrl = process.env.SIM_API_URL;
if (!apiUrl) {
	console.error('preload: SIM_API_URL is not set');
	process.exit(2);
}

// Use the balena-sdk copy the tool itself `require`s: resolve it from the
// tool's own module (the package has no `exports` map, so the deep path works).
const toolMain = require.resolve('@balena/release-update/build/index.js', {
	paths: [__dirname],
});
const sdkPath = require.resolve('balena-sdk', { paths: [path.dirname(toolMain)] });
require(sdkPath).setSharedOptions({ apiUrl });
