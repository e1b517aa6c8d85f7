//! `cargo xtask smoke cpu|gpu`: run an image the way a user would and check it end to end.
//!
//! One container (unique name, `127.0.0.1:<free port>:8080`, fresh host dirs for
//! `/app/models` and `/app/outputs`), wait for Docker's own health status, then
//! check the HTTP API, the UI, the outputs dir, model switching, the user and the
//! logs. The HTTP checks are public ([`http_checks`]) so `compose-up` runs the same
//! ones against its stack. Everything the run creates is removed by a guard, pass
//! or fail, and on Ctrl-C/SIGTERM.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::docker::{self, BuildRequest, Docker, RunSpec};
use crate::flavor::Flavor;
use crate::report::{Cell, Report};
use crate::setup::{self, Env, SetupOptions};
use crate::testkit::{self, IntegrationCheck};
use crate::{project, ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct SmokeArgs {
    /// Which image flavour: cpu or gpu.
    #[arg(value_enum)]
    pub flavor: Flavor,
    /// Image to run (default: iopaint:<flavor>-latest).
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    /// Model the container starts with (`-e MODEL=`).
    #[arg(long, value_name = "NAME", default_value = "cv2")]
    pub model: String,
    /// Also run the web UI's end-to-end browser test (web_app/e2e) against the container.
    #[arg(long)]
    pub browser: bool,
    /// Seconds to wait for the container to report healthy.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub timeout: u64,
    #[command(flatten)]
    pub out: OutputOpts,
}

// ---------------------------------------------------------------------------
// Check results

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

impl Status {
    /// For JSON: `pass`, `fail`, `skip`.
    pub fn key(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }

    /// For the table: a failure stands out.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check: its name, outcome, what it saw and how long it took.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub elapsed: Duration,
}

impl CheckResult {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "status": self.status.key(),
            "passed": self.status != Status::Fail,
            "detail": self.detail,
            "seconds": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        })
    }
}

/// Collects check results, printing each one as it finishes.
#[derive(Default)]
pub struct Checks {
    pub results: Vec<CheckResult>,
    /// Prepended to every name (compose runs the checks once per service).
    pub prefix: String,
}

impl Checks {
    pub fn with_prefix(prefix: &str) -> Checks {
        Checks { results: Vec::new(), prefix: prefix.to_string() }
    }

    /// Runs `f`; Ok(detail) passes, Err fails with the error chain as detail.
    pub fn run(&mut self, name: &str, f: impl FnOnce() -> Result<String>) -> bool {
        let started = Instant::now();
        let outcome = f();
        let elapsed = started.elapsed();
        let (status, detail) = match outcome {
            Ok(detail) => (Status::Pass, detail),
            Err(err) => (Status::Fail, error_chain(&err)),
        };
        self.push(CheckResult { name: format!("{}{name}", self.prefix), status, detail, elapsed });
        status == Status::Pass
    }

    pub fn skip(&mut self, name: &str, why: &str) {
        self.push(CheckResult {
            name: format!("{}{name}", self.prefix),
            status: Status::Skip,
            detail: why.to_string(),
            elapsed: Duration::ZERO,
        });
    }

    pub fn push(&mut self, result: CheckResult) {
        let line = format!("{}: {} ({})", result.name, first_line(&result.detail), ui::fmt_duration(result.elapsed));
        match result.status {
            Status::Pass => ui::ok(&line),
            Status::Fail => ui::error(format!("{}: {}", result.name, result.detail)),
            Status::Skip => ui::warn(format!("{} skipped: {}", result.name, result.detail)),
        }
        self.results.push(result);
    }

    pub fn extend(&mut self, results: Vec<CheckResult>) {
        self.results.extend(results);
    }
}

pub fn error_chain(err: &anyhow::Error) -> String {
    err.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// A report with one row per check (pass/fail/skip, time, detail) and every check
/// as a JSON fact; marked failed, with the reason, when some check failed.
pub fn checks_report(title: &str, results: &[CheckResult]) -> Report {
    let mut report = Report::new(title);
    report.set_headers(&["check", "result", "time", "detail"]);
    for r in results {
        report.add_row([
            Cell::from(r.name.clone()),
            Cell::new(r.status.as_str(), r.status.key()),
            Cell::seconds(r.elapsed.as_secs_f64()),
            Cell::from(truncate(first_line(&r.detail), 100)),
        ]);
    }
    report.fact("checks", results.iter().map(CheckResult::to_json).collect::<Vec<_>>());
    if let Some(reason) = failure_reason(results) {
        report.fail(reason);
    }
    report
}

/// "2 of 9 checks failed: a (why); b (why)", or None when none failed.
pub fn failure_reason(results: &[CheckResult]) -> Option<String> {
    let failed: Vec<&CheckResult> = results.iter().filter(|r| r.status == Status::Fail).collect();
    if failed.is_empty() {
        return None;
    }
    Some(format!(
        "{} of {} checks failed: {}",
        failed.len(),
        results.len(),
        failed.iter().map(|r| format!("{} ({})", r.name, first_line(&r.detail))).collect::<Vec<_>>().join("; ")
    ))
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

// ---------------------------------------------------------------------------
// Cleanup: a guard for the normal path and a signal hook for Ctrl-C/SIGTERM.

/// Something to remove at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leftover {
    Container(String),
    Dir(PathBuf),
    Image(String),
    /// A compose project: `down -v` (args are what the compose call needs).
    Compose {
        compose: docker::Compose,
        file: PathBuf,
        project: String,
        env: Vec<(String, String)>,
        profiles: Vec<String>,
    },
}

/// Leftovers of every live run in this process, for the signal handler.
static LEFTOVERS: Mutex<Vec<Leftover>> = Mutex::new(Vec::new());
static SIGNALS: std::sync::Once = std::sync::Once::new();

/// Registers `item` for removal on SIGINT/SIGTERM (the guard removes it otherwise).
pub fn track(docker: &Docker, item: Leftover) {
    let bin = docker.bin.clone();
    let frontend = docker.frontend;
    SIGNALS.call_once(move || {
        let Ok(mut signals) =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                ui::warn("interrupted: removing what this run created");
                if let Ok(docker) = Docker::new(bin, frontend) {
                    let items: Vec<Leftover> = LEFTOVERS.lock().map(|l| l.clone()).unwrap_or_default();
                    for item in items.iter().rev() {
                        remove_leftover(&docker, item);
                    }
                }
                std::process::exit(128 + sig);
            }
        });
    });
    if let Ok(mut l) = LEFTOVERS.lock() {
        l.push(item);
    }
}

pub fn untrack(item: &Leftover) {
    if let Ok(mut l) = LEFTOVERS.lock() {
        l.retain(|x| x != item);
    }
}

