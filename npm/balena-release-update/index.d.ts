// Types of balena-release-update for Node.js. The npm tool
// @balena/release-update 0.1.0's exports keep their names and shapes
// (`UpdateStatus`, `UpdateStatusDescription`, `ReleaseUpdate`,
// `ServiceUpdate`, `GetUpdateInfoOptions`, `PrepareUpdateOptions`,
// `getUpdateInfo`, `prepareUpdate`); what this package adds is marked.

/** The status of a service, or of the whole update. */
export declare enum UpdateStatus {
	pending = 0,
	preparing = 1,
	ready = 2,
}
export type UpdateStatusDescription = keyof typeof UpdateStatus;

/** How a service changes (added by this package). */
export type ServiceChange = 'new' | 'changed' | 'unchanged';

/**
 * Added: a service's `io.balena.update.strategy` label, when not the
 * default `download-then-kill`. `delete-then-download` pulls the whole
 * image, without a delta.
 */
export type UpdateStrategy = 'kill-then-download' | 'delete-then-download' | 'hand-over';

export interface ImageInfo {
	id: number;
	is_stored_at__image_location: string;
	/** `null` when the API does not know it. */
	content_hash: string | null;
	image_size: number;
	/** Added: the API does not know the size (`image_size` then reads 0). */
	size_unknown?: true;
}

export interface DeltaInfo {
	id: number;
	version: number;
	is_stored_at__location: string | null;
	size: number;
	/** Added: the API does not know the size (`size` then reads 0). */
	size_unknown?: true;
}

/** Added: why a changed service has no delta to use. */
export interface DeltaFailure {
	delta_id?: number;
	error_message?: string;
	attempts: number;
	http_status?: number;
}

export interface ServiceUpdate {
	service_name: string;
	status: UpdateStatusDescription;
	/** Omitted for a service new in the target release. */
	originates_from__image?: ImageInfo;
	produces__image: ImageInfo & {
		/** Only when the service is ready through a delta. */
		is_produced_by__delta?: DeltaInfo;
	};
	/** Added. */
	change: ServiceChange;
	/** Added. */
	delta_failure?: DeltaFailure;
	/** Added: compressed bytes of the target image's layers (from the registry). */
	pull_size?: number;
	/** Added: what a device running the source release downloads. */
	download_size?: number;
	/** Added: the registry could not tell the sizes. */
	download_size_unknown?: true;
	/** Added: `download_size` is the whole pull of a changed service whose delta is not ready (a device would wait for the delta). */
	download_size_is_upper_bound?: true;
	/** Added: the target release's strategy label for the service. */
	update_strategy?: UpdateStrategy;
}

/** Added: a service of the source release that the target drops. */
export interface RemovedService {
	service_name: string;
	originates_from__image: ImageInfo;
	/** The source release's strategy label for the service. */
	update_strategy?: UpdateStrategy;
}

export interface ReleaseSummary {
	id: number;
	commit: string;
}

/** One transition, as `balena-release-update --output json` prints it. */
export interface ReleaseUpdate {
	originates_from__release: ReleaseSummary;
	produces__release: ReleaseSummary;
	is_produced_by__service_update: ServiceUpdate[];
	overall_status: UpdateStatusDescription;
	/** Only when `overall_status` is `ready`. */
	estimated_total_payload_size?: number;
	/** Added. */
	payload_size_unknown?: true;
	/** Added. */
	removed_services: RemovedService[];
	/** Added: the exact download, when every service's is known. */
	estimated_download_size?: number;
	/** Added. */
	download_size_unknown?: true;
	/** Added: `estimated_download_size` counts a service's upper bound. */
	download_size_is_upper_bound?: true;
}

/** Added: one (running release → target release) pair of a fleet. */
export interface FleetTransition extends ReleaseUpdate {
	device_count: number;
	/** Its devices with deltas turned off (omitted when none). */
	devices_without_deltas?: number;
	/** What one of those devices downloads: every changed image pulled. */
	download_size_without_deltas?: number;
}

/** Added: a fleet's update, as `--fleet … --output json` prints it. */
export interface FleetUpdate {
	application: { id: number; slug: string };
	produces__release: ReleaseSummary;
	transitions: FleetTransition[];
	overall_status: UpdateStatusDescription;
	estimated_fleet_payload_size?: number;
	payload_size_unknown?: true;
	devices_on_target: number;
	devices_without_release: number;
	estimated_fleet_download_size?: number;
	download_size_unknown?: true;
	/** What a device running no release downloads: every target image pulled. */
	devices_without_release_download_size?: number;
}

/** Added: what happens during a call, reported to `onEvent`. */
export type UpdateEvent =
	| { type: 'round'; attempt: number; report: ReleaseUpdate | FleetUpdate }
	| {
			type: 'triggered';
			service_name: string;
			source_image: number;
			target_image: number;
			outcome: 'accepted' | 'still_processing' | 'timed_out' | 'refused' | 'other';
			status?: number;
	  }
	| { type: 'sleeping'; ms: number }
	| { type: 'retrying'; what: string; attempt: number; delay_ms: number; reason: string }
	| { type: 'delta_query_fallback'; status: number | null }
	| { type: 'warning'; message: string }
	| { type: 'other'; description: string };

