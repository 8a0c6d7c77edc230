//! The view as GitHub-flavoured Markdown, for a CI job's summary
//! (`$GITHUB_STEP_SUMMARY`), a GitLab report or a pull-request comment.
//! Every piece of text is escaped: a service name or a server's message
//! cannot end a table cell, start a link, mention someone or inject HTML.

use super::sheet::{Cell, Sheet, View};
use crate::printer::printable;

/// The view as Markdown; `verdict` (the `--max-download` verdict) goes
/// under the first heading, in bold, so that a job summary says it first.
pub fn render(view: &View, verdict: Option<&str>) -> String {
    let mut out = String::new();
    let verdict = verdict.map(|v| format!("**{}**\n\n", text(&capitalised(v))));
    let mut verdict = verdict.as_deref();
    let mut lines = view.heading.iter();
    if let Some(first) = lines.next() {
        out.push_str(&format!("## {}\n\n", text(first)));
        out.push_str(verdict.take().unwrap_or(""));
    }
    for line in lines {
        out.push_str(&format!("{}\n\n", text(line)));
    }
    if let Some(summary) = &view.summary {
        push_sheet(&mut out, summary, "###", None);
    }
    // A transition alone is the report's heading; in a fleet, a subsection.
    let level = if view.heading.is_empty() { "##" } else { "###" };
    for sheet in &view.transitions {
        push_sheet(&mut out, sheet, level, verdict.take());
    }
    for line in &view.closing {
        out.push_str(&format!("{}\n\n", text(line)));
    }
    // One newline at the end, as the other formats.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn push_sheet(out: &mut String, sheet: &Sheet, level: &str, verdict: Option<&str>) {
    if let Some(title) = &sheet.title {
        out.push_str(&format!("{level} {}\n\n", text(title)));
    }
    out.push_str(verdict.unwrap_or(""));
    let headers: Vec<String> = sheet
        .columns
        .iter()
        .map(|c| escape(&title_case(c.header())))
        .collect();
    out.push_str(&format!("| {} |\n", headers.join(" | ")));
    let rule: Vec<&str> = sheet
        .columns
        .iter()
        .map(|c| if c.right_aligned() { "---:" } else { ":---" })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in &sheet.rows {
        let cells: Vec<String> = row.iter().map(cell).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    let total: Vec<String> = sheet
        .total
        .iter()
        .map(|c| match cell(c) {
            text if text.is_empty() => text,
            text => format!("**{text}**"),
        })
        .collect();
    out.push_str(&format!("| {} |\n\n", total.join(" | ")));
    // Footnotes and sentences as a list, so that each stays one item.
    for note in &sheet.notes {
        out.push_str(&format!("- {}\n", text(note)));
    }
    if !sheet.notes.is_empty() {
        out.push('\n');
    }
}

/// A cell's text; a cell with a footnote shows only its word and the
/// mark (`failed [1]`): the footnote has the server's text, said once.
fn cell(cell: &Cell) -> String {
    if cell.mark.is_empty() {
        return text(&cell.text);
    }
    let word: String = cell.text.chars().take(cell.keep).collect();
    text(&format!("{word}{}", cell.mark))
}

/// Escaped text whose sizes never wrap: a no-break space between a number
/// and its unit (`131 MB`), and after `≤`.
fn text(line: &str) -> String {
    let escaped = escape(line);
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find(' ') {
        let (before, after) = rest.split_at(at);
        let after = &after[1..];
        out.push_str(before);
        let number = before.ends_with(|c: char| c.is_ascii_digit()) || before.ends_with('≤');
        let unit = ["B", "kB", "MB", "GB", "TB"].iter().any(|unit| {
            after
                .strip_prefix(unit)
                .is_some_and(|tail| !tail.starts_with(|c: char| c.is_alphanumeric()))
        });
        let bound = before.ends_with('≤') && after.starts_with(|c: char| c.is_ascii_digit());
        out.push(if (number && unit) || bound {
            '\u{a0}'
        } else {
            ' '
        });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `over the budget: …` → `Over the budget: …`.
fn capitalised(line: &str) -> String {
    let mut chars = line.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `SERVICE` → `Service`, `FLEET TOTAL` → `Fleet total`.
fn title_case(header: &str) -> String {
    let lower = header.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Text that Markdown shows as written: controls escaped as on a terminal,
/// ASCII punctuation that could start markup backslash-escaped, and `<`,
/// `>` and `&` written as entities so that no HTML gets through.
///
/// GitHub's extended autolinks are made from the text after escapes are
/// read, so escaping alone does not stop them; what they start with is
/// written so that they do not match: the `:` of `://` as `&#58;` (no
/// `https://…` link), the `.` of `www.` as `&#46;` (no `www.…` link), and a
/// zero-width space (`&#8203;`) after every `@` (no `name@host` mail link,
/// no `@someone` mention). Each reads the same once rendered.
pub fn escape(text: &str) -> String {
    let shown = printable(text);
    let chars: Vec<char> = shown.chars().collect();
    let mut out = String::with_capacity(shown.len());
    for (i, &c) in chars.iter().enumerate() {
        let next = |n: usize| chars.get(i + n).copied();
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            ':' if next(1) == Some('/') => out.push_str("&#58;"),
            '.' if i >= 3 && chars[i - 3..i].iter().all(|w| w.eq_ignore_ascii_case(&'w')) => {
                out.push_str("&#46;")
            }
            '@' => out.push_str("\\@&#8203;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_cannot_become_markup() {
        assert_eq!(escape("main"), "main");
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(
            escape("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(escape("[x](http://e)"), "\\[x\\](http&#58;//e)");
        assert_eq!(escape("@team **now**"), "\\@&#8203;team \\*\\*now\\*\\*");
        // Shown as the two characters `\n`, as on a terminal.
        assert_eq!(escape("line\nbreak"), "line\\\\nbreak");
        assert_eq!(escape("a\\|b"), "a\\\\\\|b");
        assert_eq!(escape("`code` &amp;"), "\\`code\\` &amp;amp;");
    }

    #[test]
    fn server_text_cannot_become_an_autolink_or_a_mention() {
        assert_eq!(
            escape("see https://evil.example/x"),
            "see https&#58;//evil.example/x"
        );
        assert_eq!(escape("FTP://a"), "FTP&#58;//a");
        assert_eq!(
            escape("go to WWW.evil.example"),
            "go to WWW&#46;evil.example"
        );
        assert_eq!(escape("bob@evil.example"), "bob\\@&#8203;evil.example");
        assert_eq!(escape("mailto:x@y.z"), "mailto:x\\@&#8203;y.z");
        // Only what an autolink starts with changes.
        assert_eq!(escape("12:30 a.b ww.x 1.5 MB"), "12:30 a.b ww.x 1.5 MB");
    }

    #[test]
    fn sizes_never_wrap() {
        assert_eq!(
            text("131 MB of ≤ 1.00 GB, 0 B; 3 Bytes 12 MBs 5 devices"),
            "131\u{a0}MB of ≤\u{a0}1.00\u{a0}GB, 0\u{a0}B; 3 Bytes 12 MBs 5 devices"
        );
    }

    #[test]
    fn headers_read_as_words() {
        assert_eq!(title_case("FLEET TOTAL"), "Fleet total");
        assert_eq!(title_case("SERVICE"), "Service");
    }
}
