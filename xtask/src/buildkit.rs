//! BuildKit progress output parsed into steps: which ran, which came from
//! the cache, which failed and with what output, and how big the build
//! context transfer was.
//!
//! The plain format (`--progress=plain`, on stderr) opens a step with
//! `#N <name>`, prints output as `#N 1.234 text`, and ends it with exactly one
//! of `#N DONE 0.4s`, `#N CACHED`, `#N ERROR: ...` or `#N CANCELED`. `N` is
//! the order in which steps were first seen, not Dockerfile order; `#N ...`
//! marks a switch to another step and the header may be repeated later.
//! Engine 20.10 adds a `#N sha256:<digest>` line after each header.
//! buildx's `--progress=rawjson` (JSON `SolveStatus` lines) maps onto the
//! same model.

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde_json::Value;

/// How a step ended (or that it has not).
#[derive(Debug, Clone, PartialEq)]
pub enum StepStatus {
    /// Started (or only announced) and not finished yet.
    Running,
    /// Reused from the build cache.
    Cached,
    /// Executed, taking this many seconds.
    Done(f64),
    /// Failed with BuildKit's message (`exit code: 1` and the like).
    Error(String),
    /// Stopped because another step failed.
    Canceled,
}

/// Where a Dockerfile step sits: `[frontend-builder 3/5]` is stage
/// `frontend-builder`, index 3 of 5. A single-stage build prints `[1/5]`;
/// its stage is reported as `stage-0`, BuildKit's own name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPosition {
    pub stage: String,
    pub index: u32,
    pub total: u32,
}

/// One BuildKit vertex: a Dockerfile step, or an internal one such as
/// `[internal] load build context` or `exporting to image`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `N` of `#N` (rawjson: order of first appearance, from 1).
    pub id: u32,
    /// The full name, e.g. `[runtime 4/6] COPY iopaint/ /app/iopaint/`.
    pub name: String,
    /// Stage and index for Dockerfile steps; `None` for internal ones.
    pub position: Option<StepPosition>,
    pub status: StepStatus,
    /// The step's output lines, without the `#N 1.234 ` prefix.
    pub output: Vec<String>,
    /// Progress lines such as `transferring context: 46.16MB 0.3s done`.
    pub progress: Vec<String>,
    /// The vertex digest, when the log shows it.
    pub digest: Option<String>,
}

impl Step {
    fn new(id: u32, name: &str) -> Step {
        Step {
            id,
            name: name.to_string(),
            position: parse_position(name),
            status: StepStatus::Running,
            output: Vec::new(),
            progress: Vec::new(),
            digest: None,
        }
    }

    /// The stage name of a Dockerfile step.
    pub fn stage(&self) -> Option<&str> {
        self.position.as_ref().map(|p| p.stage.as_str())
    }

    /// The name without its `[...]` prefix, e.g. `RUN npm ci`.
    pub fn instruction(&self) -> &str {
        match (self.name.starts_with('['), self.name.find("] ")) {
            (true, Some(end)) => &self.name[end + 2..],
            _ => &self.name,
        }
    }

    /// `[internal] ...` steps and the like that belong to no stage.
    pub fn is_internal(&self) -> bool {
        self.position.is_none()
    }

    /// A `FROM` step: it resolves the base image and shows `DONE` even when
    /// nothing was rebuilt, so it counts as neither cached nor executed.
    pub fn is_from(&self) -> bool {
        self.position.is_some() && self.instruction().starts_with("FROM ")
    }

    pub fn is_cached(&self) -> bool {
        self.status == StepStatus::Cached
    }

    /// The last `n` output lines.
    pub fn last_output(&self, n: usize) -> &[String] {
        &self.output[self.output.len().saturating_sub(n)..]
    }
}

/// Cached and executed Dockerfile steps of one stage, in step order.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSummary {
    pub stage: String,
    /// Instructions (e.g. `RUN npm ci`) that came from the cache.
    pub cached: Vec<String>,
    /// Instructions that ran, failed, were canceled or never finished.
    pub executed: Vec<String>,
}

impl StageSummary {
    pub fn all_cached(&self) -> bool {
        self.executed.is_empty()
    }
}

/// The step that failed a build, for an error message.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `None` when the error is not a Dockerfile step's (e.g. a bad Dockerfile).
    pub stage: Option<String>,
    /// `3/5` position, when known.
    pub position: Option<(u32, u32)>,
    pub instruction: String,
    pub message: String,
    pub last_output: Vec<String>,
}

