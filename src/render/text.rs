//! The view laid out for a terminal of a given width: aligned columns that
//! give way in a fixed order when the table is too wide, and notes wrapped
//! on word boundaries. Widths count characters, one cell each, which holds
//! for the text this tool writes and for escaped server text, though not
//! for East Asian wide characters in service names.

use super::sheet::{Cell, Col, Sheet, View};
use crate::printer::{printable, wrap};

/// A failed delta's reason in STATUS is cut to this width however wide the
/// terminal (its footnote has the whole text).
const STATUS_WIDTH: usize = 32;

/// How a table too wide for the terminal gives way, step by step, each
/// step taken only while the table is still too wide:
///
/// 1. a failed delta's reason in STATUS is cut to 24 characters;
/// 2. SAVING is dropped;
/// 3. service names are cut to 16 characters;
/// 4. STATUS is cut to its word (`failed [1]`; the footnote has the rest),
///    so that a long status never pushes out a figure;
/// 5. ESTIMATE, then FROM are dropped;
/// 6. CHANGE is dropped;
/// 7. service names are cut to their first 6 characters.
///
/// The fleet summary first cuts FROM RELEASE, then drops TO and FLEET TOTAL.
/// DOWNLOAD is never dropped: it is what the tool is for. A note that cites
/// a dropped column says so without citing it (see `CITATIONS`).
const FIT_STEPS: &[Fit] = &[
    Fit::Cut(Col::Status, 24),
    Fit::Drop(Col::Saving),
    Fit::Cut(Col::Service, 16),
    Fit::Cut(Col::Status, 0),
    Fit::Drop(Col::Estimate),
    Fit::Drop(Col::From),
    Fit::Drop(Col::Change),
    Fit::Cut(Col::Service, 0),
    Fit::Cut(Col::Source, 0),
    Fit::Drop(Col::Target),
    Fit::Drop(Col::FleetTotal),
];

#[derive(Debug, Clone, Copy)]
enum Fit {
    /// Cut the column's cells down to this width, or to what they must keep.
    Cut(Col, usize),
    Drop(Col),
}

const GAP: usize = 2;

pub fn render(view: &View, width: usize) -> String {
    let width = width.max(20);
    let mut out = String::new();
    for line in &view.heading {
        push_wrapped(&mut out, line, width, "  ");
    }
    if let Some(summary) = &view.summary {
        out.push('\n');
        let layout = Layout::fit(std::slice::from_ref(summary), width);
        push_sheet(&mut out, summary, &layout, width);
    }
    // Transition tables share one set of widths, so that a fleet's tables
    // line up with each other; but a table that would lose a column to
    // another table's long cell is laid out on its own.
    let shared = Layout::fit(&view.transitions, width);
    for (n, sheet) in view.transitions.iter().enumerate() {
        if n > 0 || !view.heading.is_empty() {
            out.push('\n');
        }
        let own = Layout::fit(std::slice::from_ref(sheet), width);
        let layout = if own
            .widths
            .iter()
            .all(|(c, _)| shared.width_of(*c).is_some())
        {
            &shared
        } else {
            &own
        };
        push_sheet(&mut out, sheet, layout, width);
    }
    if !view.closing.is_empty() {
        out.push('\n');
    }
    for line in &view.closing {
        push_wrapped(&mut out, line, width, "  ");
    }
    out
}

/// Column widths for a group of sheets; a dropped column is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    widths: Vec<(Col, usize)>,
}

impl Layout {
    fn fit(sheets: &[Sheet], width: usize) -> Layout {
        let mut widths: Vec<(Col, usize)> = Vec::new();
        for sheet in sheets {
            for (index, col) in sheet.columns.iter().enumerate() {
                let natural = cells(sheet, index)
                    .map(cell_width)
                    .chain([col.header().len()])
                    .max()
                    .unwrap_or(0);
                let natural = if *col == Col::Status {
                    natural.min(STATUS_WIDTH)
                } else {
                    natural
                };
                match widths.iter_mut().find(|(c, _)| c == col) {
                    Some((_, w)) => *w = (*w).max(natural),
                    None => widths.push((*col, natural)),
                }
            }
        }
        let mut layout = Layout { widths };
        for step in FIT_STEPS {
            let over = layout.line_width().saturating_sub(width);
            if over == 0 {
                break;
            }
            match *step {
                Fit::Drop(col) => layout.widths.retain(|(c, _)| *c != col),
                Fit::Cut(col, least) => {
                    let floor = sheets
                        .iter()
                        .filter_map(|s| s.columns.iter().position(|c| *c == col).map(|i| (s, i)))
                        .flat_map(|(s, i)| cells(s, i).map(cell_floor))
                        .chain([col.header().len(), least])
                        .max()
                        .unwrap_or(0);
                    if let Some((_, w)) = layout.widths.iter_mut().find(|(c, _)| *c == col) {
                        *w = (*w).saturating_sub(over).max(floor.min(*w));
                    }
                }
            }
        }
        layout
    }

