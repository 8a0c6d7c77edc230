// Uses every export of balena-release-update, type-checked with
// `tsc --noEmit --strict` against the installed package's index.d.ts.
import {
	getFleetUpdateInfo,
	getUpdateInfo,
	prepareFleetUpdate,
	prepareUpdate,
	UpdateStatus,
	type GetUpdateInfoOptions,
	type PrepareUpdateOptions,
	type ReleaseUpdate,
	type ServiceUpdate,
	type UpdateStatusDescription,
	type UpdateStrategy,
} from 'balena-release-update';
import type {
	FleetUpdate,
	GetFleetUpdateInfoOptions,
	PrepareFleetUpdateOptions,
	ReleaseUpdateError,
	UpdateEvent,
} from 'balena-release-update';

async function main(): Promise<void> {
	const controller = new AbortController();
	const options: GetUpdateInfoOptions = {
		apiUrl: 'https://api.balena-cloud.com',
		deltaUrl: 'https://delta.balena-cloud.com',
		token: 'an-api-key',
		registry: false,
		registryMap: { 'registry2.balena-cloud.com': 'http://127.0.0.1:5000' },
		signal: controller.signal,
		onEvent: (event: UpdateEvent) => {
			if (event.type === 'triggered') console.log(event.service_name, event.outcome);
		},
	};
	const info: ReleaseUpdate = await getUpdateInfo(900813, '84d3d8', options);
	const service: ServiceUpdate | undefined = info.is_produced_by__service_update[0];
	const status: UpdateStatusDescription = info.overall_status;
	if (UpdateStatus[status] === UpdateStatus.ready) console.log(info.estimated_total_payload_size ?? 0);
	console.log(service?.produces__image.is_produced_by__delta?.size, service?.change);
	const strategy: UpdateStrategy | undefined = service?.update_strategy ?? info.removed_services[0]?.update_strategy;
	if (strategy === 'delete-then-download') console.log(service?.download_size, service?.download_size_is_upper_bound);

	const prepare: PrepareUpdateOptions = { ...options, wait: true, timeout: 60 };
	try {
		const ready: ReleaseUpdate = await prepareUpdate('b2cf2db7', 900835, prepare);
		console.log(ready.removed_services.length);
	} catch (err) {
		const e = err as ReleaseUpdateError;
		if (e.code === 'ERR_TIMEOUT' && e.lastState && 'is_produced_by__service_update' in e.lastState) {
			console.log(e.lastState.overall_status);
		}
	}

	const fleetOptions: GetFleetUpdateInfoOptions = { toRelease: 900835 };
	const fleet: FleetUpdate = await getFleetUpdateInfo('gh_demo/kiosk-fleet', fleetOptions);
	const prepareFleet: PrepareFleetUpdateOptions = { ...fleetOptions, wait: false };
	const prepared: FleetUpdate = await prepareFleetUpdate(fleet.application.id, prepareFleet);
	console.log(prepared.transitions.map((t) => [t.device_count, t.devices_without_deltas ?? 0, t.download_size_without_deltas]));
	console.log(prepared.devices_without_release_download_size, prepared.transitions[0]?.download_size_is_upper_bound);

	// The npm tool's own way: a balena-sdk instance.
	const client = { settings: { get: async (_key: string) => 'https://api.balena-cloud.com' }, auth: { getToken: async () => 'x' } };
	await getUpdateInfo(1, 2, { client });
}

void main;
