//! `cargo xtask bench`: the multistage CPU image against a naive single-stage
//! baseline (`docker/baseline/CPUDockerfile.singlestage`), both measured in one
//! run on the same tree; `--write-docs` puts the figures into
//! `docs/benchmarks.md` between the bench markers.
//!
//! Both images are built from copies of the checkout made at the start
//! (`target/xtask/bench/contexts/{multistage,baseline}`), never from the
//! checkout itself:
//! - the baseline has no ignore file of its own, engine 20.10's built-in
//!   BuildKit reads only `<context>/.dockerignore`, and we never edit the
//!   user's `.dockerignore`: its copy simply has none;
//! - the rebuild measurements touch files, and other builds from the shared
//!   checkout (cache-test, build, another engineer) would otherwise build our
//!   touched file first, leaving our rebuild fully cached, or slip their own
//!   touches into ours. In copies, nobody sees our edits and the user's files
//!   are never modified, so a Ctrl-C cannot leave them touched.
//!
//! "The whole checkout" = every file of the working tree except `target/`:
//! sources, `.git`, `web_app/node_modules`, `web_app/dist`, caches, docs, the
//! xtask, as in a contributor's tree. `target/` is Cargo's and the xtask's
//! scratch (venvs and build output, several GB, and these copies); shipping it
//! would measure our scratch space, not the image layout.
//!
//! Cold builds use `--no-cache` and a fresh BuildKit session identity, so the
//! whole context is transferred and BuildKit's `transferring context` line is
//! the real context size. Rebuilds append a unique comment to one file in both
//! copies, rebuild both images and restore the file's exact bytes and times.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::build::{self, BuiltImage, ImageSpec};
use crate::docker::{self, BuildFrontend, Docker, RunSpec};
use crate::dockerignore::{self, IgnoreRules, Sender, WalkOptions};
use crate::flavor::Flavor;
use crate::report::{Cell, Report};
use crate::setup::{self, Env, SetupOptions};
use crate::file_touch::{self, Restored};
use crate::{project, pyenv, ui, OutputOpts};

pub const MULTISTAGE_TAG: &str = "iopaint-bench:multistage";
pub const BASELINE_TAG: &str = "iopaint-bench:baseline";
pub const GPU_TAG: &str = "iopaint-bench:gpu";
pub const BASELINE_DOCKERFILE: &str = "docker/baseline/CPUDockerfile.singlestage";
pub const DOCS_FILE: &str = "docs/benchmarks.md";
pub const BEGIN_MARKER: &str = "<!-- bench:begin -->";
pub const END_MARKER: &str = "<!-- bench:end -->";
/// The file the app rebuild touches (the cache test touches the same one).
pub const APP_TOUCH: &str = "iopaint/cli.py";
/// Preferred UI file to touch; any file under web_app/src/ does if it is gone.
pub const UI_TOUCH: &str = "web_app/src/main.tsx";
/// The issue's limit for a whole run on a 2-core machine with warm base images.
const TIME_LIMIT: Duration = Duration::from_secs(20 * 60);
/// Label on the containers we start, so an interrupted run can find them.
const LABEL: (&str, &str) = ("iopaint.xtask", "bench");

pub const CONTEXT_DEFINITION: &str = "both images are built from copies of the checkout made at the start \
of the run: every file of the working tree (sources, .git, web_app/node_modules, web_app/dist, caches, docs, \
the xtask) except target/, which is Cargo's and the xtask's scratch (venvs, build output, the copies \
themselves); the multistage copy keeps the checkout's .dockerignore, the baseline copy has none, so its \
context is the whole tree";

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// How many times each rebuild is repeated; the median and min-max are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// Rewrite the figures section of docs/benchmarks.md (between the bench markers).
    #[arg(long)]
    pub write_docs: bool,
    /// Also build the GPU image cold (--no-cache): slow, it installs ~5 GB of CUDA wheels.
    /// Without it the last measured figure (target/xtask/bench-gpu.json) is reported.
    #[arg(long)]
    pub gpu_cold: bool,
    #[command(flatten)]
    pub out: OutputOpts,
}

// ---------------------------------------------------------------------------
// Pure parts: statistics, figures, rendering, the docs section.

/// Median and range of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// `None` for no values; the median of an even count is the mean of the middle two.
pub fn spread(values: &[f64]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    Some(Spread { median, min: sorted[0], max: sorted[n - 1] })
}

/// multistage / baseline; `None` when either is missing or the baseline is 0.
pub fn ratio(multistage: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (multistage, baseline) {
        (Some(m), Some(b)) if b > 0.0 => Some(m / b),
        _ => None,
    }
}

/// `0.12×`, `1.00×`, `0.003×`; `n/a` when there is no ratio.
pub fn fmt_ratio(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) if r > 0.0 && r < 0.01 => format!("{r:.3}×"),
        Some(r) => format!("{r:.2}×"),
        None => "n/a".into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Seconds,
    Files,
    Steps,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Files => "files",
            Unit::Steps => "steps",
        }
    }

    fn one(self, value: f64) -> String {
        match self {
            Unit::Bytes => ui::fmt_bytes(value.max(0.0).round() as u64),
            Unit::Seconds => ui::fmt_duration(Duration::from_secs_f64(value.max(0.0))),
            Unit::Files | Unit::Steps => fmt_count(value),
        }
    }
}

/// Whole numbers plainly, a fractional median (even run count) with one decimal.
fn fmt_count(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{}", value.round() as i64)
    } else {
        format!("{value:.1}")
    }
}

/// One image's measurements of one figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Side {
    pub values: Vec<f64>,
    /// For steps: how many Dockerfile steps the build has in all.
    pub of_total: Option<usize>,
}

impl Side {
    pub fn one(value: f64) -> Side {
        Side { values: vec![value], of_total: None }
    }

    pub fn median(&self) -> Option<f64> {
        spread(&self.values).map(|s| s.median)
    }

    /// `12.3s`, `12.3s (11.9s–13.0s)`, `3 of 14`, `3 (2–3) of 14`, `not measured`.
    pub fn render(&self, unit: Unit) -> String {
        let Some(s) = spread(&self.values) else { return "not measured".into() };
        let mut text = unit.one(s.median);
        let (min, max) = (unit.one(s.min), unit.one(s.max));
        if self.values.len() > 1 && min != max {
            text.push_str(&format!(" ({min}–{max})"));
        }
        if let Some(total) = self.of_total {
            text.push_str(&format!(" of {total}"));
        }
        text
    }

    fn to_json(&self) -> Value {
        let s = spread(&self.values);
        json!({
            "values": self.values,
            "median": s.map(|s| s.median),
            "min": s.map(|s| s.min),
            "max": s.map(|s| s.max),
            "of_total": self.of_total,
        })
    }
}

/// One row of the comparison; lower is better for every figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub key: &'static str,
    pub label: String,
    pub unit: Unit,
    pub multistage: Side,
    pub baseline: Side,
}

impl Figure {
    pub fn ratio(&self) -> Option<f64> {
        ratio(self.multistage.median(), self.baseline.median())
    }

    /// Multistage does not beat the baseline (ratio of 1 or more).
    pub fn not_better(&self) -> bool {
        self.ratio().is_some_and(|r| r >= 1.0)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "key": self.key,
            "label": self.label,
            "unit": self.unit.name(),
            "multistage": self.multistage.to_json(),
            "baseline": self.baseline.to_json(),
            "ratio": self.ratio().map(|r| (r * 1000.0).round() / 1000.0),
        })
    }
}

/// Why the multistage image can lose on a figure, for the sentence the docs
/// must carry wherever it does not beat the baseline.
pub fn why_not_better(key: &str) -> &'static str {
    match key {
        "context_bytes" | "context_files" | "context_transfer" => {
            "the .dockerignore keeps only iopaint/ and web_app/ sources; the baseline sends no more \
             when the checkout holds little else (no node_modules, .git history or build output yet)"
        }
        "image_size" => {
            "the multistage runtime keeps the venv and the app only; the baseline's extra node toolchain, \
             node_modules and sources are then smaller than the measurement noise of the shared layers"
        }
        "cold_build" => {
            "a cold multistage build pays for a second base (the frontend stage on the node image), for \
             copying the whole venv from the builder into the runtime stage and for a separate \
             pyproject-only dependency install; on 2 cores the stages can hardly overlap, so these extra \
             steps are not hidden, while the one-stage file installs everything once"
        }
        "rebuild_app" | "steps_app" => {
            "an app edit re-runs only the final app layer of the multistage file, but that layer \
             re-installs the package; when the baseline's pip and npm steps hit warm caches the two meet"
        }
        "rebuild_ui" | "steps_ui" => {
            "a UI edit re-runs the frontend build in both files (npm run build is the bulk of either \
             rebuild), and the multistage file then also re-runs its app layer to bundle the new UI"
        }
        "container_start" => {
            "both images start the same server from a venv with the dependencies' bytecode; what is left is \
             the health-check polling interval and other builds on the machine, i.e. noise, not layout"
        }
        _ => "no known reason: see the raw runs in the JSON report (`--json-out`)",
    }
}

/// The machine the figures were measured on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: u64,
    pub os: String,
    pub engine_version: String,
    pub frontend: String,
}