    fn line_width(&self) -> usize {
        let cells: usize = self.widths.iter().map(|(_, w)| w).sum();
        cells + GAP * self.widths.len().saturating_sub(1)
    }

    fn width_of(&self, col: Col) -> Option<usize> {
        self.widths.iter().find(|(c, _)| *c == col).map(|(_, w)| *w)
    }
}

fn cells(sheet: &Sheet, index: usize) -> impl Iterator<Item = &Cell> {
    sheet
        .rows
        .iter()
        .chain([&sheet.total])
        .filter_map(move |row| row.get(index))
}

fn cell_width(cell: &Cell) -> usize {
    printable(&cell.text).chars().count() + cell.mark.chars().count()
}

/// The narrowest a cell may become: what it must keep, an ellipsis when
/// that is not all of it, and its mark.
fn cell_floor(cell: &Cell) -> usize {
    let text = printable(&cell.text).chars().count();
    let kept = if text <= cell.keep {
        text
    } else {
        cell.keep + 1
    };
    kept + cell.mark.chars().count()
}

/// A cell's text in at most `width` characters.
fn cut(cell: &Cell, width: usize) -> String {
    let text = printable(&cell.text);
    let length = text.chars().count();
    let mark = cell.mark.chars().count();
    if length + mark <= width {
        return format!("{text}{}", cell.mark);
    }
    let room = width.saturating_sub(mark + 1);
    let kept: String = text.chars().take(room).collect();
    let kept = kept.trim_end_matches([' ', ':', ',']);
    format!("{kept}…{}", cell.mark)
}