pub fn remove_leftover(docker: &Docker, item: &Leftover) {
    match item {
        Leftover::Container(name) => docker.remove_container(name),
        Leftover::Dir(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Leftover::Image(image) => docker.remove_image(image),
        Leftover::Compose { compose, file, project, env, profiles } => {
            let env: std::collections::BTreeMap<String, String> = env.iter().cloned().collect();
            let mut args: Vec<&str> = Vec::new();
            for p in profiles {
                args.push("--profile");
                args.push(p);
            }
            args.extend(["down", "--volumes", "--remove-orphans"]);
            let _ = docker.compose(compose, file, project, &env, &args);
        }
    }
}

/// Removes its items on drop, in reverse order of creation.
pub struct Cleanup<'a> {
    docker: &'a Docker,
    items: Vec<Leftover>,
}

impl<'a> Cleanup<'a> {
    pub fn new(docker: &'a Docker) -> Cleanup<'a> {
        Cleanup { docker, items: Vec::new() }
    }

    pub fn add(&mut self, item: Leftover) {
        track(self.docker, item.clone());
        self.items.push(item);
    }

    /// Forget an item without removing it (`--keep`).
    pub fn forget(&mut self, item: &Leftover) {
        untrack(item);
        self.items.retain(|x| x != item);
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for item in self.items.iter().rev() {
            remove_leftover(self.docker, item);
            untrack(item);
        }
    }
}

// ---------------------------------------------------------------------------
// Small helpers shared with compose.rs

/// A port free on 127.0.0.1 right now (the OS picks it).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// `prefix-<pid>-<time>`: unique per run, valid as a container name and compose project.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("{prefix}-{}-{millis}-{n}", std::process::id())
}

/// A container's state as `docker inspect --format '{{json .State}}'` tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    pub status: String,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub error: String,
    /// None when the image has no HEALTHCHECK.
    pub health: Option<String>,
    /// Output of the latest health probe.
    pub last_probe: String,
}

pub fn parse_state(text: &str) -> Result<ContainerState> {
    let v: Value = serde_json::from_str(text.trim()).with_context(|| format!("unexpected container state {text:?}"))?;
    let health = v.get("Health").filter(|h| !h.is_null());
    Ok(ContainerState {
        status: v["Status"].as_str().unwrap_or("").to_string(),
        exit_code: v["ExitCode"].as_i64().unwrap_or(0),
        oom_killed: v["OOMKilled"].as_bool().unwrap_or(false),
        error: v["Error"].as_str().unwrap_or("").to_string(),
        health: health.map(|h| h["Status"].as_str().unwrap_or("").to_string()),
        last_probe: health
            .and_then(|h| h["Log"].as_array())
            .and_then(|log| log.last())
            .map(|entry| entry["Output"].as_str().unwrap_or("").trim().to_string())
            .unwrap_or_default(),
    })
}

/// What to do after one look at the state.
#[derive(Debug, PartialEq, Eq)]
pub enum HealthVerdict {
    Healthy,
    Wait,
    /// Will never become healthy; the reason.
    Dead(String),
}

pub fn health_verdict(state: &ContainerState) -> HealthVerdict {
    if matches!(state.status.as_str(), "exited" | "dead") {
        let mut why = format!("exited with code {} before its health check passed", state.exit_code);
        if state.oom_killed {
            why.push_str(" (killed: out of memory)");
        }
        if !state.error.is_empty() {
            why.push_str(&format!(" ({})", state.error));
        }
        return HealthVerdict::Dead(why);
    }
    match state.health.as_deref() {
        None => HealthVerdict::Dead("the image has no HEALTHCHECK, so Docker cannot tell when it is ready".into()),
        Some("healthy") => HealthVerdict::Healthy,
        // "starting", or "unhealthy" (which can still turn healthy): keep polling until the timeout.
        _ => HealthVerdict::Wait,
    }
}

/// Polls Docker's health status until healthy; on failure the error carries the
/// reason and the container's last log lines.
pub fn wait_healthy(docker: &Docker, container: &str, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let progress =
        ui::Progress::start(format!("waiting for {container} to be healthy (timeout {}s)", timeout.as_secs()));
    let mut last: Option<ContainerState>;
    loop {
        let state = docker
            .container_inspect(container, "{{json .State}}")
            .with_context(|| format!("inspecting container {container}"))
            .and_then(|s| parse_state(&s));
        match state {
            Ok(state) => {
                match health_verdict(&state) {
                    HealthVerdict::Healthy => {
                        let elapsed = progress.finish_ok("healthy");
                        return Ok(elapsed);
                    }
                    HealthVerdict::Dead(why) => {
                        progress.finish_err(&why);
                        bail!(
                            "the server did not start: container {container} {why}\n{}",
                            last_logs(docker, container)
                        );
                    }
                    HealthVerdict::Wait => {}
                }
                last = Some(state);
            }
            Err(err) => {
                progress.finish_err("gone");
                return Err(err.context(format!("container {container} disappeared while starting")));
            }
        }
        if started.elapsed() >= timeout {
            let (health, probe) =
                last.as_ref().map(|s| (s.health.clone().unwrap_or_default(), s.last_probe.clone())).unwrap_or_default();
            progress.finish_err("timed out");
            bail!(
                "the server did not start: container {container} is not healthy after {}s (health: {health}{}); \
                 raise --timeout if the machine is just slow\n{}",
                timeout.as_secs(),
                if probe.is_empty() { String::new() } else { format!(", last probe: {}", first_line(&probe)) },
                last_logs(docker, container)
            );
        }
        progress.tick();
        std::thread::sleep(Duration::from_millis(1000));
    }
}

fn last_logs(docker: &Docker, container: &str) -> String {
    let logs = docker.logs(container, 30).unwrap_or_default();
    if logs.trim().is_empty() {
        format!("(container {container} logged nothing)")
    } else {
        format!("last log lines of {container}:\n{}", logs.trim_end())
    }
}

/// The lines around the first "Traceback" in `logs`, if any.
pub fn find_traceback(logs: &str) -> Option<String> {
    let lines: Vec<&str> = logs.lines().collect();
    let at = lines.iter().position(|l| l.contains("Traceback"))?;
    let end = (at + 12).min(lines.len());
    Some(lines[at..end].join("\n"))
}

// ---------------------------------------------------------------------------
// Test images: built here, so the checks know exactly which pixels must change.

pub const TEST_W: u32 = 100;
pub const TEST_H: u32 = 60;
/// The masked block (x0, y0, x1, y1), exclusive ends: a colour far from its surroundings.
const BLOCK: (u32, u32, u32, u32) = (36, 20, 64, 40);

fn in_block(x: u32, y: u32) -> bool {
    x >= BLOCK.0 && x < BLOCK.2 && y >= BLOCK.1 && y < BLOCK.3
}