impl Machine {
    pub fn describe(&self) -> String {
        let cpu = if self.cpu.is_empty() { String::new() } else { format!("{}, ", self.cpu) };
        format!(
            "{cpu}{} cores, {} memory, {}, Docker engine {} ({})",
            self.cores,
            fmt_gib(self.memory_bytes),
            if self.os.is_empty() { "Linux" } else { &self.os },
            self.engine_version,
            self.frontend
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "cpu": self.cpu,
            "cores": self.cores,
            "memory_bytes": self.memory_bytes,
            "os": self.os,
            "engine_version": self.engine_version,
            "buildkit_frontend": self.frontend,
        })
    }
}

fn fmt_gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// `MemTotal:  24683436 kB` from /proc/meminfo, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | Some("KB") => Some(value * 1024),
        None => Some(value),
        _ => None,
    }
}

/// (model name, number of `processor` entries) from /proc/cpuinfo.
pub fn parse_cpuinfo(text: &str) -> (String, usize) {
    let model = text
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let count = text.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count();
    (model, count)
}

/// `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` from /etc/os-release.
pub fn parse_os_release(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim().trim_matches('"').to_string())
}

/// `2026-12-04 15:58 UTC` from Unix seconds (proleptic Gregorian, no crate needed).
pub fn utc_timestamp(unix_secs: u64) -> String {
    let t = ui::UtcTime::from_unix(unix_secs);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute)
}

/// One sentence on the build args, e.g. that the CPU image has no torch here.
pub fn build_args_sentence(args: &BTreeMap<String, String>) -> String {
    let mut parts = Vec::new();
    if args.get("INSTALL_TORCH").is_some_and(|v| v == "0") {
        parts.push(format!(
            "CPU images built without torch on this host (INSTALL_TORCH=0, DEFAULT_MODEL={}): both serve only `cv2`",
            args.get("DEFAULT_MODEL").map_or("lama", String::as_str)
        ));
    } else {
        parts.push(format!(
            "CPU images built with torch from {}",
            args.get("TORCH_INDEX_URL").map_or("PyTorch's CPU index", String::as_str)
        ));
    }
    let standins: Vec<String> = args
        .iter()
        .filter(|(k, v)| k.ends_with("_IMAGE") && v.contains("standin"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !standins.is_empty() {
        parts.push(format!(
            "base images are our stand-ins built from Debian packages because no registry answers here ({})",
            standins.join(", ")
        ));
    }
    format!("{}.", parts.join("; "))
}

/// The GPU image's figures: measured now, carried over, or missing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuFigures {
    pub size_bytes: Option<u64>,
    pub size_source: String,
    pub cold_build_seconds: Option<f64>,
    pub cold_source: String,
}

/// The app's own figures from `python -m iopaint.bench --json`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppFigures {
    pub startup_seconds: Option<f64>,
    pub http_median_ms: Option<f64>,
    pub http_min_ms: Option<f64>,
    pub http_max_ms: Option<f64>,
    pub model_median_ms: Option<f64>,
    pub runs: Option<u64>,
    pub image: String,
    pub mask_fraction: Option<f64>,
    pub python: String,
}

/// Reads the app bench's JSON (only the fields we report).
pub fn parse_app_bench(text: &str) -> Result<AppFigures> {
    let start = text.find('{').context("no JSON object in the app bench's output")?;
    let v: Value = serde_json::from_str(&text[start..]).context("the app bench's output is not JSON")?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    Ok(AppFigures {
        startup_seconds: f("startup_to_first_200_s"),
        http_median_ms: f("cv2_inpaint_http_median_ms"),
        http_min_ms: f("cv2_inpaint_http_min_ms"),
        http_max_ms: f("cv2_inpaint_http_max_ms"),
        model_median_ms: f("cv2_model_only_median_ms"),
        runs: v.get("runs").and_then(Value::as_u64),
        image: v.get("image").and_then(Value::as_str).unwrap_or_default().to_string(),
        mask_fraction: f("mask_fraction"),
        python: v.pointer("/machine/python").and_then(Value::as_str).unwrap_or_default().to_string(),
    })
}

/// Everything the docs section shows.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub when: String,
    pub machine: Machine,
    pub build_args: BTreeMap<String, String>,
    pub runs: u32,
    pub touched: (String, String),
    pub figures: Vec<Figure>,
    pub gpu: GpuFigures,
    pub app: Option<AppFigures>,
    pub app_note: String,
    pub notes: Vec<String>,
    pub total_seconds: f64,
}

/// The figures section (what goes between the markers), as Markdown.
pub fn render_markdown(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "_Measured by `cargo xtask bench --write-docs` on {}; do not edit between the bench markers._\n\n",
        s.when
    ));
    out.push_str(&format!("- **Machine:** {}.\n", s.machine.describe()));
    out.push_str(&format!("- **Build args:** {}\n", build_args_sentence(&s.build_args)));
    let args: Vec<String> = s.build_args.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
    if !args.is_empty() {
        out.push_str(&format!("  Passed to both CPU builds: {}.\n", args.join(", ")));
    }
    out.push_str(&format!("- **Build context:** {CONTEXT_DEFINITION}.\n"));
    out.push_str(&format!(
        "- **Rebuilds:** a unique comment appended to `{}` (app) or `{}` (UI) in both copies, both images \
         rebuilt, the file restored; repeated {} time{}, shown as median (min–max). Cold builds: `--no-cache`, \
         base images present, full context transfer.\n\n",
        s.touched.0,
        s.touched.1,
        s.runs,
        if s.runs == 1 { "" } else { "s" }
    ));
    out.push_str("| Figure | Multistage | Baseline (single stage) | Multistage / baseline |\n");
    out.push_str("| --- | ---: | ---: | ---: |\n");
    for f in &s.figures {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            f.label,
            f.multistage.render(f.unit),
            f.baseline.render(f.unit),
            fmt_ratio(f.ratio())
        ));
    }
    out.push('\n');
    let losers: Vec<&Figure> = s.figures.iter().filter(|f| f.not_better()).collect();
    if losers.is_empty() {
        out.push_str("The multistage image beats the baseline on every figure above.\n\n");
    } else {
        for f in losers {
            out.push_str(&format!(
                "Where multistage does not win — **{}** ({}): {}.\n\n",
                f.label,
                fmt_ratio(f.ratio()),
                why_not_better(f.key)
            ));
        }
    }
    for note in &s.notes {
        out.push_str(&format!("{note}\n\n"));
    }
    out.push_str("**GPU image**\n\n| Figure | Value |\n| --- | ---: |\n");
    out.push_str(&format!(
        "| Image size | {} |\n",
        match s.gpu.size_bytes {
            Some(b) => format!("{} ({})", ui::fmt_bytes(b), s.gpu.size_source),
            None => s.gpu.size_source.clone(),
        }
    ));
    out.push_str(&format!(
        "| Cold build time | {} |\n\n",
        match s.gpu.cold_build_seconds {
            Some(t) => format!("{} ({})", Unit::Seconds.one(t), s.gpu.cold_source),
            None => s.gpu.cold_source.clone(),
        }
    ));
    out.push_str("**The app** (`python -m iopaint.bench --json`, host venv `target/venv`)\n\n");
    match &s.app {
        Some(app) => {
            out.push_str("| Figure | Value |\n| --- | ---: |\n");
            if let Some(t) = app.startup_seconds {
                out.push_str(&format!("| Server start → first 200 from `/api/v1/server-config` | {t:.2} s |\n"));
            }
            if let Some(ms) = app.http_median_ms {
                let range = match (app.http_min_ms, app.http_max_ms) {
                    (Some(a), Some(b)) => format!(" ({a:.0}–{b:.0} ms)"),
                    _ => String::new(),
                };
                out.push_str(&format!(
                    "| cv2 inpaint, {}, {} mask, over HTTP (median of {}) | {ms:.0} ms{range} |\n",
                    if app.image.is_empty() { "1024x1024" } else { &app.image },
                    app.mask_fraction.map_or("10%".to_string(), |m| format!("{:.0}%", m * 100.0)),
                    app.runs.map_or("?".to_string(), |r| r.to_string())
                ));
            }
            if let Some(ms) = app.model_median_ms {
                out.push_str(&format!("| the same, `cv2.inpaint` alone | {ms:.0} ms |\n"));
            }
            out.push('\n');
        }
        None => out.push_str(&format!("Not measured in this run: {}.\n\n", s.app_note)),
    }
    out.push_str(&format!("The whole bench took {}.\n", Unit::Seconds.one(s.total_seconds)));
    out
}

/// Replaces what lies between the bench markers with `body`, keeping the rest.
pub fn replace_between_markers(doc: &str, body: &str) -> Result<String> {
    let begin = doc.find(BEGIN_MARKER).with_context(|| format!("no `{BEGIN_MARKER}` line in {DOCS_FILE}"))?;
    let after_begin = begin + BEGIN_MARKER.len();
    let end = doc[after_begin..]
        .find(END_MARKER)
        .map(|i| i + after_begin)
        .with_context(|| format!("no `{END_MARKER}` after `{BEGIN_MARKER}` in {DOCS_FILE}"))?;
    if doc[end + END_MARKER.len()..].contains(BEGIN_MARKER) || doc[after_begin..end].contains(BEGIN_MARKER) {
        bail!("{DOCS_FILE} has more than one `{BEGIN_MARKER}`: keep exactly one pair of bench markers");
    }
    Ok(format!("{}\n{}\n{}", &doc[..after_begin], body.trim_end(), &doc[end..]))
}

