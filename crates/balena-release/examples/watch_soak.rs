//! A soak run of the watch: one [`Client::watch_fleet`] in one process
//! against the in-process simulator, polling with no pause, so that a leak
//! over a long-running watch shows up in minutes.
//!
//! ```text
//! cargo run --release -p balena-release --example watch_soak -- [ROUNDS]
//! ```
//!
//! `ROUNDS` (idle polls, default 10,000) must be at least 200. The resident
//! memory (`VmRSS` of `/proc/self/status`) and the open file descriptors
//! (`/proc/self/fd`) are printed at idle poll 100 (after the warm-up: the
//! first preparation, the connection pool filled) and at the last one. Exits
//! non-zero when memory grew by more than 8 MiB or the descriptors by more
//! than 2 between the two. The simulator's request journal is cleared every
//! 1,000 polls so that its own bookkeeping does not count as growth. Linux
//! only (`/proc`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use balena_release::{Event, FleetRef, PollPolicy, WatchOptions};
use balena_sim::{Clock, demo};

#[path = "support/demo_sim.rs"]
mod demo_sim;
#[path = "support/process.rs"]
mod process;
use process::{open_fds, rss_kib};

/// The most memory may grow, in KiB.
const RSS_MARGIN_KIB: u64 = 8 * 1024;
/// The most descriptors may grow (a connection the pool replaces).
const FD_MARGIN: usize = 2;
/// The idle poll after which the first figures are taken.
const WARM_UP: u64 = 100;

fn main() -> ExitCode {
    let rounds: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 10_000,
        Some(Ok(n)) if n >= 2 * WARM_UP => n,
        _ => {
            eprintln!("usage: watch_soak [ROUNDS] (at least {})", 2 * WARM_UP);
            return ExitCode::from(2);
        }
    };
    let sim = match demo_sim::start(Clock::scaled(1000.0)) {
        Ok(sim) => sim,
        Err(code) => return code,
    };
    let client = demo_sim::client(&sim, false);
    let fleet: FleetRef = format!("{}/kiosk-fleet", demo::USERNAME)
        .parse()
        .expect("the slug parses");
    let options = WatchOptions {
        poll: PollPolicy {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            share: 0.0,
            jitter: 0.0,
        },
        ..WatchOptions::default()
    };
    let started = Instant::now();
    let figures: Mutex<Vec<(u64, u64, usize)>> = Mutex::new(Vec::new());
    let done = tokio::sync::Notify::new();
    let on_event = |event: Event| {
        let Event::WatchIdle { polls, .. } = event else {
            return;
        };
        if polls % 1000 == 0 {
            sim.clear_journal();
        }
        if polls == WARM_UP || polls == rounds {
            let (rss, fds) = (rss_kib().unwrap_or(0), open_fds().unwrap_or(0));
            println!(
                "{polls:>6} idle polls  {:>8.1} s  rss {rss:>7} KiB  fds {fds:>4}",
                started.elapsed().as_secs_f64()
            );
            figures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((polls, rss, fds));
            if polls == rounds {
                done.notify_one();
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ended = runtime.block_on(async {
        tokio::select! {
            ended = client.watch_fleet(&fleet, &options, &on_event) => Some(ended),
            () = done.notified() => None,
        }
    });
    if let Some(Err(error)) = ended {
        eprintln!("the watch ended: {error}");
        return ExitCode::FAILURE;
    }
    let figures = figures.into_inner().unwrap_or_else(|e| e.into_inner());
    let [(_, rss0, fds0), (_, rss1, fds1)] = figures[..] else {
        eprintln!("no figures were taken: {figures:?}");
        return ExitCode::FAILURE;
    };
    let grew_rss = rss1.saturating_sub(rss0);
    let grew_fds = fds1.saturating_sub(fds0);
    println!(
        "after {rounds} idle polls: memory +{grew_rss} KiB (at most {RSS_MARGIN_KIB}), \
         descriptors +{grew_fds} (at most {FD_MARGIN})"
    );
    if grew_rss > RSS_MARGIN_KIB || grew_fds > FD_MARGIN {
        eprintln!("the watch grew: a leak");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
