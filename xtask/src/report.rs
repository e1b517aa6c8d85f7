//! The result of a check task, told three ways from the same facts: an
//! aligned plain-text table for people, JSON for machines (`--json` on
//! stdout, `--json-out FILE`), and Markdown appended to
//! `$GITHUB_STEP_SUMMARY` when CI sets it.
//!
//! ```ignore
//! let mut report = Report::new("size-check cpu");
//! report.set_headers(&["layer", "size", "share"]);
//! report.add_row([Cell::from("RUN pip install ..."), Cell::bytes(1_200_000_000), Cell::percent(61.5)]);
//! report.fact("budget_bytes", 3_000_000_000u64);
//! report.fail("iopaint:cpu-latest is 3.2 GB, over its 3.0 GB budget");
//! report.finish(&args.out)?; // prints, writes JSON/summary, errs if failed
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::OutputOpts;

/// One table cell: the text people read and the value machines get.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub value: Value,
}

impl Cell {
    pub fn new(text: impl Into<String>, value: impl Into<Value>) -> Cell {
        Cell { text: text.into(), value: value.into() }
    }

    /// `1.98 MB` for people, `1982256` for machines.
    pub fn bytes(bytes: u64) -> Cell {
        Cell::new(crate::ui::fmt_bytes(bytes), bytes)
    }

    /// `61.5%` for people, `61.5` for machines.
    pub fn percent(percent: f64) -> Cell {
        Cell::new(format!("{percent:.1}%"), (percent * 10.0).round() / 10.0)
    }

    /// `4m 05s` for people, seconds (to the millisecond) for machines.
    pub fn seconds(seconds: f64) -> Cell {
        let text = crate::ui::fmt_duration(std::time::Duration::from_secs_f64(seconds.max(0.0)));
        Cell::new(text, (seconds * 1000.0).round() / 1000.0)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::new(text, text)
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { value: Value::String(text.clone()), text }
    }
}

impl From<u64> for Cell {
    fn from(number: u64) -> Cell {
        Cell::new(number.to_string(), number)
    }
}

