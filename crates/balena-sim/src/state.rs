//! The state the servers and the [`crate::Simulator`] handle share (tables,
//! delta builds, clock, faults, journal, tokens), and the poison-tolerant
//! lock helpers every module uses to reach it.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};

use crate::clock::SimClock;
use crate::db::Db;
use crate::delta::DeltaEngine;
use crate::faults::{ActiveFaults, Faults, Server};
use crate::journal::Journal;
use crate::registry::Registry;

/// State shared by the servers and the [`crate::Simulator`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub db: RwLock<Db>,
    pub deltas: Mutex<DeltaEngine>,
    pub clock: SimClock,
    pub faults: RwLock<Arc<ActiveFaults>>,
    pub journal: Journal,
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    pub hold: Duration,
    pub running_status: StatusCode,
    pub registry: Registry,
    /// `http://127.0.0.1:<api port>`, the realm of registry challenges.
    pub api_url: String,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Brings delta builds up to the simulated now (cheap when none runs).
    pub(crate) fn refresh(&self) {
        let mut deltas = lock(&self.deltas);
        if !deltas.is_idle() {
            deltas.refresh(&mut write(&self.db), self.clock.now());
        }
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *write(&self.faults) = Arc::new(ActiveFaults::new(faults));
    }

    pub(crate) fn faults(&self) -> Faults {
        read(&self.faults).config.clone()
    }

    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && self.tokens.iter().any(|t| t == token.trim())
    }
}

#[derive(Clone)]
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub kind: Server,
}
