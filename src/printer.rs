//! The only place that writes to the terminal. stdout carries the result and
//! nothing else; stderr carries errors, warnings, logs and live progress, and
//! what appears there depends on `--quiet`, `-v`, `NO_COLOR`, `CI` and
//! whether stderr is a terminal. A failed write to stderr is ignored (there
//! is nowhere left to report it); a failed write of the result is an error.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::files::{plain_io_error, without_os_error_code};

/// How much to say on stderr, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printer {
    /// Errors only.
    pub quiet: bool,
    /// Live progress redrawn in place: stderr is a terminal, not quiet, not CI.
    pub live: bool,
    /// ANSI colour on stderr.
    pub color: bool,
}

impl Printer {
    /// `terminal`: stderr is a terminal; `ci` and `no_color`: what `CI` and
    /// `NO_COLOR` say (read by `config`).
    pub fn new(quiet: bool, verbose: u8, terminal: bool, ci: bool, no_color: bool) -> Printer {
        Printer {
            quiet,
            live: terminal && !quiet && !ci && verbose == 0,
            color: terminal && !no_color,
        }
    }

    /// Writes the result to stdout. A closed pipe (`| head`) is not an
    /// error; any other failure is, described in plain words.
    pub fn result(text: &str) -> std::io::Result<()> {
        if STDOUT_CLOSED_AT_START.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("it is closed"));
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(err) => Err(std::io::Error::new(err.kind(), plain_io_error(&err))),
            Ok(()) => Ok(()),
        }
    }

    /// Prints one line on stdout and exits successfully (`--version`).
    pub fn stdout_line(text: &str) -> ExitCode {
        Printer::stdout_outcome(Printer::result(&format!("{text}\n")))
    }

    /// The exit code after writing to stdout: success, or (as with
    /// `Printer::result`) a broken pipe; any other failure is reported.
    pub fn stdout_outcome(written: std::io::Result<()>) -> ExitCode {
        let written = match written {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Ok(()) if STDOUT_CLOSED_AT_START.load(Ordering::Relaxed) => {
                Err(std::io::Error::other("it is closed"))
            }
            other => other,
        };
        match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                Printer::error(&format!("cannot write to stdout: {}", plain_io_error(&err)));
                ExitCode::FAILURE
            }
        }
    }

    /// `ERROR: <message>`, the npm tool's failure line, always shown.
    pub fn error(message: &str) {
        write_stderr(&format!("ERROR: {}\n", terminal_text(message)));
    }

    /// A follow-up line under an error: `caused by:` or `hint:`.
    pub fn detail(label: &str, message: &str) {
        write_stderr(&format!("  {label}: {}\n", terminal_text(message)));
    }

    pub fn warning(&self, message: &str) {
        if !self.quiet {
            let label = if self.color {
                "\x1b[33mwarning\x1b[0m"
            } else {
                "warning"
            };
            write_stderr(&format!("{label}: {}\n", terminal_text(message)));
        }
    }

    /// Text of this tool's own (the short help) on stderr, as it is.
    pub fn stderr_text(text: &str) {
        write_stderr(text);
    }

    /// Writes a block of progress lines to stderr (the caller redraws it).
    pub fn progress(&self, text: &str) {
        write_stderr(text);
    }
}

/// Writes to stderr, ignoring failure (`2>/dev/full`, a closed pipe):
/// stderr is where failures would be reported, so there is nowhere to go.
fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

fn terminal_text(message: &str) -> String {
    printable(&without_os_error_code(message)).into_owned()
}

/// The writer for `-v` logs: stderr, where a failed write is ignored rather
/// than reported (which would itself write to stderr, and panic).
/// Used as `tracing_subscriber::fmt().with_writer(printer::log_writer)`.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See `log_writer`.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Whether stdout was closed (`>&-`) when the process started. The Rust
/// runtime then opens `/dev/null` in its place before `main`, so writes
/// would succeed and the result be lost; this is checked before that.
static STDOUT_CLOSED_AT_START: AtomicBool = AtomicBool::new(false);

// Run by the C runtime before `main`, and so before the Rust runtime
// replaces a closed stdout.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CHECK_STDOUT_AT_START: extern "C" fn() = check_stdout_at_start;

#[cfg(target_os = "linux")]
extern "C" fn check_stdout_at_start() {
    use std::os::fd::AsFd;
    if let Err(err) = std::io::stdout().as_fd().try_clone_to_owned()
        && err.raw_os_error() == Some(libc::EBADF)
    {
        STDOUT_CLOSED_AT_START.store(true, Ordering::Relaxed);
    }
}

/// Text from servers and files made safe for one terminal line: control
/// characters (newlines, escape sequences) are shown escaped, not obeyed.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain text"), "plain text");
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(
            printable("\x1b]0;pwned\x07\x1b[31mRED"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[31mRED"
        );
    }

    #[test]
    fn os_error_codes_are_left_out() {
        for (raw, plain) in [
            (
                "No space left on device (os error 28)",
                "No space left on device",
            ),
            ("a (os error 1) and b (os error 22): c", "a and b: c"),
            ("kept (os error x)", "kept (os error x)"),
            ("no code here", "no code here"),
        ] {
            assert_eq!(terminal_text(raw), plain);
        }
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(plain_io_error(&full), "no space left on device");
        let other = std::io::Error::from_raw_os_error(71);
        assert!(!plain_io_error(&other).contains("os error"), "{other}");
    }

    #[test]
    fn the_log_writer_never_fails() {
        let mut writer = log_writer();
        assert_eq!(writer.write(b"").unwrap(), 0);
        assert!(writer.flush().is_ok());
    }
}
