//! A soak run: many information rounds by one client in one process against
//! the in-process simulator, printing the resident memory and the open file
//! descriptors as it goes, so that a leak shows up as a growing column.
//!
//! ```text
//! cargo run --release -p balena-release --example soak -- [ROUNDS]
//! ```
//!
//! `ROUNDS` defaults to 10,000; figures are printed at the start, every 1,000
//! rounds and at the end. The simulator's request journal is cleared every
//! 1,000 rounds so that its own bookkeeping does not count as growth. Exits
//! non-zero when the descriptors grew or memory grew by more than 8 MiB
//! after the first 1,000 rounds (the warm-up). Linux only (`/proc`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::Instant;

use balena_release::ReleaseRef;
use balena_sim::{Clock, demo};

#[path = "support/demo_sim.rs"]
mod demo_sim;
#[path = "support/process.rs"]
mod process;
use process::{open_fds, rss_kib};

fn report(round: usize, started: Instant) -> (u64, usize) {
    let rss = rss_kib().unwrap_or(0);
    let fds = open_fds().unwrap_or(0);
    println!(
        "{round:>6} rounds  {:>8.1} s  rss {rss:>7} KiB  fds {fds:>4}",
        started.elapsed().as_secs_f64()
    );
    (rss, fds)
}

fn main() -> ExitCode {
    let rounds: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 10_000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: soak [ROUNDS]");
            return ExitCode::from(2);
        }
    };
    let sim = match demo_sim::start(Clock::manual()) {
        Ok(sim) => sim,
        Err(code) => return code,
    };
    let client = demo_sim::client(&sim, true);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let from = ReleaseRef::Id(demo::RELEASE_1 as u64);
    let to = ReleaseRef::Id(demo::RELEASE_2 as u64);

    let started = Instant::now();
    let start = report(0, started);
    let mut warm = start;
    let mut last = start;
    for round in 1..=rounds {
        if let Err(err) = runtime.block_on(client.get_update_info(&from, &to)) {
            eprintln!("round {round} failed: {err}");
            return ExitCode::FAILURE;
        }
        if round % 1000 == 0 || round == rounds {
            sim.clear_journal();
            last = report(round, started);
            if round == 1000.min(rounds) {
                warm = last;
            }
        }
    }
    println!(
        "start: rss {} KiB, fds {}; after warm-up: rss {} KiB, fds {}; end: rss {} KiB, fds {}",
        start.0, start.1, warm.0, warm.1, last.0, last.1
    );
    println!(
        "{:.0} rounds/s",
        rounds as f64 / started.elapsed().as_secs_f64()
    );
    if last.1 > warm.1 || last.0 > warm.0 + 8 * 1024 {
        eprintln!("growth after the warm-up");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
