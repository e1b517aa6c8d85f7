//! `cargo xtask dockerignore-check`: what the build context really is.
//!
//! Measures what a build sends with and without `.dockerignore`, and fails
//! when the file removes too little, when it excludes something a Dockerfile
//! needs, or when a secret-looking file would still be sent.
//!
//! How the numbers are taken (defended in the report's notes):
//! - "with": a real BuildKit build of a throwaway `FROM scratch` +
//!   `COPY . /ctx` Dockerfile kept in a temp dir, context = the checkout,
//!   output to a local directory (no image is stored). BuildKit's own
//!   `transferring context:` under `[internal] load build context` gives the
//!   bytes; the exported `/ctx` tree gives the exact file set. The user's
//!   `.dockerignore` is never touched: its bytes are handed to the probe as
//!   `<Dockerfile>.dockerignore`, which BuildKit uses instead of the context
//!   root's (verified on engine 20.10's built-in BuildKit and in buildx).
//!   A fresh client state dir makes BuildKit send everything instead of the
//!   delta since the last build (see `Docker::build_to_dir`).
//! - "without": the same probe with an ignore file that holds only a comment,
//!   when the pure walker predicts a context small enough to send in seconds.
//!   A contributor's checkout (target/ with a multi-GB venv) is not sent: the
//!   walker counts it, with no pattern involved, using the transfer estimate
//!   that the "with" build just checked against Docker.
//! - the pure walker (`dockerignore.rs`) must agree with Docker: the same
//!   file set, and bytes within a small tolerance; a disagreement fails,
//!   because then the matcher cannot be trusted for the other checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::buildkit::BuildLog;
use crate::docker::{BuildFrontend, Docker};
use crate::dockerfile::{self, Dockerfile};
use crate::dockerignore::{self, clean_path, ContextStats, IgnoreRules, Sender, WalkOptions};
use crate::report::{Cell, Report};
use crate::setup::{self, Env, SetupOptions};
use crate::testkit::{self, IntegrationCheck, ScratchDir};
use crate::{project, ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct CheckArgs {
    /// Fail when .dockerignore removes less than PCT percent of the context's bytes.
    #[arg(long, value_name = "PCT", default_value_t = 50.0)]
    pub min_reduction: f64,
    /// A Dockerfile whose COPY/ADD/bind-mount sources must survive .dockerignore
    /// (repeatable; default: docker/CPUDockerfile.multistage and docker/GPUDockerfile.multistage in the context).
    #[arg(long = "dockerfile", value_name = "FILE")]
    pub dockerfiles: Vec<PathBuf>,
    /// The build context (default: the repository root).
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputOpts,
}

pub const INTEGRATION: &[IntegrationCheck] = &[
    IntegrationCheck { name: "dockerignore-check passes on this checkout", run: check_passes_on_checkout },
    IntegrationCheck { name: "dockerignore-check fails when .dockerignore excludes iopaint/", run: check_planted_iopaint_exclude },
    IntegrationCheck { name: "dockerignore-check fails when .env and id_rsa would be sent", run: check_planted_secrets },
    IntegrationCheck { name: "the .dockerignore walker sends exactly what docker build sends", run: check_walker_matches_docker },
];

const DEFAULT_DOCKERFILES: [&str; 2] = ["docker/CPUDockerfile.multistage", "docker/GPUDockerfile.multistage"];

/// The throwaway Dockerfile: `COPY . /ctx` makes BuildKit load the whole context.
const PROBE_DOCKERFILE: &str = "FROM scratch\nCOPY . /ctx\n";

/// An ignore file with no pattern: what "without .dockerignore" means.
const NO_PATTERNS: &str = "# dockerignore-check: no patterns, so the whole context is sent\n";

/// Above this (walker estimate) "without" is counted, not sent: sending a
/// multi-GB target/ just to count it would take minutes and as much disk.
const SEND_WITHOUT_LIMIT: u64 = 256_000_000;

/// Above this even the "with" context is only counted (the reduction check
/// fails on such a context anyway).
const SEND_WITH_LIMIT: u64 = 2_000_000_000;

/// Docker prints 4 significant digits (`180.8kB`) and the walker estimates
/// fsutil's framing: agreement means within 1% or 4 kB, whichever is larger.
const TRANSFER_TOLERANCE_PCT: f64 = 1.0;
const TRANSFER_TOLERANCE_BYTES: u64 = 4_000;

pub fn run(args: &CheckArgs) -> Result<()> {
    let env = setup::ensure(&SetupOptions::default())?;
    let outcome = check(&env.docker, args)?;
    let report = outcome.report(args.min_reduction);
    report.emit(&args.out)?;
    if !report.passed() {
        bail!(
            "dockerignore-check failed:\n  - {}\n(fix .dockerignore, or the Dockerfile that needs the path)",
            report.failures.join("\n  - ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The check

/// Everything the check found; turned into a [`Report`].
struct Outcome {
    context: PathBuf,
    sender: Sender,
    without: Measure,
    /// One per ignore file in use (normally just the root `.dockerignore`).
    with: Vec<WithIgnore>,
    sources: Vec<SourceCheck>,
    elapsed: Duration,
}

/// One "with .dockerignore" measurement and what it sends.
struct WithIgnore {
    /// Shown relative to the context (`.dockerignore`, `docker/X.dockerignore`).
    ignore_file: String,
    exists: bool,
    dockerfiles: Vec<String>,
    measure: Measure,
    secrets: Vec<(String, &'static str)>,
    largest: Vec<(String, u64)>,
}

/// A context measured by the walker and, when sent, by Docker.
struct Measure {
    walker: ContextStats,
    docker: Option<DockerCount>,
    /// Why Docker did not send it, when it did not.
    not_sent_because: Option<String>,
}

impl Measure {
    fn files(&self) -> u64 {
        self.docker.as_ref().map_or(self.walker.files, |d| d.files)
    }

    /// Transfer bytes: Docker's own figure when it sent the context, else the
    /// walker's estimate of the same figure.
    fn bytes(&self) -> u64 {
        self.docker.as_ref().and_then(|d| d.transfer_bytes).unwrap_or_else(|| self.walker.estimated_transfer_bytes())
    }

    fn measured_by(&self) -> String {
        match &self.docker {
            Some(d) if d.transfer_bytes.is_some() => "docker build (transferring context)".into(),
            Some(_) => "docker build (files); bytes: walker estimate".into(),
            None => "walker (not sent)".into(),
        }
    }

    /// Docker and the walker agree on the file set and, within tolerance, on bytes.
    fn disagreement(&self) -> Option<String> {
        let docker = self.docker.as_ref()?;
        let mut problems = Vec::new();
        if !docker.diff.is_empty() {
            problems.push(docker.diff.describe(8));
        }
        if let Some(sent) = docker.transfer_bytes {
            let estimate = self.walker.estimated_transfer_bytes();
            if !within_tolerance(sent, estimate) {
                problems.push(format!(
                    "Docker transferred {} but the walker estimates {} (tolerance {TRANSFER_TOLERANCE_PCT}% or {})",
                    ui::fmt_bytes(sent),
                    ui::fmt_bytes(estimate),
                    ui::fmt_bytes(TRANSFER_TOLERANCE_BYTES)
                ));
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    fn to_json(&self) -> Value {
        json!({
            "files": self.files(),
            "bytes": self.bytes(),
            "measured_by": self.measured_by(),
            "not_sent_because": self.not_sent_because,
            "walker": {
                "files": self.walker.files,
                "content_bytes": self.walker.bytes,
                "estimated_transfer_bytes": self.walker.estimated_transfer_bytes(),
            },
            "docker": self.docker.as_ref().map(|d| json!({
                "transfer_bytes": d.transfer_bytes,
                "files": d.files,
                "content_bytes": d.content_bytes,
                "seconds": (d.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "only_in_docker": d.diff.only_docker,
                "only_in_walker": d.diff.only_walker,
                "size_differs": d.diff.size_differs,
            })),
            "agrees": self.disagreement().is_none(),
        })
    }
}

/// What one probe build sent.
struct DockerCount {
    /// `transferring context:` of `[internal] load build context`.
    transfer_bytes: Option<u64>,
    /// Non-directory entries in the exported `/ctx`.
    files: u64,
    content_bytes: u64,
    diff: TreeDiff,
    elapsed: Duration,
}

fn check(docker: &Docker, args: &CheckArgs) -> Result<Outcome> {
    let started = Instant::now();
    let context = args.context.clone().unwrap_or_else(project::root);
    let context = fs::canonicalize(&context)
        .with_context(|| format!("build context {} not found (check --context)", context.display()))?;
    if !context.is_dir() {
        bail!("build context {} is not a directory (check --context)", context.display());
    }
    let sender = sender_for(docker.frontend);
    let dockerfiles = resolve_dockerfiles(&context, &args.dockerfiles)?;

    // Which ignore file each Dockerfile's build uses (`<Dockerfile>.dockerignore` wins).
    let mut groups: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for file in &dockerfiles {
        groups.entry(dockerignore::ignore_file_for(&context, file)).or_default().push(file.clone());
    }

    ui::info(format!("counting the whole context of {} (no .dockerignore)", context.display()));
    let everything = walk_retrying(&context, &IgnoreRules::default(), sender)?;
    let without = if everything.estimated_transfer_bytes() <= SEND_WITHOUT_LIMIT {
        measure_with_docker(docker, &context, NO_PATTERNS.as_bytes(), everything.clone(), &IgnoreRules::default(), sender)?
    } else {
        Measure {
            walker: everything.clone(),
            docker: None,
            not_sent_because: Some(format!(
                "{} is too much to send just to count it (limit {}); counted by the walker, which needs no pattern for this",
                ui::fmt_bytes(everything.estimated_transfer_bytes()),
                ui::fmt_bytes(SEND_WITHOUT_LIMIT)
            )),
        }
    };

    let mut with = Vec::new();
    let mut sources = Vec::new();
    for (ignore_path, files) in &groups {
        let exists = ignore_path.is_file();
        let text = if exists {
            fs::read(ignore_path).with_context(|| format!("cannot read {}", ignore_path.display()))?
        } else {
            NO_PATTERNS.as_bytes().to_vec()
        };
        let ignore = IgnoreFile::parse(&String::from_utf8_lossy(&text))
            .with_context(|| format!("in {}", ignore_path.display()))?;
        let shown = display_path(&context, ignore_path);
        ui::info(format!("measuring what a build sends with {shown}"));
        let walked = walk_retrying(&context, &ignore.rules, sender)?;
        let measure = if walked.estimated_transfer_bytes() <= SEND_WITH_LIMIT {
            measure_with_docker(docker, &context, &text, walked, &ignore.rules, sender)?
        } else {
            let why = format!("{} would be sent (limit {})", ui::fmt_bytes(walked.estimated_transfer_bytes()), ui::fmt_bytes(SEND_WITH_LIMIT));
            Measure { walker: walked, docker: None, not_sent_because: Some(why) }
        };
        for file in files {
            let parsed = Dockerfile::from_file(file)?;
            for source in context_refs(&parsed, &display_path(&context, file)) {
                sources.push(check_source(source, &everything, &measure.walker, &ignore, &shown));
            }
        }
        with.push(WithIgnore {
            ignore_file: shown,
            exists,
            dockerfiles: files.iter().map(|f| display_path(&context, f)).collect(),
            secrets: measure.walker.secrets(),
            largest: measure.walker.largest_paths(10),
            measure,
        });
    }
    Ok(Outcome { context, sender, without, with, sources, elapsed: started.elapsed() })
}

/// BuildKit's file sender differs between engine 20.10's built-in client and
/// buildx only for wildcard exceptions; the walker mimics the one in use.
fn sender_for(frontend: BuildFrontend) -> Sender {
    match frontend {
        BuildFrontend::Builtin => Sender::PrefixOnly,
        BuildFrontend::Buildx => Sender::Current,
    }
}

/// `--dockerfile` values: absolute, relative to the working directory, or
/// relative to the context; the default pair lives in the context.
fn resolve_dockerfiles(context: &Path, given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if given.is_empty() {
        return DEFAULT_DOCKERFILES
            .iter()
            .map(|rel| {
                let path = context.join(rel);
                if path.is_file() {
                    Ok(path)
                } else {
                    bail!("{} not found in the context; pass the Dockerfiles to check with --dockerfile FILE", path.display())
                }
            })
            .collect();
    }
    given
        .iter()
        .map(|file| {
            let candidates = [file.clone(), context.join(file)];
            candidates
                .iter()
                .find(|p| p.is_file())
                .map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                .with_context(|| format!("Dockerfile {} not found (relative paths are tried from here and from the context)", file.display()))
        })
        .collect()
}

/// A path relative to the context when inside it, else as is.
fn display_path(context: &Path, path: &Path) -> String {
    path.strip_prefix(context).map(|p| p.display().to_string()).unwrap_or_else(|_| path.display().to_string())
}

/// Walks the context; retried because other tools create and delete scratch
/// dirs inside a checkout (target/) while we walk it.
fn walk_retrying(context: &Path, rules: &IgnoreRules, sender: Sender) -> Result<ContextStats> {
    let mut last = None;
    for _ in 0..3 {
        match dockerignore::walk_context_with(context, rules, WalkOptions { sender, ..Default::default() }) {
            Ok(stats) => return Ok(stats),
            Err(err) => last = Some(err),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Err(last.expect("three attempts")).context("walking the build context")
}

/// Sends the context through a real build and compares with the walker; on a
/// difference walks and builds once more (a file edited meanwhile is not a bug).
fn measure_with_docker(
    docker: &Docker,
    context: &Path,
    ignore_text: &[u8],
    walked: ContextStats,
    rules: &IgnoreRules,
    sender: Sender,
) -> Result<Measure> {
    let mut walked = walked;
    let mut count = probe(docker, context, ignore_text, &walked)?;
    if !count.diff.is_empty() {
        ui::warn("Docker and the walker differ; measuring again in case files changed meanwhile");
        walked = walk_retrying(context, rules, sender)?;
        count = probe(docker, context, ignore_text, &walked)?;
    }
    Ok(Measure { walker: walked, docker: Some(count), not_sent_because: None })
}

/// One throwaway build: `ignore_text` given as `Dockerfile.dockerignore`.
fn probe(docker: &Docker, context: &Path, ignore_text: &[u8], walked: &ContextStats) -> Result<DockerCount> {
    let tmp = TempDir::new("dockerignore-probe")?;
    let dockerfile = tmp.0.join("Dockerfile");
    fs::write(&dockerfile, PROBE_DOCKERFILE)?;
    fs::write(tmp.0.join("Dockerfile.dockerignore"), ignore_text)?;
    let dest = tmp.0.join("out");
    let state = tmp.0.join("client-state");
    fs::create_dir_all(&state)?;
    let started = Instant::now();
    let (ok, log) = docker.build_to_dir(&dockerfile, context, &dest, &state)?;
    let elapsed = started.elapsed();
    if !ok {
        bail!(
            "the probe build (FROM scratch + COPY . /ctx, context {}) failed:\n{}\nIs the engine up? `cargo xtask setup` says more.",
            context.display(),
            testkit::tail(&log, 15)
        );
    }
    let transfer_bytes = BuildLog::from_plain(&log).context_transfer_bytes;
    let sent = list_tree(&dest.join("ctx"))?;
    let files = sent.values().filter(|e| !matches!(e, Entry::Dir)).count() as u64;
    let content_bytes = sent.values().map(|e| if let Entry::File(n) = e { *n } else { 0 }).sum();
    let expected = walker_tree(context, walked);
    Ok(DockerCount { transfer_bytes, files, content_bytes, diff: TreeDiff::between(&sent, &expected), elapsed })
}

/// What a path is in a tree listing; files carry their length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
    Other,
}

impl Entry {
    fn of(meta: &fs::Metadata) -> Entry {
        if meta.is_dir() {
            Entry::Dir
        } else if meta.is_file() {
            Entry::File(meta.len())
        } else {
            Entry::Other
        }
    }
}

/// Every entry below `root`, by slash-separated relative path.
fn list_tree(root: &Path) -> Result<BTreeMap<String, Entry>> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Entry>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let meta = fs::symlink_metadata(entry.path())?;
            let kind = Entry::of(&meta);
            out.insert(path.clone(), kind);
            if kind == Entry::Dir {
                walk(&entry.path(), &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    if root.is_dir() {
        walk(root, "", &mut out)?;
    }
    Ok(out)
}

/// The tree the walker says Docker sends, with lengths read from the context.
fn walker_tree(context: &Path, stats: &ContextStats) -> BTreeMap<String, Entry> {
    let mut out: BTreeMap<String, Entry> = stats.dirs.iter().map(|d| (d.clone(), Entry::Dir)).collect();
    for (path, _) in &stats.sent {
        let kind = fs::symlink_metadata(context.join(path)).map(|m| Entry::of(&m)).unwrap_or(Entry::Other);
        out.insert(path.clone(), kind);
    }
    out
}

/// Where Docker's exported tree and the walker's differ.
#[derive(Debug, Default, PartialEq)]
struct TreeDiff {
    only_docker: Vec<String>,
    only_walker: Vec<String>,
    /// (path, Docker's entry, the walker's entry) as text.
    size_differs: Vec<String>,
}

impl TreeDiff {
    fn between(docker: &BTreeMap<String, Entry>, walker: &BTreeMap<String, Entry>) -> TreeDiff {
        let shown = |path: &str, e: &Entry| if *e == Entry::Dir { format!("{path}/") } else { path.to_string() };
        let mut diff = TreeDiff::default();
        for (path, entry) in docker {
            match walker.get(path) {
                None => diff.only_docker.push(shown(path, entry)),
                Some(other) if other != entry => {
                    diff.size_differs.push(format!("{path} (docker {entry:?}, walker {other:?})"))
                }
                Some(_) => {}
            }
        }
        for (path, entry) in walker {
            if !docker.contains_key(path) {
                diff.only_walker.push(shown(path, entry));
            }
        }
        diff
    }

    fn is_empty(&self) -> bool {
        self.only_docker.is_empty() && self.only_walker.is_empty() && self.size_differs.is_empty()
    }

    fn describe(&self, max: usize) -> String {
        let list = |items: &[String]| {
            let mut text = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
            if items.len() > max {
                text.push_str(&format!(", ... ({} in all)", items.len()));
            }
            text
        };
        let mut parts = Vec::new();
        if !self.only_docker.is_empty() {
            parts.push(format!("sent by Docker but not by the walker: {}", list(&self.only_docker)));
        }
        if !self.only_walker.is_empty() {
            parts.push(format!("sent by the walker but not by Docker: {}", list(&self.only_walker)));
        }
        if !self.size_differs.is_empty() {
            parts.push(format!("different: {}", list(&self.size_differs)));
        }
        parts.join("; ")
    }
}

fn within_tolerance(docker: u64, walker: u64) -> bool {
    let allowed = ((docker as f64) * TRANSFER_TOLERANCE_PCT / 100.0).max(TRANSFER_TOLERANCE_BYTES as f64);
    (docker.abs_diff(walker) as f64) <= allowed
}

/// 100 * (1 - with/without); 0 for an empty context.
fn reduction_pct(without: u64, with: u64) -> f64 {
    if without == 0 {
        0.0
    } else {
        100.0 * (1.0 - with as f64 / without as f64)
    }
}

/// A scratch dir outside the checkout (the probe's own files must never be
/// part of the context it measures), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("xtask-{label}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// .dockerignore lines: which pattern decided a path

/// An ignore file's rules plus each pattern line on its own, so a verdict can
/// name the line that decided it.
struct IgnoreFile {
    rules: IgnoreRules,
    lines: Vec<IgnoreLine>,
}

struct IgnoreLine {
    /// 1-based line number in the file.
    number: usize,
    /// The line as written (trimmed).
    text: String,
    exception: bool,
    /// The pattern alone, without `!`: "does it match this path or a parent?"
    alone: IgnoreRules,
}

impl IgnoreFile {
    fn parse(content: &str) -> Result<IgnoreFile> {
        let rules = IgnoreRules::parse(content)?;
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        let mut lines = Vec::new();
        // The same lines moby's ReadAll keeps: `#` in column 1 is a comment.
        for (i, raw) in content.lines().enumerate() {
            if raw.starts_with('#') || raw.trim().is_empty() {
                continue;
            }
            let one = IgnoreRules::parse(raw)?;
            let Some(cleaned) = one.lines().into_iter().next() else { continue };
            let (exception, pattern) = match cleaned.strip_prefix('!') {
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned),
            };
            let alone = IgnoreRules::from_patterns([pattern.as_str()])?;
            lines.push(IgnoreLine { number: i + 1, text: raw.trim().to_string(), exception, alone });
        }
        Ok(IgnoreFile { rules, lines })
    }

    /// The line that decided `path`'s fate (moby's loop: last match wins, an
    /// exclusion only changes an included path and an exception only an
    /// excluded one); `None` when no line matched.
    fn deciding_line(&self, path: &str) -> Option<&IgnoreLine> {
        let mut excluded = false;
        let mut decider = None;
        for line in &self.lines {
            if line.exception != excluded {
                continue;
            }
            if line.alone.is_excluded(path) {
                excluded = !line.exception;
                decider = Some(line);
            }
        }
        decider
    }

    /// "`iopaint/` (line 70)" for the line that excluded `path`.
    fn why_excluded(&self, path: &str) -> String {
        match self.deciding_line(path) {
            Some(line) if !line.exception => format!("pattern `{}` (line {})", line.text, line.number),
            _ => "its patterns".to_string(),
        }
    }
}

// ---------------------------------------------------------------------------
// Dockerfile sources

/// A context path one instruction needs.
#[derive(Debug, Clone, PartialEq)]
struct SourceRef {
    dockerfile: String,
    line: usize,
    /// `COPY`, `ADD` or `RUN --mount=type=bind`.
    instruction: String,
    /// Cleaned, relative to the context root (`.` = everything).
    source: String,
}

/// COPY/ADD sources without `--from` (no URLs, no heredocs) and
/// `RUN --mount=type=bind` sources without `from=`, ARG defaults substituted.
fn context_refs(parsed: &Dockerfile, shown: &str) -> Vec<SourceRef> {
    let mut refs = Vec::new();
    for stage in &parsed.stages {
        let values = parsed.stage_values(stage, &[]);
        let path = |raw: &str| clean_path(dockerfile::expand(raw, &values).trim_start_matches('/'));
        for copy in stage.copies.iter().filter(|c| c.from.is_none()) {
            for source in copy.sources.iter().filter(|s| !s.starts_with("<<") && !is_remote(s)) {
                refs.push(SourceRef {
                    dockerfile: shown.to_string(),
                    line: copy.line,
                    instruction: copy.keyword.clone(),
                    source: path(source),
                });
            }
        }
        for mount in stage.bind_mounts.iter().filter(|m| m.from.is_none()) {
            refs.push(SourceRef {
                dockerfile: shown.to_string(),
                line: mount.line,
                instruction: "RUN --mount=type=bind".into(),
                source: path(&mount.source),
            });
        }
    }
    refs.sort_by_key(|r| r.line);
    refs
}

fn is_remote(source: &str) -> bool {
    ["http://", "https://", "git@", "git://", "ssh://"].iter().any(|p| source.starts_with(p))
}

fn has_glob(source: &str) -> bool {
    source.contains(['*', '?', '['])
}

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Sent; `excluded_below` counts files left out inside it, per pattern line.
    Sent { files: u64, excluded_below: Vec<(String, u64)> },
    /// Not in the context at all: the build would fail with "not found".
    Missing,
    /// The path itself is excluded.
    Excluded { why: String },
    /// It exists but nothing in or under it is sent.
    Emptied { why: Vec<String> },
}

#[derive(Debug, Clone)]
struct SourceCheck {
    source: SourceRef,
    ignore_file: String,
    verdict: Verdict,
}

impl SourceCheck {
    fn failure(&self) -> Option<String> {
        let s = &self.source;
        let at = format!("{}:{} {} source `{}`", s.dockerfile, s.line, s.instruction, s.source);
        match &self.verdict {
            Verdict::Sent { .. } => None,
            Verdict::Missing => Some(format!("{at} is not in the build context at all")),
            Verdict::Excluded { why } => Some(format!("{at} is excluded by {} {why}", self.ignore_file)),
            Verdict::Emptied { why } => {
                Some(format!("{at}: everything in it is excluded by {} {}", self.ignore_file, why.join(", ")))
            }
        }
    }

    fn to_json(&self) -> Value {
        let (status, detail) = match &self.verdict {
            Verdict::Sent { files, excluded_below } => (
                "sent",
                json!({"files": files, "excluded_below": excluded_below.iter().map(|(p, n)| json!({"pattern": p, "files": n})).collect::<Vec<_>>()}),
            ),
            Verdict::Missing => ("missing", Value::Null),
            Verdict::Excluded { why } => ("excluded", json!(why)),
            Verdict::Emptied { why } => ("emptied", json!(why)),
        };
        json!({
            "dockerfile": self.source.dockerfile,
            "line": self.source.line,
            "instruction": self.source.instruction,
            "source": self.source.source,
            "ignore_file": self.ignore_file,
            "status": status,
            "detail": detail,
        })
    }
}

/// Judges one source against the whole context (`everything`) and what is
/// sent (`sent`).
fn check_source(source: SourceRef, everything: &ContextStats, sent: &ContextStats, ignore: &IgnoreFile, ignore_shown: &str) -> SourceCheck {
    let verdict = judge_source(&source.source, everything, sent, ignore);
    SourceCheck { source, ignore_file: ignore_shown.to_string(), verdict }
}

fn judge_source(source: &str, everything: &ContextStats, sent: &ContextStats, ignore: &IgnoreFile) -> Verdict {
    if source == "." {
        return Verdict::Sent { files: sent.files, excluded_below: Vec::new() };
    }
    // "At or under the source": a literal by prefix; a glob with the same
    // matcher (a match on a parent covers what is below it, like COPY does).
    let glob = if has_glob(source) { IgnoreRules::from_patterns([source]).ok() } else { None };
    let under = |path: &str| match &glob {
        Some(rules) => rules.is_excluded(path),
        None => path == source || path.strip_prefix(source).is_some_and(|rest| rest.starts_with('/')),
    };
    let all_files: Vec<&str> = everything.sent.iter().map(|(p, _)| p.as_str()).filter(|p| under(p)).collect();
    let any_dir = everything.dirs.iter().any(|d| under(d));
    if all_files.is_empty() && !any_dir {
        return Verdict::Missing;
    }
    if glob.is_none() && ignore.rules.is_excluded(source) {
        return Verdict::Excluded { why: ignore.why_excluded(source) };
    }
    let sent_paths: BTreeSet<&str> = sent.sent.iter().map(|(p, _)| p.as_str()).collect();
    let sent_files = all_files.iter().filter(|p| sent_paths.contains(**p)).count() as u64;
    let mut below: BTreeMap<String, u64> = BTreeMap::new();
    for path in all_files.iter().filter(|p| !sent_paths.contains(**p)) {
        *below.entry(ignore.why_excluded(path)).or_default() += 1;
    }
    let sent_dir = sent.dirs.iter().any(|d| under(d));
    if sent_files == 0 && (!all_files.is_empty() || !sent_dir) {
        return Verdict::Emptied { why: below.into_keys().collect() };
    }
    let mut excluded_below: Vec<(String, u64)> = below.into_iter().collect();
    excluded_below.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Verdict::Sent { files: sent_files, excluded_below }
}

// ---------------------------------------------------------------------------
// The report

impl Outcome {
    fn report(&self, min_reduction: f64) -> Report {
        let mut report = Report::with_headers(
            format!("dockerignore-check {}", self.context.display()),
            &["build context", "files", "bytes", "measured by"],
        );
        report.add_row([
            Cell::from("without .dockerignore"),
            Cell::from(self.without.files()),
            Cell::bytes(self.without.bytes()),
            Cell::from(self.without.measured_by()),
        ]);
        for with in &self.with {
            let label = if with.exists { format!("with {}", with.ignore_file) } else { format!("with {} (missing)", with.ignore_file) };
            report.add_row([label.into(), Cell::from(with.measure.files()), Cell::bytes(with.measure.bytes()), Cell::from(with.measure.measured_by())]);
            if with.measure.docker.is_some() {
                report.add_row([
                    Cell::from("  the walker's count of it"),
                    Cell::from(with.measure.walker.files),
                    Cell::bytes(with.measure.walker.estimated_transfer_bytes()),
                    Cell::from(if with.measure.disagreement().is_none() { "agrees with Docker" } else { "DISAGREES with Docker" }),
                ]);
            }
            let bytes_pct = reduction_pct(self.without.bytes(), with.measure.bytes());
            let files_pct = reduction_pct(self.without.files(), with.measure.files());
            report.add_row([
                Cell::from("  reduction"),
                Cell::percent(files_pct),
                Cell::percent(bytes_pct),
                Cell::from(format!("minimum {min_reduction}% of bytes")),
            ]);
            if bytes_pct < min_reduction {
                report.fail(format!(
                    "{} removes only {bytes_pct:.1}% of the context's bytes ({} of {}), below --min-reduction {min_reduction}%; largest paths still sent: {}",
                    with.ignore_file,
                    ui::fmt_bytes(with.measure.bytes()),
                    ui::fmt_bytes(self.without.bytes()),
                    with.largest.iter().take(3).map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            for (path, bytes) in &with.largest {
                let files = with.measure.walker.sent.iter().filter(|(p, _)| p == path || (path.ends_with('/') && p.starts_with(path.as_str()))).count() as u64;
                report.add_row([Cell::from(format!("  sent: {path}")), Cell::from(files), Cell::bytes(*bytes), Cell::from("")]);
            }
            if let Some(problem) = with.measure.disagreement() {
                report.fail(format!(
                    "the walker (xtask/src/dockerignore.rs) disagrees with Docker about {}: {problem}",
                    with.ignore_file
                ));
            }
            if !with.secrets.is_empty() {
                let list: Vec<String> = with.secrets.iter().map(|(p, rule)| format!("{p} ({rule})")).collect();
                report.fail(format!(
                    "secret-looking files would be sent to the engine: {}; add them to {}",
                    list.join(", "),
                    with.ignore_file
                ));
            }
        }
        if let Some(problem) = self.without.disagreement() {
            report.fail(format!("the walker disagrees with Docker about the whole context: {problem}"));
        }
        for source in &self.sources {
            if let Some(why) = source.failure() {
                report.fail(why);
            }
        }

        let total = self.sources.len();
        let bad = self.sources.iter().filter(|s| s.failure().is_some()).count();
        let dockerfiles: BTreeSet<&str> = self.sources.iter().map(|s| s.source.dockerfile.as_str()).collect();
        report.note(format!(
            "Dockerfile sources: {total} COPY/ADD/bind-mount sources from the context in {} checked, {bad} excluded or missing",
            dockerfiles.into_iter().collect::<Vec<_>>().join(", ")
        ));
        // Both Dockerfiles bind-mount iopaint/ and copy web_app/: say it once.
        let mut told = BTreeSet::new();
        for source in &self.sources {
            if let Verdict::Sent { excluded_below, .. } = &source.verdict {
                if !excluded_below.is_empty() && told.insert((&source.ignore_file, &source.source.source)) {
                    let parts: Vec<String> = excluded_below.iter().map(|(why, n)| format!("{n} by {why}")).collect();
                    report.note(format!("  `{}` is sent without {} files: {}", source.source.source, excluded_below.iter().map(|(_, n)| n).sum::<u64>(), parts.join(", ")));
                }
            }
        }
        let secrets: usize = self.with.iter().map(|w| w.secrets.len()).sum();
        report.note(format!("secret-looking paths sent (.env*, *.pem, *.key, id_rsa*, .git/): {secrets}"));
        if let Some(why) = &self.without.not_sent_because {
            report.note(format!("without .dockerignore: {why}"));
        }
        report.note(format!(
            "bytes = BuildKit's `transferring context` (content plus framing) from a fresh-session FROM scratch + COPY . /ctx build; files = entries Docker exported; checked in {}",
            ui::fmt_duration(self.elapsed)
        ));

        report.fact("context", self.context.display().to_string());
        report.fact("sender", format!("{:?}", self.sender));
        report.fact("min_reduction_pct", min_reduction);
        report.fact("without", self.without.to_json());
        report.fact(
            "with",
            Value::Array(
                self.with
                    .iter()
                    .map(|w| {
                        json!({
                            "ignore_file": w.ignore_file,
                            "exists": w.exists,
                            "dockerfiles": w.dockerfiles,
                            "measure": w.measure.to_json(),
                            "reduction_bytes_pct": (reduction_pct(self.without.bytes(), w.measure.bytes()) * 100.0).round() / 100.0,
                            "reduction_files_pct": (reduction_pct(self.without.files(), w.measure.files()) * 100.0).round() / 100.0,
                            "secrets": w.secrets.iter().map(|(p, r)| json!({"path": p, "rule": r})).collect::<Vec<_>>(),
                            "largest": w.largest.iter().map(|(p, b)| json!({"path": p, "bytes": b})).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ),
        );
        report.fact("sources", Value::Array(self.sources.iter().map(SourceCheck::to_json).collect()));
        report.fact("seconds", (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0);
        report
    }
}

// ---------------------------------------------------------------------------
// Integration checks (real engine)

fn check_passes_on_checkout(_env: &Env) -> Result<()> {
    let started = Instant::now();
    let run = testkit::xtask(["dockerignore-check", "--json"])?;
    run.expect_success()?;
    let report: Value = serde_json::from_str(&run.stdout).context("dockerignore-check --json printed no JSON report")?;
    let with = &report["facts"]["with"][0]["measure"];
    if with["docker"]["transfer_bytes"].as_u64().is_none() {
        bail!("the report carries no Docker `transferring context` figure: {with}");
    }
    if with["agrees"] != Value::Bool(true) {
        bail!("the walker and Docker disagree on this checkout: {with}");
    }
    if started.elapsed() > Duration::from_secs(60) {
        bail!("dockerignore-check took {} on this checkout, over a minute", ui::fmt_duration(started.elapsed()));
    }
    Ok(())
}

fn check_planted_iopaint_exclude(_env: &Env) -> Result<()> {
    let fixture = app_fixture("dockerignore-iopaint")?;
    let ignore = fixture.path().join(".dockerignore");
    let mut text = fs::read_to_string(&ignore)?;
    text.push_str("\n# planted fault\niopaint/\n");
    fs::write(&ignore, text)?;
    let context = fixture.path().display().to_string();
    let run = testkit::xtask(["dockerignore-check", "--context", &context])?;
    run.expect_failure_mentioning("is excluded by .dockerignore pattern `iopaint/`")?;
    run.expect_failure_mentioning("source `iopaint/pyproject.toml`")?;
    run.expect_failure_mentioning("source `iopaint`")
}

fn check_planted_secrets(_env: &Env) -> Result<()> {
    let fixture = app_fixture("dockerignore-secrets")?;
    let ignore = fixture.path().join(".dockerignore");
    // The app's .dockerignore without its secret rules.
    let kept: Vec<String> = fs::read_to_string(&ignore)?
        .lines()
        .filter(|l| !(l.contains(".env") || l.contains("id_rsa")))
        .map(str::to_string)
        .collect();
    fs::write(&ignore, kept.join("\n") + "\n")?;
    write_file(fixture.path(), ".env", b"API_TOKEN=planted\n")?;
    write_file(fixture.path(), "deploy/id_rsa", b"-----BEGIN OPENSSH PRIVATE KEY-----\nplanted\n")?;
    let context = fixture.path().display().to_string();
    let run = testkit::xtask(["dockerignore-check", "--context", &context])?;
    run.expect_failure_mentioning("secret-looking files would be sent")?;
    run.expect_failure_mentioning(".env (.env*)")?;
    run.expect_failure_mentioning("deploy/id_rsa (id_rsa*)")
}

/// A copy of what the Dockerfiles need from the checkout (the files the real
/// .dockerignore lets through, the Dockerfiles, .dockerignore) plus a few of
/// the dirs a contributor's checkout has, so the reduction stays realistic.
fn app_fixture(label: &str) -> Result<ScratchDir> {
    let root = project::root();
    let rules = IgnoreRules::from_file(&root.join(".dockerignore"))?;
    let sent = dockerignore::walk_context(&root, &rules)?;
    let dir = ScratchDir::new(label)?;
    let mut wanted: Vec<String> = sent.sent.iter().map(|(p, _)| p.clone()).collect();
    wanted.extend([".dockerignore".to_string(), DEFAULT_DOCKERFILES[0].to_string(), DEFAULT_DOCKERFILES[1].to_string()]);
    for rel in wanted {
        let from = root.join(&rel);
        let to = dir.path().join(&rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        if fs::symlink_metadata(&from)?.is_file() {
            fs::copy(&from, &to).with_context(|| format!("copying {} into the fixture", from.display()))?;
        }
    }
    let junk = vec![b'x'; 1 << 20];
    for rel in ["target/debug/xtask", "target/venv/lib/libbig.so", "web_app/node_modules/react/index.js", "iopaint/__pycache__/api.cpython-311.pyc"] {
        write_file(dir.path(), rel, &junk)?;
    }
    write_file(dir.path(), ".git/HEAD", b"ref: refs/heads/main\n")?;
    Ok(dir)
}

fn write_file(root: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The tricky fixture: every rule of moby's matcher that a .dockerignore can
/// lean on, and names that stress it.
const TRICKY_IGNORE: &str = "\
# comment: `#` in column 1
*.md
!README.md
docs
!docs/README.md
**/*.pyc
**/__pycache__
/build/
!build/keep.txt
*.log
logs/**
!logs/keep/
nested/**/*.bin
parent
!parent/child/file.txt
dir?
[ab]c.txt
.hidden*
!.hiddenkeep
space name.txt   
sub/*/only.txt
weird\\[1\\].txt
excluded-empty
vendor
a/**/z
  # not a comment: a pattern that starts with `#`
./dot/./slash//x.txt
!**/important.log
";

const TRICKY_FILES: &[&str] = &[
    "README.md",
    "notes.md",
    "sub/notes.md",
    "docs/README.md",
    "docs/guide.md",
    "docs/sub/deep.md",
    "app/main.py",
    "app/x.pyc",
    "app/sub/y.pyc",
    "x.pyc",
    "app/__pycache__/m.cpython-311.pyc",
    "build/out.o",
    "build/keep.txt",
    "app/build/inner.o",
    "a.log",
    "important.log",
    "app/important.log",
    "logs/a.log",
    "logs/important.log",
    "logs/keep/b.log",
    "nested/x.bin",
    "nested/a/x.bin",
    "nested/a/b/c/d.bin",
    "nested/a/b/c/d.txt",
    "parent/sibling.txt",
    "parent/child/file.txt",
    "parent/child/other.txt",
    "parent/child/important.log",
    "docs/important.log",
    "dir1/x",
    "dir10/x",
    "dirA/x",
    "ac.txt",
    "bc.txt",
    "cc.txt",
    ".hidden",
    ".hiddenkeep",
    ".hidden.d/inner",
    "space name.txt",
    "sub/one/only.txt",
    "sub/one/two/only.txt",
    "weird[1].txt",
    "weird1.txt",
    "vendor/lib.js",
    "vendor/important.log",
    "a/z",
    "a/b/c/z",
    "a/b/z/inside",
    "a/zz",
    "# not a comment: a pattern that starts with `#`",
    "dot/slash/x.txt",
    "dot/slash/y.txt",
    "café/ünïcode.txt",
    "deep/er/still/deeper/file.txt",
];

fn check_walker_matches_docker(env: &Env) -> Result<()> {
    let fixture = ScratchDir::new("dockerignore-tricky")?;
    let root = fixture.path();
    for (i, rel) in TRICKY_FILES.iter().enumerate() {
        write_file(root, rel, format!("{rel}\n{}", "x".repeat(i * 37)).as_bytes())?;
    }
    fs::create_dir_all(root.join("emptydir"))?;
    fs::create_dir_all(root.join("excluded-empty"))?;
    #[cfg(unix)]
    std::os::unix::fs::symlink("app/main.py", root.join("link-to-main"))?;
    fs::write(root.join(".dockerignore"), TRICKY_IGNORE)?;

    let sender = sender_for(env.docker.frontend);
    let ignore = IgnoreFile::parse(TRICKY_IGNORE)?;
    let walked = dockerignore::walk_context_with(root, &ignore.rules, WalkOptions { sender, ..Default::default() })?;
    let count = probe(&env.docker, root, TRICKY_IGNORE.as_bytes(), &walked)?;
    if !count.diff.is_empty() {
        bail!("the walker and `docker build` disagree on the tricky fixture: {}", count.diff.describe(50));
    }
    // The fixture is only a test if the rules really cut something.
    let everything = dockerignore::walk_context(root, &IgnoreRules::default())?;
    if walked.files * 2 > everything.files || walked.files < 10 {
        bail!("the tricky fixture sent {} of {} files: the patterns no longer test much", walked.files, everything.files);
    }
    if let Some(sent) = count.transfer_bytes {
        let estimate = walked.estimated_transfer_bytes();
        if !within_tolerance(sent, estimate) {
            bail!("Docker transferred {sent} bytes of the tricky fixture, the walker estimates {estimate}");
        }
    }
    // And the empty ignore file sends everything (the "without" probe's premise).
    let all = probe(&env.docker, root, NO_PATTERNS.as_bytes(), &everything)?;
    if !all.diff.is_empty() {
        bail!("with an empty <Dockerfile>.dockerignore Docker did not send the whole context: {}", all.diff.describe(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(files: &[(&str, u64)], dirs: &[&str]) -> ContextStats {
        ContextStats {
            files: files.len() as u64,
            bytes: files.iter().map(|(_, b)| b).sum(),
            sent: files.iter().map(|(p, b)| (p.to_string(), *b)).collect(),
            dirs: dirs.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn deciding_line_names_the_pattern_and_its_line() {
        let file = IgnoreFile::parse("# c\n\ntarget\n*.md\n!README.md\n**/node_modules\niopaint/\n").unwrap();
        let line = |p: &str| file.deciding_line(p).map(|l| (l.number, l.text.as_str(), l.exception));
        assert_eq!(line("target/debug/x"), Some((3, "target", false)));
        assert_eq!(line("README.md"), Some((5, "!README.md", true)));
        assert_eq!(line("web_app/node_modules/react/index.js"), Some((6, "**/node_modules", false)));
        assert_eq!(line("iopaint/pyproject.toml"), Some((7, "iopaint/", false)));
        assert_eq!(line("web_app/src/main.tsx"), None);
        assert_eq!(file.why_excluded("iopaint"), "pattern `iopaint/` (line 7)");
        assert_eq!(file.why_excluded("README.md"), "its patterns");
        // Agrees with the whole-file matcher on every path.
        for p in ["target", "a.md", "README.md", "x/README.md", "iopaint/api.py", "web_app/node_modules"] {
            let by_line = file.deciding_line(p).is_some_and(|l| !l.exception);
            assert_eq!(by_line, file.rules.is_excluded(p), "{p}");
        }
    }

    #[test]
    fn deciding_line_follows_moby_order() {
        // An exception before the exclusion it would undo does nothing.
        let file = IgnoreFile::parse("!keep.md\n*.md\n").unwrap();
        assert_eq!(file.deciding_line("keep.md").map(|l| l.number), Some(2));
        // The later of two exclusions is named.
        let file = IgnoreFile::parse("\u{feff}docs\ndocs/*.md\n").unwrap();
        assert_eq!(file.deciding_line("docs/a.md").map(|l| l.number), Some(1));
        assert!(IgnoreFile::parse("ok\n!\n").is_err());
    }

    #[test]
    fn dockerfile_sources_honour_from_and_args() {
        let text = "\
ARG APP=iopaint
FROM node:18 AS web
COPY web_app/package.json web_app/package-lock.json ./
COPY ./web_app/ ./
ADD https://example.com/x.tgz /x.tgz
FROM python:3.11 AS py
ARG APP
COPY ${APP}/pyproject.toml /build/
COPY --from=web /build/dist /dist
COPY --from=busybox /bin/sh /sh
RUN --mount=type=bind,source=${APP},target=/src \\
    --mount=type=bind,from=web,source=/build/dist,target=/dist \\
    --mount=type=cache,target=/root/.cache \\
    true
RUN --mount=type=bind,target=/all true
COPY <<EOF /etc/x
hi
EOF
";
        let parsed = Dockerfile::parse(text).unwrap();
        let refs: Vec<(usize, String, String)> =
            context_refs(&parsed, "D").into_iter().map(|r| (r.line, r.instruction, r.source)).collect();
        assert_eq!(
            refs,
            [
                (3, "COPY".into(), "web_app/package.json".into()),
                (3, "COPY".into(), "web_app/package-lock.json".into()),
                (4, "COPY".into(), "web_app".into()),
                (8, "COPY".into(), "iopaint/pyproject.toml".into()),
                (11, "RUN --mount=type=bind".into(), "iopaint".into()),
                (15, "RUN --mount=type=bind".into(), ".".into()),
            ]
        );
    }

    #[test]
    fn sources_are_judged_against_the_context() {
        let everything = stats(
            &[
                ("iopaint/api.py", 10),
                ("iopaint/pyproject.toml", 5),
                ("iopaint/tests/test_api.py", 7),
                ("web_app/package.json", 1),
                ("web_app/src/main.tsx", 3),
                ("web_app/node_modules/r/index.js", 100),
                ("docs/a.md", 1),
            ],
            &["iopaint", "iopaint/tests", "web_app", "web_app/src", "web_app/node_modules", "web_app/node_modules/r", "docs"],
        );
        let judge = |ignore: &str, source: &str| {
            let file = IgnoreFile::parse(ignore).unwrap();
            let walked: Vec<(&str, u64)> = everything
                .sent
                .iter()
                .filter(|(p, _)| !file.rules.is_excluded(p))
                .map(|(p, b)| (p.as_str(), *b))
                .collect();
            let dirs: Vec<&str> = everything.dirs.iter().map(String::as_str).filter(|d| !file.rules.is_excluded(d)).collect();
            judge_source(source, &everything, &stats(&walked, &dirs), &file)
        };
        let base = "docs\n**/node_modules\niopaint/tests\n";
        assert_eq!(
            judge(base, "iopaint"),
            Verdict::Sent { files: 2, excluded_below: vec![("pattern `iopaint/tests` (line 3)".into(), 1)] }
        );
        assert_eq!(judge(base, "iopaint/pyproject.toml"), Verdict::Sent { files: 1, excluded_below: vec![] });
        assert_eq!(judge(base, "."), Verdict::Sent { files: 4, excluded_below: vec![] });
        assert_eq!(judge(base, "web_app/*.json"), Verdict::Sent { files: 1, excluded_below: vec![] });
        assert_eq!(judge(base, "nowhere"), Verdict::Missing);
        assert_eq!(judge(base, "web_app/*.lock"), Verdict::Missing);
        let planted = format!("{base}iopaint/\n");
        assert_eq!(judge(&planted, "iopaint"), Verdict::Excluded { why: "pattern `iopaint/` (line 4)".into() });
        assert_eq!(
            judge(&planted, "iopaint/pyproject.toml"),
            Verdict::Excluded { why: "pattern `iopaint/` (line 4)".into() }
        );
        // A directory whose every file is excluded by patterns below it.
        assert_eq!(
            judge("web_app/src/*.tsx\n", "web_app/src"),
            Verdict::Emptied { why: vec!["pattern `web_app/src/*.tsx` (line 1)".into()] }
        );
        assert_eq!(
            judge("**/*.json\n", "web_app/*.json"),
            Verdict::Emptied { why: vec!["pattern `**/*.json` (line 1)".into()] }
        );
        // A parent exclusion undone by an exception for the source itself.
        assert_eq!(judge("iopaint\n!iopaint/pyproject.toml\n", "iopaint/pyproject.toml"), Verdict::Sent { files: 1, excluded_below: vec![] });
    }

    #[test]
    fn failures_name_the_path_and_pattern() {
        let check = SourceCheck {
            source: SourceRef { dockerfile: "docker/CPUDockerfile.multistage".into(), line: 64, instruction: "COPY".into(), source: "iopaint/pyproject.toml".into() },
            ignore_file: ".dockerignore".into(),
            verdict: Verdict::Excluded { why: "pattern `iopaint/` (line 70)".into() },
        };
        assert_eq!(
            check.failure().unwrap(),
            "docker/CPUDockerfile.multistage:64 COPY source `iopaint/pyproject.toml` is excluded by .dockerignore pattern `iopaint/` (line 70)"
        );
    }

    #[test]
    fn tree_diff_lists_every_difference() {
        let docker: BTreeMap<String, Entry> =
            [("a", Entry::Dir), ("a/x", Entry::File(3)), ("b", Entry::File(1)), ("c", Entry::File(5))].iter().map(|(p, e)| (p.to_string(), *e)).collect();
        let walker: BTreeMap<String, Entry> =
            [("a", Entry::Dir), ("a/x", Entry::File(3)), ("c", Entry::File(6)), ("d", Entry::Dir)].iter().map(|(p, e)| (p.to_string(), *e)).collect();
        let diff = TreeDiff::between(&docker, &walker);
        assert_eq!(diff.only_docker, ["b"]);
        assert_eq!(diff.only_walker, ["d/"]);
        assert_eq!(diff.size_differs, ["c (docker File(5), walker File(6))"]);
        assert!(diff.describe(5).contains("sent by Docker but not by the walker: b"));
        assert!(TreeDiff::between(&docker, &docker).is_empty());
    }

    #[test]
    fn tolerance_and_reduction() {
        assert!(within_tolerance(180_760, 180_500));
        assert!(within_tolerance(1_000, 4_900));
        assert!(!within_tolerance(1_000_000, 1_020_000));
        assert!(within_tolerance(1_000_000, 1_009_000));
        assert_eq!(reduction_pct(0, 0), 0.0);
        assert_eq!(reduction_pct(200, 50), 75.0);
    }

    #[test]
    fn transfer_line_is_read_from_the_context_step() {
        let log = "#2 [internal] load .dockerignore\n#2 transferring context: 48B done\n#2 DONE 0.0s\n\n#3 [internal] load build context\n#3 transferring context: 180.76kB 0.0s done\n#3 DONE 0.1s\n";
        assert_eq!(BuildLog::from_plain(log).context_transfer_bytes, Some(180_760));
    }

    #[test]
    fn the_tricky_ignore_file_parses() {
        let file = IgnoreFile::parse(TRICKY_IGNORE).unwrap();
        assert!(file.rules.lines().iter().any(|l| l.starts_with('!')));
        assert_eq!(file.lines.len(), file.rules.lines().len());
        assert!(file.rules.is_excluded("# not a comment: a pattern that starts with `#`"));
        assert!(file.rules.is_excluded("space name.txt"));
        assert!(!file.rules.is_excluded("weird1.txt"));
    }
}
