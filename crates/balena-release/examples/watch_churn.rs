//! A churn soak of the watch: one [`Client::watch_fleet`] with the registry
//! on, against the in-process simulator, while a new release of the fleet
//! (new images for `main` and `api`, each with a manifest of its own) appears
//! every 2 s. Every release seen is prepared and its manifests read, so a
//! cache that keeps what it no longer needs shows up as growing memory.
//!
//! ```text
//! cargo run -p balena-release --example watch_churn -- [SECONDS]
//! ```
//!
//! `SECONDS` (default 120, at least 40) is how long releases keep coming.
//! The resident memory is printed every 10 s; the run fails when it grew by
//! more than 16 MiB between 30 s (after the warm-up) and the end, or when
//! fewer than half the releases were seen. Linux only (`/proc`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use balena_release::{Event, FleetRef, PollPolicy, WatchOptions};
use balena_sim::{Clock, demo};

#[path = "support/demo_sim.rs"]
mod demo_sim;
#[path = "support/process.rs"]
mod process;
use process::{open_fds, rss_kib};

/// The most memory may grow after the warm-up, in KiB.
const RSS_MARGIN_KIB: u64 = 16 * 1024;
const WARM_UP: Duration = Duration::from_secs(30);
const EVERY: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let seconds: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 120,
        Some(Ok(n)) if n >= 40 => n,
        _ => {
            eprintln!("usage: watch_churn [SECONDS] (at least 40)");
            return ExitCode::from(2);
        }
    };
    let sim = match demo_sim::start(Clock::scaled(1000.0)) {
        Ok(sim) => sim,
        Err(code) => return code,
    };
    let client = demo_sim::client(&sim, true);
    let fleet: FleetRef = format!("{}/kiosk-fleet", demo::USERNAME)
        .parse()
        .expect("the slug parses");
    let options = WatchOptions {
        poll: PollPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            share: 0.0,
            jitter: 0.0,
        },
        ..WatchOptions::default()
    };
    let seen = AtomicU64::new(0);
    let on_event = |event: Event| {
        if matches!(event, Event::WatchReleaseSeen { .. }) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let mut added = 0u64;
    let (mut at_warm_up, mut last) = (None, 0u64);
    let ended = runtime.block_on(async {
        let watch = client.watch_fleet(&fleet, &options, &on_event);
        tokio::pin!(watch);
        let mut newest = demo::RELEASE_3;
        let mut ticker = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                ended = &mut watch => return Some(ended),
                _ = ticker.tick() => {
                    let elapsed = started.elapsed();
                    if elapsed >= Duration::from_secs(seconds) {
                        return None;
                    }
                    match sim.add_release(newest, &["main", "api"]) {
                        Ok(id) => {
                            newest = id;
                            added += 1;
                        }
                        Err(err) => eprintln!("no release added: {err}"),
                    }
                    if added.is_multiple_of(50) {
                        sim.clear_journal();
                    }
                    let rss = rss_kib().unwrap_or(0);
                    if at_warm_up.is_none() && elapsed >= WARM_UP {
                        at_warm_up = Some(rss);
                    }
                    last = rss;
                    if added.is_multiple_of(5) {
                        println!(
                            "{:>6.1} s  {added:>3} releases added  {:>3} seen  rss {rss:>7} KiB  fds {:>4}",
                            elapsed.as_secs_f64(),
                            seen.load(Ordering::Relaxed),
                            open_fds().unwrap_or(0)
                        );
                    }
                }
            }
        }
    });
    if let Some(Err(error)) = ended {
        eprintln!("the watch ended: {error}");
        return ExitCode::FAILURE;
    }
    let seen = seen.load(Ordering::Relaxed);
    // The new releases' manifests were read (since the journal's last clear).
    let manifests = sim.count(balena_sim::Server::Registry, Some("manifests"));
    let base = at_warm_up.unwrap_or(last);
    let grew = last.saturating_sub(base);
    println!(
        "{added} releases added in {seconds} s, {seen} seen, {manifests} manifests read lately: \
         memory +{grew} KiB after the warm-up (at most {RSS_MARGIN_KIB})"
    );
    let mut ok = true;
    if grew > RSS_MARGIN_KIB {
        eprintln!("the watch grew with the releases: a leak");
        ok = false;
    }
    if manifests == 0 {
        eprintln!("no manifest was read: the registry was not exercised");
        ok = false;
    }
    if seen * 2 < added {
        eprintln!("the watch saw {seen} of {added} releases");
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
