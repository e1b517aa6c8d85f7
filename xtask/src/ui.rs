//! Terminal output for people: coloured status lines on stderr, a progress
//! line for long steps, and byte/duration formatting.
//!
//! Colour is used only when stderr is a terminal and `NO_COLOR` is unset
//! (<https://no-color.org>), so logs captured by CI stay plain.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The kinds of status line, each with its own prefix and colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
    Ok,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Ok => "ok",
        }
    }

    /// ANSI SGR code: cyan, yellow, bold red, green.
    fn colour(self) -> &'static str {
        match self {
            Level::Info => "36",
            Level::Warn => "33",
            Level::Error => "1;31",
            Level::Ok => "32",
        }
    }
}

/// Whether our stderr output should carry ANSI colour.
pub fn colour_enabled() -> bool {
    colour_wanted(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").is_some())
}

/// `NO_COLOR` counts when set at all, even empty, as the convention says.
fn colour_wanted(is_terminal: bool, no_colour_set: bool) -> bool {
    is_terminal && !no_colour_set
}

/// One status line, e.g. `info: building iopaint:cpu-0.1.0`; pure so it can be tested.
pub fn format_line(level: Level, message: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{}m{}:\x1b[0m {message}", level.colour(), level.label())
    } else {
        format!("{}: {message}", level.label())
    }
}

fn emit(level: Level, message: &str) {
    // A failed write to stderr leaves nothing better to do than carry on.
    let _ = writeln!(std::io::stderr().lock(), "{}", format_line(level, message, colour_enabled()));
}

/// `info: ...` on stderr.
pub fn info(message: impl AsRef<str>) {
    emit(Level::Info, message.as_ref());
}

/// `warn: ...` on stderr.
pub fn warn(message: impl AsRef<str>) {
    emit(Level::Warn, message.as_ref());
}

/// `error: ...` on stderr.
pub fn error(message: impl AsRef<str>) {
    emit(Level::Error, message.as_ref());
}

/// `ok: ...` on stderr.
pub fn ok(message: impl AsRef<str>) {
    emit(Level::Ok, message.as_ref());
}

/// Echoes one line of a child's streamed output (e.g. BuildKit progress) to
/// stderr, dimmed on a terminal so our own status lines stand out.
pub fn progress_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if colour_enabled() { writeln!(err, "\x1b[2m{line}\x1b[0m") } else { writeln!(err, "{line}") };
}

/// A status line for a long step. On a terminal it redraws one line with the
/// elapsed seconds (call [`tick`](Progress::tick) now and then); elsewhere it
/// prints one plain line at the start and one at the end, so logs stay short.
pub struct Progress {
    label: String,
    started: Instant,
    interactive: bool,
    finished: bool,
}

impl Progress {
    /// Starts the step and prints its first line.
    pub fn start(label: impl Into<String>) -> Progress {
        // Redrawing needs a terminal, not colour, so NO_COLOR does not matter here.
        let interactive = std::io::stderr().is_terminal();
        let progress = Progress { label: label.into(), started: Instant::now(), interactive, finished: false };
        if progress.interactive {
            progress.redraw();
        } else {
            info(format!("{} ...", progress.label));
        }
        progress
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Refreshes the elapsed time on a terminal; does nothing elsewhere.
    pub fn tick(&self) {
        if self.interactive {
            self.redraw();
        }
    }

    fn redraw(&self) {
        let mut err = std::io::stderr().lock();
        // `\r` + "erase line" keeps the status on a single terminal line.
        let _ = write!(err, "\r\x1b[2K{} ... {}", self.label, fmt_duration(self.elapsed()));
        let _ = err.flush();
    }

    /// Ends the step with an `ok` line carrying the elapsed time; returns it.
    pub fn finish(self) -> Duration {
        self.finish_ok("")
    }

    /// Like [`finish`](Progress::finish), with a detail such as a size or tag.
    pub fn finish_ok(mut self, detail: &str) -> Duration {
        self.end(Level::Ok, detail)
    }

    /// Ends the step with an `error` line carrying the elapsed time; returns it.
    pub fn finish_err(mut self, detail: &str) -> Duration {
        self.end(Level::Error, detail)
    }

    fn end(&mut self, level: Level, detail: &str) -> Duration {
        let elapsed = self.elapsed();
        self.finished = true;
        if self.interactive {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
        emit(level, &finish_message(&self.label, detail, elapsed));
        elapsed
    }
}

fn finish_message(label: &str, detail: &str, elapsed: Duration) -> String {
    if detail.is_empty() {
        format!("{label} ({})", fmt_duration(elapsed))
    } else {
        format!("{label}: {detail} ({})", fmt_duration(elapsed))
    }
}

impl Drop for Progress {
    /// A step dropped without finishing (early `?` return) still ends its line.
    fn drop(&mut self) {
        if !self.finished {
            self.end(Level::Warn, "interrupted");
        }
    }
}

/// Bytes in decimal units like Docker (`1.2 GB` = 1.2e9 bytes).
pub fn fmt_bytes(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::DECIMAL)
}

/// A signed byte difference, e.g. `+12.3 MB` or `-1.5 GB`.
pub fn fmt_bytes_delta(delta: i64) -> String {
    let sign = if delta < 0 { '-' } else { '+' };
    format!("{sign}{}", fmt_bytes(delta.unsigned_abs()))
}

/// Short durations for people: `850ms`, `12.3s`, `4m 05s`, `1h 02m`.
pub fn fmt_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", duration.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        let whole = duration.as_secs();
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        let whole = duration.as_secs();
        format!("{}h {:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

/// A calendar date and time of day in UTC, from Unix seconds (no date crate needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
}

impl UtcTime {
    pub fn from_unix(unix_secs: u64) -> UtcTime {
        let days = (unix_secs / 86_400) as i64;
        let secs = unix_secs % 86_400;
        // Howard Hinnant's civil-from-days (proleptic Gregorian).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime { year, month, day, hour: secs / 3600, minute: secs % 3600 / 60, second: secs % 60 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_terminals_without_no_color() {
        assert!(colour_wanted(true, false));
        assert!(!colour_wanted(true, true));
        assert!(!colour_wanted(false, false));
    }

    #[test]
    fn lines_are_plain_or_coloured() {
        assert_eq!(format_line(Level::Warn, "slow", false), "warn: slow");
        assert_eq!(format_line(Level::Error, "boom", true), "\x1b[1;31merror:\x1b[0m boom");
        assert_eq!(format_line(Level::Ok, "done", false), "ok: done");
        assert_eq!(format_line(Level::Info, "x", true), "\x1b[36minfo:\x1b[0m x");
    }

    #[test]
    fn bytes_are_decimal_like_docker() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(999), "999 B");
        assert_eq!(fmt_bytes(46_160_000), "46.16 MB");
        assert_eq!(fmt_bytes(2_500_000_000), "2.50 GB");
        assert_eq!(fmt_bytes_delta(-1_500_000), "-1.50 MB");
        assert_eq!(fmt_bytes_delta(12_000), "+12 kB");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(fmt_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(fmt_duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(fmt_duration(Duration::from_secs(3720)), "1h 02m");
    }

    #[test]
    fn finish_messages() {
        assert_eq!(finish_message("build cpu", "", Duration::from_secs(3)), "build cpu (3.0s)");
        assert_eq!(finish_message("build cpu", "failed", Duration::from_secs(3)), "build cpu: failed (3.0s)");
    }
}