impl Failure {
    /// A multi-line message naming the stage and step, then the last output.
    pub fn describe(&self) -> String {
        let mut text = match (&self.stage, self.position) {
            (Some(stage), Some((i, n))) => format!("stage {stage}, step {i}/{n} `{}` failed", self.instruction),
            _ => format!("`{}` failed", self.instruction),
        };
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        }
        if !self.last_output.is_empty() {
            text.push_str("\nlast output:");
            for line in &self.last_output {
                text.push_str("\n  ");
                text.push_str(line);
            }
        }
        text
    }
}

/// A whole build's progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildLog {
    /// Steps in the order first seen.
    pub steps: Vec<Step>,
    /// Lines outside any step: the error excerpt BuildKit prints at the end.
    pub trailer: Vec<String>,
    /// Bytes of the last `transferring context:` under `[internal] load build
    /// context`. BuildKit sends only what changed since the last build from
    /// the same directory, so a warm rebuild shows a few hundred bytes.
    pub context_transfer_bytes: Option<u64>,
    /// Which step `#N` lines belong to, by `N`.
    index_by_id: HashMap<u32, usize>,
}

impl BuildLog {
    /// Parses plain progress output, or rawjson when the text starts with `{`.
    pub fn parse(text: &str) -> Result<BuildLog> {
        if text.trim_start().starts_with('{') {
            BuildLog::from_rawjson(text)
        } else {
            Ok(BuildLog::from_plain(text))
        }
    }

    /// Parses `--progress=plain` output. Never fails: unknown lines go to
    /// [`trailer`](Self::trailer).
    pub fn from_plain(text: &str) -> BuildLog {
        let mut log = BuildLog::default();
        for line in text.lines() {
            log.push_plain_line(line);
        }
        log
    }

    /// Feeds one line of plain output, so a build can be parsed as it streams.
    pub fn push_plain_line(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        let Some((id, rest)) = split_step_prefix(line) else {
            if !line.trim().is_empty() {
                self.trailer.push(line.to_string());
            }
            return;
        };
        if id == 0 {
            return; // buildx's `#0 building with "default" instance` banner.
        }
        let Some(&at) = self.index_by_id.get(&id) else {
            self.index_by_id.insert(id, self.steps.len());
            self.steps.push(Step::new(id, rest));
            return;
        };
        let step = &mut self.steps[at];
        if rest == "..." || rest == step.name {
            // A switch to another step, or this step's header repeated after one.
        } else if rest == "CACHED" {
            step.status = StepStatus::Cached;
        } else if rest == "CANCELED" {
            step.status = StepStatus::Canceled;
        } else if let Some(secs) = rest.strip_prefix("DONE ") {
            step.status = StepStatus::Done(parse_seconds(secs).unwrap_or(0.0));
        } else if rest == "ERROR" || rest.starts_with("ERROR: ") {
            step.status =
                StepStatus::Error(rest.trim_start_matches("ERROR").trim_start_matches(':').trim().to_string());
        } else if is_digest(rest) {
            step.digest = Some(rest.to_string());
        } else if let Some(text) = strip_timestamp(rest) {
            step.output.push(text.to_string());
        } else {
            if step.name == "[internal] load build context" {
                if let Some(bytes) = transferred_bytes(rest) {
                    self.context_transfer_bytes = Some(bytes);
                }
            }
            step.progress.push(rest.to_string());
        }
    }