/// A check's outcome: a title, one table, extra facts, and failure reasons.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Extra machine-readable facts (thresholds, totals, image ids...).
    pub facts: Map<String, Value>,
    /// Lines shown under the table (context, hints).
    pub notes: Vec<String>,
    /// Why the check failed; empty means it passed.
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Report {
        Report { title: title.into(), ..Report::default() }
    }

    /// A report with its table's column headers.
    pub fn with_headers(title: impl Into<String>, headers: &[&str]) -> Report {
        let mut report = Report::new(title);
        report.set_headers(headers);
        report
    }

    /// The table's column headers.
    pub fn set_headers(&mut self, headers: &[&str]) {
        self.headers = headers.iter().map(|h| h.to_string()).collect();
    }

    /// Appends a row; cells may be `&str`, `String`, `u64` or [`Cell`].
    pub fn add_row<C: Into<Cell>>(&mut self, cells: impl IntoIterator<Item = C>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Records a machine-readable fact (later values replace earlier ones).
    pub fn fact(&mut self, key: &str, value: impl Into<Value>) {
        self.facts.insert(key.to_string(), value.into());
    }

    /// Records many facts at once: an object's keys become facts; any other
    /// value is kept under `data`.
    pub fn set_json(&mut self, value: Value) {
        match value {
            Value::Object(map) => self.facts.extend(map),
            other => {
                self.facts.insert("data".to_string(), other);
            }
        }
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Marks the check failed, saying why.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.failures.push(reason.into());
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The table and verdict as aligned plain text. Columns whose cells are
    /// all numbers (sizes, percentages, times) are right-aligned.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.title);
        if !self.headers.is_empty() || !self.rows.is_empty() {
            let columns = self.rows.iter().map(Vec::len).chain([self.headers.len()]).max().unwrap_or(0);
            let cell = |row: &[Cell], i: usize| row.get(i).map_or(String::new(), |c| c.text.clone());
            let widths: Vec<usize> = (0..columns)
                .map(|i| {
                    let header = self.headers.get(i).map_or(0, |h| h.chars().count());
                    self.rows.iter().map(|r| cell(r, i).chars().count()).chain([header]).max().unwrap_or(0)
                })
                .collect();
            let numeric: Vec<bool> = (0..columns)
                .map(|i| {
                    let mut texts = self.rows.iter().map(|r| cell(r, i)).filter(|t| !t.is_empty()).peekable();
                    texts.peek().is_some() && texts.all(|t| looks_numeric(&t))
                })
                .collect();
            let line = |texts: Vec<String>| {
                let padded: Vec<String> = texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let pad = widths[i].saturating_sub(t.chars().count());
                        if numeric[i] {
                            format!("{}{t}", " ".repeat(pad))
                        } else {
                            format!("{t}{}", " ".repeat(pad))
                        }
                    })
                    .collect();
                format!("  {}\n", padded.join("  ").trim_end())
            };
            if !self.headers.is_empty() {
                out.push_str(&line((0..columns).map(|i| self.headers.get(i).cloned().unwrap_or_default()).collect()));
                out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
            }
            for row in &self.rows {
                out.push_str(&line((0..columns).map(|i| cell(row, i)).collect()));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("  {note}\n"));
        }
        if self.passed() {
            out.push_str("PASS\n");
        } else {
            out.push_str("FAIL\n");
            for reason in &self.failures {
                out.push_str(&format!("  - {reason}\n"));
            }
        }
        out
    }

    /// The same facts as JSON: title, passed, failures, notes, facts, and
    /// the table as `rows` of `{header: value}` objects.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let object: Map<String, Value> = row
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        (self.headers.get(i).cloned().unwrap_or_else(|| format!("column {}", i + 1)), c.value.clone())
                    })
                    .collect();
                Value::Object(object)
            })
            .collect();
        json!({
            "title": self.title,
            "passed": self.passed(),
            "failures": self.failures,
            "notes": self.notes,
            "facts": self.facts,
            "headers": self.headers,
            "rows": rows,
        })
    }

    /// A Markdown section for a CI job summary.
    pub fn to_markdown(&self) -> String {
        let verdict = if self.passed() { "✅ pass" } else { "❌ fail" };
        let mut out = format!("### {} — {verdict}\n\n", escape_markdown(&self.title));
        if !self.headers.is_empty() {
            let columns = self.rows.iter().map(Vec::len).chain([self.headers.len()]).max().unwrap_or(0);
            let header: Vec<String> =
                (0..columns).map(|i| escape_markdown(self.headers.get(i).map_or("", String::as_str))).collect();
            out.push_str(&format!("| {} |\n|{}|\n", header.join(" | "), vec![" --- "; columns].join("|")));
            for row in &self.rows {
                let cells: Vec<String> =
                    (0..columns).map(|i| escape_markdown(row.get(i).map_or("", |c| c.text.as_str()))).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            out.push('\n');
        }
        for note in &self.notes {
            out.push_str(&format!("{}\n\n", escape_markdown(note)));
        }
        for reason in &self.failures {
            out.push_str(&format!("- **failed:** {}\n", escape_markdown(reason)));
        }
        if !self.failures.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Prints the table (stdout; stderr under `--json`), prints or writes the
    /// JSON as `out` asks, and appends the Markdown to `$GITHUB_STEP_SUMMARY`
    /// when it is set. A failed check is not an error here: see [`finish`](Self::finish).
    pub fn emit(&self, out: &OutputOpts) -> Result<()> {
        let summary = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()).map(PathBuf::from);
        self.emit_to(out, summary.as_deref())
    }

    /// [`emit`](Self::emit) with the summary file given explicitly (testable).
    pub fn emit_to(&self, args: &OutputOpts, step_summary: Option<&Path>) -> Result<()> {
        let json_text = format!("{}\n", serde_json::to_string_pretty(&self.to_json())?);
        if args.json {
            // stdout carries only JSON, so people read the table on stderr.
            eprint!("{}", self.to_text());
            std::io::stdout().write_all(json_text.as_bytes()).context("cannot write the JSON report to stdout")?;
        } else {
            print!("{}", self.to_text());
        }
        if let Some(path) = &args.json_out {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            fs::write(path, &json_text)
                .with_context(|| format!("cannot write the JSON report to {} (check --json-out)", path.display()))?;
        }
        if let Some(path) = step_summary {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot append to GITHUB_STEP_SUMMARY file {}", path.display()))?;
            file.write_all(self.to_markdown().as_bytes())
                .with_context(|| format!("cannot append to GITHUB_STEP_SUMMARY file {}", path.display()))?;
        }
        Ok(())
    }

    /// Emits the report, then turns a failed check into an error naming the reasons.
    pub fn finish(&self, out: &OutputOpts) -> Result<()> {
        self.emit(out)?;
        self.verdict()
    }

    /// `Ok` when passed, else an error `<title> failed: reason; reason`.
    pub fn verdict(&self) -> Result<()> {
        if self.passed() {
            Ok(())
        } else {
            bail!("{} failed: {}", self.title, self.failures.join("; "))
        }
    }
}

/// Sizes, counts, percentages and durations: `1.98 MB`, `42`, `61.5%`, `4m 05s`, `-3 kB`.
fn looks_numeric(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    body.starts_with(|c: char| c.is_ascii_digit())
}