/// RGB pixels: a soft gradient with a magenta block where the mask is.
pub fn test_image(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            if in_block(x, y) {
                px.extend([250, 20, 240]);
            } else {
                px.extend([(40 + x * 150 / w) as u8, (60 + y * 120 / h) as u8, 90]);
            }
        }
    }
    px
}

/// Grayscale mask: 255 over the block, 0 elsewhere.
pub fn test_mask(w: u32, h: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            px.push(if in_block(x, y) { 255 } else { 0 });
        }
    }
    px
}

pub fn encode_png(w: u32, h: u32, color: png::ColorType, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(data)?;
    }
    Ok(out)
}

/// Decodes any 8/16-bit PNG into (width, height, RGB bytes).
pub fn decode_png_rgb(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>)> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().context("the answer is not a PNG")?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).context("the PNG does not decode")?;
    buf.truncate(info.buffer_size());
    let (w, h) = (info.width, info.height);
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        png::ColorType::Indexed => bail!("indexed PNG left after expansion"),
    };
    Ok((w, h, rgb))
}

/// How an inpaint result compares with its input.
#[derive(Debug, PartialEq)]
pub struct InpaintDiff {
    pub masked: usize,
    pub masked_changed: usize,
    pub unmasked: usize,
    pub unmasked_changed: usize,
    pub mean_masked_delta: f64,
}

pub fn compare_inpaint(input: &[u8], mask: &[u8], result: &[u8]) -> InpaintDiff {
    let mut d = InpaintDiff { masked: 0, masked_changed: 0, unmasked: 0, unmasked_changed: 0, mean_masked_delta: 0.0 };
    let mut delta_sum = 0u64;
    for (i, &m) in mask.iter().enumerate() {
        let a = &input[i * 3..i * 3 + 3];
        let b = &result[i * 3..i * 3 + 3];
        let delta: u64 = a.iter().zip(b).map(|(x, y)| (*x as i64 - *y as i64).unsigned_abs()).sum();
        if m > 127 {
            d.masked += 1;
            delta_sum += delta;
            if delta > 0 {
                d.masked_changed += 1;
            }
        } else {
            d.unmasked += 1;
            if delta > 0 {
                d.unmasked_changed += 1;
            }
        }
    }
    if d.masked > 0 {
        d.mean_masked_delta = delta_sum as f64 / (d.masked as f64 * 3.0);
    }
    d
}

/// The verdict on an inpaint: masked pixels (nearly all) changed, the rest untouched.
pub fn judge_inpaint(d: &InpaintDiff) -> Result<String> {
    let summary = format!(
        "{}/{} masked pixels changed (mean |Δ| {:.0}), {}/{} unmasked changed",
        d.masked_changed, d.masked, d.mean_masked_delta, d.unmasked_changed, d.unmasked
    );
    if d.unmasked_changed > 0 {
        bail!("pixels outside the mask changed: {summary}");
    }
    // The block is magenta in a blue-grey gradient: any real inpaint changes (nearly) all of it.
    if d.masked == 0 || (d.masked_changed as f64) < 0.9 * d.masked as f64 || d.mean_masked_delta < 10.0 {
        bail!("the masked area was not inpainted: {summary}");
    }
    Ok(summary)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The UI page: which scripts and stylesheets it loads.

/// `src` of every `<script>` and `href` of every stylesheet / modulepreload `<link>`.
pub fn html_assets(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = lower[at..].find('<').map(|i| at + i) {
        let close = match lower[open..].find('>') {
            Some(i) => open + i,
            None => break,
        };
        let tag = &html[open + 1..close];
        let name: String =
            tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        let attrs = parse_attrs(&tag[name.len()..]);
        let get = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        match name.as_str() {
            "script" => {
                if let Some(src) = get("src") {
                    out.push(src);
                }
            }
            "link" => {
                let rel = get("rel").unwrap_or_default().to_ascii_lowercase();
                if rel.split_whitespace().any(|r| r == "stylesheet" || r == "modulepreload") {
                    if let Some(href) = get("href") {
                        out.push(href);
                    }
                }
            }
            _ => {}
        }
        at = close + 1;
    }
    out
}

/// Attributes of one tag body: `key="v"`, `key='v'`, `key=v`, bare `key`; keys lowercased.
fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect::<String>().to_ascii_lowercase();
        if key.is_empty() {
            i += 1;
            continue;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let quote = chars[i];
                i += 1;
                let vstart = i;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                value = chars[vstart..i.min(chars.len())].iter().collect();
                i += 1;
            } else {
                let vstart = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[vstart..i].iter().collect();
            }
        }
        out.push((key, value));
    }
    out
}

/// The URL of an asset the page at `base_url/` references; assets elsewhere are an error
/// (the UI must work offline).
pub fn resolve_asset(base_url: &str, reference: &str) -> Result<String> {
    let base = base_url.trim_end_matches('/');
    let r = reference.trim();
    if r.starts_with("//") || r.contains("://") {
        if let Some(rest) = r.strip_prefix(base) {
            return Ok(format!("{base}{rest}"));
        }
        bail!("the UI loads {r} from another host; it must be served by the app itself");
    }
    let path = r.split(['?', '#']).next().unwrap_or(r);
    let path = path.trim_start_matches("./").trim_start_matches('/');
    Ok(format!("{base}/{path}"))
}

// ---------------------------------------------------------------------------
// The API's JSON

/// Checks `/api/v1/server-config` has IOPaint's shape and serves `expected_model`.
pub fn validate_server_config(v: &Value, expected_model: &str) -> Result<String> {
    let obj = v.as_object().ok_or_else(|| anyhow!("not a JSON object: {v}"))?;
    let mut problems = Vec::new();
    for key in ["plugins", "modelInfos", "samplers"] {
        if !obj.get(key).is_some_and(Value::is_array) {
            problems.push(format!("`{key}` is not a list"));
        }
    }
    for key in ["enableFileManager", "enableAutoSaving", "disableModelSwitch", "isDesktop"] {
        if !obj.get(key).is_some_and(Value::is_boolean) {
            problems.push(format!("`{key}` is not a boolean"));
        }
    }
    let infos = obj.get("modelInfos").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut names = Vec::new();
    for info in &infos {
        match (info.get("name").and_then(Value::as_str), info.get("model_type").and_then(Value::as_str)) {
            (Some(name), Some(_)) => names.push(name.to_string()),
            _ => problems.push(format!("a modelInfos entry lacks name/model_type: {info}")),
        }
    }
    if !names.iter().any(|n| n == expected_model) {
        problems.push(format!("modelInfos lists {names:?}, not {expected_model:?}"));
    }
    let model = obj.get("model").and_then(Value::as_str).unwrap_or("");
    if model != expected_model {
        problems.push(format!("serves model {model:?}, expected {expected_model:?} (from MODEL)"));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!(
        "model {model} on {}, models {}",
        obj.get("device").and_then(Value::as_str).unwrap_or("?"),
        names.join(", ")
    ))
}