    /// Parses buildx `--progress=rawjson` output: one JSON `SolveStatus` per
    /// line with `vertexes`, `statuses` and base64 `logs`.
    pub fn from_rawjson(text: &str) -> Result<BuildLog> {
        let mut log = BuildLog::default();
        let mut id_by_digest: HashMap<String, u32> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let status: Value =
                serde_json::from_str(line).with_context(|| format!("rawjson line {} is not JSON", n + 1))?;
            for vertex in list(&status, "vertexes") {
                let Some(digest) = field(vertex, "digest").and_then(Value::as_str) else { continue };
                let name = field(vertex, "name").and_then(Value::as_str).unwrap_or(digest);
                let at = log.step_for_digest(&mut id_by_digest, digest, name);
                log.steps[at].status = vertex_status(vertex);
            }
            for status in list(&status, "statuses") {
                let Some(digest) = field(status, "vertex").and_then(Value::as_str) else { continue };
                let Some(&id) = id_by_digest.get(digest) else { continue };
                let id_text = field(status, "id").and_then(Value::as_str).unwrap_or("");
                let current = field(status, "current").and_then(Value::as_u64);
                let at = log.index_by_id[&id];
                if log.steps[at].name == "[internal] load build context" && id_text.starts_with("transferring context")
                {
                    log.context_transfer_bytes = current.or(log.context_transfer_bytes);
                }
                if let Some(current) = current {
                    log.steps[at].progress.push(format!("{id_text} {current}"));
                }
            }
            for entry in list(&status, "logs") {
                let Some(digest) = field(entry, "vertex").and_then(Value::as_str) else { continue };
                let Some(&id) = id_by_digest.get(digest) else { continue };
                let data = field(entry, "data").and_then(Value::as_str).unwrap_or("");
                let bytes = decode_base64(data).with_context(|| format!("rawjson line {}: log data", n + 1))?;
                let at = log.index_by_id[&id];
                let text = String::from_utf8_lossy(&bytes);
                log.steps[at].output.extend(text.lines().map(str::to_string));
            }
        }
        Ok(log)
    }

    fn step_for_digest(&mut self, ids: &mut HashMap<String, u32>, digest: &str, name: &str) -> usize {
        if let Some(id) = ids.get(digest) {
            return self.index_by_id[id];
        }
        let id = ids.len() as u32 + 1;
        ids.insert(digest.to_string(), id);
        self.index_by_id.insert(id, self.steps.len());
        let mut step = Step::new(id, name);
        step.digest = Some(digest.to_string());
        self.steps.push(step);
        self.steps.len() - 1
    }

    /// Dockerfile steps only (no internal ones), in the order first seen.
    pub fn dockerfile_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| !s.is_internal())
    }

    /// Per stage, in order of first appearance: cached vs executed steps,
    /// each list in Dockerfile order. `FROM` steps are left out (see
    /// [`Step::is_from`]).
    pub fn stage_summaries(&self) -> Vec<StageSummary> {
        let mut order: Vec<String> = Vec::new();
        let mut by_stage: HashMap<String, Vec<&Step>> = HashMap::new();
        for step in self.dockerfile_steps().filter(|s| !s.is_from()) {
            let stage = step.stage().unwrap_or_default().to_string();
            if !by_stage.contains_key(&stage) {
                order.push(stage.clone());
            }
            by_stage.entry(stage).or_default().push(step);
        }
        order
            .into_iter()
            .map(|stage| {
                let mut steps = by_stage.remove(&stage).unwrap_or_default();
                steps.sort_by_key(|s| s.position.as_ref().map_or(0, |p| p.index));
                let (cached, executed): (Vec<&Step>, Vec<&Step>) = steps.into_iter().partition(|s| s.is_cached());
                StageSummary {
                    stage,
                    cached: cached.iter().map(|s| s.instruction().to_string()).collect(),
                    executed: executed.iter().map(|s| s.instruction().to_string()).collect(),
                }
            })
            .collect()
    }

    /// The summary of one stage; an unseen stage yields an empty summary.
    #[cfg(test)]
    pub fn stage_summary(&self, stage: &str) -> StageSummary {
        self.stage_summaries().into_iter().find(|s| s.stage == stage).unwrap_or(StageSummary {
            stage: stage.to_string(),
            cached: Vec::new(),
            executed: Vec::new(),
        })
    }

    /// (cached, total) Dockerfile steps, `FROM` steps excluded.
    pub fn cached_count(&self) -> (usize, usize) {
        let counted: Vec<&Step> = self.dockerfile_steps().filter(|s| !s.is_from()).collect();
        (counted.iter().filter(|s| s.is_cached()).count(), counted.len())
    }

    /// The step that failed the build with its last `output_lines` lines, or
    /// the error from the trailer when no step carries one (e.g. a Dockerfile
    /// syntax error).
    pub fn failure(&self, output_lines: usize) -> Option<Failure> {
        if let Some(step) = self.steps.iter().find(|s| matches!(s.status, StepStatus::Error(_))) {
            let StepStatus::Error(message) = &step.status else { return None };
            return Some(Failure {
                stage: step.stage().map(str::to_string),
                position: step.position.as_ref().map(|p| (p.index, p.total)),
                instruction: step.instruction().to_string(),
                message: message.clone(),
                last_output: step.last_output(output_lines).to_vec(),
            });
        }
        let error_line = self.trailer.iter().rev().find(|l| {
            let lower = l.to_ascii_lowercase();
            lower.starts_with("error") || lower.contains("failed to solve")
        })?;
        Some(Failure {
            stage: None,
            position: None,
            instruction: "docker build".to_string(),
            message: error_line.trim_start_matches("ERROR: ").trim_start_matches("error: ").to_string(),
            last_output: Vec::new(),
        })
    }
}