/// `name==version` pins (literal versions only) and `ARG NAME=default` lines of a Dockerfile.
fn pins_and_args(dockerfile: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut pins = BTreeMap::new();
    let mut args = BTreeMap::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ARG ") {
            if let Some((k, v)) = rest.trim().split_once('=') {
                args.insert(k.trim().to_string(), v.trim().to_string());
            }
            continue;
        }
        for token in line.split_whitespace() {
            let token = token.trim_matches(|c: char| c == '"' || c == '\'' || c == ';' || c == '\\');
            if let Some((name, version)) = token.split_once("==") {
                if !name.is_empty() && !version.is_empty() && !token.contains('$') {
                    pins.insert(name.to_string(), version.to_string());
                }
            }
        }
    }
    (pins, args)
}

/// Where the baseline's versions or build-arg defaults differ from the
/// multistage file's: a drifted baseline makes the comparison unfair.
pub fn version_drift(multistage: &str, baseline: &str) -> Vec<String> {
    let (ms_pins, ms_args) = pins_and_args(multistage);
    let (bl_pins, bl_args) = pins_and_args(baseline);
    let mut drift = Vec::new();
    for (name, version) in &ms_pins {
        match bl_pins.get(name) {
            Some(v) if v == version => {}
            Some(v) => drift.push(format!("{name}: multistage {version}, baseline {v}")),
            None => drift.push(format!("{name}: pinned to {version} in the multistage file only")),
        }
    }
    for (name, value) in &ms_args {
        if let Some(v) = bl_args.get(name) {
            if v != value {
                drift.push(format!("ARG {name}: multistage {value}, baseline {v}"));
            }
        }
    }
    drift
}

/// The first RUN command of a Dockerfile as BuildKit names it: continuation
/// lines joined by dropping only the backslash and newline (so ` \\\n && x`
/// becomes `  && x`), comment lines inside a continuation skipped.
pub fn first_run_command(dockerfile: &str) -> Option<String> {
    let mut logical = String::new();
    let mut continuing = false;
    for line in dockerfile.lines() {
        if continuing && line.trim_start().starts_with('#') {
            continue;
        }
        if !continuing {
            logical.clear();
            if line.trim_start().starts_with('#') {
                continue;
            }
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                logical.push_str(head);
                continuing = true;
                continue;
            }
            None => {
                logical.push_str(line);
                continuing = false;
            }
        }
        let trimmed = logical.trim_start();
        if trimmed.len() > 4 && trimmed[..4].eq_ignore_ascii_case("RUN ") {
            return Some(trimmed[4..].trim().to_string());
        }
    }
    None
}

/// Build-cache records (the JSON of `docker system df -v`) that are `root`
/// records (by description) or descend from one, not in use, leaves first,
/// with their sizes in bytes.
pub fn cache_records_below(records_json: &str, root_description: &str) -> Result<Vec<(String, u64)>> {
    let records: Vec<Value> = serde_json::from_str(records_json.trim()).context("the build-cache listing is not JSON")?;
    let field = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let parent: std::collections::HashMap<String, String> =
        records.iter().map(|r| (field(r, "ID"), field(r, "Parent"))).collect();
    let is_root: std::collections::HashSet<String> =
        records.iter().filter(|r| field(r, "Description") == root_description).map(|r| field(r, "ID")).collect();
    let mut found = Vec::new();
    for r in &records {
        let id = field(r, "ID");
        // Depth below a root, if the chain reaches one (bounded against cycles).
        let (mut at, mut depth, mut hit) = (id.clone(), 0usize, false);
        while depth <= records.len() {
            if is_root.contains(&at) {
                hit = true;
                break;
            }
            match parent.get(&at) {
                Some(p) if !p.is_empty() => at = p.clone(),
                _ => break,
            }
            depth += 1;
        }
        let in_use = r.get("InUse").is_some_and(|v| v == "true" || v == &Value::Bool(true));
        if hit && !in_use && !id.is_empty() {
            let size = crate::sizes::parse_size(&field(r, "Size")).unwrap_or(0);
            found.push((depth, id, size));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(found.into_iter().map(|(_, id, size)| (id, size)).collect())
}

/// A comment line for `path`'s language carrying `marker`.
pub fn touch_comment(path: &Path, marker: &str) -> String {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "py" | "toml" | "sh" | "yml" | "yaml" => format!("# {marker}\n"),
        "html" | "md" => format!("<!-- {marker} -->\n"),
        _ => format!("/* {marker} */\n"),
    }
}

/// `original` with `comment` appended on a line of its own.
pub fn touched_bytes(original: &[u8], comment: &str) -> Vec<u8> {
    [original, &file_touch::appended_bytes(original, comment)].concat()
}

// ---------------------------------------------------------------------------
// Touching files: exact bytes and times come back on drop, on error and on Ctrl-C.

/// A file's bytes and times before we touched it, and what we appended.
struct Saved {
    path: PathBuf,
    bytes: Vec<u8>,
    appended: Vec<u8>,
    accessed: SystemTime,
    modified: SystemTime,
}

/// Every file touched and not yet restored; the signal handler restores them too.
static SAVED: Mutex<Vec<Saved>> = Mutex::new(Vec::new());
/// Set by the signal handler: no new touch may start after it ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn restore_one(saved: &Saved) -> Result<Restored> {
    let times = file_touch::Times { accessed: Some(saved.accessed), modified: saved.modified };
    file_touch::restore(&saved.path, &saved.bytes, &saved.appended, times)
}

/// Restores the registered files `filter` picks; returns what could not be restored.
fn restore_matching(filter: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut failures = Vec::new();
    let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
    let mut kept = Vec::new();
    for s in saved.drain(..) {
        if !filter(&s.path) {
            kept.push(s);
            continue;
        }
        match restore_one(&s) {
            Ok(Restored::Exact) => {}
            Ok(Restored::OurLineRemoved) => {
                ui::warn(format!("{} was edited during the bench: only our comment was removed", s.path.display()))
            }
            Ok(Restored::LeftAlone) => {
                ui::warn(format!("{} no longer holds our comment: left as it is", s.path.display()))
            }
            Err(e) => {
                failures.push(format!("{e:#}"));
                kept.push(s); // try again at the next restore
            }
        }
    }
    *saved = kept;
    failures
}

fn restore_all() -> Vec<String> {
    restore_matching(|_| true)
}

/// Files with a comment appended; restored when dropped (see [`Restored`]).
pub struct Touch {
    paths: Vec<PathBuf>,
}

impl Touch {
    /// Appends `comment` to each file.
    pub fn apply(files: &[PathBuf], comment: &str) -> Result<Touch> {
        let mut touch = Touch { paths: Vec::new() };
        // On error `touch` drops (and restores) only after the lock is released.
        Touch::apply_locked(&mut touch, files, comment).map(|()| touch)
    }

    fn apply_locked(touch: &mut Touch, files: &[PathBuf], comment: &str) -> Result<()> {
        // Held while writing, so the signal handler either sees this file
        // registered or stops us before we start.
        let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        for path in files {
            let meta = fs::metadata(path).with_context(|| format!("{} is missing", path.display()))?;
            let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let new = touched_bytes(&bytes, comment);
            saved.push(Saved {
                path: path.clone(),
                appended: new[bytes.len()..].to_vec(),
                bytes,
                accessed: meta.accessed().unwrap_or(UNIX_EPOCH),
                modified: meta.modified().context("this filesystem keeps no mtime")?,
            });
            touch.paths.push(path.clone());
            fs::write(path, new).with_context(|| format!("touching {}", path.display()))?;
        }
        Ok(())
    }

    /// Restores now; an error names the files that did not come back.
    pub fn restore(mut self) -> Result<()> {
        let failures = self.restore_inner();
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("could not restore: {}", failures.join("; "))
        }
    }

    fn restore_inner(&mut self) -> Vec<String> {
        let paths = std::mem::take(&mut self.paths);
        restore_matching(|p| paths.iter().any(|q| q == p))
    }
}

impl Drop for Touch {
    fn drop(&mut self) {
        for failure in self.restore_inner() {
            ui::error(format!("{failure}: restore it by hand"));
        }
    }
}

/// On SIGINT/SIGTERM: restore touched files, stop the build, remove what we made, exit.
fn install_signal_handler(bin: PathBuf, frontend: BuildFrontend, copies: PathBuf) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing a signal handler")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let failures = restore_all();
            docker::kill_children();
            ui::warn("interrupted: removing the bench copies, images and containers");
            for failure in failures {
                ui::error(format!("{failure}: restore it by hand"));
            }
            if let Ok(d) = Docker::new(bin, frontend) {
                cleanup_docker(&d);
            }
            let _ = fs::remove_dir_all(&copies);
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

