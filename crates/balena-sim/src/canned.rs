//! A raw HTTP/1.1 double on loopback whose answers each test chooses by path
//! prefix, byte for byte, and which records every request it receives,
//! headers included: for answers the simulator never gives (truncated or
//! mistyped bodies, HTML error pages, redirects) and for checking which
//! headers reached which host. The fixtures `RELEASES` and `DELTAS` are
//! well-formed answers for tests to start from.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One canned answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn json(body: impl Into<Vec<u8>>) -> Answer {
        Answer::new(200, "application/json", body)
    }

    pub fn redirect(status: u16, location: &str) -> Answer {
        Answer {
            status,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    routes: Vec<(String, Answer)>,
    seen: Vec<Seen>,
}

/// The server; it runs on its own thread until the test process ends.
#[derive(Clone)]
pub struct Canned {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Canned {
    pub fn start() -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback has a free port");
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .expect("a bound socket has an address")
        );
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &shared);
            }
        });
        Canned { url, state }
    }

    /// Answers requests whose path starts with `prefix` (the latest matching
    /// route wins); requests matching no route get a 404.
    pub fn route(&self, prefix: &str, answer: Answer) -> &Canned {
        self.lock().routes.push((prefix.to_owned(), answer));
        self
    }

    /// Forgets every route and every recorded request.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.routes.clear();
        state.seen.clear();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let answer = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.seen.push(Seen {
            target: target.clone(),
            headers,
        });
        state
            .routes
            .iter()
            .rev()
            .find(|(prefix, _)| target.starts_with(prefix.as_str()))
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| Answer::new(404, "text/plain", "no such route"))
    };
    let mut out = format!("HTTP/1.1 {} Canned\r\n", answer.status).into_bytes();
    for (name, value) in &answer.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            answer.body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&answer.body);
    let _ = stream.write_all(&out);
    let _ = stream.flush();
}

/// A valid answer to the release query: releases 1 and 2 of fleet 7, each
/// with a `main` service (images 11 and 21) and an `api` service (images 12
/// and 22, the same content), sizes as strings as in `/v7`.
pub const RELEASES: &str = r#"{"d":[
{"id":1,"commit":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"success","belongs_to__application":{"__id":7},
 "release_image":[
  {"id":1,"image":[{"id":11,"status":"success","content_hash":"sha256:11","image_size":"1000",
    "is_stored_at__image_location":"registry/11","is_a_build_of__service":[{"service_name":"main"}]}]},
  {"id":2,"image":[{"id":12,"status":"success","content_hash":"sha256:same","image_size":"500",
    "is_stored_at__image_location":"registry/12","is_a_build_of__service":[{"service_name":"api"}]}]}]},
{"id":2,"commit":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","status":"success","belongs_to__application":{"__id":7},
 "release_image":[
  {"id":3,"image":[{"id":21,"status":"success","content_hash":"sha256:21","image_size":"2000",
    "is_stored_at__image_location":"registry/21","is_a_build_of__service":[{"service_name":"main"}]}]},
  {"id":4,"image":[{"id":22,"status":"success","content_hash":"sha256:same","image_size":"500",
    "is_stored_at__image_location":"registry/22","is_a_build_of__service":[{"service_name":"api"}]}]}]}
]}"#;

/// A valid answer to the delta query: a built delta from image 11 to 21.
pub const DELTAS: &str = r#"{"d":[
{"id":5,"status":"success","version":3,"is_stored_at__location":"registry/21:delta-1","size":"300",
 "originates_from__image":{"__id":11},"produces__image":{"__id":21},
 "update_timestamp":"2025-11-11T16:52:58.089Z","error_message":null}
]}"#;