/// `#12 rest` -> (12, "rest"); `#12` alone -> (12, "").
fn split_step_prefix(line: &str) -> Option<(u32, &str)> {
    let body = line.strip_prefix('#')?;
    let digits = body.find(|c: char| !c.is_ascii_digit()).unwrap_or(body.len());
    if digits == 0 {
        return None;
    }
    let id = body[..digits].parse().ok()?;
    let rest = &body[digits..];
    match rest.strip_prefix(' ') {
        Some(rest) => Some((id, rest)),
        None if rest.is_empty() => Some((id, "")),
        None => None,
    }
}

/// `[stage-0  1/15] RUN x` -> stage `stage-0`, 1 of 15; `[ 1/5]` -> `stage-0`.
fn parse_position(name: &str) -> Option<StepPosition> {
    let inside = name.strip_prefix('[')?.split(']').next()?;
    let inside = inside.trim();
    let (stage, fraction) = match inside.rsplit_once(char::is_whitespace) {
        Some((stage, fraction)) => (stage.trim(), fraction),
        None => ("stage-0", inside),
    };
    let (index, total) = fraction.split_once('/')?;
    Some(StepPosition { stage: stage.to_string(), index: index.parse().ok()?, total: total.parse().ok()? })
}

/// `1.234 text` -> `text`: output lines start with seconds since the step began.
fn strip_timestamp(rest: &str) -> Option<&str> {
    let (stamp, text) = match rest.split_once(' ') {
        Some((stamp, text)) => (stamp, text),
        None => (rest, ""),
    };
    let (whole, fraction) = stamp.split_once('.')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(whole) && numeric(fraction)).then_some(text)
}

fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `transferring context: 46.16MB 0.3s done` -> 46_160_000.
fn transferred_bytes(progress: &str) -> Option<u64> {
    let rest = progress.strip_prefix("transferring context:")?;
    let size = rest.split_whitespace().next()?;
    crate::sizes::parse_size(size).ok()
}

/// `0.4s`, `12.3s`, `1m2.5s`, `850ms` -> seconds.
fn parse_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|v| v / 1000.0);
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let value: f64 = number.parse().ok()?;
                total += value
                    * match c {
                        'h' => 3600.0,
                        'm' => 60.0,
                        _ => 1.0,
                    };
                number.clear();
            }
            _ => return None,
        }
    }
    number.is_empty().then_some(total)
}

/// A rawjson vertex's status.
fn vertex_status(vertex: &Value) -> StepStatus {
    let error = field(vertex, "error").and_then(Value::as_str).unwrap_or("");
    if error.contains("context canceled") {
        return StepStatus::Canceled;
    }
    if !error.is_empty() {
        return StepStatus::Error(error.to_string());
    }
    if field(vertex, "cached").and_then(Value::as_bool) == Some(true) {
        return StepStatus::Cached;
    }
    let time = |key| field(vertex, key).and_then(Value::as_str).and_then(parse_rfc3339);
    match (time("started"), time("completed")) {
        (Some(start), Some(end)) => StepStatus::Done((end - start).max(0.0)),
        (None, Some(_)) => StepStatus::Done(0.0),
        _ => StepStatus::Running,
    }
}

/// A JSON field by its rawjson name, or by Go's default capitalised name
/// (older BuildKit clients had no JSON tags).
fn field<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        let mut chars = key.chars();
        let first = chars.next()?;
        object.get(format!("{}{}", first.to_ascii_uppercase(), chars.as_str()))
    })
}

fn list<'a>(object: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    field(object, key).and_then(Value::as_array).into_iter().flatten()
}

/// RFC 3339 (`2026-12-04T10:00:01.25Z`, `...+01:00`) to Unix seconds.
fn parse_rfc3339(text: &str) -> Option<f64> {
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (clock, offset_secs) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        (clock, sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60))
    };
    let mut hms = clock.splitn(3, ':');
    let (hour, minute): (i64, i64) = (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
    let second: f64 = hms.next()?.parse().ok()?;
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 - offset_secs) as f64 + second)
}