/// A model the server says it cannot load now, with the reason.
pub fn pick_unavailable(config: &Value) -> Option<(String, String)> {
    config.get("modelInfos")?.as_array()?.iter().find_map(|info| {
        if info.get("available")? == &Value::Bool(false) {
            Some((
                info.get("name")?.as_str()?.to_string(),
                info.get("reason").and_then(Value::as_str).unwrap_or("").to_string(),
            ))
        } else {
            None
        }
    })
}

// ---------------------------------------------------------------------------
// HTTP (ureq, 127.0.0.1 only, never through a proxy)

pub struct Http {
    agent: ureq::Agent,
    pub base: String,
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub output_file: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("answer is not JSON: {}", truncate(&String::from_utf8_lossy(&self.body), 200)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    fn expect(&self, status: u16, what: &str) -> Result<()> {
        if self.status != status {
            bail!("{what} answered {} instead of {status}: {}", self.status, truncate(&self.text(), 300));
        }
        Ok(())
    }
}

impl Http {
    pub fn new(base_url: &str) -> Http {
        let agent = ureq::AgentBuilder::new()
            .try_proxy_from_env(false)
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .redirects(0)
            .build();
        Http { agent, base: base_url.trim_end_matches('/').to_string() }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn get(&self, path: &str) -> Result<Answer> {
        let url = self.url(path);
        answer(self.agent.get(&url).call(), &url)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Answer> {
        let url = self.url(path);
        answer(self.agent.post(&url).send_json(body), &url)
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: &str) -> Result<Answer> {
        let url = self.url(path);
        answer(self.agent.post(&url).set("Content-Type", content_type).send_string(body), &url)
    }
}

fn answer(result: std::result::Result<ureq::Response, ureq::Error>, url: &str) -> Result<Answer> {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(err) => return Err(anyhow!("{url}: {err}")),
    };
    let status = response.status();
    let content_type = response.content_type().to_string();
    let output_file = response.header("X-Output-File").map(str::to_string);
    let mut body = Vec::new();
    response
        .into_reader()
        .take(64 * 1024 * 1024)
        .read_to_end(&mut body)
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok(Answer { status, content_type, output_file, body })
}

/// One inpaint of the generated image, judged pixel by pixel.
pub struct Inpainted {
    pub summary: String,
    pub output_file: Option<String>,
    pub bytes: Vec<u8>,
    pub elapsed: Duration,
}

pub fn inpaint_test_image(http: &Http) -> Result<Inpainted> {
    let (w, h) = (TEST_W, TEST_H);
    let image = test_image(w, h);
    let mask = test_mask(w, h);
    let body = json!({
        "image": format!("data:image/png;base64,{}", base64_encode(&encode_png(w, h, png::ColorType::Rgb, &image)?)),
        "mask": base64_encode(&encode_png(w, h, png::ColorType::Grayscale, &mask)?),
    });
    let started = Instant::now();
    let ans = http.post_json("/api/v1/inpaint", &body)?;
    let elapsed = started.elapsed();
    ans.expect(200, "POST /api/v1/inpaint")?;
    if ans.content_type != "image/png" {
        bail!("answered Content-Type {:?} for a PNG input, expected image/png", ans.content_type);
    }
    let (rw, rh, result) = decode_png_rgb(&ans.body)?;
    if (rw, rh) != (w, h) {
        bail!("sent {w}x{h}, got back {rw}x{rh}");
    }
    let summary = judge_inpaint(&compare_inpaint(&image, &mask, &result))?;
    Ok(Inpainted {
        summary: format!("{w}x{h} -> {rw}x{rh}, {summary}"),
        output_file: ans.output_file.clone(),
        bytes: ans.body,
        elapsed,
    })
}

pub fn current_model(http: &Http) -> Result<String> {
    let ans = http.get("/api/v1/model")?;
    ans.expect(200, "GET /api/v1/model")?;
    let v = ans.json()?;
    v.get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("GET /api/v1/model has no name: {v}"))
}

pub fn switch_model(http: &Http, name: &str) -> Result<Answer> {
    http.post_json("/api/v1/model", &json!({ "name": name }))
}

/// Where the server's saved results can be looked at.
pub enum Outputs<'a> {
    /// A host dir mounted at /app/outputs.
    HostDir(&'a Path),
    /// Inside a running container (a named volume).
    Container { docker: &'a Docker, container: &'a str },
}

impl Outputs<'_> {
    /// Ok(description) when `name` is there with `bytes`.
    pub fn check(&self, name: &str, bytes: &[u8]) -> Result<String> {
        match self {
            Outputs::HostDir(dir) => {
                let path = dir.join(name);
                let saved = std::fs::read(&path)
                    .with_context(|| format!("the result {name} is not in the host's outputs dir {}", dir.display()))?;
                if saved != bytes {
                    bail!("{} differs from the answer ({} vs {} bytes)", path.display(), saved.len(), bytes.len());
                }
                Ok(format!("{name} in the host's outputs dir ({} bytes, same as the answer)", saved.len()))
            }
            Outputs::Container { docker, container } => {
                let path = format!("/app/outputs/{name}");
                let size = docker
                    .exec(container, &["stat", "-c", "%s", &path])
                    .with_context(|| format!("the result {name} is not in {container}:/app/outputs"))?;
                let size: usize = size.trim().parse().unwrap_or(0);
                if size != bytes.len() {
                    bail!("{container}:{path} has {size} bytes, the answer {}", bytes.len());
                }
                Ok(format!("{container}:{path} ({size} bytes, same size as the answer)"))
            }
        }
    }
}

/// What [`http_checks`] runs against.
pub struct HttpTarget<'a> {
    pub base_url: String,
    /// The model the server was started with (MODEL).
    pub expected_model: String,
    pub outputs: Outputs<'a>,
    /// Prefix for check names ("iopaint-cpu: ").
    pub label: String,
}

