//! Helpers shared by the integration tests.

use balena_sim::{Clock, Scenario, Simulator};

/// A client that never goes through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client without TLS roots builds")
}

/// The demo fleet on a manual clock (time moves only when a test says so).
pub fn manual_demo() -> Scenario {
    Scenario::demo().with_clock(Clock::manual())
}

pub fn start(scenario: Scenario) -> Simulator {
    Simulator::start(scenario).expect("the simulator starts on loopback")
}

/// GET with the simulator's token.
pub async fn get(sim: &Simulator, url: &str) -> reqwest::Response {
    client()
        .get(url)
        .bearer_auth(sim.token())
        .send()
        .await
        .expect("the simulator answers")
}