/// Standard base64 (rawjson's `[]byte` fields); padding optional.
fn decode_base64(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => anyhow::bail!("invalid base64 character {:?}", c as char),
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> BuildLog {
        let text = match name {
            "cold" => include_str!("testdata/buildkit/engine20-cold.log"),
            "warm" => include_str!("testdata/buildkit/engine20-warm.log"),
            "touch-python" => include_str!("testdata/buildkit/engine20-touch-python.log"),
            "touch-frontend" => include_str!("testdata/buildkit/engine20-touch-frontend.log"),
            "error" => include_str!("testdata/buildkit/engine20-error.log"),
            "error-canceled" => include_str!("testdata/buildkit/engine20-error-canceled.log"),
            "single" => include_str!("testdata/buildkit/engine20-single-stage.log"),
            "buildx" => include_str!("testdata/buildkit/buildx-interleaved-error.log"),
            "rawjson" => include_str!("testdata/buildkit/buildx-rawjson.jsonl"),
            other => panic!("no fixture {other}"),
        };
        BuildLog::parse(text).expect("fixture parses")
    }

    fn names(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }

    #[test]
    fn cold_build_runs_everything() {
        let log = fixture("cold");
        assert_eq!(log.steps.len(), 19);
        // Steps keep first-seen order, not their numbers.
        let ids: Vec<u32> = log.steps.iter().map(|s| s.id).take(8).collect();
        assert_eq!(ids, [1, 2, 3, 4, 6, 12, 5, 13]);
        assert_eq!(log.context_transfer_bytes, Some(300_450));
        assert_eq!(log.cached_count(), (0, 13));
        let stages: Vec<String> = log.stage_summaries().into_iter().map(|s| s.stage).collect();
        assert_eq!(stages, ["frontend-builder", "python-builder", "runtime"]);
        let python = log.stage_summary("python-builder");
        assert_eq!(python.executed[2], "RUN echo \"pip install deps\" && sleep 1 && mkdir -p /opt/venv && echo deps > /opt/venv/deps && echo \"Successfully installed fastapi\"");
        let pip = log.steps.iter().find(|s| s.id == 8).unwrap();
        assert_eq!(pip.output, ["pip install deps", "Successfully installed fastapi"]);
        assert_eq!(pip.status, StepStatus::Done(1.2));
        assert_eq!(
            pip.digest.as_deref(),
            Some("sha256:1e71c2f2787f9671bb750e116f5b1f98e55e5a236d422c28428f2a8fb5c6a33e")
        );
        assert!(log.failure(5).is_none());
        let export = log.steps.last().unwrap();
        assert!(export.is_internal());
        assert_eq!(export.progress.len(), 3);
    }

    #[test]
    fn warm_build_is_all_cached_out_of_order() {
        let log = fixture("warm");
        assert_eq!(log.cached_count(), (13, 13));
        for summary in log.stage_summaries() {
            assert!(summary.all_cached(), "{summary:?}");
        }
        // Cached steps arrive out of order; summaries put them back in step order.
        let frontend = log.stage_summary("frontend-builder");
        assert_eq!(frontend.cached.first().map(String::as_str), Some("WORKDIR /src"));
        assert_eq!(frontend.cached.len(), 5);
    }

    #[test]
    fn python_touch_reruns_only_runtime_app_layers() {
        let log = fixture("touch-python");
        assert!(log.stage_summary("frontend-builder").all_cached());
        assert!(log.stage_summary("python-builder").all_cached());
        let runtime = log.stage_summary("runtime");
        assert_eq!(names(&runtime.cached), ["COPY --from=python-builder /opt/venv /opt/venv", "WORKDIR /app"]);
        assert_eq!(
            names(&runtime.executed),
            [
                "COPY iopaint/ /app/iopaint/",
                "COPY --from=frontend-builder /src/dist /app/iopaint/web_app/",
                "RUN echo \"install app\" && ls /app/iopaint",
            ]
        );
        // Only the changed file travels on a warm rebuild.
        assert_eq!(log.context_transfer_bytes, Some(306));
    }

    #[test]
    fn frontend_touch_keeps_python_builder_cached() {
        let log = fixture("touch-frontend");
        assert!(log.stage_summary("python-builder").all_cached());
        let frontend = log.stage_summary("frontend-builder");
        assert_eq!(frontend.executed.len(), 2);
        assert!(frontend.executed[0].starts_with("COPY web_app/src"));
        // This time the shared FROM step was named after python-builder: ignored.
        assert!(log.steps.iter().any(|s| s.is_from() && s.stage() == Some("python-builder")));
    }

    #[test]
    fn error_names_stage_step_and_output() {
        let log = fixture("error");
        let failure = log.failure(5).expect("a failure");
        assert_eq!(failure.stage.as_deref(), Some("python-builder"));
        assert_eq!(failure.position, Some((3, 3)));
        assert!(failure.instruction.starts_with("RUN echo \"Collecting torch==2.1.2\""));
        assert!(failure.message.ends_with("exit code: 1"), "{}", failure.message);
        assert_eq!(
            failure.last_output,
            ["Collecting torch==2.1.2", "ERROR: Could not find a version that satisfies the requirement torch==2.1.2"]
        );
        let text = failure.describe();
        assert!(text.starts_with("stage python-builder, step 3/3 `RUN echo"), "{text}");
        assert!(text.contains("\n  ERROR: Could not find a version"), "{text}");
        // BuildKit's closing excerpt is kept too.
        assert!(log.trailer.iter().any(|l| l.starts_with(" > [python-builder 3/3]")));
    }

    #[test]
    fn canceled_steps_are_not_the_failure() {
        let log = fixture("error-canceled");
        let npm = log.steps.iter().find(|s| s.id == 7).unwrap();
        assert_eq!(npm.status, StepStatus::Canceled);
        assert_eq!(npm.output, ["npm ci (slow)"]);
        let failure = log.failure(2).unwrap();
        assert_eq!(failure.stage.as_deref(), Some("python-builder"));
        assert_eq!(failure.last_output, ["  File setup.py, line 1", "ModuleNotFoundError: No module named 'torch'"]);
        assert!(failure.message.ends_with("exit code: 2"));
    }

    #[test]
    fn single_stage_positions_have_padded_indexes() {
        let log = fixture("single");
        let positions: Vec<(u32, u32)> =
            log.dockerfile_steps().filter_map(|s| s.position.as_ref().map(|p| (p.index, p.total))).collect();
        assert_eq!(positions.len(), 10);
        assert_eq!(positions[0], (1, 10));
        assert_eq!(positions[9], (10, 10));
        assert!(log.dockerfile_steps().all(|s| s.stage() == Some("stage-0")));
        assert_eq!(log.cached_count(), (0, 9));
        assert_eq!(log.context_transfer_bytes, Some(42));
    }

    #[test]
    fn buildx_switches_and_repeated_headers() {
        let log = fixture("buildx");
        assert!(log.steps.iter().all(|s| s.id != 0));
        let npm = log.steps.iter().find(|s| s.id == 12).unwrap();
        assert_eq!(npm.status, StepStatus::Done(10.2));
        assert_eq!(npm.output.len(), 2);
        // The progressive transfer lines: the last one wins.
        assert_eq!(log.context_transfer_bytes, Some(46_160_000));
        let failure = log.failure(2).unwrap();
        assert_eq!(failure.stage.as_deref(), Some("python-builder"));
        assert_eq!(failure.position, Some((4, 7)));
        assert_eq!(failure.last_output.len(), 2);
        assert!(failure.message.starts_with("process \"/bin/sh -c pip install torch==2.1.2"));
        let python = log.stage_summary("python-builder");
        assert_eq!(python.cached.len(), 2);
        assert_eq!(python.executed.len(), 1);
        let frontend = log.stage_summary("frontend-builder");
        assert_eq!(names(&frontend.executed), ["RUN --mount=type=cache,target=/root/.npm npm ci", "COPY web_app/ ./"]);
        assert!(log.trailer.last().unwrap().starts_with("ERROR: failed to solve"));
    }

    #[test]
    fn rawjson_maps_onto_the_same_model() {
        let log = fixture("rawjson");
        assert_eq!(log.steps.len(), 7);
        assert_eq!(log.context_transfer_bytes, Some(46_160_000));
        let by_name = |prefix: &str| log.steps.iter().find(|s| s.name.starts_with(prefix)).unwrap();
        assert_eq!(by_name("[internal] load build context").status, StepStatus::Done(1.0));
        assert!(by_name("[python-builder 4/7]").is_cached());
        match by_name("[runtime 4/9]").status {
            StepStatus::Done(secs) => assert!((secs - 0.25).abs() < 1e-6),
            ref other => panic!("{other:?}"),
        }
        assert_eq!(by_name("[frontend-builder 6/6]").status, StepStatus::Canceled);
        let failure = log.failure(3).unwrap();
        assert_eq!(failure.stage.as_deref(), Some("runtime"));
        assert_eq!(
            failure.last_output,
            [
                "Processing ./iopaint",
                "  Preparing metadata (pyproject.toml): started",
                "error: invalid command 'bdist_wheel'"
            ]
        );
        assert_eq!(
            log.stage_summary("runtime").executed,
            ["COPY iopaint/ /app/iopaint/", "RUN pip install --no-deps ./iopaint"]
        );
        assert!(BuildLog::from_rawjson("{not json").is_err());
    }

    #[test]
    fn trailer_only_errors_are_reported() {
        let text = "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n\
                    failed to solve with frontend dockerfile.v0: failed to create LLB definition: unknown instruction: RUNN\n";
        let failure = BuildLog::from_plain(text).failure(3).unwrap();
        assert_eq!(failure.stage, None);
        assert!(failure.message.contains("unknown instruction: RUNN"));
    }

    #[test]
    fn small_parsers() {
        assert_eq!(split_step_prefix("#12 DONE 0.1s"), Some((12, "DONE 0.1s")));
        assert_eq!(split_step_prefix("#3"), Some((3, "")));
        assert_eq!(split_step_prefix("#x"), None);
        assert_eq!(split_step_prefix("#12abc"), None);
        assert_eq!(split_step_prefix(" > [x 1/2] RUN"), None);
        let pos = parse_position("[stage-0  1/15] RUN x").unwrap();
        assert_eq!((pos.stage.as_str(), pos.index, pos.total), ("stage-0", 1, 15));
        let pos = parse_position("[frontend-builder 3/5] RUN npm ci").unwrap();
        assert_eq!((pos.stage.as_str(), pos.index, pos.total), ("frontend-builder", 3, 5));
        assert_eq!(parse_position("[1/5] FROM x").unwrap().stage, "stage-0");
        assert_eq!(parse_position("[internal] load build context"), None);
        assert_eq!(parse_position("exporting to image"), None);
        assert_eq!(strip_timestamp("1.234 hello world"), Some("hello world"));
        assert_eq!(strip_timestamp("30.10   indented"), Some("  indented"));
        assert_eq!(strip_timestamp("0.5"), Some(""));
        assert_eq!(strip_timestamp("transferring context: 2B done"), None);
        assert_eq!(strip_timestamp("exporting layers 0.0s done"), None);
        assert_eq!(parse_seconds("0.4s"), Some(0.4));
        assert_eq!(parse_seconds("1m2.5s"), Some(62.5));
        assert_eq!(parse_seconds("850ms"), Some(0.85));
        assert_eq!(parse_seconds("soon"), None);
        assert_eq!(transferred_bytes("transferring context: 46.16MB 0.3s done"), Some(46_160_000));
        assert_eq!(transferred_bytes("transferring context: 2B done"), Some(2));
        assert_eq!(transferred_bytes("transferring context: 3.4GB"), Some(3_400_000_000));
        assert_eq!(decode_base64("aGVsbG8gd29ybGQK").unwrap(), b"hello world\n");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert!(decode_base64("a*b").is_err());
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2026-12-04T10:00:01.25Z").map(|s| s - 1_796_378_400.0), Some(1.25));
        assert_eq!(parse_rfc3339("2026-12-04T11:00:00+01:00"), parse_rfc3339("2026-12-04T10:00:00Z"));
    }

    #[test]
    fn context_size_only_from_the_build_context_step() {
        let text = "#2 [internal] load .dockerignore\n#2 transferring context: 9.9MB done\n#2 DONE 0.0s\n";
        assert_eq!(BuildLog::from_plain(text).context_transfer_bytes, None);
    }

    #[test]
    fn streaming_equals_whole_text() {
        let text = include_str!("testdata/buildkit/engine20-touch-python.log");
        let mut streamed = BuildLog::default();
        for line in text.split_inclusive('\n') {
            streamed.push_plain_line(line);
        }
        assert_eq!(streamed, BuildLog::from_plain(text));
    }
}