/// The HTTP checks: API shape, UI and assets, inpaint, saved output, model switching, bad requests.
pub fn http_checks(target: &HttpTarget) -> Vec<CheckResult> {
    let http = Http::new(&target.base_url);
    let mut checks = Checks::with_prefix(&target.label);
    let expected = target.expected_model.as_str();
    let mut config: Option<Value> = None;

    checks.run("server-config", || {
        let ans = http.get("/api/v1/server-config")?;
        ans.expect(200, "GET /api/v1/server-config")?;
        let v = ans.json()?;
        let detail = validate_server_config(&v, expected)?;
        let current = current_model(&http)?;
        if current != expected {
            bail!("GET /api/v1/model says {current:?}, expected {expected:?}");
        }
        config = Some(v);
        Ok(detail)
    });

    checks.run("web UI and assets", || {
        let ans = http.get("/")?;
        ans.expect(200, "GET /")?;
        if !ans.content_type.starts_with("text/html") {
            bail!("GET / answered {:?}, not HTML", ans.content_type);
        }
        let html = ans.text();
        let assets = html_assets(&html);
        if !assets.iter().any(|a| a.ends_with(".js") || a.contains(".js?")) {
            bail!("the page references no script: {}", truncate(&html, 300));
        }
        let mut bad = Vec::new();
        let mut bytes = 0;
        for asset in &assets {
            let url = resolve_asset(&http.base, asset)?;
            let a = http.get(&url)?;
            if a.status != 200 || a.body.is_empty() {
                bad.push(format!("{asset} -> {} ({} bytes)", a.status, a.body.len()));
            }
            bytes += a.body.len();
        }
        if !bad.is_empty() {
            bail!("assets that do not load: {}", bad.join(", "));
        }
        Ok(format!("{} bytes of HTML, {} assets ({}) all 200", html.len(), assets.len(), ui::fmt_bytes(bytes as u64)))
    });

    let mut inpainted: Option<Inpainted> = None;
    checks.run("inpaint", || {
        let result = inpaint_test_image(&http)?;
        let summary = result.summary.clone();
        inpainted = Some(result);
        Ok(summary)
    });

    match &inpainted {
        Some(result) => {
            checks.run("result saved in outputs", || {
                let name = result.output_file.as_deref().ok_or_else(|| {
                    anyhow!("no X-Output-File header: the server did not save the result (IOPAINT_OUTPUT_DIR)")
                })?;
                target.outputs.check(name, &result.bytes)
            });
        }
        None => checks.skip("result saved in outputs", "no inpaint result to look for"),
    }

    checks.run(&format!("switch to {expected}"), || {
        let ans = switch_model(&http, expected)?;
        ans.expect(200, &format!("POST /api/v1/model {expected}"))?;
        let now = current_model(&http)?;
        if now != expected {
            bail!("after switching to {expected}, GET /api/v1/model says {now}");
        }
        Ok(format!("200, serving {now}"))
    });

    let unavailable = config.as_ref().and_then(pick_unavailable);
    match unavailable {
        Some((name, reason)) => {
            checks.run(&format!("switch to unavailable {name} refused"), || {
                let before = current_model(&http)?;
                let ans = switch_model(&http, &name)?;
                if ans.status != 409 {
                    bail!(
                        "POST /api/v1/model {name} answered {}, expected 409: {}",
                        ans.status,
                        truncate(&ans.text(), 200)
                    );
                }
                let v = ans.json()?;
                if v.get("error").is_none() {
                    bail!("the 409 has no JSON `error`: {v}");
                }
                let after = current_model(&http)?;
                if after != before {
                    bail!("after the refused switch the server serves {after}, not {before}");
                }
                let again = inpaint_test_image(&http).context("inpaint after the refused switch")?;
                Ok(format!(
                    "409 ({}), still serving {after}, inpaint ok ({})",
                    truncate(&reason, 60),
                    ui::fmt_duration(again.elapsed)
                ))
            });
        }
        None => checks.skip("switch to an unavailable model refused", "every model is available on this server"),
    }

    checks.run("bad requests get 4xx", || {
        let mut seen = Vec::new();
        let (w, h) = (TEST_W, TEST_H);
        let small_mask = base64_encode(&encode_png(8, 8, png::ColorType::Grayscale, &[255; 64])?);
        let image = base64_encode(&encode_png(w, h, png::ColorType::Rgb, &test_image(w, h))?);
        let cases: Vec<(&str, Answer)> = vec![
            ("body not JSON", http.post_raw("/api/v1/inpaint", "application/json", "{not json")?),
            ("image not base64", http.post_json("/api/v1/inpaint", &json!({"image": "%%%", "mask": "%%%"}))?),
            (
                "image not an image",
                http.post_json("/api/v1/inpaint", &json!({"image": base64_encode(b"hello"), "mask": small_mask}))?,
            ),
            ("mask size mismatch", http.post_json("/api/v1/inpaint", &json!({"image": image, "mask": small_mask}))?),
            ("unknown model", switch_model(&http, "no-such-model")?),
        ];
        for (what, ans) in cases {
            if !(400..500).contains(&ans.status) {
                bail!("{what}: answered {} instead of a 4xx: {}", ans.status, truncate(&ans.text(), 200));
            }
            if ans.json().ok().and_then(|v| v.get("error").cloned()).is_none() {
                bail!("{what}: the {} is not JSON with an `error`: {}", ans.status, truncate(&ans.text(), 200));
            }
            seen.push(format!("{what} {}", ans.status));
        }
        Ok(seen.join(", "))
    });

    checks.results
}

// ---------------------------------------------------------------------------
// The task

/// The tiny TorchScript stand-in for big-lama.pt: fills the mask with the mean colour
/// around it, same interface as LaMa (image 1x3xHxW, mask 1x1xHxW -> 1x3xHxW).
const TINY_LAMA_PY: &str = r#"
import os, sys, torch
class TinyLama(torch.nn.Module):
    def forward(self, image, mask):
        keep = 1.0 - mask
        mean = (image * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
        return image * keep + mean * mask
# trace, not script: `python -c` code has no source file for torch.jit.script to read.
# Nothing here depends on the input's size, so the traced graph takes any HxW.
example = (torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64))
module = torch.jit.trace(TinyLama().eval(), example)
path = sys.argv[1]
os.umask(0)  # dirs the host user (maybe not root) can delete again after the run
os.makedirs(os.path.dirname(path), exist_ok=True)
torch.jit.save(module, path)
check = torch.jit.load(path)(torch.rand(1, 3, 40, 104), torch.ones(1, 1, 40, 104))
assert tuple(check.shape) == (1, 3, 40, 104), check.shape
print(path, os.path.getsize(path), "bytes")
"#;

const TORCH_STACK_PY: &str = "import torch, torchvision, xformers, xformers.ops; \
print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'xformers', xformers.__version__, 'cuda', torch.cuda.is_available())";

/// One lama forward on cuda and on cpu inside the container, for the GPU report.
const CUDA_VS_CPU_PY: &str = r#"
import sys, time, torch
m = torch.jit.load(sys.argv[1], map_location="cpu")
out = []
for dev in ("cuda", "cpu"):
    mod = m.to(dev)
    img = torch.rand(1, 3, 512, 512, device=dev); mask = torch.zeros(1, 1, 512, 512, device=dev); mask[..., 128:384, 128:384] = 1
    with torch.inference_mode():
        mod(img, mask)
        if dev == "cuda": torch.cuda.synchronize()
        t = time.perf_counter(); mod(img, mask)
        if dev == "cuda": torch.cuda.synchronize()
        out.append(f"{dev} {1000 * (time.perf_counter() - t):.1f} ms")
