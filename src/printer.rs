//! The only place that writes to the terminal. stdout carries the result and
//! nothing else; stderr carries errors, warnings, logs and live progress, and
//! what appears there depends on `--quiet`, `-v`, `NO_COLOR`, `CI` and
//! whether stderr is a terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;

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

    /// Writes the result to stdout. A closed pipe (`| head`) is not an error.
    pub fn result(text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// Prints one line on stdout and exits successfully (`--version`).
    pub fn stdout_line(text: &str) -> ExitCode {
        match Printer::result(&format!("{text}\n")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        }
    }

    /// `ERROR: <message>`, the npm tool's failure line, always shown.
    pub fn error(message: &str) {
        eprintln!("ERROR: {}", printable(message));
    }

    /// A follow-up line under an error: `caused by:` or `hint:`.
    pub fn detail(label: &str, message: &str) {
        eprintln!("  {label}: {}", printable(message));
    }

    pub fn warning(&self, message: &str) {
        if !self.quiet {
            if self.color {
                eprintln!("\x1b[33mwarning\x1b[0m: {}", printable(message));
            } else {
                eprintln!("warning: {}", printable(message));
            }
        }
    }

    /// Writes a block of progress lines to stderr (the caller redraws it).
    pub fn progress(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
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
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain text"), "plain text");
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(
            printable("\x1b]0;pwned\x07\x1b[31mRED"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[31mRED"
        );
    }
}
