//! A local simulator of the balenaCloud API (pinejs OData at `/v7` and `/v6`)
//! and of its delta server, for tests, benchmarks and demos.
//!
//! ```no_run
//! use balena_sim::{Scenario, Simulator};
//! let sim = Simulator::start(Scenario::demo()).expect("loopback is available");
//! println!("{} {} {}", sim.api_url(), sim.delta_url(), sim.token());
//! ```

pub mod db;
pub mod odata;
pub mod pine;

pub mod canned;
pub mod clock;
mod control;
mod delta;
pub mod demo;
pub mod faults;
pub mod generated;
pub mod journal;
mod live;
mod registry;
mod respond;
mod rng;
pub mod scenario;
mod schema;
mod server;
mod sha256;
mod spec;
mod state;
mod tables;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

pub use clock::Clock;
pub use faults::{Fault, FaultRule, Faults, Scope, Server};
pub use generated::GeneratedOptions;
pub use journal::JournalEntry;
pub use scenario::{Outcome, Scenario, ScenarioError};

use crate::state::Shared;

/// Where and how to run the servers.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// API port (default: an ephemeral port).
    pub api_port: Option<u16>,
    /// Delta server port (default: an ephemeral port).
    pub delta_port: Option<u16>,
    /// Registry port (default: an ephemeral port).
    pub registry_port: Option<u16>,
    /// Runtime worker threads (default 2).
    pub worker_threads: Option<usize>,
}

/// A running simulator: the API, the delta server and the registry on
/// loopback, on their own thread and tokio runtime. Dropping it stops them.
pub struct Simulator {
    shared: Arc<Shared>,
    api: SocketAddr,
    delta: SocketAddr,
    registry: SocketAddr,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("api", &self.api)
            .field("delta", &self.delta)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Starts on ephemeral loopback ports. Works inside or outside a tokio runtime.
    pub fn start(scenario: Scenario) -> std::io::Result<Simulator> {
        Simulator::start_with(scenario, StartOptions::default())
    }

    /// Starts with explicit ports or thread count.
    pub fn start_with(scenario: Scenario, options: StartOptions) -> std::io::Result<Simulator> {
        let invalid = |e: ScenarioError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let (db, content) = scenario.build().map_err(invalid)?;
        let bind = |port: Option<u16>| -> std::io::Result<std::net::TcpListener> {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        let api_listener = bind(options.api_port)?;
        let delta_listener = bind(options.delta_port)?;
        let registry_listener = bind(options.registry_port)?;
        let api = api_listener.local_addr()?;
        let delta = delta_listener.local_addr()?;
        let registry = registry_listener.local_addr()?;
        let shared = Arc::new(Shared {
            db: RwLock::new(db),
            deltas: Mutex::new(delta::DeltaEngine::new(&scenario.delta)),
            clock: clock::SimClock::new(&scenario.clock),
            faults: RwLock::new(Arc::new(faults::ActiveFaults::new(scenario.faults.clone()))),
            journal: journal::Journal::default(),
            tokens: scenario.tokens.clone(),
            hold: Duration::from_millis(scenario.delta.hold_ms),
            running_status: axum::http::StatusCode::from_u16(scenario.delta.running_status)
                .unwrap_or(axum::http::StatusCode::GATEWAY_TIMEOUT),
            registry: registry::Registry {
                content,
                tokens: registry::Tokens::default(),
            },
            api_url: format!("http://{api}"),
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.worker_threads.unwrap_or(2).max(1))
            .thread_name("balena-sim")
            .enable_all()
            .build()?;
        let (api_listener, delta_listener, registry_listener) = {
            let _context = runtime.enter();
            (
                tokio::net::TcpListener::from_std(api_listener)?,
                tokio::net::TcpListener::from_std(delta_listener)?,
                tokio::net::TcpListener::from_std(registry_listener)?,
            )
        };
        let (stop, mut stopped) = watch::channel(false);
        let api_router = server::router(shared.clone(), Server::Api);
        let delta_router = server::router(shared.clone(), Server::Delta);
        let registry_router = server::router(shared.clone(), Server::Registry);
        let thread = std::thread::Builder::new()
            .name("balena-sim".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(server::serve(api_listener, api_router, stopped.clone()));
                    tokio::spawn(server::serve(delta_listener, delta_router, stopped.clone()));
                    tokio::spawn(server::serve(
                        registry_listener,
                        registry_router,
                        stopped.clone(),
                    ));
                    let _ = stopped.changed().await;
                });
                runtime.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(Simulator {
            shared,
            api,
            delta,
            registry,
            shutdown: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<api port>`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// `http://127.0.0.1:<delta port>`.
    pub fn delta_url(&self) -> String {
        format!("http://{}", self.delta)
    }

    /// `http://127.0.0.1:<registry port>`: the registry serving every
    /// scenario location's repository, whatever host the location names.
    pub fn registry_url(&self) -> String {
        format!("http://{}", self.registry)
    }

    /// The scenario's first accepted token.
    pub fn token(&self) -> String {
        self.shared.tokens.first().cloned().unwrap_or_default()
    }

    /// Every recorded request since start or the last clear (oldest first).
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.journal.entries()
    }

    /// Forgets recorded requests and counters.
    pub fn clear_journal(&self) {
        self.shared.journal.clear();
    }

    /// Requests to `server` (for `resource` when given) since start or the last clear.
    pub fn count(&self, server: Server, resource: Option<&str>) -> usize {
        self.shared.journal.count(server, resource)
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Moves the simulated clock forward (any clock mode).
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by);
        self.shared.refresh();
    }

    /// The simulated now.
    pub fn now(&self) -> jiff::Timestamp {
        self.shared.clock.now()
    }

    /// Adds a successful release to the fleet of release `from`, created
    /// now: the same services, with a new image for each service named in
    /// `changed` (the others keep theirs). Returns its id. The fleet's
    /// target does not move. Also `POST /__sim/release?from=ID&changed=a,b`.
    pub fn add_release(&self, from: i64, changed: &[&str]) -> Result<i64, String> {
        let changed: Vec<String> = changed.iter().map(|s| (*s).to_owned()).collect();
        let now = self.now();
        self.with_db(|db| live::add_release(db, from, &changed, now))
    }

    /// Labels `service` of `release` with an update strategy
    /// (`io.balena.update.strategy`, such as `delete-then-download`) in the
    /// release's composition.
    pub fn set_update_strategy(
        &self,
        release: i64,
        service: &str,
        strategy: &str,
    ) -> Result<(), String> {
        self.with_db(|db| live::set_update_strategy(db, release, service, strategy))
    }

    /// Scripts the delta builds of one image pair from now on, as
    /// [`Scenario::with_delta_outcome`] and [`Scenario::with_delta_duration`]
    /// do at start: for pairs whose images do not exist yet (a release
    /// added with [`Simulator::add_release`]).
    pub fn script_delta(
        &self,
        src: i64,
        dest: i64,
        duration: Option<Duration>,
        outcomes: Vec<Outcome>,
    ) {
        state::lock(&self.shared.deltas).script(spec::DeltaPair {
            src,
            dest,
            duration_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            outcomes,
        });
    }

    /// Runs `f` on the tables (delta builds brought up to date first).
    pub fn with_db<R>(&self, f: impl FnOnce(&mut db::Db) -> R) -> R {
        self.shared.refresh();
        f(&mut state::write(&self.shared.db))
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
