//! The shared runtime of every call, the `Client`s shared between calls,
//! and the abort switches of the calls running.
//!
//! The library's prepare futures are not `Send` (the command runs them on a
//! current-thread runtime), so every call runs as a local task on one
//! thread that drives a `LocalSet` on the shared multi-thread runtime: the
//! runtime's workers and I/O driver serve every call and every connection,
//! and no call blocks Node's event loop.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};

use balena_release::{Client, Event, PrepareOptions, Report};
use balena_session::settings::Environment;
use secrecy::SecretString;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::request::{self, Call, Connection, Failure, Kind, MAX_TIMEOUT, RUN_LIMIT};

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The runtime and the queue of the thread that runs the calls.
struct Shared {
    runtime: tokio::runtime::Runtime,
    jobs: mpsc::UnboundedSender<Job>,
}

fn shared() -> std::io::Result<&'static Shared> {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(shared) = SHARED.get() {
        return Ok(shared);
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = SHARED.get() {
        return Ok(shared);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("balena-release")
        .build()?;
    let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("balena-release-calls".to_owned())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            handle.block_on(local.run_until(async move {
                while let Some(job) = queue.recv().await {
                    tokio::task::spawn_local(job());
                }
            }));
        })?;
    Ok(SHARED.get_or_init(|| Shared { runtime, jobs }))
}

/// The abort switch of each running call, by id.
fn switches() -> &'static Mutex<HashMap<u32, oneshot::Sender<()>>> {
    static SWITCHES: OnceLock<Mutex<HashMap<u32, oneshot::Sender<()>>>> = OnceLock::new();
    SWITCHES.get_or_init(Default::default)
}

/// Aborts the call `id`, if it still runs.
pub fn abort(id: u32) {
    let switch = switches()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    if let Some(switch) = switch {
        let _ = switch.send(());
    }
}

/// The clients built so far, most recently used last; at most this many.
const CLIENTS_KEPT: usize = 16;

fn client_for(connection: &Connection) -> Result<Client, balena_release::Error> {
    static CLIENTS: Mutex<Vec<(Connection, Client)>> = Mutex::new(Vec::new());
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(at) = clients.iter().position(|(known, _)| known == connection) {
        let entry = clients.remove(at);
        let client = entry.1.clone();
        clients.push(entry);
        return Ok(client);
    }
    let client = Client::builder()
        .api_url(connection.api_url.clone())
        .delta_url(connection.delta_url.clone())
        .token(Some(SecretString::from(connection.token.clone())))
        .registry(connection.registry)
        .registry_map(connection.registry_map.clone())
        .user_agent(format!(
            "balena-release-update-node/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .build()?;
    if clients.len() >= CLIENTS_KEPT {
        clients.remove(0);
    }
    clients.push((connection.clone(), client.clone()));
    Ok(client)
}

/// Starts call `id` on the shared runtime; `done` gets the outcome's JSON.
pub fn start<E, D>(request: String, id: u32, events: Option<E>, done: D) -> std::io::Result<()>
where
    E: Fn(String) + Send + Sync + 'static,
    D: FnOnce(String) + Send + 'static,
{
    let shared = shared()?;
    let (switch, aborted) = oneshot::channel();
    switches()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, switch);
    let job: Job = Box::new(move || {
        Box::pin(async move {
            let started = Instant::now();
            let (outcome, warnings) = match parse_and_check(&request) {
                Err(failure) => (Err(failure), Vec::new()),
                Ok(call) => {
                    let warnings = call.warnings.clone();
                    let on_event = move |event: Event| {
                        if let Some(events) = &events {
                            events(request::event_json(&event));
                        }
                    };
                    let work = run(call, started, &on_event);
                    let outcome = tokio::select! {
                        outcome = work => outcome,
                        _ = aborted => Err(Failure::Aborted),
                    };
                    (outcome, warnings)
                }
            };
            switches()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            done(request::outcome_json(outcome, &warnings));
        })
    });
    let _enter = shared.runtime.enter();
    shared
        .jobs
        .send(job)
        .map_err(|_| std::io::Error::other("the thread running the calls has stopped"))
}

fn parse_and_check(request: &str) -> Result<Call, Failure> {
    let request: request::Request = serde_json::from_str(request)
        .map_err(|err| Failure::Argument(format!("invalid request: {err}")))?;
    request.check(&Environment::from_process())
}

async fn run(
    call: Call,
    started: Instant,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> Result<Report, Failure> {
    let client = client_for(&call.connection).map_err(Failure::Library)?;
    let deadline = call
        .wait
        .then(|| started + call.timeout.unwrap_or(MAX_TIMEOUT));
    let options = PrepareOptions {
        wait: call.wait,
        deadline,
        ..PrepareOptions::default()
    };
    let prepare = matches!(call.kind, Kind::Prepare | Kind::FleetPrepare).then_some(&options);
    let work = async {
        client
            .report(&call.target, prepare, on_event)
            .await
            .map_err(Failure::Library)
    };
    if call.wait {
        work.await
    } else {
        tokio::time::timeout_at(started + RUN_LIMIT, work)
            .await
            .unwrap_or(Err(Failure::GaveUp(RUN_LIMIT)))
    }
}
