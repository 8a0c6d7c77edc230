// The CLI runs compared between balena-sim and the real pinejs engine, per
// scenario. The demo cases are every transition between the demo fleet's
// successful releases, the runs of scripts/demo.sh, conformance/run.sh and
// the README's examples, and the fleet runs. Each must exit 0 unless
// `expect_exit` says otherwise (runs that must be refused).

const DEMO_RELEASES = [900813, 900835, 900871]; // RELEASE_1..3 of gh_demo/kiosk-fleet

const pairs = (ids) =>
	ids.flatMap((from) =>
		ids
			.filter((to) => to !== from)
			.map((to) => ({
				name: `${from} -> ${to}`,
				args: ['--from-release', String(from), '--to-release', String(to)],
			})),
	);

export const SCENARIOS = {
	demo: {
		sim_scenario: 'demo',
		cases: [
			...pairs(DEMO_RELEASES),
			{
				name: 'commit prefix of RELEASE_1 -> 900835 (scripts/demo.sh)',
				args: ['--from-release', '84d3d8', '--to-release', '900835'],
			},
			{
				name: 'two commit prefixes (conformance/run.sh --wait pair)',
				args: ['--from-release', '84d3d8', '--to-release', 'b2cf2db7a4e6'],
			},
			{
				name: 'ambiguous commit prefix (README example)',
				args: ['--from-release', '900813', '--to-release', 'b2cf2db7'],
				expect_exit: 1,
			},
			{
				name: 'failed release as target',
				args: ['--from-release', '900813', '--to-release', '900850'],
				expect_exit: 1,
			},
			{
				name: 'releases of two fleets',
				args: ['--from-release', '900813', '--to-release', '900900'],
				expect_exit: 1,
			},
			{
				name: 'unknown release id',
				args: ['--from-release', '900813', '--to-release', '999999'],
				expect_exit: 1,
			},
			{
				name: 'table output',
				args: ['--from-release', '900813', '--to-release', '900835', '--output', 'table'],
			},
			{ name: 'fleet by slug', args: ['--fleet', 'gh_demo/kiosk-fleet'] },
			{ name: 'fleet by id', args: ['--fleet', '1952390'] },
			{
				name: 'fleet to another release',
				args: ['--fleet', 'gh_demo/kiosk-fleet', '--to-release', '900835'],
			},
			{ name: 'fleet whose devices all run the target', args: ['--fleet', 'gh_demo/sensor-hub'] },
			{
				name: 'fleet as a table (scripts/demo.sh)',
				args: ['--fleet', 'gh_demo/kiosk-fleet', '--output', 'table'],
			},
			{ name: 'unknown fleet', args: ['--fleet', 'gh_demo/nope'], expect_exit: 1 },
		],
		// Run on openBalena only: they must stop before any delta-server call.
		prepare_cases: [
			{ name: 'prepare', args: ['--prepare', '--from-release', '900813', '--to-release', '900835'] },
			{
				name: 'wait',
				args: ['--wait', '--timeout', '30', '--from-release', '900813', '--to-release', '900871'],
			},
			{ name: 'fleet prepare', args: ['--fleet', 'gh_demo/kiosk-fleet', '--prepare'] },
		],
	},
	generated: {
		// Application 1 `bench/bench-fleet`, releases 1..4 (target 4), devices
		// on every release.
		sim_scenario: 'generated:services=8,releases=4,devices=40',
		cases: [
			...pairs([1, 4]),
			{ name: '2 -> 4', args: ['--from-release', '2', '--to-release', '4'] },
			{ name: '3 -> 4', args: ['--from-release', '3', '--to-release', '4'] },
			{ name: '1 -> 2', args: ['--from-release', '1', '--to-release', '2'] },
			{ name: 'fleet by slug', args: ['--fleet', 'bench/bench-fleet'] },
			{ name: 'fleet to another release', args: ['--fleet', '1', '--to-release', '2'] },
		],
		prepare_cases: [],
	},
};
