//! The simulator's demo and a client of it, as the soak examples start them.

use std::process::ExitCode;

use balena_release::Client;
use balena_sim::{Clock, Scenario, Simulator};
use secrecy::SecretString;

/// Starts the demo on `clock`; on failure, says why and gives the exit code.
pub fn start(clock: Clock) -> Result<Simulator, ExitCode> {
    Simulator::start(Scenario::demo().with_clock(clock)).map_err(|err| {
        eprintln!("the simulator did not start: {err}");
        ExitCode::FAILURE
    })
}

/// A client of `sim`; with `registry`, the demo's registry host is mapped to
/// the simulator's registry (exact sizes every round), else none is read.
pub fn client(sim: &Simulator, registry: bool) -> Client {
    let url = |u: String| u.parse().expect("the simulator's URL parses");
    let builder = Client::builder()
        .api_url(url(sim.api_url()))
        .delta_url(url(sim.delta_url()))
        .token(Some(SecretString::from(sim.token())));
    let builder = if registry {
        builder.registry_map([(
            "registry2.balena-cloud.com".to_owned(),
            url(sim.registry_url()),
        )])
    } else {
        builder.registry(false)
    };
    builder.build().expect("the client builds")
}