print(", ".join(out))
"#;

const LAMA_IN_CONTAINER: &str = "/app/models/torch/hub/checkpoints/big-lama.pt";

pub fn run(args: &SmokeArgs) -> Result<()> {
    let env = setup::ensure(&SetupOptions::default())?;
    let flavor = args.flavor;
    let image = args.image.clone().unwrap_or_else(|| flavor.latest_tag());
    let docker = &env.docker;
    if !docker.image_exists(&image) {
        bail!("image {image} not found: build it first with `cargo xtask build {}`", flavor.name());
    }

    let name = unique_name(&format!("iopaint-smoke-{}", flavor.name()));
    let port = free_port()?;
    let base_url = format!("http://127.0.0.1:{port}");
    let mut cleanup = Cleanup::new(docker);

    // Fresh host dirs, writable by the image's user (uid 10001).
    let scratch = project::state_dir()?.join("tmp").join(&name);
    cleanup.add(Leftover::Dir(scratch.clone()));
    let models_dir = scratch.join("models");
    let outputs_dir = scratch.join("outputs");
    for dir in [&models_dir, &outputs_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        make_world_writable(dir)?;
    }

    let gpus = flavor == Flavor::Gpu && docker.has_nvidia_runtime();
    let device = if flavor == Flavor::Gpu && gpus { "cuda" } else { "cpu" };
    if flavor == Flavor::Gpu && !gpus {
        ui::warn("no NVIDIA runtime on this host: running the GPU image with DEVICE=cpu (CUDA is not checked)");
    }
    let spec = RunSpec {
        name: name.clone(),
        image: image.clone(),
        ports: vec![(format!("127.0.0.1:{port}"), "8080".into())],
        mounts: vec![
            (models_dir.display().to_string(), "/app/models".into()),
            (outputs_dir.display().to_string(), "/app/outputs".into()),
        ],
        env: vec![
            ("MODEL".into(), args.model.clone()),
            ("DEVICE".into(), device.into()),
            // Empty = never download big-lama.pt: a smoke run talks to nothing but 127.0.0.1.
            ("LAMA_MODEL_URL".into(), String::new()),
        ],
        labels: vec![("iopaint.xtask".into(), "smoke".into())],
        gpus,
        ..Default::default()
    };
    ui::info(format!("running {image} as {name} on {base_url} (MODEL={}, DEVICE={device})", args.model));
    let started = Instant::now();
    cleanup.add(Leftover::Container(name.clone()));

    let mut checks = Checks::default();
    let healthy = checks.run("container healthy", || {
        docker.run_detached(&spec)?;
        let took = wait_healthy(docker, &name, Duration::from_secs(args.timeout))?;
        Ok(format!("healthy after {}", ui::fmt_duration(took)))
    });

    if healthy {
        checks.extend(http_checks(&HttpTarget {
            base_url: base_url.clone(),
            expected_model: args.model.clone(),
            outputs: Outputs::HostDir(&outputs_dir),
            label: String::new(),
        }));

        if flavor == Flavor::Gpu {
            gpu_checks(&mut checks, docker, &name, &base_url, gpus);
        }

        if args.browser {
            checks.run("browser e2e", || browser_test(&base_url, flavor));
        }

        checks.run("runs as non-root", || {
            let uid = exec_in(docker, &name, &["id", "-u"])?.trim().to_string();
            let user = docker.container_inspect(&name, "{{.Config.User}}")?;
            if uid == "0" {
                bail!("the server runs as root (id -u = 0; image USER {user:?})");
            }
            if user.is_empty() || user == "root" || user.starts_with("0:") || user == "0" {
                bail!("the image sets no non-root USER (Config.User = {user:?})");
            }
            Ok(format!("id -u = {uid}, USER {user}"))
        });
    }

    let created = docker.container_exists(&name);
    if !created {
        checks.skip("no traceback in logs", "no container");
    } else {
        checks.run("no traceback in logs", || {
            let logs = docker.logs(&name, 100_000)?;
            if let Some(tb) = find_traceback(&logs) {
                bail!("the logs hold a traceback:\n{tb}");
            }
            Ok(format!("{} log lines, none with a traceback", logs.lines().count()))
        });
    }
    let total = started.elapsed();

    let mut report = checks_report(&format!("smoke {} ({image})", flavor.name()), &checks.results);
    for (key, value) in [
        ("flavor", json!(flavor.name())),
        ("image", json!(image)),
        ("container", json!(name)),
        ("url", json!(base_url)),
        ("model", json!(args.model)),
        ("device", json!(device)),
        ("gpus", json!(gpus)),
        ("seconds", json!((total.as_secs_f64() * 1000.0).round() / 1000.0)),
    ] {
        report.fact(key, value);
    }
    if flavor == Flavor::Gpu && !gpus {
        report.note("no NVIDIA runtime on this host: the GPU image ran with DEVICE=cpu");
    }
    report.emit(&args.out)?;
    let reason = failure_reason(&checks.results);
    drop(cleanup);
    if let Some(reason) = reason {
        bail!("smoke {} of {image} failed: {reason}", flavor.name());
    }
    ui::ok(format!("smoke {}: {} checks passed in {}", flavor.name(), checks.results.len(), ui::fmt_duration(total)));
    Ok(())
}

/// `docker exec` whose error leads with the last line of the program's stderr (for a
/// Python traceback, the exception), followed by the whole stderr.
pub fn exec_in(docker: &Docker, container: &str, args: &[&str]) -> Result<String> {
    docker.exec(container, args).map_err(|err| {
        let text = err.to_string();
        let last = text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
        let program = args.first().copied().unwrap_or("docker exec");
        anyhow!("{program} in the container failed: {last}\n{text}")
    })
}

fn make_world_writable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("making {} writable for the container's user", dir.display()))
}

