// The README example of @balena/release-update, unchanged except the
// package name (run.sh writes the npm tool's copy with its own name).
import { getUpdateInfo, prepareUpdate } from 'balena-release-update';
const updateInfo = await getUpdateInfo(900813, 900835);
const ready = await prepareUpdate(900813, 900835, { wait: true });
const within = await prepareUpdate(900813, 900835, { timeout: 60 });
process.stdout.write(JSON.stringify({ updateInfo, ready, within }));