/// Image ids this run built: every rebuild re-tags, leaving the previous image
/// untagged, and the baseline's are ~0.5 GB each.
static BUILT_IMAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Removes our containers, tags, the untagged images we built, and the
/// baseline's build cache (several GB a run, never reused: cold builds use
/// --no-cache and each rebuild's edit is unique).
fn cleanup_docker(d: &Docker) {
    if let Ok(found) = d.objects_with_label(&format!("{}={}", LABEL.0, LABEL.1)) {
        for obj in found {
            if let Some(id) = obj.strip_prefix("container ") {
                d.remove_container(id);
            }
        }
    }
    for tag in [MULTISTAGE_TAG, BASELINE_TAG, GPU_TAG] {
        d.remove_image(tag);
    }
    let built: Vec<String> = BUILT_IMAGES.lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default();
    for id in built {
        // Still tagged means someone else's image has the same id (e.g. iopaint:cpu-latest).
        if d.image_inspect(&id, "{{len .RepoTags}}").is_ok_and(|n| n.trim() == "0") {
            d.remove_image(&id);
        }
    }
    match prune_baseline_cache(d) {
        Ok((0, _)) => {}
        Ok((n, bytes)) => ui::info(format!("removed the baseline's build cache: {n} records, {}", ui::fmt_bytes(bytes))),
        Err(e) => ui::warn(format!("could not remove the baseline's build cache: {e:#}")),
    }
}

/// Prunes every build-cache record that descends from the baseline's first
/// RUN step, leaves first; returns (records, bytes).
fn prune_baseline_cache(d: &Docker) -> Result<(usize, u64)> {
    let dockerfile = fs::read_to_string(project::root().join(BASELINE_DOCKERFILE))?;
    let root_cmd = first_run_command(&dockerfile).context("the baseline Dockerfile has no RUN step")?;
    let records = d.build_cache_records()?;
    let targets = cache_records_below(&records, &format!("mount / from exec /bin/sh -c {root_cmd}"))?;
    let (mut count, mut bytes) = (0, 0);
    for (id, size) in targets {
        if d.prune_build_cache_record(&id).is_ok() {
            count += 1;
            bytes += size;
        }
    }
    Ok((count, bytes))
}

/// Removes the bench images, containers and the context copies, pass or fail.
struct Cleanup<'a> {
    docker: &'a Docker,
    copies: PathBuf,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        cleanup_docker(self.docker);
        let _ = fs::remove_dir_all(&self.copies);
    }
}

// ---------------------------------------------------------------------------
// Effects.