/// torch stack, CUDA, and lama on a tiny TorchScript model in the models volume.
fn gpu_checks(checks: &mut Checks, docker: &Docker, name: &str, base_url: &str, gpus: bool) {
    let http = Http::new(base_url);
    checks.run("torch, torchvision, xformers import", || {
        let out = exec_in(docker, name, &["python", "-c", TORCH_STACK_PY])?;
        Ok(out.trim().to_string())
    });
    if gpus {
        checks.run("torch sees CUDA", || {
            let out = exec_in(docker, name, &["python", "-c", "import torch; print(torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"])?;
            if !out.trim().starts_with("True") {
                bail!("torch.cuda.is_available() is False inside the container with --gpus all");
            }
            Ok(out.trim().to_string())
        });
    } else {
        checks.skip("torch sees CUDA", "no NVIDIA runtime on this host; ran with DEVICE=cpu");
    }
    let placed = checks.run("tiny TorchScript big-lama.pt in models volume", || {
        let out = exec_in(docker, name, &["python", "-c", TINY_LAMA_PY, LAMA_IN_CONTAINER])?;
        Ok(out.trim().to_string())
    });
    if !placed {
        checks.skip("lama loads and inpaints", "no model file");
        return;
    }
    checks.run("lama loads and inpaints", || {
        let ans = switch_model(&http, "lama")?;
        ans.expect(200, "POST /api/v1/model lama")?;
        let now = current_model(&http)?;
        if now != "lama" {
            bail!("after switching to lama the server serves {now}");
        }
        let result = inpaint_test_image(&http)?;
        Ok(format!("serving lama; {}", result.summary))
    });
    if gpus {
        checks.run("inpaint time cuda vs cpu", || {
            let out = exec_in(docker, name, &["python", "-c", CUDA_VS_CPU_PY, LAMA_IN_CONTAINER])?;
            ui::info(format!("one 512x512 lama forward: {}", out.trim()));
            Ok(out.trim().to_string())
        });
    }
}

/// web_app/e2e/browser-test.mjs against the container, screenshot under target/xtask.
fn browser_test(base_url: &str, flavor: Flavor) -> Result<String> {
    let root = project::root();
    let web = root.join("web_app");
    if !web.join("node_modules").join("playwright-core").is_dir() {
        ui::info("web_app/node_modules missing: npm ci");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web)
            .status()
            .context("running npm ci in web_app (is npm installed?)")?;
        if !status.success() {
            bail!("npm ci in web_app failed");
        }
    }
    let shot = project::state_dir()?.join(format!("smoke-{}.png", flavor.name()));
    let mut command = Command::new("node");
    command
        .arg(web.join("e2e").join("browser-test.mjs"))
        .args(["--url", base_url, "--screenshot"])
        .arg(&shot)
        .current_dir(&root);
    let (status, stdout, stderr) = docker::run_with_timeout(command, Duration::from_secs(300))?;
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).filter(|l| !l.trim().is_empty()).collect();
    for line in &lines {
        ui::progress_line(line);
    }
    match status {
        Some(s) if s.success() => {
            let last = lines.iter().rev().find(|l| l.contains("passed")).copied().unwrap_or("passed");
            Ok(format!("{last}; screenshot {}", shot.display()))
        }
        Some(s) => bail!(
            "the browser test failed (exit {:?}): {}",
            s.code(),
            lines.iter().filter(|l| l.contains("FAIL") || l.contains("fail")).cloned().collect::<Vec<_>>().join(" | ")
        ),
        None => bail!("the browser test did not finish within 300 s"),
    }
}

// ---------------------------------------------------------------------------
// Integration checks (real engine)

pub const INTEGRATION: &[IntegrationCheck] = &[
    IntegrationCheck { name: "smoke cpu passes", run: smoke_cpu_passes },
    IntegrationCheck { name: "smoke gpu passes (CPU mode without an NVIDIA runtime)", run: smoke_gpu_passes },
    IntegrationCheck { name: "smoke fails clearly on an image whose server exits", run: smoke_fails_when_server_exits },
    IntegrationCheck {
        name: "smoke fails clearly on an image whose server never answers",
        run: smoke_fails_when_server_hangs,
    },
];

fn smoke_cpu_passes(_env: &Env) -> Result<()> {
    let before = labelled_containers(_env)?;
    testkit::xtask(["smoke", "cpu", "--json"])?.expect_success()?;
    no_new_containers(_env, &before)
}

fn smoke_gpu_passes(env: &Env) -> Result<()> {
    let run = testkit::xtask(["smoke", "gpu", "--json"])?;
    run.expect_success()?;
    if !env.docker.has_nvidia_runtime() && !run.combined().contains("DEVICE=cpu") {
        bail!("smoke gpu ran without an NVIDIA runtime but did not say it used DEVICE=cpu");
    }
    Ok(())
}

const BROKEN_IMAGE: &str = "iopaint-test/broken:latest";
const HANGING_IMAGE: &str = "iopaint-test/hanging:latest";

/// Builds a tiny image FROM iopaint:cpu-latest with `cmd` as its CMD; removed on drop.
fn planted_image<'a>(env: &'a Env, tag: &str, cmd: &str) -> Result<Cleanup<'a>> {
    let base = Flavor::Cpu.latest_tag();
    if !env.docker.image_exists(&base) {
        bail!("{base} is missing: run `cargo xtask build cpu` first");
    }
    let scratch = testkit::ScratchDir::new("planted-image")?;
    let dockerfile = scratch.path().join("Dockerfile");
    std::fs::write(&dockerfile, format!("FROM {base}\nCMD {cmd}\n"))?;
    let mut cleanup = Cleanup::new(&env.docker);
    cleanup.add(Leftover::Image(tag.to_string()));
    let outcome = env.docker.build(&BuildRequest {
        dockerfile: dockerfile.clone(),
        context: scratch.path().to_path_buf(),
        tags: vec![tag.to_string()],
        iidfile: scratch.path().join("iid"),
        echo: false,
        ..Default::default()
    })?;
    if !outcome.success {
        bail!("building {tag} failed:\n{}", testkit::tail(&outcome.log, 15));
    }
    Ok(cleanup)
}

fn smoke_fails_when_server_exits(env: &Env) -> Result<()> {
    let before = labelled_containers(env)?;
    let _image = planted_image(
        env,
        BROKEN_IMAGE,
        r#"["sh", "-c", "echo 'planted fault: the server does not start' >&2; exit 3"]"#,
    )?;
    let run = testkit::xtask(["smoke", "cpu", "--image", BROKEN_IMAGE, "--timeout", "60"])?;
    run.expect_failure_mentioning("exited with code 3")?;
    run.expect_failure_mentioning("planted fault: the server does not start")?;
    no_new_containers(env, &before)
}

