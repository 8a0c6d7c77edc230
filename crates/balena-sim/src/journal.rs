//! The request journal: what each server was asked and what it answered,
//! plus per-resource counters, so tests can assert on the exact traffic a
//! client produced.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

pub use crate::faults::Server;

/// Entries kept in memory; older ones are dropped (counters keep counting).
const MAX_ENTRIES: usize = 200_000;

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    /// Position since start (never reset, so gaps show cleared entries).
    pub seq: u64,
    pub server: Server,
    pub method: String,
    /// The raw path.
    pub path: String,
    /// The query, percent-decoded (`None` when the URL has no `?`).
    pub query: Option<String>,
    /// The status sent, or 0 when the connection was dropped or left unanswered.
    pub status: u16,
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
    /// `release`, `image`, `delta`, …; `None` for unknown routes.
    pub resource: Option<String>,
    /// Fault rules that fired (`latency`, `error`, `rate_limit`, `reset`, `stall`).
    pub faults: Vec<&'static str>,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    entries: VecDeque<JournalEntry>,
    /// (server, resource or "") → count.
    counters: BTreeMap<(Server, String), usize>,
    totals: BTreeMap<Server, usize>,
}

#[derive(Debug, Default)]
pub(crate) struct Journal {
    inner: Mutex<Inner>,
}

impl Journal {
    pub(crate) fn record(&self, mut entry: JournalEntry) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        entry.seq = inner.next_seq;
        inner.next_seq += 1;
        *inner.totals.entry(entry.server).or_default() += 1;
        if let Some(resource) = &entry.resource {
            *inner
                .counters
                .entry((entry.server, resource.clone()))
                .or_default() += 1;
        }
        if inner.entries.len() == MAX_ENTRIES {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
    }

    pub(crate) fn entries(&self) -> Vec<JournalEntry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.clear();
        inner.counters.clear();
        inner.totals.clear();
    }

    pub(crate) fn count(&self, server: Server, resource: Option<&str>) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match resource {
            None => inner.totals.get(&server).copied().unwrap_or(0),
            Some(r) => inner
                .counters
                .get(&(server, r.to_owned()))
                .copied()
                .unwrap_or(0),
        }
    }

    /// `{"api": {"total": n, "release": k, …}, "delta": {…}, "registry": {…}, "control": {…}}`.
    pub(crate) fn counters_json(&self) -> serde_json::Value {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = serde_json::Map::new();
        for server in [
            Server::Api,
            Server::Delta,
            Server::Registry,
            Server::Control,
        ] {
            let mut map = serde_json::Map::new();
            map.insert(
                "total".into(),
                inner.totals.get(&server).copied().unwrap_or(0).into(),
            );
            for ((s, resource), n) in &inner.counters {
                if *s == server {
                    map.insert(resource.clone(), (*n).into());
                }
            }
            out.insert(server_name(server).into(), map.into());
        }
        out.into()
    }
}

pub(crate) fn server_name(server: Server) -> &'static str {
    match server {
        Server::Api => "api",
        Server::Delta => "delta",
        Server::Control => "control",
        Server::Registry => "registry",
    }
}

/// Percent-decodes a query for display; `+` stays `+` (pine reads it as a space,
/// the journal shows the bytes the client chose).
pub(crate) fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(server: Server, resource: Option<&str>) -> JournalEntry {
        JournalEntry {
            seq: 0,
            server,
            method: "GET".into(),
            path: "/".into(),
            query: None,
            status: 200,
            duration: Duration::ZERO,
            resource: resource.map(str::to_owned),
            faults: vec![],
        }
    }

    #[test]
    fn counts_per_server_and_resource_and_clears() {
        let j = Journal::default();
        j.record(entry(Server::Api, Some("release")));
        j.record(entry(Server::Api, Some("release")));
        j.record(entry(Server::Api, Some("image")));
        j.record(entry(Server::Delta, Some("delta")));
        j.record(entry(Server::Api, None));
        assert_eq!(j.count(Server::Api, None), 4);
        assert_eq!(j.count(Server::Api, Some("release")), 2);
        assert_eq!(j.count(Server::Delta, Some("delta")), 1);
        assert_eq!(j.count(Server::Control, None), 0);
        assert_eq!(
            j.entries().iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(j.counters_json()["api"]["release"], 2);
        j.clear();
        assert_eq!(j.count(Server::Api, None), 0);
        assert!(j.entries().is_empty());
    }

    #[test]
    fn decoding_keeps_plus_and_bad_escapes() {
        assert_eq!(
            decode("$filter=status%20eq%20%27success%27"),
            "$filter=status eq 'success'"
        );
        assert_eq!(decode("a+b%2Cc%zz%4"), "a+b,c%zz%4");
    }
}
