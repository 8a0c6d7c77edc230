// The ES module entry point: the same functions as index.cjs (one copy of
// the addon and its state, whichever way the package is loaded).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const api = require('./index.cjs');

export const { UpdateStatus, getUpdateInfo, prepareUpdate, getFleetUpdateInfo, prepareFleetUpdate } = api;
export default api;