fn smoke_fails_when_server_hangs(env: &Env) -> Result<()> {
    let before = labelled_containers(env)?;
    let _image = planted_image(env, HANGING_IMAGE, r#"["sleep", "600"]"#)?;
    let run = testkit::xtask(["smoke", "cpu", "--image", HANGING_IMAGE, "--timeout", "15"])?;
    run.expect_failure_mentioning("is not healthy after 15s")?;
    no_new_containers(env, &before)
}

fn labelled_containers(env: &Env) -> Result<Vec<String>> {
    env.docker.objects_with_label("iopaint.xtask=smoke")
}

/// The run removed its container (the guard works, pass or fail).
fn no_new_containers(env: &Env, before: &[String]) -> Result<()> {
    let after = labelled_containers(env)?;
    let new: Vec<&String> = after.iter().filter(|c| !before.contains(c)).collect();
    if !new.is_empty() {
        bail!("smoke left behind: {new:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn png_round_trips_and_the_mask_covers_the_block() {
        let img = test_image(TEST_W, TEST_H);
        let bytes = encode_png(TEST_W, TEST_H, png::ColorType::Rgb, &img).unwrap();
        let (w, h, back) = decode_png_rgb(&bytes).unwrap();
        assert_eq!((w, h), (TEST_W, TEST_H));
        assert_eq!(back, img);
        let mask = test_mask(TEST_W, TEST_H);
        let gray = decode_png_rgb(&encode_png(TEST_W, TEST_H, png::ColorType::Grayscale, &mask).unwrap()).unwrap().2;
        assert_eq!(gray.len(), img.len());
        assert_eq!(mask.iter().filter(|&&m| m == 255).count(), 28 * 20);
    }

    #[test]
    fn inpaint_judgement() {
        let img = test_image(TEST_W, TEST_H);
        let mask = test_mask(TEST_W, TEST_H);
        // Untouched: the masked area was not inpainted.
        assert!(judge_inpaint(&compare_inpaint(&img, &mask, &img)).is_err());
        // Masked pixels painted grey, nothing else: passes.
        let mut good = img.clone();
        for (i, &m) in mask.iter().enumerate() {
            if m == 255 {
                good[i * 3..i * 3 + 3].copy_from_slice(&[100, 100, 100]);
            }
        }
        let d = compare_inpaint(&img, &mask, &good);
        assert_eq!(d.masked_changed, d.masked);
        assert!(judge_inpaint(&d).is_ok());
        // One unmasked pixel off by one: fails.
        let mut bad = good.clone();
        bad[0] ^= 1;
        let err = judge_inpaint(&compare_inpaint(&img, &mask, &bad)).unwrap_err().to_string();
        assert!(err.contains("outside the mask"), "{err}");
    }

    #[test]
    fn assets_of_a_vite_page() {
        let html = r#"<!doctype html><html><head>
            <link rel="icon" href="/favicon.svg">
            <script type="module" crossorigin src="/assets/index-abc.js"></script>
            <link rel="modulepreload" crossorigin href="/assets/vendor-1.js">
            <LINK REL=stylesheet HREF='./assets/index-def.css'>
            <script>console.log("inline")</script>
          </head><body><div id="root"></div></body></html>"#;
        assert_eq!(html_assets(html), vec!["/assets/index-abc.js", "/assets/vendor-1.js", "./assets/index-def.css"]);
    }

    #[test]
    fn assets_resolve_against_the_server() {
        let base = "http://127.0.0.1:5000";
        assert_eq!(resolve_asset(base, "/assets/a.js").unwrap(), "http://127.0.0.1:5000/assets/a.js");
        assert_eq!(resolve_asset(base, "./assets/a.css?v=1").unwrap(), "http://127.0.0.1:5000/assets/a.css");
        assert_eq!(resolve_asset(base, "assets/a.js").unwrap(), "http://127.0.0.1:5000/assets/a.js");
        assert_eq!(resolve_asset(base, "http://127.0.0.1:5000/x.js").unwrap(), "http://127.0.0.1:5000/x.js");
        assert!(resolve_asset(base, "https://cdn.example.com/react.js").is_err());
        assert!(resolve_asset(base, "//cdn.example.com/react.js").is_err());
    }

    fn config(model: &str) -> Value {
        json!({
            "model": model, "device": "cpu", "plugins": [], "samplers": [],
            "enableFileManager": false, "enableAutoSaving": true, "disableModelSwitch": false, "isDesktop": false,
            "modelInfos": [
                {"name": "cv2", "model_type": "inpaint", "available": true, "reason": ""},
                {"name": "lama", "model_type": "inpaint", "available": false, "reason": "torch is not installed"}
            ]
        })
    }

    #[test]
    fn server_config_shape_and_model() {
        assert!(validate_server_config(&config("cv2"), "cv2").unwrap().contains("model cv2"));
        let err = validate_server_config(&config("cv2"), "lama").unwrap_err().to_string();
        assert!(err.contains("expected \"lama\""), "{err}");
        let mut broken = config("cv2");
        broken.as_object_mut().unwrap().remove("plugins");
        broken["isDesktop"] = json!("no");
        let err = validate_server_config(&broken, "cv2").unwrap_err().to_string();
        assert!(err.contains("`plugins` is not a list") && err.contains("`isDesktop` is not a boolean"), "{err}");
        assert!(validate_server_config(&json!([1]), "cv2").is_err());
    }

    #[test]
    fn unavailable_model_is_found() {
        assert_eq!(pick_unavailable(&config("cv2")), Some(("lama".into(), "torch is not installed".into())));
        let mut all = config("cv2");
        all["modelInfos"][1]["available"] = json!(true);
        assert_eq!(pick_unavailable(&all), None);
    }

    #[test]
    fn container_states() {
        let exited = parse_state(r#"{"Status":"exited","ExitCode":3,"OOMKilled":false,"Error":"","Health":{"Status":"unhealthy","FailingStreak":0,"Log":[]}}"#).unwrap();
        match health_verdict(&exited) {
            HealthVerdict::Dead(why) => assert!(why.contains("exited with code 3"), "{why}"),
            v => panic!("{v:?}"),
        }
        let starting = parse_state(r#"{"Status":"running","ExitCode":0,"Health":{"Status":"starting","Log":[{"ExitCode":1,"Output":"unhealthy: refused\n"}]}}"#).unwrap();
        assert_eq!(health_verdict(&starting), HealthVerdict::Wait);
        assert_eq!(starting.last_probe, "unhealthy: refused");
        let healthy =
            parse_state(r#"{"Status":"running","ExitCode":0,"Health":{"Status":"healthy","Log":[]}}"#).unwrap();
        assert_eq!(health_verdict(&healthy), HealthVerdict::Healthy);
        let none = parse_state(r#"{"Status":"running","ExitCode":0}"#).unwrap();
        assert!(matches!(health_verdict(&none), HealthVerdict::Dead(w) if w.contains("no HEALTHCHECK")));
    }

    #[test]
    fn tracebacks_are_found_with_context() {
        assert_eq!(find_traceback("INFO ok\nINFO fine\n"), None);
        let tb =
            find_traceback("INFO a\nTraceback (most recent call last):\n  File \"x\"\nValueError: boom\n").unwrap();
        assert!(tb.starts_with("Traceback") && tb.contains("ValueError: boom"));
    }

    #[test]
    fn names_are_unique_and_docker_safe() {
        let a = unique_name("iopaint-smoke-cpu");
        assert!(a.starts_with("iopaint-smoke-cpu-"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(a, unique_name("iopaint-smoke-cpu"));
    }
}
