//! Micro-benchmarks of the library's hot paths, for a release with 500
//! services (and a fleet on 50 releases for the queries).
//!
//! Through the hidden `bench_support` module, each step alone:
//! - `queries/pair`, `queries/fleet_50_releases`: building the URLs of a
//!   first round (the release query and the delta query);
//! - `decode/releases_500_services`: decoding the release answer (two
//!   releases, 500 images each, as the simulator writes it);
//! - `decode/deltas_500_services`: decoding the delta answer (a built delta
//!   for each of the 250 changed services);
//! - `transition/pair_500_services`: finding both releases in the answer and
//!   matching their services by name;
//! - `transition/evaluate_500_services`: judging every service from the
//!   delta rows, the overall status and the download estimate.
//!
//! Through the public API:
//! - `info_round/500_services`: one whole information round
//!   (`get_update_info`) against the in-process simulator on loopback,
//!   without injected latency; the simulator's own work (OData evaluation,
//!   JSON writing) is part of the figure;
//! - `serialize/500_services`: writing the result as the CLI's JSON.
//!
//! Run with `cargo bench -p balena-release --bench hot_paths`.

use std::hint::black_box;
use std::time::Duration;

use balena_release::bench_support;
use balena_release::{Client, PrepareOptions, ReleaseRef, Status, UpdateInfo};
use balena_sim::{Clock, GeneratedOptions, Scenario, Simulator};
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;
use url::Url;

const SERVICES: usize = 500;
const FLEET_RELEASES: u64 = 50;

struct Fixture {
    // Kept alive for the whole benchmark: dropping it stops the servers.
    sim: Simulator,
    runtime: tokio::runtime::Runtime,
    client: Client,
    api: Url,
    from: ReleaseRef,
    to: ReleaseRef,
    /// The simulator's answers to the first round's two queries.
    release_body: Vec<u8>,
    delta_body: Vec<u8>,
}

// The benchmarks cannot run without their simulator and its answers: in the
// set-up below, failing is the only sensible outcome.

/// GETs `url` from the simulator and returns the body.
fn fetch(runtime: &tokio::runtime::Runtime, url: Url, token: &str) -> Vec<u8> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client builds");
    runtime.block_on(async {
        let answer = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("the simulator answers");
        assert!(answer.status().is_success(), "{}", answer.status());
        answer.bytes().await.expect("the body arrives").to_vec()
    })
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
    let sim = Simulator::start(scenario).expect("the simulator starts on loopback");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let api: Url = sim.api_url().parse().expect("the simulator URL parses");
    let client = Client::builder()
        .api_url(api.clone())
        .delta_url(sim.delta_url().parse().expect("the simulator URL parses"))
        .token(Some(SecretString::from(sim.token())))
        // The round as the npm tool makes it: the API only.
        .registry(false)
        .build()
        .expect("the client builds");
    let from: ReleaseRef = "1".parse().expect("a release id parses");
    let to: ReleaseRef = "2".parse().expect("a release id parses");
    runtime
        .block_on(client.prepare_update(&from, &to, &PrepareOptions::default(), &|_| {}))
        .expect("the deltas are requested");
    // Simulated time only: every build is finished an hour later.
    sim.advance_clock(Duration::from_secs(3600));
    let (release_urls, delta_urls) = bench_support::pair_queries(&api, &from, &to);
    assert_eq!(
        (release_urls.len(), delta_urls.len()),
        (1, 1),
        "a pair needs one query each"
    );
    let release_body = fetch(&runtime, release_urls[0].clone(), &sim.token());
    let delta_body = fetch(&runtime, delta_urls[0].clone(), &sim.token());
    Fixture {
        sim,
        runtime,
        client,
        api,
        from,
        to,
        release_body,
        delta_body,
    }
}

fn hot_paths(c: &mut Criterion) {
    let f = fixture();
    let now = f.sim.now();

    // The steps taken one by one must give what the round gives.
    let round = f
        .runtime
        .block_on(f.client.get_update_info(&f.from, &f.to))
        .expect("the round succeeds");
    assert_eq!(round.overall_status, Status::Ready, "every delta is built");
    assert_eq!(round.is_produced_by__service_update.len(), SERVICES);
    let releases = bench_support::decode_releases(&f.release_body).expect("the releases decode");
    let deltas = bench_support::decode_deltas(&f.delta_body).expect("the deltas decode");
    let pairing = bench_support::pair(&releases, &f.from, &f.to).expect("both releases are found");
    let stepwise = bench_support::evaluate(&pairing, &deltas, now);
    assert_eq!(stepwise, round, "the steps give the round's result");

    let mut group = c.benchmark_group("queries");
    group.bench_function("pair", |b| {
        b.iter(|| {
            bench_support::pair_queries(black_box(&f.api), black_box(&f.from), black_box(&f.to))
        })
    });
    let sources: Vec<ReleaseRef> = (1..=FLEET_RELEASES).map(ReleaseRef::Id).collect();
    let target = ReleaseRef::Id(FLEET_RELEASES);
    group.bench_function("fleet_50_releases", |b| {
        b.iter(|| {
            bench_support::fleet_queries(black_box(&f.api), black_box(&sources), black_box(&target))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.bench_function("releases_500_services", |b| {
        b.iter(|| {
            bench_support::decode_releases(black_box(&f.release_body)).expect("the releases decode")
        })
    });
    group.bench_function("deltas_500_services", |b| {
        b.iter(|| {
            bench_support::decode_deltas(black_box(&f.delta_body)).expect("the deltas decode")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("transition");
    group.bench_function("pair_500_services", |b| {
        b.iter(|| {
            bench_support::pair(black_box(&releases), black_box(&f.from), black_box(&f.to))
                .expect("both releases are found")
        })
    });
    group.bench_function("evaluate_500_services", |b| {
        b.iter(|| bench_support::evaluate(black_box(&pairing), black_box(&deltas), black_box(now)))
    });
    group.finish();

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

    let info: UpdateInfo = round;
    let mut group = c.benchmark_group("serialize");
    group.bench_function("500_services", |b| {
        b.iter(|| serde_json::to_string_pretty(black_box(&info)).expect("the result serialises"))
    });
    group.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
