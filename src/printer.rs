//! The only place that writes to the terminal. stdout carries the result and
//! nothing else; stderr carries errors, warnings, logs and live progress, and
//! what appears there depends on `--quiet`, `-v`, `NO_COLOR`, `CI` and
//! whether stderr is a terminal. A failed write to stderr is ignored (there
//! is nowhere left to report it); a failed write of the result is an error.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use balena_session::files::{plain_io_error, without_os_error_code};

/// How much to say on stderr, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printer {
    /// Errors only.
    pub quiet: bool,
    /// Live progress redrawn in place: stderr is a terminal that obeys
    /// escape sequences, not quiet, not CI, no `-v` logs.
    pub live: bool,
    /// Plain status lines instead of the live block: stderr is not such a
    /// terminal (a pipe, a file, CI, `TERM=dumb`), not quiet, no `-v` logs
    /// (which report every change themselves).
    pub lines: bool,
    /// ANSI colour on stderr.
    pub color: bool,
}

impl Printer {
    /// `terminal`: stderr is a terminal; `dumb`: one that must get no escape
    /// sequences (`TERM=dumb`); `ci`: what `CI` says; `color`: what
    /// `--color`, `NO_COLOR` and `CLICOLOR_FORCE` decide (read by
    /// `config`). Colour also applies to the `ERROR:`, `caused by:` and
    /// `hint:` lines, from then on.
    pub fn new(
        quiet: bool,
        verbose: u8,
        terminal: bool,
        dumb: bool,
        ci: bool,
        color: bool,
    ) -> Printer {
        let live = terminal && !dumb && !quiet && !ci && verbose == 0;
        COLOR.store(color, Ordering::Relaxed);
        Printer {
            quiet,
            live,
            lines: !live && !quiet && verbose == 0,
            color,
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

    /// Writes one line of a stream that has no end (`--watch`) to stdout.
    /// Unlike [`Printer::result`], a reader that went away is an error: a
    /// stream nobody reads is not worth keeping up.
    pub fn stream_line(text: &str) -> std::io::Result<()> {
        if STDOUT_CLOSED_AT_START.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("it is closed"));
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                Err(std::io::Error::new(err.kind(), "its reader closed it"))
            }
            Err(err) => Err(std::io::Error::new(err.kind(), plain_io_error(&err))),
            Ok(()) => Ok(()),
        }
    }

    /// Whether stdout's reader is gone (a pipe or socket closed at the
    /// other end), found without writing: for a stream that may write
    /// nothing for a long time.
    pub fn stdout_reader_gone() -> bool {
        #[cfg(unix)]
        {
            let mut fd = libc::pollfd {
                fd: libc::STDOUT_FILENO,
                events: 0,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            let ready = unsafe { libc::poll(&mut fd, 1, 0) };
            ready > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
        }
        #[cfg(not(unix))]
        {
            false
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

    /// `ERROR: <message>`, the npm tool's failure line, always shown; in
    /// colour, `ERROR` is red and bold.
    pub fn error(message: &str) {
        let text = labelled("ERROR: ", &terminal_text(message));
        write_stderr(&painted(text, "ERROR", RED_BOLD));
    }

    /// A follow-up line under an error: `caused by:` or `hint:` (in colour,
    /// a hint is dim).
    pub fn detail(label: &str, message: &str) {
        let text = labelled(&format!("  {label}: "), &terminal_text(message));
        if label == "hint" {
            write_stderr(&dimmed(text));
        } else {
            write_stderr(&text);
        }
    }

    /// The next step after a result that is not final: `hint: …` (dim in
    /// colour).
    pub fn hint(message: &str) {
        write_stderr(&dimmed(labelled("hint: ", &terminal_text(message))));
    }

    /// `warning: …`, wrapped on a terminal as `ERROR:` lines are (the
    /// word yellow in colour); not with `--quiet`.
    pub fn warning(&self, message: &str) {
        if !self.quiet {
            let text = labelled("warning: ", &terminal_text(message));
            if self.color {
                write_stderr(&text.replacen("warning", "\x1b[33mwarning\x1b[0m", 1));
            } else {
                write_stderr(&text);
            }
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

/// Whether `ERROR:` and `hint:` lines get colour; set by [`Printer::new`].
static COLOR: AtomicBool = AtomicBool::new(false);

const RED_BOLD: &str = "\x1b[1;31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// `text` with its first `word` in `style`, when colour is on. Applied
/// after the text is wrapped, so that widths count no escape sequence.
fn painted(text: String, word: &str, style: &str) -> String {
    if !COLOR.load(Ordering::Relaxed) {
        return text;
    }
    text.replacen(word, &format!("{style}{word}{RESET}"), 1)
}

/// Every line of `text` dim, when colour is on.
fn dimmed(text: String) -> String {
    if !COLOR.load(Ordering::Relaxed) {
        return text;
    }
    text.lines()
        .map(|line| format!("{DIM}{line}{RESET}\n"))
        .collect()
}

/// Writes to stderr, ignoring failure (`2>/dev/full`, a closed pipe):
/// stderr is where failures would be reported, so there is nowhere to go.
fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// `label` and `text` as one line, or, when stderr is a terminal, wrapped
/// to its width (see [`fit_message`]).
fn labelled(label: &str, text: &str) -> String {
    match terminal_size::terminal_size_of(std::io::stderr()) {
        Some((width, _)) => fit_message(label, text, usize::from(width.0)),
        None => format!("{label}{text}\n"),
    }
}

/// What ends a message whose last part is a command to run.
const COMMAND_FOLLOWS: &str = ", run: ";

/// `label` and `text` wrapped at word boundaries to `columns`, the lines
/// after the first indented under the text. A command that ends the text
/// (after `, run: `) starts a line of its own, and when it is wider than a
/// line, it goes on over several, each but the last ending in ` \`, so
/// that it can still be copied into a shell as it is.
pub fn fit_message(label: &str, text: &str, columns: usize) -> String {
    let indent = " ".repeat(label.chars().count());
    let room = columns.saturating_sub(indent.len()).max(20);
    let (prose, command) = match text.rsplit_once(COMMAND_FOLLOWS) {
        Some((prose, command)) => (format!("{prose}, run:"), Some(command)),
        None => (text.to_owned(), None),
    };
    let mut lines = wrap(&prose, room, "");
    if let Some(command) = command {
        lines.extend(command_lines(command, room));
    }
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        out.push_str(if n == 0 { label } else { &indent });
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A shell command over lines of at most `width` characters, broken
/// between words (never inside a quoted one) with ` \` line ends.
fn command_lines(command: &str, width: usize) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut quoted = false;
    let mut word = String::new();
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.push(c);
            }
            ' ' if !quoted => words.push(std::mem::take(&mut word)),
            _ => word.push(c),
        }
    }
    words.push(word);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in words.into_iter().filter(|w| !w.is_empty()) {
        // Room for ` \` at the end of every line but the last.
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() + 2 > width {
            line.push_str(" \\");
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    lines.push(line);
    lines
}

/// `text` as lines of at most `width` characters, broken at spaces, the
/// lines after the first indented by `indent` (within `width`). A size's
/// number and unit stay together (`447 MB`); a word longer than a line is
/// cut, so that no line is ever wider than `width`.
pub fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut length = 0;
    for word in words(text) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let prefix = if lines.is_empty() { 0 } else { indent.len() };
            let room = width.saturating_sub(prefix).max(1);
            let needed = if length == 0 {
                word.len()
            } else {
                length + 1 + word.len()
            };
            if needed <= room {
                if length > 0 {
                    line.push(' ');
                }
                line.extend(word.iter());
                length = needed;
                break;
            }
            if length > 0 {
                lines.push(std::mem::take(&mut line));
                length = 0;
                continue;
            }
            // A word wider than a whole line.
            let rest = word.split_off(room);
            line.extend(word.iter());
            lines.push(std::mem::take(&mut line));
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if length > 0 || lines.is_empty() {
        lines.push(line);
    }
    for line in lines.iter_mut().skip(1) {
        line.insert_str(0, indent);
    }
    lines
}

/// The words of `text`, a size's number and unit kept together (`447 MB`).
fn words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let unit = word.trim_end_matches(|c: char| c.is_ascii_punctuation());
        let after_number = words
            .last()
            .is_some_and(|last| last.ends_with(|c: char| c.is_ascii_digit()));
        match words.last_mut() {
            Some(last) if after_number && ["B", "kB", "MB", "GB", "TB"].contains(&unit) => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
    }
    words
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
/// characters (newlines, escape sequences, DEL, C1) and invisible format
/// characters (bidi overrides and isolates, zero-width characters) are shown
/// escaped (`\u{1b}`, `\u{202e}`), not obeyed.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(must_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if must_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Characters a terminal obeys or hides instead of showing: controls (C0,
/// DEL, C1), Unicode's format characters (category Cf: bidi controls,
/// zero-width characters, the BOM, tags) and the line and paragraph
/// separators.
pub fn must_escape(c: char) -> bool {
    c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Unicode general category Cf (Unicode 15).
fn is_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// `value` as pretty JSON (2-space indent, as `JSON.stringify(v, null, 2)`)
/// in which every character that `must_escape` names is written `\uXXXX`:
/// a JSON parser reads the same data, a terminal showing the file obeys none
/// of it. serde_json itself escapes only U+0000 to U+001F.
pub fn json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let formatter = SafeJson(serde_json::ser::PrettyFormatter::with_indent(b"  "));
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    // The serializer writes only whole UTF-8 strings and ASCII escapes.
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// `value` as one line of JSON (a JSON-lines record), with the escapes of
/// [`json_pretty`].
pub fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let formatter = SafeJson(serde_json::ser::CompactFormatter);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// A serde_json layout (pretty or compact), with the extra escapes of
/// `json_pretty`.
struct SafeJson<F>(F);

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for SafeJson<F> {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| must_escape(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// How `-v` logs write an event's fields: every value made printable and
/// cleared of credentials, since fields carry server text (service names,
/// error messages) and URLs.
/// Used as `tracing_subscriber::fmt().fmt_fields(printer::log_fields())`.
pub fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let text = rounded(&text);
        let text = balena_release::redact_secrets(&text, None);
        let text = printable(&text);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// A log value that is a number or a duration with more than three
/// decimals (`1.5144341159999999`, `1.514434116s`) rounded to three
/// (`1.514`, `1.514s`); any other text as it is.
fn rounded(text: &str) -> std::borrow::Cow<'_, str> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
    let is_unit = matches!(unit, "" | "s" | "ms" | "µs" | "ns");
    match number.parse::<f64>() {
        Ok(value) if decimals > 3 && is_unit && value.is_finite() => {
            format!("{value:.3}{unit}").into()
        }
        _ => std::borrow::Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wrap_on_a_terminal_and_commands_stay_copyable() {
        let hint = "the deltas are being built; to wait until they are ready, run: \
                    balena-release-update --fleet 'my org/kiosk fleet' --to-release 900871 \
                    --wait --timeout 10m";
        let text = fit_message("  hint: ", hint, 60);
        assert_eq!(
            text,
            "  hint: the deltas are being built; to wait until they are\n\
             \x20       ready, run:\n\
             \x20       balena-release-update --fleet 'my org/kiosk fleet' \\\n\
             \x20       --to-release 900871 --wait --timeout 10m\n"
        );
        assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
        // Joined again as a shell joins continued lines: the same command.
        let command: String = text
            .lines()
            .skip(2)
            .map(|l| l.trim().trim_end_matches('\\'))
            .collect();
        assert_eq!(
            command.split_whitespace().collect::<Vec<_>>().join(" "),
            hint.split_once(", run: ").unwrap().1
        );
        assert_eq!(
            fit_message("ERROR: ", "interrupted", 80),
            "ERROR: interrupted\n"
        );
    }

    #[test]
    fn log_numbers_are_rounded() {
        assert_eq!(rounded("1.5144341159999999"), "1.514");
        assert_eq!(rounded("1.514434116s"), "1.514s");
        assert_eq!(rounded("20.000123ms"), "20.000ms");
        assert_eq!(rounded("-0.12345"), "-0.123");
        for kept in [
            "1.5",
            "12",
            "1.514s",
            "v1.2.3456",
            "1.23456 apples",
            "abc",
            "",
        ] {
            assert_eq!(rounded(kept), kept);
        }
    }

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
    fn c1_del_and_format_characters_are_escaped() {
        for (raw, shown) in [
            ("a\u{85}b\u{9b}31m\u{7f}", "a\\u{85}b\\u{9b}31m\\u{7f}"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            (
                "\u{2066}x\u{2069}\u{200e}\u{200f}",
                "\\u{2066}x\\u{2069}\\u{200e}\\u{200f}",
            ),
            ("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("line\u{2028}break", "line\\u{2028}break"),
        ] {
            assert_eq!(printable(raw), shown, "{}", raw.escape_debug());
        }
        for kept in ["café", "日本語", "emoji 🚀", "a\\b", "Ω ≠ ∞"] {
            assert!(
                matches!(printable(kept), std::borrow::Cow::Borrowed(_)),
                "{kept}"
            );
        }
    }

    #[test]
    fn json_escapes_what_a_terminal_would_obey_and_keeps_the_data() {
        let hostile = "\u{1b}[2J\u{1b}]0;title\u{202e}\u{85}\u{9b}\u{7f}\u{2028}\u{e0001}é\n\"\\";
        let value = serde_json::json!({
            "name": hostile,
            "list": [hostile, "plain", 1, null, { "nested": hostile }],
            hostile: true,
            "empty": {},
            "none": [],
        });
        let text = json_pretty(&value).unwrap();
        assert!(
            !text.chars().any(|c| c != '\n' && must_escape(c)),
            "{}",
            text.escape_debug()
        );
        for escape in [
            "\\u001b[2J",
            "\\u202e",
            "\\u0085",
            "\\u009b",
            "\\u007f",
            "\\u2028",
            "\\udb40\\udc01",
        ] {
            assert!(text.contains(escape), "no {escape} in {text}");
        }
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
        // Without such characters, the layout is serde_json's own.
        let plain = serde_json::json!({ "a": [1, { "b": "café" }], "c": {}, "d": [] });
        assert_eq!(
            json_pretty(&plain).unwrap(),
            serde_json::to_string_pretty(&plain).unwrap()
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
