//! A loopback relay in front of the simulator's API that answers what the
//! fleet's first round asks about devices (pins, `$count` inside `$expand`)
//! from the scenario's own devices, and passes every other request through.
//! The simulator stores a device's pin as its `should_be_running__release`
//! and has neither `is_pinned_on__release` nor `$count`; the answers here
//! have the shape pinejs gives (a count in place of the expanded rows).
//! Used by the library's and the CLI's fleet tests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use balena_sim::Scenario;

/// How the relay answers the counting queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Counts, like pinejs.
    Counts,
    /// Refuses the application's count (and so every count) with a status.
    Refuses(u16),
    /// Counts devices without a release, refuses the count per release.
    RefusesPerRelease(u16),
}

/// One device of the scenario: fleet, running release, pin.
#[derive(Debug, Clone, Copy)]
struct Device {
    application: i64,
    running: Option<i64>,
    pinned: Option<i64>,
}

struct State {
    api: String,
    counting: Counting,
    devices: Vec<Device>,
    /// (release id, fleet) of every release.
    releases: Vec<(i64, i64)>,
    /// Every request target seen, decoded.
    seen: Vec<String>,
}

/// The relay; it runs until the test process ends.
#[derive(Clone)]
pub struct Relay {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Relay {
    /// A relay to the simulator at `api` (its `api_url()`) serving the
    /// devices of `scenario`.
    pub fn start(api: &str, scenario: &Scenario, counting: Counting) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback has a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let state = Arc::new(Mutex::new(State {
            api: api.trim_start_matches("http://").to_owned(),
            counting,
            devices: scenario
                .devices
                .iter()
                .map(|d| Device {
                    application: d.belongs_to__application,
                    running: d.is_running__release,
                    pinned: d.is_pinned_on__release,
                })
                .collect(),
            releases: scenario
                .releases
                .iter()
                .map(|r| (r.id, r.belongs_to__application))
                .collect(),
            seen: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Relay { url, state }
    }

    /// Every request received (decoded targets), oldest first.
    pub fn seen(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Forgets the requests received.
    pub fn clear(&self) {
        self.state.lock().unwrap().seen.clear();
    }
}

/// `%XX` escapes decoded (the client escapes spaces, quotes and slashes).
fn decode(target: &str) -> String {
    let bytes = target.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = target.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The number after `field eq ` in a query.
fn id_after(query: &str, field: &str) -> Option<i64> {
    let rest = &query[query.find(&format!("{field} eq "))? + field.len() + 4..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn fk(id: Option<i64>) -> serde_json::Value {
    match id {
        Some(id) => serde_json::json!({ "__id": id }),
        None => serde_json::Value::Null,
    }
}

/// An answer: status, content type, extra headers, body.
type Answer = (u16, String, Vec<(String, String)>, Vec<u8>);

fn json(value: &serde_json::Value) -> Answer {
    (
        200,
        "application/json".into(),
        Vec::new(),
        value.to_string().into_bytes(),
    )
}

fn refuse(status: u16) -> Answer {
    (
        status,
        "application/json".into(),
        Vec::new(),
        b"\"refused by the relay\"".to_vec(),
    )
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let authorization = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .map(str::to_owned);
    let decoded = decode(&target);
    let (api, counting, devices, releases) = {
        let mut s = state.lock().unwrap();
        s.seen.push(decoded.clone());
        (
            s.api.clone(),
            s.counting,
            s.devices.clone(),
            s.releases.clone(),
        )
    };
    let (path, query) = decoded.split_once('?').unwrap_or((&decoded, ""));
    let fleet = id_after(query, "belongs_to__application");
    let answer = match path {
        "/v7/device" => {
            let pinned_only = query.contains("is_pinned_on__release ne null");
            let rows: Vec<serde_json::Value> = devices
                .iter()
                .filter(|d| Some(d.application) == fleet && (!pinned_only || d.pinned.is_some()))
                .map(|d| {
                    serde_json::json!({
                        "is_running__release": fk(d.running),
                        "is_pinned_on__release": fk(d.pinned),
                    })
                })
                .collect();
            json(&serde_json::json!({ "d": rows }))
        }
        "/v7/release" if query.contains("/$count(") => match counting {
            Counting::Refuses(status) | Counting::RefusesPerRelease(status) => refuse(status),
            Counting::Counts => {
                let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
                for d in devices.iter().filter(|d| Some(d.application) == fleet) {
                    if let (Some(running), None) = (d.running, d.pinned) {
                        *counts.entry(running).or_insert(0) += 1;
                    }
                }
                let rows: Vec<serde_json::Value> = releases
                    .iter()
                    .filter(|(_, app)| Some(*app) == fleet)
                    .map(|(id, _)| {
                        serde_json::json!({
                            "id": id,
                            "is_running_on__device": counts.get(id).copied().unwrap_or(0),
                        })
                    })
                    .collect();
                json(&serde_json::json!({ "d": rows }))
            }
        },
        "/v7/application" if query.contains("/$count(") => match counting {
            Counting::Refuses(status) => refuse(status),
            _ => {
                // The application itself from the simulator, plus the count.
                let plain = target
                    .split("&$expand=")
                    .next()
                    .unwrap_or(&target)
                    .to_owned();
                let mut answer = forward(&api, &plain, authorization.as_deref());
                if answer.0 == 200
                    && let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&answer.3)
                {
                    for row in body["d"].as_array_mut().into_iter().flatten() {
                        let id = row["id"].as_i64();
                        let without = devices
                            .iter()
                            .filter(|d| Some(d.application) == id && d.running.is_none())
                            .count();
                        row["owns__device"] = serde_json::json!(without);
                    }
                    answer.3 = body.to_string().into_bytes();
                }
                answer
            }
        },
        _ => forward(&api, &target, authorization.as_deref()),
    };
    let (status, content_type, headers, body) = answer;
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(&body);
}

/// Sends the request to the simulator (HTTP/1.0: the answer ends with the
/// connection) and returns its status, content type, `Date` and body.
fn forward(api: &str, target: &str, authorization: Option<&str>) -> Answer {
    let Ok(mut upstream) = TcpStream::connect(api) else {
        return refuse(502);
    };
    let mut request = format!("GET {target} HTTP/1.0\r\nHost: {api}\r\n");
    if let Some(authorization) = authorization {
        request.push_str(authorization);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut raw = Vec::new();
    if upstream.write_all(request.as_bytes()).is_err() || upstream.read_to_end(&mut raw).is_err() {
        return refuse(502);
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return refuse(502);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let extra = header("date")
        .map(|d| vec![("Date".to_owned(), d)])
        .unwrap_or_default();
    (
        status,
        header("content-type").unwrap_or_else(|| "application/json".into()),
        extra,
        raw[split + 4..].to_vec(),
    )
}