/** The part of a balena-sdk instance used: its API URL, delta URL and token. */
export interface BalenaSdkLike {
	settings: { get(key: string): Promise<string | undefined> | string | undefined };
	auth: { getToken(): Promise<string> };
}

export interface GetUpdateInfoOptions {
	/**
	 * Can be used to pass an existing SDK instance: its `apiUrl` and
	 * `deltaUrl` settings and its token are used.
	 */
	client?: BalenaSdkLike;
	/** Added: the API URL (default: the balena CLI's settings). */
	apiUrl?: string;
	/** Added: the delta server URL (default: the balena CLI's settings). */
	deltaUrl?: string;
	/** Added: the token (default: `BALENA_RELEASE_UPDATE_TOKEN`, then `balena login`'s token file). */
	token?: string;
	/** Added: `false` reads no registry (no exact download sizes), as `--no-registry`. */
	registry?: boolean;
	/** Added: registry host → URL, as `BALENA_RELEASE_UPDATE_REGISTRY_MAP`. */
	registryMap?: Record<string, string | URL> | Map<string, string | URL>;
	/** Added: stops the call (a wait within 100 ms); it rejects with an `AbortError`. */
	signal?: AbortSignal;
	/** Added: the library's events, as plain objects. */
	onEvent?: (event: UpdateEvent) => void;
}

export interface PrepareUpdateOptions extends GetUpdateInfoOptions {
	/**
	 * Whether to wait for the update to become ready.
	 * Otherwise returns the current state of the update.
	 *
	 * Default is `false`.
	 */
	wait?: boolean;
	/**
	 * The maximum time in seconds to wait for the update to become ready
	 * (at most a day). Default: a day. If set, implies `wait: true`.
	 */
	timeout?: number;
}

/** Added: options of the fleet calls. */
export interface GetFleetUpdateInfoOptions extends GetUpdateInfoOptions {
	/** The release the devices go to (default: the fleet's target release). */
	toRelease?: number | string;
}

/** Added. */
export interface PrepareFleetUpdateOptions extends GetFleetUpdateInfoOptions {
	wait?: boolean;
	timeout?: number;
}

/** Added: every rejection is an `Error` (or `TypeError`/`RangeError` for bad arguments) with a stable `code`. */
export interface ReleaseUpdateError extends Error {
	code:
		| 'ERR_INVALID_ARG_TYPE'
		| 'ERR_INVALID_ARG_VALUE'
		| 'ERR_NOT_LOGGED_IN'
		| 'ERR_TOKEN_REJECTED'
		| 'ERR_INVALID_TOKEN'
		| 'ERR_SESSION'
		| 'ERR_RELEASE_NOT_FOUND'
		| 'ERR_RELEASE_AMBIGUOUS'
		| 'ERR_RELEASE_NOT_SUCCESSFUL'
		| 'ERR_DIFFERENT_FLEETS'
		| 'ERR_IMAGE_NOT_READY'
		| 'ERR_FLEET_NOT_FOUND'
		| 'ERR_FLEET_HAS_NO_TARGET'
		| 'ERR_RELEASE_NOT_IN_FLEET'
		| 'ERR_FORBIDDEN'
		| 'ERR_NO_DELTAS'
		| 'ERR_API'
		| 'ERR_DELTA_SERVER'
		| 'ERR_DELTA_FAILED'
		| 'ERR_UNEXPECTED_ANSWER'
		| 'ERR_NETWORK'
		| 'ERR_ANSWER_TOO_LARGE'
		| 'ERR_TLS'
		| 'ERR_INSECURE_URL'
		| 'ERR_INVALID_URL'
		| 'ERR_SETUP'
		| 'ERR_TIMEOUT'
		| 'ERR_GAVE_UP'
		| 'ABORT_ERR'
		| 'ERR_BALENA_RELEASE';
	/** With `ERR_TIMEOUT` and `ERR_DELTA_FAILED`: the last state read. */
	lastState?: ReleaseUpdate | FleetUpdate;
	/** With `ERR_API`: the HTTP status. */
	status?: number;
	cause?: unknown;
}

/**
 * Describes the update path from release A to B (ids or commits).
 */
export declare function getUpdateInfo(
	fromRelease: number | string,
	toRelease: number | string,
	options?: GetUpdateInfoOptions,
): Promise<ReleaseUpdate>;

/** Requests the missing deltas; with `wait` or `timeout`, waits until they are ready. */
export declare function prepareUpdate(
	fromRelease: number | string,
	toRelease: number | string,
	options?: PrepareUpdateOptions,
): Promise<ReleaseUpdate>;

/** Added: what each device of a fleet needs to reach its target release. */
export declare function getFleetUpdateInfo(fleet: number | string, options?: GetFleetUpdateInfoOptions): Promise<FleetUpdate>;

/** Added: requests every missing delta of a fleet; with `wait` or `timeout`, waits. */
export declare function prepareFleetUpdate(fleet: number | string, options?: PrepareFleetUpdateOptions): Promise<FleetUpdate>;
