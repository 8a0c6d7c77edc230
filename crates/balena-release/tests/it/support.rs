//! Helpers shared by the integration tests: a simulator per test and a
//! client with short timeouts and fast retries pointed at it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use balena_release::{Client, Event, PollPolicy, PrepareOptions, ReleaseRef, RetryPolicy};
use balena_sim::{Clock, Fault, FaultRule, Faults, JournalEntry, Scenario, Server, Simulator};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn start(scenario: Scenario) -> Simulator {
    Simulator::start(scenario).expect("the simulator starts on loopback")
}

/// The demo fleet on a manual clock (time moves only when a test says so).
pub fn manual_demo() -> Scenario {
    Scenario::demo().with_clock(Clock::manual())
}

/// Retries in milliseconds instead of seconds.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(5),
    }
}

pub fn client(sim: &Simulator) -> Client {
    client_with_token(sim, Some(sim.token()))
}

pub fn client_with_token(sim: &Simulator, token: Option<String>) -> Client {
    Client::builder()
        .registry(false)
        .api_url(sim.api_url().parse().expect("the simulator URL parses"))
        .delta_url(sim.delta_url().parse().expect("the simulator URL parses"))
        .token(token.map(SecretString::from))
        .request_timeout(Duration::from_secs(5))
        .retry_policy(fast_retries())
        .build()
        .expect("the client builds")
}

/// Polling in milliseconds.
pub fn fast_poll() -> PollPolicy {
    PollPolicy {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        share: 0.1,
        jitter: 0.2,
    }
}

pub fn prepare(wait: bool) -> PrepareOptions {
    PrepareOptions {
        wait,
        poll: fast_poll(),
        ..PrepareOptions::default()
    }
}

pub fn id(n: i64) -> ReleaseRef {
    ReleaseRef::Id(u64::try_from(n).expect("demo ids are positive"))
}

pub fn u(n: i64) -> u64 {
    u64::try_from(n).expect("demo ids are positive")
}

/// Collects events for later inspection.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<Event>>>);

impl Events {
    /// What the delta server said to each delta request, in order.
    pub fn trigger_outcomes(&self) -> Vec<balena_release::TriggerOutcome> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Triggered { outcome, .. } => Some(outcome),
                _ => None,
            })
            .collect()
    }

    pub fn sink(&self) -> impl Fn(Event) + Send + Sync + use<> {
        let events = self.0.clone();
        move |e| {
            events
                .lock()
                .expect("no test panics while holding it")
                .push(e)
        }
    }

    /// Records events and moves the simulator's clock by `step` whenever the
    /// client sleeps, so that delta builds progress between polls.
    pub fn sink_advancing<'a>(
        &self,
        sim: &'a Simulator,
        step: Duration,
    ) -> impl Fn(Event) + Send + Sync + 'a {
        let events = self.0.clone();
        move |e| {
            if matches!(e, Event::Sleeping { .. }) {
                sim.advance_clock(step);
            }
            events
                .lock()
                .expect("no test panics while holding it")
                .push(e);
        }
    }

    pub fn all(&self) -> Vec<Event> {
        self.0
            .lock()
            .expect("no test panics while holding it")
            .clone()
    }

    pub fn triggered(&self) -> Vec<(String, u64, u64)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Triggered {
                    service_name,
                    source_image,
                    target_image,
                    ..
                } => Some((service_name, source_image, target_image)),
                _ => None,
            })
            .collect()
    }
}

/// API requests in the journal for `resource`.
pub fn api_requests(sim: &Simulator, resource: &str) -> Vec<JournalEntry> {
    sim.journal()
        .into_iter()
        .filter(|e| e.server == Server::Api && e.resource.as_deref() == Some(resource))
        .collect()
}

/// All API requests in the journal.
pub fn api_count(sim: &Simulator) -> usize {
    sim.count(Server::Api, None)
}

/// Delta server requests in the journal.
pub fn delta_count(sim: &Simulator) -> usize {
    sim.count(Server::Delta, None)
}

/// A demo simulator with a manual clock and one fault rule.
pub fn with_fault(rule: FaultRule) -> balena_sim::Simulator {
    start(manual_demo().with_faults(Faults::none().with(rule)))
}

/// A fault rule answering `status` with `body`.
pub fn error(status: u16, body: &str) -> FaultRule {
    FaultRule::new(Fault::Error {
        status,
        body: Some(body.into()),
    })
}

/// The default number of retries, with millisecond pauses.
pub fn default_count_fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: RetryPolicy::default().max_retries,
        ..fast_retries()
    }
}

pub fn client_with_retries(sim: &Simulator, retry: RetryPolicy) -> balena_release::Client {
    balena_release::Client::builder()
        .registry(false)
        .api_url(sim.api_url().parse().expect("the simulator URL parses"))
        .delta_url(sim.delta_url().parse().expect("the simulator URL parses"))
        .token(Some(sim.token().into()))
        .request_timeout(Duration::from_secs(5))
        .retry_policy(retry)
        .build()
        .expect("the client builds")
}

/// A server answering every request with the same raw HTTP response.
pub async fn canned_server(response: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

/// `prepare_update` from the demo's release 2 to release 3, where `main`
/// has a built delta and `api` needs one.
pub async fn prepare_2_to_3(
    client: &Client,
    options: &PrepareOptions,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> Result<balena_release::UpdateInfo, balena_release::Error> {
    client
        .prepare_update(
            &id(balena_sim::demo::RELEASE_2),
            &id(balena_sim::demo::RELEASE_3),
            options,
            on_event,
        )
        .await
}
