//! The signals that stop a run the way Ctrl-C does, and how they are
//! awaited: one place for the run and the watch to share.

/// A signal that stops a run the way Ctrl-C does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: `kill`, `timeout(1)`, `docker stop`, a cancelled CI job.
    Terminate,
    /// SIGHUP: the terminal went away.
    Hangup,
}

impl Signal {
    /// 128 + the signal's number, as shells report a process it ended.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
            Signal::Hangup => 129,
        }
    }
}

/// The first of Ctrl-C, SIGTERM and SIGHUP. A signal that was ignored when
/// the process started (`nohup`, a background job of a script) stays
/// ignored; one whose handler cannot be installed keeps its default action.
pub async fn stop_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |number: libc::c_int| {
            if ignored_at_start(number) {
                None
            } else {
                signal(SignalKind::from_raw(number)).ok()
            }
        };
        let mut interrupt = handler(libc::SIGINT);
        let mut terminate = handler(libc::SIGTERM);
        let mut hangup = handler(libc::SIGHUP);
        tokio::select! {
            Some(()) = recv(&mut interrupt) => Signal::Interrupt,
            Some(()) = recv(&mut terminate) => Signal::Terminate,
            Some(()) = recv(&mut hangup) => Signal::Hangup,
            else => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}

/// The next delivery of a signal, or `None` at once without a handler.
#[cfg(unix)]
async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => None,
    }
}

/// Whether `number` is ignored, as inherited from the parent (read before
/// any handler of this process is installed).
#[cfg(unix)]
fn ignored_at_start(number: libc::c_int) -> bool {
    let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action, sigaction only writes the current
    // action into `action`, which is valid for writes.
    let read = unsafe { libc::sigaction(number, std::ptr::null(), action.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled in by the successful call.
    read == 0 && unsafe { action.assume_init() }.sa_sigaction == libc::SIG_IGN
}