/// Keeps cell text from breaking a Markdown table or turning into markup.
fn escape_markdown(text: &str) -> String {
    text.replace('\\', "\\\\").replace('|', "\\|").replace('\n', "<br>").replace('*', "\\*").replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::new("size-check cpu");
        report.set_headers(&["layer", "size", "share", "origin"]);
        report.add_row([
            Cell::from("RUN pip install torch"),
            Cell::bytes(1_200_000_000),
            Cell::percent(61.53),
            Cell::from("ours"),
        ]);
        report.add_row([
            Cell::from("ADD file:abc in /"),
            Cell::bytes(74_800_000),
            Cell::percent(3.8),
            Cell::from("base"),
        ]);
        report.fact("budget_bytes", 3_000_000_000u64);
        report.note("budget 3.00 GB");
        report
    }

    #[test]
    fn text_table_is_aligned() {
        let text = sample().to_text();
        let expected = "size-check cpu\n\
            \x20 layer                      size  share  origin\n\
            \x20 ---------------------  --------  -----  ------\n\
            \x20 RUN pip install torch   1.20 GB  61.5%  ours\n\
            \x20 ADD file:abc in /      74.80 MB   3.8%  base\n\
            \x20 budget 3.00 GB\n\
            PASS\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn failures_make_it_fail() {
        let mut report = sample();
        assert!(report.verdict().is_ok());
        report.fail("3.2 GB is over the 3.0 GB budget");
        report.fail("second reason");
        assert!(!report.passed());
        assert!(report.to_text().ends_with("FAIL\n  - 3.2 GB is over the 3.0 GB budget\n  - second reason\n"));
        let err = report.verdict().unwrap_err().to_string();
        assert_eq!(err, "size-check cpu failed: 3.2 GB is over the 3.0 GB budget; second reason");
    }

    #[test]
    fn json_carries_typed_values() {
        let json = sample().to_json();
        assert_eq!(json["passed"], true);
        assert_eq!(json["facts"]["budget_bytes"], 3_000_000_000u64);
        assert_eq!(json["rows"][0]["size"], 1_200_000_000u64);
        assert_eq!(json["rows"][0]["share"], 61.5);
        assert_eq!(json["rows"][1]["layer"], "ADD file:abc in /");
        assert_eq!(json["headers"][3], "origin");
        let mut ragged = Report::new("r");
        ragged.set_headers(&["a"]);
        ragged.add_row(vec!["x".to_string(), "y".to_string()]);
        assert_eq!(ragged.to_json()["rows"][0]["column 2"], "y");
        let mut merged = sample();
        merged.set_json(json!({ "images": [1, 2] }));
        merged.set_json(json!(7));
        assert_eq!(merged.to_json()["facts"]["images"], json!([1, 2]));
        assert_eq!(merged.to_json()["facts"]["data"], 7);
        assert_eq!(merged.to_json()["facts"]["budget_bytes"], 3_000_000_000u64);
    }

    #[test]
    fn markdown_escapes_cells() {
        let mut report = Report::with_headers("dockerignore-check", &["path", "size"]);
        report.add_row([Cell::from("a|b_c"), Cell::bytes(5)]);
        report.fail("**secret** sent: .env");
        let md = report.to_markdown();
        assert!(md.starts_with("### dockerignore-check — ❌ fail\n\n| path | size |\n| --- | --- |\n"), "{md}");
        assert!(md.contains("| a\\|b\\_c | 5 B |\n"), "{md}");
        assert!(md.contains("- **failed:** \\*\\*secret\\*\\* sent: .env\n"), "{md}");
    }

    #[test]
    fn cells_format_for_people_and_machines() {
        assert_eq!(Cell::seconds(245.0), Cell::new("4m 05s", 245.0));
        assert_eq!(Cell::from(42u64), Cell::new("42", 42u64));
        assert!(looks_numeric("-3 kB") && looks_numeric("4m 05s") && !looks_numeric("ours"));
    }

    #[test]
    fn emit_writes_json_file_and_appends_summary() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let json_out = dir.join("reports/size.json");
        let summary = dir.join("summary.md");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&summary, "earlier step\n").unwrap();
        let args = OutputOpts { json: false, json_out: Some(json_out.clone()) };
        sample().emit_to(&args, Some(&summary)).unwrap();
        let written: Value = serde_json::from_str(&fs::read_to_string(&json_out).unwrap()).unwrap();
        assert_eq!(written, sample().to_json());
        let appended = fs::read_to_string(&summary).unwrap();
        assert!(appended.starts_with("earlier step\n### size-check cpu — ✅ pass"), "{appended}");
        let _ = fs::remove_dir_all(&dir);
    }
}
