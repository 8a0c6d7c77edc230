// What the CLI must print on openBalena, derived from what it prints for the
// same run on an API with deltas: openBalena has no `delta` resource and no
// delta server, so a changed service stays `pending` and carries no delta
// (devices pull its whole image), new and unchanged services are `ready` as
// before, and the estimates appear only when everything is ready.

const ORDER = ['pending', 'preparing', 'ready'];
const least = (statuses) =>
	statuses.reduce((a, s) => (ORDER.indexOf(s) < ORDER.indexOf(a) ? s : a), 'ready');

const withoutDeltas = (update) => {
	const out = structuredClone(update);
	for (const service of out.is_produced_by__service_update) {
		if (service.change === 'changed') {
			service.status = 'pending';
			delete service.delta_failure;
			delete service.produces__image.is_produced_by__delta;
		}
	}
	out.overall_status = least(out.is_produced_by__service_update.map((s) => s.status));
	if (out.overall_status !== 'ready') {
		delete out.estimated_total_payload_size;
		delete out.payload_size_unknown;
	}
	return out;
};

export const expectedOnOpenBalena = (withDelta) => {
	if (withDelta == null || typeof withDelta !== 'object') {
		return withDelta;
	}
	if (!Array.isArray(withDelta.transitions)) {
		return withoutDeltas(withDelta);
	}
	const out = structuredClone(withDelta);
	out.transitions = out.transitions.map(withoutDeltas);
	out.overall_status = least(out.transitions.map((t) => t.overall_status));
	if (out.overall_status !== 'ready') {
		delete out.estimated_fleet_payload_size;
		delete out.payload_size_unknown;
	}
	return out;
};