/// For a cold build: a fresh BuildKit session identity, so the whole context
/// is sent (BuildKit otherwise sends only what changed since the last build of
/// the same directory by this client). The identity lives in DOCKER_CONFIG
/// (built-in client) or BUILDX_CONFIG (buildx); DOCKER_HOST is pinned to the
/// current endpoint so the same engine answers. Restored on drop.
struct FreshSession {
    saved: Vec<(&'static str, Option<OsString>)>,
    dir: PathBuf,
}

impl FreshSession {
    fn start(env: &Env, label: &str) -> Result<FreshSession> {
        let endpoint = env.docker.endpoint()?;
        let dir = project::state_dir()?.join("bench").join(format!("session-{label}-{}", nanos()));
        fs::create_dir_all(&dir)?;
        let config_var = match env.docker.frontend {
            BuildFrontend::Builtin => "DOCKER_CONFIG",
            BuildFrontend::Buildx => "BUILDX_CONFIG",
        };
        let mut session = FreshSession { saved: Vec::new(), dir: dir.clone() };
        for var in [config_var, "DOCKER_HOST", "DOCKER_CONTEXT"] {
            session.saved.push((var, std::env::var_os(var)));
        }
        std::env::set_var(config_var, &dir);
        if config_var == "DOCKER_CONFIG" {
            std::env::set_var("DOCKER_HOST", endpoint);
            std::env::remove_var("DOCKER_CONTEXT");
        }
        Ok(session)
    }
}

impl Drop for FreshSession {
    fn drop(&mut self) {
        for (var, value) in self.saved.drain(..) {
            match value {
                Some(v) => std::env::set_var(var, v),
                None => std::env::remove_var(var),
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// One of the two images under comparison.
struct Variant {
    name: &'static str,
    tag: &'static str,
    dockerfile: PathBuf,
    context: PathBuf,
}

/// What one build of a variant measured.
struct Measured {
    seconds: f64,
    rerun: usize,
    total: usize,
    transfer: Option<u64>,
    image_id: String,
    size: u64,
}

fn build_variant(env: &Env, v: &Variant, args: &BTreeMap<String, String>, no_cache: bool, what: &str) -> Result<Measured> {
    let progress = ui::Progress::start(format!("{what}: {} ({})", v.name, v.tag));
    let spec = ImageSpec {
        dockerfile: v.dockerfile.clone(),
        context: v.context.clone(),
        tags: vec![v.tag.to_string()],
        build_args: args.clone(),
        no_cache,
        echo: false,
        ..Default::default()
    };
    let built: BuiltImage = match build::build_image(env, Flavor::Cpu, &spec) {
        Ok(b) => b,
        Err(e) => {
            progress.finish_err("failed");
            return Err(e).with_context(|| format!("{what} of the {} image failed", v.name));
        }
    };
    let slug: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let log = project::state_dir()?.join("bench").join(format!("{}-{slug}.log", v.name));
    fs::write(&log, &built.log).ok();
    if let Ok(mut ids) = BUILT_IMAGES.lock() {
        ids.push(built.image_id.clone());
    }
    let (cached, total) = built.steps.cached_count();
    // The tag is ours alone; the iid file is shared with other tasks' builds.
    let size = env.docker.image_size(v.tag).unwrap_or(built.size);
    progress.finish_ok(&format!("{} re-ran of {total} steps, {}", total - cached, ui::fmt_bytes(size)));
    Ok(Measured {
        seconds: built.elapsed.as_secs_f64(),
        rerun: total - cached,
        total,
        transfer: built.steps.context_transfer_bytes,
        image_id: built.image_id,
        size,
    })
}

/// Copies the checkout into `dest`, leaving out target/ (and .dockerignore
/// unless `keep_dockerignore`).
fn make_snapshot(sh: &Shell, root: &Path, dest: &Path, keep_dockerignore: bool) -> Result<()> {
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("removing the old copy {}", dest.display()))?;
    }
    fs::create_dir_all(dest)?;
    let mut sources = Vec::new();
    for entry in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || (name == ".dockerignore" && !keep_dockerignore) {
            continue;
        }
        sources.push(entry.path());
    }
    sources.sort();
    // cp -a keeps modes and mtimes, so the copy is the same tree to BuildKit.
    cmd!(sh, "cp -a {sources...} {dest}")
        .quiet()
        .run()
        .with_context(|| format!("copying the checkout to {}", dest.display()))?;
    Ok(())
}

/// The UI file to touch: main.tsx, else the first file under web_app/src/.
fn ui_touch_file(root: &Path) -> Result<String> {
    if root.join(UI_TOUCH).is_file() {
        return Ok(UI_TOUCH.into());
    }
    let dir = root.join("web_app/src");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .first()
        .map(|n| format!("web_app/src/{n}"))
        .with_context(|| format!("no file under {} to touch", dir.display()))
}

fn machine(env: &Env) -> Machine {
    let (cpu, cores) = parse_cpuinfo(&fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let cores = if cores > 0 { cores } else { std::thread::available_parallelism().map_or(0, |n| n.get()) };
    Machine {
        cpu,
        cores,
        memory_bytes: parse_meminfo_total(&fs::read_to_string("/proc/meminfo").unwrap_or_default()).unwrap_or(0),
        os: parse_os_release(&fs::read_to_string("/etc/os-release").unwrap_or_default()).unwrap_or_default(),
        engine_version: env.engine_version.clone(),
        frontend: match env.docker.frontend {
            BuildFrontend::Builtin => "builds through the BuildKit built into the docker client".into(),
            BuildFrontend::Buildx => "builds through buildx".into(),
        },
    }
}

/// Starts `tag`, times `docker run` to the first 200 from the API, removes it.
fn container_start_seconds(env: &Env, variant: &str, tag: &str) -> Result<f64> {
    let port = crate::smoke::free_port()?;
    let name = format!("iopaint-bench-{variant}-{}", std::process::id());
    struct Remove<'a>(&'a Docker, String);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            self.0.remove_container(&self.1);
        }
    }
    let _remove = Remove(&env.docker, name.clone());
    let spec = RunSpec {
        name: name.clone(),
        image: tag.to_string(),
        ports: vec![(format!("127.0.0.1:{port}"), "8080".into())],
        labels: vec![(LABEL.0.into(), LABEL.1.into())],
        ..Default::default()
    };
    let url = format!("http://127.0.0.1:{port}/api/v1/server-config");
    let started = Instant::now();
    env.docker.run_detached(&spec)?;
    let deadline = started + Duration::from_secs(90);
    loop {
        if let Ok(resp) = ureq::get(&url).timeout(Duration::from_secs(2)).call() {
            if resp.status() == 200 {
                return Ok(started.elapsed().as_secs_f64());
            }
        }
        if Instant::now() > deadline {
            let logs = env.docker.logs(&name, 20).unwrap_or_default();
            bail!("{tag} did not answer {url} within 90 s; last log lines:\n{logs}");
        }
        let running = env.docker.container_inspect(&name, "{{.State.Running}}").unwrap_or_default();
        if running == "false" {
            let logs = env.docker.logs(&name, 20).unwrap_or_default();
            bail!("{tag} exited before answering; last log lines:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn gpu_state_file() -> Result<PathBuf> {
    Ok(project::state_dir()?.join("bench-gpu.json"))
}

fn gpu_figures(env: &Env, args: &BenchArgs, version: &str) -> Result<GpuFigures> {
    let mut gpu = GpuFigures::default();
    let state_path = gpu_state_file()?;
    let previous: Option<Value> = fs::read_to_string(&state_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    if args.gpu_cold {
        let spec = ImageSpec {
            dockerfile: Flavor::Gpu.dockerfile(),
            context: project::root(),
            tags: vec![GPU_TAG.to_string()],
            build_args: build::flavor_build_args(env, Flavor::Gpu, version, &[]),
            no_cache: true,
            echo: false,
            ..Default::default()
        };
        let progress = ui::Progress::start(format!("cold build: GPU image ({GPU_TAG}; many minutes)"));
        let built = {
            let _fresh = FreshSession::start(env, "gpu")?;
            build::build_image(env, Flavor::Gpu, &spec)
        };
        let built = match built {
            Ok(b) => b,
            Err(e) => {
                progress.finish_err("failed");
                return Err(e).context("the GPU cold build (--gpu-cold) failed");
            }
        };
        let size = env.docker.image_size(GPU_TAG).unwrap_or(built.size);
        progress.finish_ok(&ui::fmt_bytes(size));
        let when = utc_timestamp(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs());
        gpu.size_bytes = Some(size);
        gpu.size_source = format!("{GPU_TAG}, built in this run");
        gpu.cold_build_seconds = Some(built.elapsed.as_secs_f64());
        gpu.cold_source = "measured in this run".into();
        let record = json!({
            "measured_at": when,
            "cold_build_seconds": built.elapsed.as_secs_f64(),
            "size_bytes": size,
            "build_args": build::flavor_build_args(env, Flavor::Gpu, version, &[]),
        });
        fs::write(&state_path, serde_json::to_string_pretty(&record)? + "\n").ok();
        return Ok(gpu);
    }
    let latest = Flavor::Gpu.latest_tag();
    if env.docker.image_exists(&latest) {
        gpu.size_bytes = Some(env.docker.image_size(&latest)?);
        gpu.size_source = latest.clone();
    } else if let Some((size, when)) = size_check_record(&latest) {
        gpu.size_bytes = Some(size);
        gpu.size_source = format!("{latest} as size-check last saw it, {when}");
    } else if let Some(size) = previous.as_ref().and_then(|p| p.get("size_bytes")).and_then(Value::as_u64) {
        gpu.size_bytes = Some(size);
        gpu.size_source = format!(
            "last measured {}",
            previous.as_ref().and_then(|p| p.get("measured_at")).and_then(Value::as_str).unwrap_or("earlier")
        );
    } else {
        gpu.size_source = format!("not measured in this run ({latest} is not built: `cargo xtask build gpu`)");
    }
    match previous.as_ref().and_then(|p| Some((p.get("cold_build_seconds")?.as_f64()?, p.get("measured_at")?.as_str()?))) {
        Some((secs, when)) => {
            gpu.cold_build_seconds = Some(secs);
            gpu.cold_source = format!("last measured {when} with `--gpu-cold`");
        }
        None => {
            gpu.cold_source = "not measured in this run (`cargo xtask bench --gpu-cold` measures it)".into();
        }
    }
    Ok(gpu)
}

/// The last size `cargo xtask size-check` recorded for `image` (target/xtask/sizes.json).
fn size_check_record(image: &str) -> Option<(u64, String)> {
    let text = fs::read_to_string(project::state_dir().ok()?.join("sizes.json")).ok()?;
    let history: Value = serde_json::from_str(&text).ok()?;
    let record = history.get(image)?;
    let bytes = record.get("bytes")?.as_u64()?;
    let when = match record.get("date").and_then(Value::as_str) {
        Some(date) => date.to_string(),
        None => utc_timestamp(record.get("recorded_at")?.as_u64()?),
    };
    Some((bytes, when))
}

/// Runs the app's own bench with the host venv; `Err` says why it did not run.
fn app_figures(sh: &Shell) -> std::result::Result<AppFigures, String> {
    let python = pyenv::bin("python");
    if !python.exists() {
        return Err(format!("{} is missing (run `cargo xtask test` once to create it)", python.display()));
    }
    let root = project::root();
    if !root.join("iopaint/bench.py").is_file() {
        return Err("iopaint/bench.py is missing".into());
    }
    let _dir = sh.push_dir(&root);
    let progress = ui::Progress::start("app bench: python -m iopaint.bench --json");
    let out = cmd!(sh, "{python} -m iopaint.bench --json").quiet().ignore_status().output();
    match out {
        Ok(out) if out.status.success() => match parse_app_bench(&String::from_utf8_lossy(&out.stdout)) {
            Ok(app) => {
                progress.finish_ok("done");
                Ok(app)
            }
            Err(e) => {
                progress.finish_err("unreadable output");
                Err(format!("{e:#}"))
            }
        },
        Ok(out) => {
            progress.finish_err("failed");
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!("the app bench failed: {}", err.lines().last().unwrap_or("").trim()))
        }
        Err(e) => {
            progress.finish_err("failed");
            Err(format!("could not run the app bench: {e}"))
        }
    }
}

/// (touch kind, variant) -> one (seconds, steps re-run, steps in all) per run.
type RebuildRuns = BTreeMap<(&'static str, &'static str), Vec<(f64, usize, usize)>>;

fn figure(key: &'static str, label: impl Into<String>, unit: Unit, multistage: Side, baseline: Side) -> Figure {
    Figure { key, label: label.into(), unit, multistage, baseline }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let result = run_bench(args);
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The signal thread is cleaning up and exits 128+signal; the build it
        // stopped made `result` an error that must not win the race to exit.
        std::thread::sleep(Duration::from_secs(120));
        std::process::exit(130);
    }
    result
}

fn run_bench(args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    let root = project::root();
    let docs_path = root.join(DOCS_FILE);
    if args.write_docs {
        // Fail now, not after twenty minutes of building.
        let doc = fs::read_to_string(&docs_path)
            .with_context(|| format!("--write-docs needs {} with the bench markers", docs_path.display()))?;
        replace_between_markers(&doc, "")?;
    }
    let drift = version_drift(
        &fs::read_to_string(Flavor::Cpu.dockerfile()).context("reading the multistage CPU Dockerfile")?,
        &fs::read_to_string(root.join(BASELINE_DOCKERFILE)).with_context(|| format!("reading {BASELINE_DOCKERFILE}"))?,
    );
    if !drift.is_empty() {
        bail!(
            "{BASELINE_DOCKERFILE} no longer uses the multistage file's versions ({}): update it so the comparison stays fair",
            drift.join("; ")
        );
    }
    let env = setup::ensure(&SetupOptions::default())?;
    let sh = Shell::new()?;
    let version = project::app_version()?;
    let bench_dir = project::state_dir()?.join("bench");
    fs::create_dir_all(&bench_dir)?;
    let copies = bench_dir.join("contexts");
    let ms_copy = copies.join("multistage");
    let bl_copy = copies.join("baseline");
    install_signal_handler(env.docker.bin.clone(), env.docker.frontend, copies.clone())?;
    let _cleanup = Cleanup { docker: &env.docker, copies: copies.clone() };
    let mut notes: Vec<String> = Vec::new();

    // Same args for both (the baseline ignores NODE_IMAGE: it installs node from apt).
    let build_args = build::flavor_build_args(&env, Flavor::Cpu, &version, &[]);
    let shown_args: BTreeMap<String, String> = env.build_args_for(Flavor::Cpu);

    // Two copies of the same tree, so builds by others from the checkout never
    // see our touched files and ours never see theirs (a shared checkout made
    // UI rebuilds come out fully cached when another build ran in between).
    ui::info(format!("copying the checkout (without target/) to {}", copies.display()));
    if copies.exists() {
        fs::remove_dir_all(&copies).with_context(|| format!("removing the old copies {}", copies.display()))?;
    }
    make_snapshot(&sh, &root, &ms_copy, true)?;
    make_snapshot(&sh, &root, &bl_copy, false)?;
    let multistage = Variant {
        name: "multistage",
        tag: MULTISTAGE_TAG,
        dockerfile: Flavor::Cpu.dockerfile(),
        context: ms_copy.clone(),
    };
    let baseline = Variant {
        name: "baseline",
        tag: BASELINE_TAG,
        dockerfile: root.join(BASELINE_DOCKERFILE),
        context: bl_copy.clone(),
    };

    // Build context as the walker counts it (what BuildKit would send).
    let sender = match env.docker.frontend {
        BuildFrontend::Builtin => Sender::PrefixOnly,
        BuildFrontend::Buildx => Sender::Current,
    };
    let walk = |dir: &Path, rules: &IgnoreRules| dockerignore::walk_context_with(dir, rules, WalkOptions { always_sent: &[], sender });
    let ms_ctx = walk(&ms_copy, &IgnoreRules::from_file(&ms_copy.join(".dockerignore"))?)?;
    let bl_ctx = walk(&bl_copy, &IgnoreRules::default())?;

    // Cold builds: no layer cache, full context transfer.
    let mut cold = Vec::new();
    for v in [&multistage, &baseline] {
        let _fresh = FreshSession::start(&env, v.name)?;
        cold.push(build_variant(&env, v, &build_args, true, "cold build")?);
    }
    let (ms_cold, bl_cold) = (&cold[0], &cold[1]);

    // Both images must work: time `docker run` to the first answer, alternating.
    let mut start_times: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for run in 1..=args.runs {
        for (i, v) in [&multistage, &baseline].into_iter().enumerate() {
            let progress = ui::Progress::start(format!("container start {run}/{}: {}", args.runs, v.name));
            match container_start_seconds(&env, v.name, v.tag) {
                Ok(t) => {
                    progress.finish_ok(&format!("first 200 after {}", Unit::Seconds.one(t)));
                    start_times[i].push(t);
                }
                Err(e) => {
                    progress.finish_err("failed");
                    return Err(e).with_context(|| format!("the {} image does not serve the API", v.name));
                }
            }
        }
    }

    // Untimed warm-up: the regular session sees each context once, so the
    // timed rebuilds measure an edit, not a first transfer.
    for v in [&multistage, &baseline] {
        build_variant(&env, v, &build_args, false, "warm-up")?;
    }

    // Rebuilds after one-file edits, both images on the same touched tree.
    let ui_file = ui_touch_file(&root)?;
    let touches = [("app", APP_TOUCH.to_string()), ("ui", ui_file.clone())];
    let mut rebuilds: RebuildRuns = BTreeMap::new();
    let nonce = nanos();
    for run in 1..=args.runs {
        for (kind, rel) in &touches {
            let marker = format!("xtask bench touch {nonce}-{run}");
            let comment = touch_comment(Path::new(rel), &marker);
            let touch = Touch::apply(&[ms_copy.join(rel), bl_copy.join(rel)], &comment)?;
            for v in [&multistage, &baseline] {
                let m = build_variant(&env, v, &build_args, false, &format!("rebuild {run}/{} after touching {rel}", args.runs))?;
                rebuilds.entry((kind, v.name)).or_default().push((m.seconds, m.rerun, m.total));
            }
            touch.restore()?;
        }
    }

    let gpu = gpu_figures(&env, args, &version)?;
    let (app, app_note) = match app_figures(&sh) {
        Ok(app) => (Some(app), String::new()),
        Err(why) => {
            ui::warn(format!("app figures not measured: {why}"));
            (None, why)
        }
    };

    // Figures.
    let secs = |kind: &str, name: &str| -> Side {
        let runs = rebuilds.get(&(kind, name)).cloned().unwrap_or_default();
        Side { values: runs.iter().map(|r| r.0).collect(), of_total: None }
    };
    let steps = |kind: &str, name: &str| -> Side {
        let runs = rebuilds.get(&(kind, name)).cloned().unwrap_or_default();
        Side { values: runs.iter().map(|r| r.1 as f64).collect(), of_total: runs.last().map(|r| r.2) }
    };
    let one_opt = |v: Option<u64>| v.map_or_else(Side::default, |b| Side::one(b as f64));
    let figures = vec![
        figure("context_bytes", "Build context, bytes (walker)", Unit::Bytes, Side::one(ms_ctx.bytes as f64), Side::one(bl_ctx.bytes as f64)),
        figure("context_files", "Build context, files (walker)", Unit::Files, Side::one(ms_ctx.files as f64), Side::one(bl_ctx.files as f64)),
        figure("context_transfer", "Build context sent (BuildKit `transferring context`)", Unit::Bytes, one_opt(ms_cold.transfer), one_opt(bl_cold.transfer)),
        figure("image_size", "Image size", Unit::Bytes, Side::one(ms_cold.size as f64), Side::one(bl_cold.size as f64)),
        figure("cold_build", "Cold build (`--no-cache`)", Unit::Seconds, Side::one(ms_cold.seconds), Side::one(bl_cold.seconds)),
        figure("rebuild_app", format!("Rebuild after touching `{APP_TOUCH}`"), Unit::Seconds, secs("app", "multistage"), secs("app", "baseline")),
        figure("steps_app", format!("Steps re-run after touching `{APP_TOUCH}`"), Unit::Steps, steps("app", "multistage"), steps("app", "baseline")),
        figure("rebuild_ui", format!("Rebuild after touching `{ui_file}`"), Unit::Seconds, secs("ui", "multistage"), secs("ui", "baseline")),
        figure("steps_ui", format!("Steps re-run after touching `{ui_file}`"), Unit::Steps, steps("ui", "multistage"), steps("ui", "baseline")),
        figure(
            "container_start",
            "`docker run` → first 200 from the API",
            Unit::Seconds,
            Side { values: start_times[0].clone(), of_total: None },
            Side { values: start_times[1].clone(), of_total: None },
        ),
    ];
    notes.push(
        "Cold builds: the multistage file's pip and npm download caches are BuildKit cache mounts, which \
         `--no-cache` does not empty, so its cold build reuses earlier downloads; the naive file has no cache \
         mounts and downloads everything. Other builds on the same engine at the same time make the times noisy."
            .into(),
    );
    if ms_ctx.bytes > 0 && ms_cold.transfer.is_some_and(|t| t > 4 * ms_ctx.bytes + 1_000_000) {
        notes.push("The multistage context sent by BuildKit is far above the walker's count: check the .dockerignore.".into());
    }

    let total = started.elapsed();
    if total > TIME_LIMIT {
        notes.push(format!(
            "This run took {}, over the {} limit: fewer `--runs` or a quieter engine help.",
            ui::fmt_duration(total),
            ui::fmt_duration(TIME_LIMIT)
        ));
        ui::warn(format!("the bench took {}, over its {} limit", ui::fmt_duration(total), ui::fmt_duration(TIME_LIMIT)));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let summary = Summary {
        when: utc_timestamp(now),
        machine: machine(&env),
        build_args: shown_args,
        runs: args.runs,
        touched: (APP_TOUCH.to_string(), ui_file.clone()),
        figures,
        gpu,
        app,
        app_note,
        notes,
        total_seconds: total.as_secs_f64(),
    };

    let mut report = Report::with_headers("bench: multistage vs single-stage baseline (CPU)", &["figure", "multistage", "baseline", "multistage/baseline"]);
    for f in &summary.figures {
        report.add_row([
            Cell::from(f.label.replace('`', "")),
            Cell::new(f.multistage.render(f.unit), f.multistage.to_json()),
            Cell::new(f.baseline.render(f.unit), f.baseline.to_json()),
            Cell::new(fmt_ratio(f.ratio()), f.ratio().map_or(Value::Null, |r| json!((r * 1000.0).round() / 1000.0))),
        ]);
    }
    for f in summary.figures.iter().filter(|f| f.not_better()) {
        report.note(format!("multistage does not win on {}: {}", f.label.replace('`', ""), why_not_better(f.key)));
    }
    report.note(format!(
        "GPU image: size {}, cold build {}",
        summary.gpu.size_bytes.map_or(summary.gpu.size_source.clone(), |b| format!("{} ({})", ui::fmt_bytes(b), summary.gpu.size_source)),
        summary.gpu.cold_build_seconds.map_or(summary.gpu.cold_source.clone(), |t| format!("{} ({})", Unit::Seconds.one(t), summary.gpu.cold_source)),
    ));
    if let Some(app) = &summary.app {
        report.note(format!(
            "app: server start to first 200 {:.2} s; cv2 inpaint {} {:.0}% mask median {:.0} ms over HTTP ({:.0} ms in cv2 alone)",
            app.startup_seconds.unwrap_or(f64::NAN),
            app.image,
            app.mask_fraction.unwrap_or(0.1) * 100.0,
            app.http_median_ms.unwrap_or(f64::NAN),
            app.model_median_ms.unwrap_or(f64::NAN)
        ));
    }
    report.note(format!("total bench time {}", ui::fmt_duration(total)));
    let json = json!({
        "measured_at": summary.when,
        "machine": summary.machine.to_json(),
        "build_args": build_args,
        "build_args_sentence": build_args_sentence(&summary.build_args),
        "context_definition": CONTEXT_DEFINITION,
        "baseline_dockerfile": BASELINE_DOCKERFILE,
        "multistage_dockerfile": Flavor::Cpu.dockerfile_rel(),
        "runs": args.runs,
        "touched": {"app": APP_TOUCH, "ui": ui_file},
        "figures": summary.figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
        "not_better": summary.figures.iter().filter(|f| f.not_better()).map(|f| json!({"key": f.key, "why": why_not_better(f.key)})).collect::<Vec<_>>(),
        "cold_images": {"multistage": ms_cold.image_id, "baseline": bl_cold.image_id},
        "largest_baseline_context_paths": bl_ctx.largest_paths(5),
        "gpu": {
            "size_bytes": summary.gpu.size_bytes,
            "size_source": summary.gpu.size_source,
            "cold_build_seconds": summary.gpu.cold_build_seconds,
            "cold_source": summary.gpu.cold_source,
        },
        "app": summary.app.as_ref().map(|a| json!({
            "startup_to_first_200_s": a.startup_seconds,
            "cv2_inpaint_http_median_ms": a.http_median_ms,
            "cv2_inpaint_http_min_ms": a.http_min_ms,
            "cv2_inpaint_http_max_ms": a.http_max_ms,
            "cv2_model_only_median_ms": a.model_median_ms,
            "runs": a.runs,
            "image": a.image,
            "mask_fraction": a.mask_fraction,
        })),
        "app_not_measured": if summary.app.is_none() { Value::from(summary.app_note.clone()) } else { Value::Null },
        "notes": summary.notes,
        "total_seconds": total.as_secs_f64(),
        "time_limit_seconds": TIME_LIMIT.as_secs(),
    });
    fs::write(bench_dir.join("last.json"), serde_json::to_string_pretty(&json)? + "\n").ok();
    report.set_json(json);

    if args.write_docs {
        let doc = fs::read_to_string(&docs_path).with_context(|| format!("reading {}", docs_path.display()))?;
        let new = replace_between_markers(&doc, &render_markdown(&summary))?;
        fs::write(&docs_path, new).with_context(|| format!("writing {}", docs_path.display()))?;
        ui::ok(format!("wrote the figures into {DOCS_FILE}"));
    }
    report.emit(&args.out)?;
    Ok(())
}

pub const INTEGRATION: &[crate::testkit::IntegrationCheck] = &[crate::testkit::IntegrationCheck {
    name: "SIGINT during a bench build removes its images, containers and copies; the checkout is untouched",
    run: check_sigint_cleans_up,
}];

/// Starts a real bench, interrupts its first cold build and checks that
/// nothing is left behind and the checkout's touch targets did not change.
fn check_sigint_cleans_up(env: &Env) -> Result<()> {
    use std::process::{Command, Stdio};
    let root = project::root();
    let watched: Vec<(PathBuf, Vec<u8>, SystemTime)> = [APP_TOUCH, UI_TOUCH]
        .iter()
        .map(|rel| root.join(rel))
        .filter(|p| p.is_file())
        .map(|p| -> Result<_> {
            let bytes = fs::read(&p)?;
            let mtime = fs::metadata(&p)?.modified()?;
            Ok((p, bytes, mtime))
        })
        .collect::<Result<_>>()?;
    let scratch = crate::testkit::ScratchDir::new("bench-sigint")?;
    let log_path = scratch.path().join("stderr.log");
    let exe = crate::testkit::xtask_exe()?;
    let mut child = Command::new(exe)
        .args(["bench", "--runs", "1"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log_path)?)
        .spawn()
        .context("starting `cargo xtask bench`")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    while !log().contains("cold build: multistage") {
        if let Some(status) = child.try_wait()? {
            bail!("the bench ended ({status}) before its first build:\n{}", crate::testkit::tail(&log(), 20));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the bench did not reach its first build within 300 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3)); // let `docker build` start
    let pid = child.id().to_string();
    let sh = Shell::new()?;
    cmd!(sh, "kill -INT {pid}").quiet().run()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the bench did not exit within 120 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if status.code() != Some(130) {
        bail!("expected exit 130 after SIGINT, got {status}:\n{}", crate::testkit::tail(&log(), 20));
    }
    let mut left = Vec::new();
    for tag in [MULTISTAGE_TAG, BASELINE_TAG] {
        if env.docker.image_exists(tag) {
            left.push(format!("image {tag}"));
        }
    }
    left.extend(env.docker.objects_with_label(&format!("{}={}", LABEL.0, LABEL.1))?);
    let copies = project::state_dir()?.join("bench").join("contexts");
    if copies.exists() {
        left.push(copies.display().to_string());
    }
    for (path, bytes, mtime) in &watched {
        if fs::read(path)? != *bytes || fs::metadata(path)?.modified()? != *mtime {
            left.push(format!("{} changed", path.display()));
        }
    }
    if !left.is_empty() {
        bail!("after SIGINT the bench left: {}", left.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle_and_the_ends() {
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[3.0]), Some(Spread { median: 3.0, min: 3.0, max: 3.0 }));
        assert_eq!(spread(&[5.0, 1.0, 3.0]), Some(Spread { median: 3.0, min: 1.0, max: 5.0 }));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 10.0]), Some(Spread { median: 3.0, min: 1.0, max: 10.0 }));
    }

