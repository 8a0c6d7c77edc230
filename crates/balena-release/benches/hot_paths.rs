//! Micro-benchmarks of the library's hot paths, through its public API.
//!
//! - `info_round/500_services`: one information round (`get_update_info`) for
//!   a release with 500 services against the in-process simulator on
//!   loopback, without injected latency: building both queries, the two
//!   concurrent GETs, decoding the release answer (500 images on each side)
//!   and the delta answer (a ready delta for every changed service), pairing
//!   and judging. The simulator's own work (OData evaluation, JSON writing)
//!   is part of the figure.
//! - `serialize/500_services`: writing that result as the CLI's JSON.
//!
//! Run with `cargo bench -p balena-release --bench hot_paths`.

use std::hint::black_box;
use std::time::Duration;

use balena_release::{Client, PrepareOptions, ReleaseRef, Status, UpdateInfo};
use balena_sim::{Clock, GeneratedOptions, Scenario, Simulator};
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;

const SERVICES: usize = 500;

struct Fixture {
    // Kept alive for the whole benchmark: dropping it stops the servers.
    _sim: Simulator,
    runtime: tokio::runtime::Runtime,
    client: Client,
    from: ReleaseRef,
    to: ReleaseRef,
}

/// A generated fleet with 500 services and two releases, every delta of the
/// transition already built, so the round decodes delta rows too.
fn fixture() -> Fixture {
    let scenario = Scenario::generated(GeneratedOptions {
        services: SERVICES,
        releases: 2,
        devices: 0,
    })
    .with_clock(Clock::manual());
    // The benchmark cannot run without its simulator: failing here is the
    // only sensible outcome.
    let sim = Simulator::start(scenario).expect("the simulator starts on loopback");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let client = Client::builder()
        .api_url(sim.api_url().parse().expect("the simulator URL parses"))
        .delta_url(sim.delta_url().parse().expect("the simulator URL parses"))
        .token(Some(SecretString::from(sim.token())))
        .build()
        .expect("the client builds");
    let from: ReleaseRef = "1".parse().expect("a release id parses");
    let to: ReleaseRef = "2".parse().expect("a release id parses");
    runtime
        .block_on(client.prepare_update(&from, &to, &PrepareOptions::default(), &|_| {}))
        .expect("the deltas are requested");
    // Simulated time only: every build is finished an hour later.
    sim.advance_clock(Duration::from_secs(3600));
    let info = runtime
        .block_on(client.get_update_info(&from, &to))
        .expect("the round succeeds");
    assert_eq!(info.overall_status, Status::Ready, "every delta is built");
    assert_eq!(info.is_produced_by__service_update.len(), SERVICES);
    Fixture {
        _sim: sim,
        runtime,
        client,
        from,
        to,
    }
}

fn hot_paths(c: &mut Criterion) {
    let f = fixture();

    let mut group = c.benchmark_group("info_round");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("500_services", |b| {
        b.iter(|| {
            f.runtime
                .block_on(
                    f.client
                        .get_update_info(black_box(&f.from), black_box(&f.to)),
                )
                .expect("the round succeeds")
        })
    });
    group.finish();

    let info: UpdateInfo = f
        .runtime
        .block_on(f.client.get_update_info(&f.from, &f.to))
        .expect("the round succeeds");
    c.bench_function("serialize/500_services", |b| {
        b.iter(|| serde_json::to_string_pretty(black_box(&info)).expect("the result serialises"))
    });
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