fn push_sheet(out: &mut String, sheet: &Sheet, layout: &Layout, width: usize) {
    if let Some(title) = &sheet.title {
        push_wrapped(out, title, width, "  ");
    }
    let headers: Vec<Cell> = sheet
        .columns
        .iter()
        .map(|c| Cell {
            text: c.header().to_owned(),
            keep: c.header().len(),
            mark: String::new(),
        })
        .collect();
    for row in std::iter::once(&headers)
        .chain(&sheet.rows)
        .chain([&sheet.total])
    {
        let mut line = String::new();
        for (col, cell) in sheet.columns.iter().zip(row) {
            let Some(w) = layout.width_of(*col) else {
                continue;
            };
            if !line.is_empty() {
                line.push_str(&" ".repeat(GAP));
            }
            let text = cut(cell, w);
            let pad = " ".repeat(w.saturating_sub(text.chars().count()));
            if col.right_aligned() {
                line.push_str(&pad);
                line.push_str(&text);
            } else {
                line.push_str(&text);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for note in &sheet.notes {
        // A footnote's continuation lines are indented under its text.
        let indent = if note.starts_with('[') { "    " } else { "  " };
        push_wrapped(out, &citing_shown(note, sheet, layout), width, indent);
    }
}

/// How the notes of `sheet` (see `sheet.rs`) cite a column, and what each
/// says instead when the layout dropped that column.
const CITATIONS: &[(Col, &str, &str)] = &[
    (
        Col::Estimate,
        "npm-compatible estimate (ESTIMATE, from image sizes)",
        "npm-compatible estimate (from image sizes)",
    ),
    (
        Col::Estimate,
        "by image sizes (ESTIMATE), ",
        "by image sizes, ",
    ),
    // The figures in parentheses are ESTIMATE's, when the table has it.
    (
        Col::Estimate,
        " count in full, in parentheses)",
        " count in full)",
    ),
    (Col::FleetTotal, " (in FLEET TOTAL)", ""),
];

/// `note` naming only columns the layout shows.
fn citing_shown(note: &str, sheet: &Sheet, layout: &Layout) -> String {
    let mut note = note.to_owned();
    for (col, cited, instead) in CITATIONS {
        if sheet.columns.contains(col) && layout.width_of(*col).is_none() {
            note = note.replace(cited, instead);
        }
    }
    note
}

/// Appends `text` wrapped to `width` (see [`wrap`]).
fn push_wrapped(out: &mut String, text: &str, width: usize, indent: &str) {
    for line in wrap(&printable(text), width, indent) {
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(text: &str) -> Cell {
        Cell {
            text: text.into(),
            keep: text.len(),
            mark: String::new(),
        }
    }

    #[test]
    fn notes_wrap_on_words_within_the_width() {
        let text = "not ready: a device updating now downloads about 447 MB (deltas not ready \
                    count in full, in parentheses)";
        let lines = wrap(text, 40, "  ");
        assert_eq!(
            lines,
            [
                "not ready: a device updating now",
                "  downloads about 447 MB (deltas not",
                "  ready count in full, in parentheses)",
            ]
        );
        assert_eq!(
            wrap("a device downloads about 447 MB, or so", 27, ""),
            ["a device downloads about", "447 MB, or so",]
        );
        assert!(
            wrap(&"x".repeat(50), 20, "  ")
                .iter()
                .all(|l| l.len() <= 20)
        );
        assert_eq!(wrap("", 20, ""), [""]);
    }

    #[test]
    fn cells_keep_their_mark_when_cut() {
        let failed = Cell {
            text: "failed: the disk is full on the builder".into(),
            keep: 6,
            mark: " [1]".into(),
        };
        assert_eq!(cut(&failed, 18), "failed: the d… [1]");
        assert_eq!(cut(&failed, 11), "failed… [1]");
        assert_eq!(cell_floor(&failed), 11);
        assert_eq!(cut(&cell("ready"), 9), "ready");
    }

    fn sheet(columns: Vec<Col>, rows: Vec<Vec<Cell>>) -> Sheet {
        let total = vec![Cell::default(); columns.len()];
        Sheet {
            title: None,
            columns,
            rows,
            total,
            notes: Vec::new(),
        }
    }

    #[test]
    fn columns_give_way_in_the_stated_order() {
        let wide = sheet(
            vec![Col::Service, Col::Status, Col::Download, Col::Saving],
            vec![vec![
                Cell {
                    keep: 6,
                    ..cell("a-very-long-service-name")
                },
                Cell {
                    text: "failed: no space left on device".into(),
                    keep: 6,
                    mark: " [1]".into(),
                },
                cell("1.00 MB"),
                cell("99.0%"),
            ]],
        );
        let natural = Layout::fit(std::slice::from_ref(&wide), 200);
        assert_eq!(natural.line_width(), 24 + 2 + 32 + 2 + 8 + 2 + 6);
        // First the reason is cut, then SAVING goes, then the name is cut.
        let layout = Layout::fit(std::slice::from_ref(&wide), 60);
        assert_eq!(
            layout.widths,
            [(Col::Service, 24), (Col::Status, 24), (Col::Download, 8)]
        );
        let layout = Layout::fit(std::slice::from_ref(&wide), 40);
        assert_eq!(
            layout.widths,
            [(Col::Service, 16), (Col::Status, 12), (Col::Download, 8)]
        );
        let text = render(
            &View {
                heading: Vec::new(),
                summary: None,
                transitions: vec![wide],
                closing: Vec::new(),
            },
            40,
        );
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(
            text.contains("a-very-long-ser…  failed… [1]    1.00 MB"),
            "{text}"
        );
    }

    /// In a fleet, one table's failure does not take a column from the
    /// others, and a note cites only the columns its table shows.
    #[test]
    fn each_table_keeps_what_fits_it_and_its_notes_say_so() {
        let columns = vec![Col::Service, Col::Status, Col::Download, Col::Estimate];
        let mut failed = sheet(
            columns.clone(),
            vec![vec![
                cell("main"),
                Cell {
                    text: "failed: no space left on device".into(),
                    keep: 6,
                    mark: " [1]".into(),
                },
                cell("1.00 MB"),
                cell("(2.00 MB)"),
            ]],
        );
        failed.notes =
            vec!["npm-compatible estimate (ESTIMATE, from image sizes) per device: 2.00 MB".into()];
        let mut ready = sheet(
            columns,
            vec![vec![
                cell("main"),
                cell("ready"),
                cell("1.00 MB"),
                cell("2.00 MB"),
            ]],
        );
        ready.notes = failed.notes.clone();
        let view = View {
            heading: vec!["fleet".into()],
            summary: None,
            transitions: vec![failed, ready],
            closing: Vec::new(),
        };
        let text = render(&view, 38);
        let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("SERVICE")).collect();
        assert_eq!(
            headers,
            [
                "SERVICE  STATUS       DOWNLOAD",
                "SERVICE  STATUS  DOWNLOAD  ESTIMATE"
            ],
            "{text}"
        );
        assert!(text.contains("main     failed… [1]   1.00 MB\n"), "{text}");
        let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            joined.contains(
                "failed… [1] 1.00 MB npm-compatible estimate (from image sizes) per device:"
            ),
            "{text}"
        );
        assert!(
            joined.contains("2.00 MB npm-compatible estimate (ESTIMATE, from image sizes)"),
            "{text}"
        );
    }
}