    #[test]
    fn ratios_are_multistage_over_baseline() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(fmt_ratio(Some(0.25)), "0.25×");
        assert_eq!(fmt_ratio(Some(0.0042)), "0.004×");
        assert_eq!(fmt_ratio(Some(1.5)), "1.50×");
        assert_eq!(fmt_ratio(None), "n/a");
    }

    #[test]
    fn sides_render_median_range_and_totals() {
        assert_eq!(Side::default().render(Unit::Seconds), "not measured");
        assert_eq!(Side::one(46_160_000.0).render(Unit::Bytes), "46.16 MB");
        let s = Side { values: vec![12.3, 11.9, 13.0], of_total: None };
        assert_eq!(s.render(Unit::Seconds), "12.3s (11.9s–13.0s)");
        let same = Side { values: vec![2.0, 2.0, 2.0], of_total: Some(14) };
        assert_eq!(same.render(Unit::Steps), "2 of 14");
        let varied = Side { values: vec![2.0, 3.0, 3.0], of_total: Some(14) };
        assert_eq!(varied.render(Unit::Steps), "3 (2–3) of 14");
        let close = Side { values: vec![1.81, 1.79, 1.84], of_total: None };
        assert_eq!(close.render(Unit::Seconds), "1.8s");
        let even = Side { values: vec![2.0, 3.0], of_total: None };
        assert_eq!(even.render(Unit::Files), "2.5 (2–3)");
    }

    fn sample_summary(multistage_cold: f64) -> Summary {
        let mut args = BTreeMap::new();
        args.insert("INSTALL_TORCH".to_string(), "0".to_string());
        args.insert("DEFAULT_MODEL".to_string(), "cv2".to_string());
        args.insert("PYTHON_IMAGE".to_string(), "iopaint-standin/python:3.11-bookworm".to_string());
        Summary {
            when: "2026-12-04 15:58 UTC".into(),
            machine: Machine {
                cpu: "Xeon".into(),
                cores: 2,
                memory_bytes: 24 << 30,
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                engine_version: "20.10.24".into(),
                frontend: "buildx".into(),
            },
            build_args: args,
            runs: 3,
            touched: ("iopaint/cli.py".into(), "web_app/src/main.tsx".into()),
            figures: vec![
                figure("image_size", "Image size", Unit::Bytes, Side::one(364e6), Side::one(900e6)),
                figure("cold_build", "Cold build", Unit::Seconds, Side::one(multistage_cold), Side::one(200.0)),
                figure(
                    "steps_app",
                    "Steps re-run",
                    Unit::Steps,
                    Side { values: vec![1.0, 1.0, 1.0], of_total: Some(12) },
                    Side { values: vec![5.0, 5.0, 5.0], of_total: Some(9) },
                ),
            ],
            gpu: GpuFigures {
                size_bytes: Some(5_000_000_000),
                size_source: "iopaint:gpu-latest".into(),
                cold_build_seconds: None,
                cold_source: "not measured in this run".into(),
            },
            app: Some(AppFigures {
                startup_seconds: Some(0.695),
                http_median_ms: Some(323.4),
                http_min_ms: Some(299.8),
                http_max_ms: Some(331.0),
                model_median_ms: Some(102.7),
                runs: Some(15),
                image: "1024x1024 PNG".into(),
                mask_fraction: Some(0.1001),
                python: "3.11.7".into(),
            }),
            app_note: String::new(),
            notes: vec!["A note.".into()],
            total_seconds: 840.0,
        }
    }

    #[test]
    fn markdown_has_the_table_the_machine_and_the_args() {
        let md = render_markdown(&sample_summary(100.0));
        assert!(md.contains("2026-12-04 15:58 UTC"), "{md}");
        assert!(md.contains("Xeon, 2 cores, 24.0 GiB memory, Debian GNU/Linux 12 (bookworm), Docker engine 20.10.24"), "{md}");
        assert!(md.contains("CPU images built without torch on this host (INSTALL_TORCH=0, DEFAULT_MODEL=cv2)"), "{md}");
        assert!(md.contains("stand-ins"), "{md}");
        assert!(md.contains("| Image size | 364 MB | 900 MB | 0.40× |"), "{md}");
        assert!(md.contains("| Steps re-run | 1 of 12 | 5 of 9 | 0.20× |"), "{md}");
        assert!(md.contains("beats the baseline on every figure"), "{md}");
        assert!(md.contains("| Image size | 5 GB (iopaint:gpu-latest) |"), "{md}");
        assert!(md.contains("| Cold build time | not measured in this run |"), "{md}");
        assert!(md.contains("| 323 ms (300–331 ms) |"), "{md}");
        assert!(md.contains("median of 15"), "{md}");
        assert!(md.contains("14m 00s"), "{md}");
    }

    #[test]
    fn markdown_says_why_where_multistage_loses() {
        let md = render_markdown(&sample_summary(250.0));
        assert!(!md.contains("beats the baseline on every figure"), "{md}");
        assert!(md.contains("Where multistage does not win — **Cold build** (1.25×):"), "{md}");
        assert!(md.contains(why_not_better("cold_build")), "{md}");
    }

    #[test]
    fn every_figure_key_has_its_own_reason() {
        for key in ["context_bytes", "image_size", "cold_build", "rebuild_app", "steps_ui", "container_start"] {
            assert!(!why_not_better(key).starts_with("no known reason"), "{key}");
        }
        assert!(why_not_better("other").starts_with("no known reason"));
    }

    #[test]
    fn markers_keep_everything_outside_them() {
        let doc = "# Benchmarks\n\nIntro.\n\n<!-- bench:begin -->\nold\nfigures\n<!-- bench:end -->\n\nAfter.\n";
        let new = replace_between_markers(doc, "new table\n").unwrap();
        assert_eq!(new, "# Benchmarks\n\nIntro.\n\n<!-- bench:begin -->\nnew table\n<!-- bench:end -->\n\nAfter.\n");
        // Idempotent: replacing again with the same body changes nothing.
        assert_eq!(replace_between_markers(&new, "new table").unwrap(), new);
        let empty = "<!-- bench:begin --><!-- bench:end -->";
        assert_eq!(replace_between_markers(empty, "x").unwrap(), "<!-- bench:begin -->\nx\n<!-- bench:end -->");
    }

    #[test]
    fn markers_must_be_there_once_and_in_order() {
        assert!(replace_between_markers("no markers", "x").unwrap_err().to_string().contains(BEGIN_MARKER));
        assert!(replace_between_markers("<!-- bench:begin -->", "x").unwrap_err().to_string().contains(END_MARKER));
        assert!(replace_between_markers("<!-- bench:end --> <!-- bench:begin -->", "x").is_err());
        let twice = "<!-- bench:begin -->a<!-- bench:end --><!-- bench:begin -->b<!-- bench:end -->";
        assert!(replace_between_markers(twice, "x").unwrap_err().to_string().contains("more than one"));
    }

    #[test]
    fn drift_between_the_dockerfiles_is_named() {
        let ms = "ARG PYTHON_IMAGE=python:3.10\nARG NODE_IMAGE=node:18\nARG TORCH_VERSION=2.1.2\n\
                  RUN pip install setuptools==75.8.0 wheel==0.45.1 \"torch==${TORCH_VERSION}\"\n";
        let same = "ARG PYTHON_IMAGE=python:3.10\nARG TORCH_VERSION=2.1.2\n\
                    RUN pip install --no-cache-dir setuptools==75.8.0 wheel==0.45.1; \\\n";
        assert!(version_drift(ms, same).is_empty(), "{:?}", version_drift(ms, same));
        let old = "ARG PYTHON_IMAGE=python:3.11\nRUN pip install setuptools==69.5.1\n# wheel==0.45.1 in a comment\n";
        assert_eq!(
            version_drift(ms, old),
            vec![
                "setuptools: multistage 75.8.0, baseline 69.5.1".to_string(),
                "wheel: pinned to 0.45.1 in the multistage file only".to_string(),
                "ARG PYTHON_IMAGE: multistage python:3.10, baseline python:3.11".to_string(),
            ]
        );
    }

    #[test]
    fn the_real_dockerfiles_have_not_drifted() {
        let root = project::root();
        let ms = fs::read_to_string(root.join("docker/CPUDockerfile.multistage")).unwrap();
        let bl = fs::read_to_string(root.join(BASELINE_DOCKERFILE)).unwrap();
        assert_eq!(version_drift(&ms, &bl), Vec::<String>::new());
    }

    #[test]
    fn the_first_run_command_reads_like_buildkit_names_it() {
        let text = "# c\nARG X=1\nFROM a\nRUN apt-get update \\\n && apt-get install -y x \\\n# inside\n && rm -rf /y\nRUN later\n";
        assert_eq!(first_run_command(text).as_deref(), Some("apt-get update  && apt-get install -y x  && rm -rf /y"));
        assert_eq!(first_run_command("FROM a\n"), None);
        let baseline = fs::read_to_string(project::root().join(BASELINE_DOCKERFILE)).unwrap();
        assert_eq!(
            first_run_command(&baseline).as_deref(),
            Some("apt-get update  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm  && rm -rf /var/lib/apt/lists/*")
        );
    }

    #[test]
    fn only_records_below_the_baseline_root_are_pruned_leaves_first() {
        let json = r#"[
            {"ID":"root1","Parent":"base","Description":"mount / from exec /bin/sh -c apt x","InUse":"false","Size":"180MB"},
            {"ID":"base","Parent":"","Description":"pulled","InUse":"false","Size":"100MB"},
            {"ID":"child","Parent":"root1","Description":"fileop target","InUse":"false","Size":"80MB"},
            {"ID":"grandchild","Parent":"child","Description":"mount / from exec npm","InUse":"false","Size":"1.5GB"},
            {"ID":"busy","Parent":"child","Description":"mount / from exec pip","InUse":"true","Size":"1MB"},
            {"ID":"other","Parent":"base","Description":"mount / from exec /bin/sh -c apt y","InUse":"false","Size":"5GB"}
        ]"#;
        let found = cache_records_below(json, "mount / from exec /bin/sh -c apt x").unwrap();
        assert_eq!(
            found,
            vec![("grandchild".to_string(), 1_500_000_000), ("child".to_string(), 80_000_000), ("root1".to_string(), 180_000_000)]
        );
        assert!(cache_records_below(json, "nothing matches").unwrap().is_empty());
        assert!(cache_records_below("null", "x").is_err());
    }

    #[test]
    fn touch_comments_fit_the_language() {
        assert_eq!(touch_comment(Path::new("iopaint/cli.py"), "m"), "# m\n");
        assert_eq!(touch_comment(Path::new("web_app/src/main.tsx"), "m"), "/* m */\n");
        assert_eq!(touch_comment(Path::new("web_app/src/styles.css"), "m"), "/* m */\n");
        assert_eq!(touched_bytes(b"x = 1", "# m\n"), b"x = 1\n# m\n");
        assert_eq!(touched_bytes(b"x = 1\n", "# m\n"), b"x = 1\n# m\n");
        assert_eq!(touched_bytes(b"", "# m\n"), b"# m\n");
    }

    #[test]
    fn a_touch_restores_exact_bytes_and_mtime() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-touch-{}-{}", std::process::id(), nanos()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cli.py");
        fs::write(&file, b"print('hi')").unwrap(); // no trailing newline on purpose
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        fs::File::options().write(true).open(&file).unwrap().set_times(fs::FileTimes::new().set_modified(old)).unwrap();
        {
            let _touch = Touch::apply(std::slice::from_ref(&file), "# bench\n").unwrap();
            assert_eq!(fs::read(&file).unwrap(), b"print('hi')\n# bench\n");
            assert_ne!(fs::metadata(&file).unwrap().modified().unwrap(), old);
            // Dropped without restore(): an early `?` return must restore too.
        }
        assert_eq!(fs::read(&file).unwrap(), b"print('hi')");
        assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), old);
        let touch = Touch::apply(std::slice::from_ref(&file), "# again\n").unwrap();
        touch.restore().unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"print('hi')");
        assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), old);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_touch_leaves_the_first_file_restored() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-fail-{}-{}", std::process::id(), nanos()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.py");
        fs::write(&file, b"a\n").unwrap();
        let missing = dir.join("missing.py");
        assert!(Touch::apply(&[file.clone(), missing], "# x\n").is_err());
        assert_eq!(fs::read(&file).unwrap(), b"a\n");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_edit_made_during_the_bench_survives_the_restore() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-edit-{}-{}", std::process::id(), nanos()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cli.py");
        fs::write(&file, b"a = 1\n").unwrap();
        let touch = Touch::apply(std::slice::from_ref(&file), "# bench 7\n").unwrap();
        let mut edited = fs::read(&file).unwrap();
        edited.extend_from_slice(b"b = 2\n"); // the user saves an edit meanwhile
        fs::write(&file, &edited).unwrap();
        touch.restore().unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"a = 1\nb = 2\n");
        let touch = Touch::apply(std::slice::from_ref(&file), "# bench 8\n").unwrap();
        fs::write(&file, b"rewritten\n").unwrap(); // our line is gone: leave it
        touch.restore().unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"rewritten\n");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn proc_files_give_cores_memory_and_os() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(parse_cpuinfo(cpuinfo), ("Intel(R) Xeon(R) Processor".to_string(), 2));
        assert_eq!(parse_meminfo_total("MemTotal:       24683436 kB\nMemFree: 1 kB\n"), Some(24683436 * 1024));
        assert_eq!(parse_meminfo_total("nothing"), None);
        assert_eq!(
            parse_os_release("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            Some("Debian GNU/Linux 12 (bookworm)".into())
        );
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_timestamp(1_796_399_880), "2026-12-04 15:58 UTC");
    }

    #[test]
    fn build_args_sentence_names_torch_and_standins() {
        let mut args = BTreeMap::new();
        assert_eq!(build_args_sentence(&args), "CPU images built with torch from PyTorch's CPU index.");
        args.insert("INSTALL_TORCH".to_string(), "0".to_string());
        args.insert("DEFAULT_MODEL".to_string(), "cv2".to_string());
        args.insert("NODE_IMAGE".to_string(), "iopaint-standin/node:18-bookworm".to_string());
        let s = build_args_sentence(&args);
        assert!(s.starts_with("CPU images built without torch on this host (INSTALL_TORCH=0, DEFAULT_MODEL=cv2)"), "{s}");
        assert!(s.contains("NODE_IMAGE=iopaint-standin/node:18-bookworm"), "{s}");
    }

    #[test]
    fn app_bench_json_is_read() {
        let text = "{\"startup_to_first_200_s\": 0.695, \"image\": \"1024x1024 PNG\", \"mask_fraction\": 0.1001, \"runs\": 15,\
                    \"cv2_inpaint_http_median_ms\": 323.4, \"cv2_model_only_median_ms\": 102.7, \"machine\": {\"python\": \"3.11.7\"}}";
        let app = parse_app_bench(text).unwrap();
        assert_eq!(app.startup_seconds, Some(0.695));
        assert_eq!(app.http_median_ms, Some(323.4));
        assert_eq!(app.runs, Some(15));
        assert_eq!(app.python, "3.11.7");
        assert!(parse_app_bench("nope").is_err());
    }
}
