//! `cargo xtask cache-test cpu|gpu`: proves that a one-line change to the app
//! or to the UI re-runs only the layers that need it.
//!
//! 1. Warm build of the flavor's Dockerfile (or `--dockerfile FILE`), tagged
//!    `iopaint:<flavor>-cache-test`: never `-latest`, so a planted Dockerfile
//!    cannot replace the real image. The rebuilds below are left untagged and
//!    removed after measuring (BuildKit's cache outlives the images).
//! 2. Append a unique comment to `iopaint/cli.py`, rebuild, restore; then the
//!    same with `web_app/src/main.tsx`. The comment is unique per run so the
//!    touched build can never be a cache hit of an earlier cache-test.
//! 3. Read each rebuild's BuildKit log per stage. After the Python touch every
//!    step outside the runtime's *app layers* must be CACHED; after the UI
//!    touch every `python-builder` step must be CACHED. Each touch must also
//!    re-run something (else the file never reached the build).
//!
//! *App layers* are the runtime stage's steps from the first instruction that
//! reads the app's Python sources from the build context to the end of the
//! stage: a COPY/ADD without `--from`, or a `RUN --mount=type=bind` without
//! `from=`, whose source is `.`, `iopaint`, or otherwise covers
//! `iopaint/cli.py`. BuildKit numbers a stage's steps FROM=1 then one per
//! RUN/COPY/ADD/WORKDIR, which is how a Dockerfile line maps onto `[runtime i/n]`.
//! The runtime stage is the one named `runtime`, else the last one.
//!
//! Restoring: the touched file gets its exact bytes (the ones read before the
//! touch, so uncommitted edits survive) and its mtime back on success, error,
//! panic (a Drop guard), SIGINT/SIGTERM (a signal-hook thread that restores,
//! stops the docker build and exits 130/143) and even SIGKILL: a backup sits
//! in `target/xtask/cache-test-backup/` while a file is touched, and the next
//! cache-test restores it before anything else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::build::{self, ImageSpec};
use crate::buildkit::BuildLog;
use crate::dockerfile::{Dockerfile, Stage};
use crate::dockerignore::clean_path;
use crate::file_touch::{self, Restored};
use crate::flavor::Flavor;
use crate::report::{Cell, Report};
use crate::setup::{self, Env, SetupOptions};
use crate::testkit::{self, IntegrationCheck, ScratchDir};
use crate::{docker, project, ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct CacheArgs {
    /// cpu or gpu.
    #[arg(value_enum)]
    pub flavor: Flavor,
    /// Fail when a rebuild after a one-line change takes longer than SECS.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub max_rebuild: u64,
    /// Dockerfile to test instead of the flavor's (the context stays the repository root).
    #[arg(long, value_name = "FILE")]
    pub dockerfile: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputOpts,
}

/// A file the test touches and how to comment in it.
#[derive(Clone, Copy, Debug)]
struct Target {
    rel: &'static str,
    comment: &'static str,
    kind: TouchKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TouchKind {
    Python,
    Frontend,
}

/// `cli.py` is named by the contract for this; `main.tsx` is the UI's entry point, the file least likely to be renamed.
const PYTHON_TOUCH: Target = Target { rel: "iopaint/cli.py", comment: "#", kind: TouchKind::Python };
const FRONTEND_TOUCH: Target = Target { rel: "web_app/src/main.tsx", comment: "//", kind: TouchKind::Frontend };

/// The stage whose steps must stay cached after a UI touch.
const DEPENDENCY_STAGE: &str = "python-builder";

pub fn cache_tag(flavor: Flavor) -> String {
    format!("{}:{}-cache-test", crate::flavor::IMAGE_REPO, flavor.name())
}

pub fn run(args: &CacheArgs) -> Result<()> {
    let state = project::state_dir()?;
    let root = project::root();
    // Before anything else: a run killed with SIGKILL left a touched file behind.
    let _lock = RunLock::acquire(&state)?;
    for line in recover_leftovers(&state.join(BACKUP_DIR))? {
        ui::warn(line);
    }
    install_signal_handler()?;
    let _running = RunningFlag::set();

    let flavor = args.flavor;
    let dockerfile_path = match &args.dockerfile {
        Some(p) => std::fs::canonicalize(p).with_context(|| format!("--dockerfile {}: no such file", p.display()))?,
        None => flavor.dockerfile(),
    };
    let dockerfile = Dockerfile::from_file(&dockerfile_path)?;
    let app = find_app_layers(&dockerfile, PYTHON_TOUCH.rel)
        .with_context(|| format!("cannot tell the app layers of {}", dockerfile_path.display()))?;
    if dockerfile.stage(DEPENDENCY_STAGE).is_none() {
        bail!("{} has no `{DEPENDENCY_STAGE}` stage: the cache test checks that stage's steps", dockerfile_path.display());
    }
    for target in [PYTHON_TOUCH, FRONTEND_TOUCH] {
        if !root.join(target.rel).is_file() {
            bail!("{} is missing: the cache test appends a comment to it", target.rel);
        }
    }

    let env = setup::ensure(&SetupOptions::default())?;
    let version = project::app_version()?;
    let build_args = build::flavor_build_args(&env, flavor, &version, &[]);
    let tag = cache_tag(flavor);
    let spec = |tags: Vec<String>, echo: bool| ImageSpec {
        dockerfile: dockerfile_path.clone(),
        context: root.clone(),
        tags,
        build_args: build_args.clone(),
        no_cache: false,
        echo,
        ..Default::default()
    };

    ui::info(format!("warm build of {tag} from {}", display_rel(&dockerfile_path)));
    let warm = build::build_image(&env, flavor, &spec(vec![tag.clone()], true)).context("the warm build failed")?;
    let warm_log = BuildLog::from_plain(&warm.log);
    let (warm_cached, warm_total) = warm_log.cached_count();
    ui::ok(format!("warm build: {} ({warm_cached}/{warm_total} steps cached)", ui::fmt_duration(warm.elapsed)));

    let mut report = Report::with_headers(
        format!("cache-test {}", flavor.name()),
        &["build", "time", "stage", "cached", "ran", "steps that ran", "verdict"],
    );
    report.add_row(vec![
        Cell::from("warm build"),
        Cell::seconds(warm.elapsed.as_secs_f64()),
        Cell::from("all"),
        Cell::from(warm_cached as u64),
        Cell::from((warm_total - warm_cached) as u64),
        Cell::from(""),
        Cell::from("-"),
    ]);
    report.note(format!(
        "app layers: {} steps {}/{} onward, from line {} `{}` (the first runtime instruction that reads {} from the build context)",
        app.stage, app.first_index, app.total, app.line, short(&app.instruction, 60), PYTHON_TOUCH.rel
    ));

    let mut rebuilds = Vec::new();
    for target in [PYTHON_TOUCH, FRONTEND_TOUCH] {
        let marker = unique_marker();
        ui::info(format!("appending a comment to {} and rebuilding", target.rel));
        // Keep the file touched as briefly as possible: not while queued behind another build.
        // Best effort: an unreadable lock file only costs the wait, the build still locks.
        let _ = docker::wait_for_builds();
        let rebuilt = {
            let _touched = begin_touch(&root.join(target.rel), target.rel, target.comment, &marker, &state.join(BACKUP_DIR))?;
            build::build_image(&env, flavor, &spec(Vec::new(), false))
                .with_context(|| format!("the rebuild after touching {} failed", target.rel))
            // `_touched` drops here: the file is restored before anything else happens.
        }?;
        let log_path = state.join(format!("cache-test-{}-{}.log", flavor.name(), file_stem(target.rel)));
        std::fs::write(&log_path, &rebuilt.log).ok();
        let steps = step_runs(&BuildLog::from_plain(&rebuilt.log));
        let verdict = match target.kind {
            TouchKind::Python => check_python_touch(&steps, &app, target.rel),
            TouchKind::Frontend => check_frontend_touch(&steps, &app, target.rel),
        };
        let mut problems = verdict.problems.clone();
        if rebuilt.elapsed > Duration::from_secs(args.max_rebuild) {
            problems.push(format!(
                "the rebuild after touching {} took {}, over --max-rebuild {}s",
                target.rel,
                ui::fmt_duration(rebuilt.elapsed),
                args.max_rebuild
            ));
        }
        ui::info(format!(
            "rebuild after touching {}: {} ({})",
            target.rel,
            ui::fmt_duration(rebuilt.elapsed),
            if problems.is_empty() { "as expected" } else { "NOT as expected" }
        ));
        add_rows(&mut report, target.rel, rebuilt.elapsed, &verdict);
        for note in &verdict.notes {
            report.note(note.clone());
        }
        for problem in &problems {
            report.fail(problem.clone());
        }
        rebuilds.push(json!({
            "touched": target.rel,
            "seconds": round_ms(rebuilt.elapsed),
            "image_id": rebuilt.image_id,
            "log": log_path.display().to_string(),
            "stages": verdict.stages_json(),
            "passed": problems.is_empty(),
            "problems": problems,
        }));
        if rebuilt.image_id != warm.image_id {
            remove_untagged(&env, &rebuilt.image_id);
        }
    }

    report.note(format!(
        "warm image: {tag} ({}); rebuild images removed; logs: {}",
        build::short_id(&warm.image_id),
        display_rel(&state.join(format!("cache-test-{}-*.log", flavor.name())))
    ));
    report.fact("flavor", flavor.name());
    report.fact("dockerfile", dockerfile_path.display().to_string());
    report.fact("max_rebuild_seconds", args.max_rebuild);
    report.fact(
        "warm",
        json!({
            "tag": tag,
            "image_id": warm.image_id,
            "seconds": round_ms(warm.elapsed),
            "steps_cached": warm_cached,
            "steps_total": warm_total,
        }),
    );
    report.fact(
        "app_layers",
        json!({
            "stage": app.stage,
            "from_step": app.first_index,
            "steps": app.total,
            "line": app.line,
            "instruction": app.instruction,
        }),
    );
    report.fact("rebuilds", Value::Array(rebuilds));
    report.finish(&args.out)
}

fn add_rows(report: &mut Report, touched: &str, elapsed: Duration, verdict: &Verdict) {
    for (i, stage) in verdict.stages.iter().enumerate() {
        let ran: Vec<String> = stage.ran.iter().map(|s| format!("[{}/{}] {}", s.index, s.total, short(&s.instruction, 36))).collect();
        let mut shown = ran.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        if ran.len() > 3 {
            shown.push_str(&format!("; +{} more", ran.len() - 3));
        }
        report.add_row(vec![
            Cell::from(if i == 0 { format!("touch {touched}") } else { String::new() }),
            if i == 0 { Cell::seconds(elapsed.as_secs_f64()) } else { Cell::from("") },
            Cell::from(stage.label.clone()),
            Cell::from(stage.cached as u64),
            Cell::from(stage.ran.len() as u64),
            Cell::new(shown, json!(ran)),
            Cell::from(stage.verdict.clone()),
        ]);
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn display_rel(path: &Path) -> String {
    path.strip_prefix(project::root()).unwrap_or(path).display().to_string()
}

fn file_stem(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).replace('.', "-")
}

fn short(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

/// Removes a rebuild's image when nothing else tags it (a concurrent
/// `cargo xtask build` may have produced the same id).
fn remove_untagged(env: &Env, image_id: &str) {
    if let Ok(tags) = env.docker.image_inspect(image_id, "{{len .RepoTags}}") {
        if tags.trim() == "0" {
            env.docker.remove_image(image_id);
        }
    }
}

/// A comment no earlier build has seen, so the touched build is never a cache hit.
fn unique_marker() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

// ---------------------------------------------------------------------------
// App layers and verdicts (pure)

/// Where the runtime stage's app layers start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLayers {
    /// The stage as BuildKit names it (`runtime`, or `stage-N` when unnamed).
    pub stage: String,
    /// BuildKit's step index of the first app layer (`[runtime 4/5]` -> 4).
    pub first_index: u32,
    /// BuildKit's step count of the stage (`/5`).
    pub total: u32,
    /// Dockerfile line of that instruction.
    pub line: usize,
    pub instruction: String,
}

/// BuildKit's name for a stage in progress lines.
fn stage_label(stage: &Stage) -> String {
    stage.name.clone().unwrap_or_else(|| format!("stage-{}", stage.index))
}

/// The instructions BuildKit turns into numbered steps (FROM is step 1).
fn is_numbered_step(keyword: &str) -> bool {
    matches!(keyword, "RUN" | "COPY" | "ADD" | "WORKDIR")
}

/// Finds the runtime stage's app layers: see the module docs.
pub fn find_app_layers(dockerfile: &Dockerfile, app_file: &str) -> Result<AppLayers> {
    let stage = dockerfile
        .stage("runtime")
        .or_else(|| dockerfile.stages.last())
        .context("the Dockerfile has no FROM")?;
    let mut index = 1u32;
    let mut first: Option<(u32, usize, String)> = None;
    for instruction in &stage.instructions {
        if !is_numbered_step(&instruction.keyword) {
            continue;
        }
        index += 1;
        if first.is_some() {
            continue;
        }
        let reads_app = match instruction.keyword.as_str() {
            "COPY" | "ADD" => stage
                .copies
                .iter()
                .filter(|c| c.line == instruction.line && c.from.is_none())
                .any(|c| c.sources.iter().any(|s| covers(s, app_file))),
            "RUN" => stage
                .bind_mounts
                .iter()
                .filter(|m| m.line == instruction.line && m.from.is_none())
                .any(|m| covers(&m.source, app_file)),
            _ => false,
        };
        if reads_app {
            first = Some((index, instruction.line, format!("{} {}", instruction.keyword, instruction.arguments)));
        }
    }
    let label = stage_label(stage);
    let Some((first_index, line, instruction)) = first else {
        bail!(
            "no instruction of stage `{label}` reads {app_file} from the build context (a COPY of iopaint/ or a \
             RUN --mount=type=bind,source=iopaint): the image would not contain the app"
        );
    };
    Ok(AppLayers { stage: label, first_index, total: index, line, instruction })
}

/// Does a COPY/bind source (`.`, `iopaint/`, `iopaint/*.py`...) include `file`?
pub fn covers(source: &str, file: &str) -> bool {
    let source = clean_path(source.trim_start_matches('/'));
    if source == "." {
        return true;
    }
    let parts: Vec<&str> = file.split('/').collect();
    (1..=parts.len()).any(|n| glob_match(&source, &parts[..n].join("/")))
}

/// Go's `filepath.Match` for `*` and `?` (neither crosses `/`), which COPY uses.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).take_while(|&i| i == 0 || t[i - 1] != '/').any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && t[0] != '/' && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// One Dockerfile step of a build, as the verdicts need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRun {
    pub stage: String,
    pub index: u32,
    pub total: u32,
    pub instruction: String,
    pub cached: bool,
}

/// Dockerfile steps of a build, FROM steps left out (they resolve the base
/// image and never say CACHED for a stage reliably: BuildKit shares the vertex).
pub fn step_runs(log: &BuildLog) -> Vec<StepRun> {
    let mut runs: Vec<StepRun> = log
        .dockerfile_steps()
        .filter(|s| !s.is_from())
        .filter_map(|s| {
            let p = s.position.as_ref()?;
            Some(StepRun {
                stage: p.stage.clone(),
                index: p.index,
                total: p.total,
                instruction: s.instruction().to_string(),
                cached: s.is_cached(),
            })
        })
        .collect();
    runs.sort_by(|a, b| (a.stage.as_str(), a.index).cmp(&(b.stage.as_str(), b.index)));
    runs.dedup_by(|a, b| a.stage == b.stage && a.index == b.index);
    runs
}

/// One table line: a stage (or the runtime split into dependencies and app layers).
#[derive(Debug, Clone, PartialEq)]
pub struct StageLine {
    pub label: String,
    pub cached: usize,
    pub ran: Vec<StepRun>,
    pub verdict: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub stages: Vec<StageLine>,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

impl Verdict {
    fn stages_json(&self) -> Value {
        Value::Array(
            self.stages
                .iter()
                .map(|s| {
                    json!({
                        "stage": s.label,
                        "cached": s.cached,
                        "ran": s.ran.iter().map(|r| json!({"step": format!("{}/{}", r.index, r.total), "instruction": r.instruction})).collect::<Vec<_>>(),
                        "verdict": s.verdict,
                    })
                })
                .collect(),
        )
    }
}

fn is_app_layer(step: &StepRun, app: &AppLayers) -> bool {
    step.stage == app.stage && step.index >= app.first_index
}

/// Groups steps by stage in order of appearance, the runtime split in two.
fn stage_lines<'a>(steps: &'a [StepRun], app: &AppLayers) -> Vec<(String, Vec<&'a StepRun>)> {
    let mut groups: Vec<(String, Vec<&StepRun>)> = Vec::new();
    let app_label = format!("{} app layers (≥{})", app.stage, app.first_index);
    let deps_label = format!("{} before app", app.stage);
    let mut ordered: Vec<&StepRun> = steps.iter().collect();
    // Runtime last: it is the stage the others feed.
    ordered.sort_by_key(|s| (s.stage == app.stage, s.stage == app.stage && is_app_layer(s, app)));
    for step in ordered {
        let label = if step.stage != app.stage {
            step.stage.clone()
        } else if is_app_layer(step, app) {
            app_label.clone()
        } else {
            deps_label.clone()
        };
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, list)) => list.push(step),
            None => groups.push((label, vec![step])),
        }
    }
    groups
}

fn describe_ran(ran: &[&StepRun]) -> String {
    ran.iter().map(|s| format!("{}/{} `{}`", s.index, s.total, short(&s.instruction, 70))).collect::<Vec<_>>().join(", ")
}

fn mismatched_total(steps: &[StepRun], app: &AppLayers) -> Option<String> {
    let seen = steps.iter().find(|s| s.stage == app.stage && s.total != app.total)?;
    Some(format!(
        "BuildKit counts {} steps in stage {}, the Dockerfile parse counts {}: the app layers cannot be located",
        seen.total, app.stage, app.total
    ))
}

/// After the Python touch: everything outside the app layers CACHED, and
/// at least one app layer ran.
pub fn check_python_touch(steps: &[StepRun], app: &AppLayers, touched: &str) -> Verdict {
    let mut verdict = Verdict::default();
    if let Some(problem) = mismatched_total(steps, app) {
        verdict.problems.push(problem);
    }
    for (label, group) in stage_lines(steps, app) {
        let ran: Vec<&StepRun> = group.iter().copied().filter(|s| !s.cached).collect();
        let app_group = group.iter().all(|s| is_app_layer(s, app));
        let line_verdict = if app_group {
            if ran.is_empty() {
                verdict.problems.push(format!(
                    "touching {touched} re-ran none of the app layers: the change never reached the image \
                     (is {touched} excluded by .dockerignore?)"
                ));
                "FAIL: nothing ran".to_string()
            } else {
                "ran (allowed)".to_string()
            }
        } else if ran.is_empty() {
            "ok".to_string()
        } else {
            let stage = group[0].stage.clone();
            let what = if stage == app.stage { format!("{stage} steps before the app layers") } else { format!("{stage} steps") };
            verdict.problems.push(format!(
                "{what} re-ran after touching {touched}: {}; only the app layers ({} step {}/{} onward) may run",
                describe_ran(&ran),
                app.stage,
                app.first_index,
                app.total
            ));
            "FAIL: re-ran".to_string()
        };
        verdict.stages.push(StageLine {
            label,
            cached: group.len() - ran.len(),
            ran: ran.into_iter().cloned().collect(),
            verdict: line_verdict,
        });
    }
    if !verdict.stages.iter().any(|s| s.label.starts_with(&format!("{} app layers", app.stage))) {
        verdict.problems.push(format!("the rebuild after touching {touched} showed no step of stage {}", app.stage));
    }
    verdict
}

/// After the UI touch: every python-builder step CACHED, and something ran.
pub fn check_frontend_touch(steps: &[StepRun], app: &AppLayers, touched: &str) -> Verdict {
    let mut verdict = Verdict::default();
    if let Some(problem) = mismatched_total(steps, app) {
        verdict.problems.push(problem);
    }
    for (label, group) in stage_lines(steps, app) {
        let ran: Vec<&StepRun> = group.iter().copied().filter(|s| !s.cached).collect();
        let stage = group[0].stage.clone();
        let line_verdict = if stage == DEPENDENCY_STAGE {
            if ran.is_empty() {
                "ok".to_string()
            } else {
                verdict.problems.push(format!(
                    "{DEPENDENCY_STAGE} steps re-ran after touching {touched}: {}; the dependency install must not \
                     depend on the UI sources",
                    describe_ran(&ran)
                ));
                "FAIL: re-ran".to_string()
            }
        } else if ran.is_empty() {
            "ok".to_string()
        } else {
            if stage == app.stage && !group.iter().all(|s| is_app_layer(s, app)) {
                verdict.notes.push(format!(
                    "after touching {touched}, {} steps before the app layers re-ran (allowed, but slower): {}",
                    app.stage,
                    describe_ran(&ran)
                ));
            }
            "ran (allowed)".to_string()
        };
        verdict.stages.push(StageLine {
            label,
            cached: group.len() - ran.len(),
            ran: ran.into_iter().cloned().collect(),
            verdict: line_verdict,
        });
    }
    if !verdict.stages.iter().any(|s| s.label == DEPENDENCY_STAGE) {
        verdict.problems.push(format!("the rebuild after touching {touched} showed no {DEPENDENCY_STAGE} step"));
    }
    if steps.iter().all(|s| s.cached) {
        verdict.problems.push(format!(
            "touching {touched} re-ran nothing: the change never reached the build (is it excluded by .dockerignore?)"
        ));
    }
    verdict
}

// ---------------------------------------------------------------------------
// Touching and restoring files

const BACKUP_DIR: &str = "cache-test-backup";
/// Starts every comment the test appends.
const COMMENT_TAG: &str = "xtask cache-test";

/// A touched file: what to put back, and where its crash-safe backup is.
#[derive(Debug, Clone)]
struct Touch {
    path: PathBuf,
    rel: String,
    original: Vec<u8>,
    mtime: SystemTime,
    appended: Vec<u8>,
    backup_bytes: PathBuf,
    backup_meta: PathBuf,
}

impl Touch {
    /// Reads the file and writes its backup (bytes first, then the metadata
    /// that makes the backup count), both synced to disk.
    fn prepare(path: &Path, rel: &str, comment: &str, marker: &str, backup_dir: &Path) -> Result<Touch> {
        let original = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mtime = std::fs::metadata(path)?.modified().context("reading the mtime")?;
        let appended = file_touch::appended_bytes(
            &original,
            &format!("{comment} {COMMENT_TAG} {marker}: temporary line, removed automatically\n"),
        );
        std::fs::create_dir_all(backup_dir).with_context(|| format!("creating {}", backup_dir.display()))?;
        let slug = rel.replace('/', "__");
        let touch = Touch {
            path: path.to_path_buf(),
            rel: rel.to_string(),
            original,
            mtime,
            appended,
            backup_bytes: backup_dir.join(format!("{slug}.orig")),
            backup_meta: backup_dir.join(format!("{slug}.json")),
        };
        let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        let meta = json!({
            "path": path.display().to_string(),
            "rel": rel,
            "mtime_secs": since.as_secs(),
            "mtime_nanos": since.subsec_nanos(),
            "appended": String::from_utf8_lossy(&touch.appended),
            "pid": std::process::id(),
            "pid_start": process_start(std::process::id()),
        });
        write_synced(&touch.backup_bytes, &touch.original)?;
        write_synced(&touch.backup_meta, serde_json::to_string_pretty(&meta)?.as_bytes())?;
        Ok(touch)
    }

    fn touched(&self) -> Vec<u8> {
        let mut bytes = self.original.clone();
        bytes.extend_from_slice(&self.appended);
        bytes
    }

    fn apply(&self) -> Result<()> {
        std::fs::write(&self.path, self.touched()).with_context(|| format!("appending a comment to {}", self.path.display()))
    }

    /// Puts the file back (see [`Restored`]) and then drops the backup.
    fn restore(&self) -> Result<Restored> {
        let times = file_touch::Times { accessed: None, modified: self.mtime };
        let outcome = file_touch::restore(&self.path, &self.original, &self.appended, times)?;
        let _ = std::fs::remove_file(&self.backup_meta);
        let _ = std::fs::remove_file(&self.backup_bytes);
        Ok(outcome)
    }

    /// A backup left behind: the metadata file and the bytes beside it.
    fn from_backup(meta_path: &Path) -> Result<(Touch, u32, Option<u64>)> {
        let meta: Value = serde_json::from_slice(&std::fs::read(meta_path)?)
            .with_context(|| format!("{} is not JSON", meta_path.display()))?;
        let text = |k: &str| meta.get(k).and_then(Value::as_str).map(str::to_string).with_context(|| format!("no {k} in {}", meta_path.display()));
        let number = |k: &str| meta.get(k).and_then(Value::as_u64).with_context(|| format!("no {k} in {}", meta_path.display()));
        let backup_bytes = meta_path.with_extension("orig");
        let original = std::fs::read(&backup_bytes).with_context(|| format!("reading {}", backup_bytes.display()))?;
        let touch = Touch {
            path: PathBuf::from(text("path")?),
            rel: text("rel")?,
            original,
            mtime: UNIX_EPOCH + Duration::new(number("mtime_secs")?, number("mtime_nanos")? as u32),
            appended: text("appended")?.into_bytes(),
            backup_bytes,
            backup_meta: meta_path.to_path_buf(),
        };
        Ok((touch, number("pid")? as u32, meta.get("pid_start").and_then(Value::as_u64)))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn set_mtime(path: &Path, mtime: SystemTime) -> Result<()> {
    file_touch::set_times(path, file_touch::Times { accessed: None, modified: mtime })
}

fn restored_message(touch: &Touch, how: &Restored) -> String {
    match how {
        Restored::Exact => format!("restored {} (bytes and mtime)", touch.rel),
        Restored::OurLineRemoved => format!(
            "{} was edited by someone else during the cache test: removed only the cache-test comment",
            touch.rel
        ),
        Restored::LeftAlone => format!(
            "{} was edited by someone else during the cache test and no longer holds the cache-test comment: left as it is",
            touch.rel
        ),
    }
}

/// Restores what a killed cache-test left touched; returns one line per file.
fn recover_leftovers(backup_dir: &Path) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(backup_dir) else { return Ok(lines) };
    let mut metas: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    metas.sort();
    for meta in metas {
        let (touch, pid, pid_start) = match Touch::from_backup(&meta) {
            Ok(found) => found,
            Err(e) => {
                lines.push(format!("ignoring an unreadable cache-test backup {}: {e:#}", meta.display()));
                continue;
            }
        };
        if still_running(pid, pid_start) {
            bail!("another cache-test (pid {pid}) is running and has touched {}: wait for it to finish", touch.rel);
        }
        let how = touch.restore().with_context(|| format!("restoring {} from {}", touch.rel, meta.display()))?;
        lines.push(format!(
            "a cache-test (pid {pid}) was killed while {} was touched: {} from its backup",
            touch.rel,
            restored_message(&touch, &how).replacen(&format!("restored {}", touch.rel), "restored it", 1)
        ));
    }
    Ok(lines)
}

/// A process's start time (clock ticks since boot, /proc/PID/stat field 22);
/// with the pid it names one process even when pids are reused. `None` when
/// the process is gone, a zombie, or there is no /proc.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Is the process that wrote (`pid`, `start`) still running?
fn still_running(pid: u32, start: Option<u64>) -> bool {
    pid != std::process::id() && start.is_some() && process_start(pid) == start
}

/// The file being touched right now, for the Drop guard and the signal thread.
static ACTIVE: Mutex<Option<Touch>> = Mutex::new(None);
/// Whether a cache-test runs in this process (the signal thread outlives it).
static RUNNING: AtomicBool = AtomicBool::new(false);
static LOCK_FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Restores the touched file when dropped (normal end, `?`, panic).
struct TouchGuard;

impl Drop for TouchGuard {
    fn drop(&mut self) {
        restore_active();
    }
}

fn begin_touch(path: &Path, rel: &str, comment: &str, marker: &str, backup_dir: &Path) -> Result<TouchGuard> {
    let touch = Touch::prepare(path, rel, comment, marker, backup_dir)?;
    // Registered and written under one lock, so the signal thread sees either
    // nothing touched or a registered touch, never an unregistered change.
    let mut active = lock(&ACTIVE);
    *active = Some(touch);
    let written = active.as_ref().map(Touch::apply).unwrap_or(Ok(()));
    drop(active);
    let guard = TouchGuard;
    written?;
    Ok(guard)
}

/// Restores the registered touch, if any; safe to call from any thread, twice.
fn restore_active() {
    let mut active = lock(&ACTIVE);
    if let Some(touch) = active.take() {
        match touch.restore() {
            Ok(Restored::Exact) => {}
            Ok(how) => ui::warn(restored_message(&touch, &how)),
            Err(e) => ui::error(format!(
                "could not restore {}: {e:#}; its original bytes are in {}",
                touch.rel,
                touch.backup_bytes.display()
            )),
        }
    }
}

/// SIGINT/SIGTERM during a cache-test: restore, stop the build, exit 130/143.
/// Outside a cache-test the signal does what it would have done anyway.
fn install_signal_handler() -> Result<()> {
    static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("cache-test-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if !RUNNING.load(Ordering::SeqCst) {
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                        continue;
                    }
                    let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                    ui::warn(format!("cache-test: {name}: restoring the touched file and stopping the build"));
                    restore_active();
                    docker::kill_children();
                    release_lock();
                    std::process::exit(128 + signal);
                }
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    result.clone().map_err(|e| anyhow::anyhow!("cannot install the SIGINT/SIGTERM handler: {e}"))
}

struct RunningFlag;

impl RunningFlag {
    fn set() -> RunningFlag {
        RUNNING.store(true, Ordering::SeqCst);
        RunningFlag
    }
}

impl Drop for RunningFlag {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

/// One cache-test at a time: two would read each other's touched file as original.
struct RunLock;

impl RunLock {
    fn acquire(state: &Path) -> Result<RunLock> {
        let path = state.join("cache-test.lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    use std::io::Write;
                    let me = std::process::id();
                    write!(file, "{me} {}", process_start(me).unwrap_or(0))?;
                    *lock(&LOCK_FILE) = Some(path);
                    return Ok(RunLock);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut words = text.split_whitespace().map(|w| w.parse::<u64>().ok());
                    let (pid, start) = (words.next().flatten(), words.next().flatten());
                    match pid {
                        Some(pid) if still_running(pid as u32, start) => {
                            bail!("another cache-test is running (pid {pid}); wait for it, it touches the same files")
                        }
                        _ => {
                            let _ = std::fs::remove_file(&path); // stale: its owner is gone
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("cannot take {}: remove it if no cache-test is running", path.display())
    }
}

fn release_lock() {
    if let Some(path) = lock(&LOCK_FILE).take() {
        let _ = std::fs::remove_file(path);
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        release_lock();
    }
}

// ---------------------------------------------------------------------------
// Integration checks

pub const INTEGRATION: &[IntegrationCheck] = &[
    IntegrationCheck { name: "cache-test cpu passes", run: check_passes },
    IntegrationCheck { name: "cache-test fails when the app is copied before the dependency install", run: check_planted_fault },
    IntegrationCheck { name: "SIGTERM mid-build restores iopaint/cli.py (bytes and mtime)", run: check_sigterm },
    IntegrationCheck { name: "SIGINT mid-build restores iopaint/cli.py (bytes and mtime)", run: check_sigint },
    IntegrationCheck { name: "after SIGKILL the next cache-test restores iopaint/cli.py from its backup", run: check_sigkill_recovery },
];

fn check_passes(_env: &Env) -> Result<()> {
    testkit::xtask(["cache-test", "cpu"])?.expect_success()
}

/// The CPU Dockerfile with `COPY iopaint/ /build/iopaint/` moved into
/// python-builder, before its first RUN (the dependency install).
pub fn plant_app_copy_before_deps(text: &str) -> Result<String> {
    let dockerfile = Dockerfile::parse(text)?;
    let stage = dockerfile.stage(DEPENDENCY_STAGE).with_context(|| format!("no {DEPENDENCY_STAGE} stage"))?;
    let first_run = stage
        .instructions
        .iter()
        .find(|i| i.keyword == "RUN")
        .with_context(|| format!("{DEPENDENCY_STAGE} has no RUN"))?;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(first_run.line - 1, "COPY iopaint/ /build/iopaint/");
    Ok(lines.join("\n") + "\n")
}

fn check_planted_fault(_env: &Env) -> Result<()> {
    let scratch = ScratchDir::new("cache-test-fault")?;
    let text = std::fs::read_to_string(Flavor::Cpu.dockerfile())?;
    let planted = scratch.path().join("Dockerfile.app-before-deps");
    std::fs::write(&planted, plant_app_copy_before_deps(&text)?)?;
    let run = testkit::xtask(["cache-test", "cpu", "--dockerfile", &planted.display().to_string()])?;
    run.expect_failure_mentioning("python-builder steps re-ran after touching iopaint/cli.py")
}

fn check_sigterm(_env: &Env) -> Result<()> {
    interrupt_mid_build("TERM", Some(143))
}

fn check_sigint(_env: &Env) -> Result<()> {
    interrupt_mid_build("INT", Some(130))
}

fn check_sigkill_recovery(_env: &Env) -> Result<()> {
    interrupt_mid_build("KILL", None)
}

/// Puts `iopaint/cli.py` back if a check left it touched, whatever happened.
struct CliPyKeeper {
    path: PathBuf,
    original: Vec<u8>,
    mtime: SystemTime,
}

impl Drop for CliPyKeeper {
    fn drop(&mut self) {
        if let Ok(state) = project::state_dir() {
            let _ = recover_leftovers(&state.join(BACKUP_DIR));
        }
        // Only our own comment is ever removed: a coworker's edit stays.
        if let Ok(now) = std::fs::read(&self.path) {
            if now.starts_with(&self.original) && String::from_utf8_lossy(&now[self.original.len()..]).contains(COMMENT_TAG) {
                let _ = std::fs::write(&self.path, &self.original);
                let _ = set_mtime(&self.path, self.mtime);
            }
        }
    }
}

/// Pids whose parent is `pid` (Linux /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()))
                == Some(pid)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Starts `cache-test cpu`, waits until it has touched iopaint/cli.py, sends
/// `signal`; checks the exit code and the file's bytes and mtime. With KILL
/// the file stays touched and the next cache-test must restore it.
fn interrupt_mid_build(signal: &str, expected_code: Option<i32>) -> Result<()> {
    let path = project::root().join(PYTHON_TOUCH.rel);
    let original = std::fs::read(&path)?;
    let mtime = std::fs::metadata(&path)?.modified()?;
    let _keeper = CliPyKeeper { path: path.clone(), original: original.clone(), mtime };
    let scratch = ScratchDir::new("cache-test-signal")?;
    let log_path = scratch.path().join("cache-test.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(crate::testkit::xtask_exe()?)
        .args(["cache-test", "cpu"])
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting cache-test cpu")?;
    let read_log = || testkit::tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 25);

    // The warm build may take minutes; the touch is followed by the rebuild at once.
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("cache-test exited ({status}) before touching {}:\n{}", PYTHON_TOUCH.rel, read_log());
        }
        // Our own comment, not any change: others (bench) touch this file too.
        let now = std::fs::read(&path)?;
        if now != original && String::from_utf8_lossy(&now).contains(COMMENT_TAG) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("cache-test did not touch {} within 30 minutes:\n{}", PYTHON_TOUCH.rel, read_log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the rebuild's `docker build` start, so the signal interrupts a build.
    let is_build = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("build"))
    };
    let build_deadline = Instant::now() + Duration::from_secs(10);
    let mut builders: Vec<u32> = Vec::new();
    while builders.is_empty() {
        builders = children_of(child.id()).into_iter().filter(is_build).collect();
        if builders.is_empty() && Instant::now() > build_deadline {
            let _ = child.kill();
            bail!("no `docker build` ran under cache-test within 10 s of the touch:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status()?;
    if !sent.success() {
        bail!("kill -{signal} {} failed", child.id());
    }
    let exit_deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > exit_deadline {
            let _ = child.kill();
            bail!("cache-test did not exit within 60 s of SIG{signal}:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    let Some(expected_code) = expected_code else {
        // SIGKILL: no handler ran. Stop the orphaned build (we started it), then
        // the next cache-test must put the file back before anything else.
        for pid in &builders {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        if std::fs::read(&path)? == original {
            bail!("after SIGKILL {} was already back: the test did not interrupt a touched build", PYTHON_TOUCH.rel);
        }
        let backup = project::state_dir()?.join(BACKUP_DIR).join("iopaint__cli.py.json");
        if !backup.is_file() {
            bail!("after SIGKILL no backup was left at {}", backup.display());
        }
        let next = testkit::xtask(["cache-test", "cpu"])?;
        next.expect_success()?;
        if !next.combined().contains("was killed while iopaint/cli.py was touched: restored it") {
            bail!("the next cache-test did not say it restored the backup:\n{}", testkit::tail(&next.combined(), 30));
        }
        return same_file(&path, &original, mtime, "after SIGKILL and the next cache-test");
    };

    if status.code() != Some(expected_code) {
        bail!("cache-test exited with {status} after SIG{signal}, expected {expected_code}:\n{}", read_log());
    }
    same_file(&path, &original, mtime, &format!("after SIG{signal}"))?;
    if !read_log().contains("restoring the touched file") {
        bail!("cache-test did not say it restored the file:\n{}", read_log());
    }
    // kill_children(): the docker build it ran must stop too.
    let gone_deadline = Instant::now() + Duration::from_secs(20);
    while builders.iter().any(|p| alive(*p)) {
        if Instant::now() > gone_deadline {
            bail!("the docker build (pids {builders:?}) still runs 20 s after SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if project::state_dir()?.join(BACKUP_DIR).join("iopaint__cli.py.json").exists() {
        bail!("the crash backup was left behind after SIG{signal}");
    }
    Ok(())
}

fn same_file(path: &Path, original: &[u8], mtime: SystemTime, when: &str) -> Result<()> {
    let now = std::fs::read(path)?;
    if now != original {
        bail!("{when}, {} differs from its original bytes ({} vs {} bytes)", path.display(), now.len(), original.len());
    }
    let now_mtime = std::fs::metadata(path)?.modified()?;
    if now_mtime != mtime {
        bail!("{when}, {} has mtime {now_mtime:?} instead of {mtime:?}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_LIKE: &str = r#"
ARG PYTHON_IMAGE=python:3.10-slim-bookworm
FROM node:18 AS frontend-builder
WORKDIR /build/web_app
COPY web_app/package.json web_app/package-lock.json ./
RUN npm ci
COPY web_app/ ./
RUN npm run build

FROM ${PYTHON_IMAGE} AS python-builder
ENV PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
ARG INSTALL_TORCH=1
RUN echo torch
COPY iopaint/pyproject.toml /build/iopaint/pyproject.toml
RUN pip install /build/iopaint

FROM ${PYTHON_IMAGE} AS runtime
ARG DEFAULT_MODEL=lama
ENV MODEL=${DEFAULT_MODEL}
RUN useradd app
COPY --from=python-builder /opt/venv /opt/venv
RUN --mount=type=bind,source=iopaint,target=/tmp/src,rw \
    --mount=type=bind,from=frontend-builder,source=/build/web_app/dist,target=/tmp/src/web_app \
    pip install /tmp/src
USER 10001
WORKDIR /app
CMD ["python"]
"#;

    fn app() -> AppLayers {
        find_app_layers(&Dockerfile::parse(CPU_LIKE).unwrap(), "iopaint/cli.py").unwrap()
    }

    #[test]
    fn app_layers_start_at_the_first_runtime_read_of_the_sources() {
        let app = app();
        assert_eq!(app.stage, "runtime");
        // FROM=1, RUN useradd=2, COPY --from=3, RUN --mount=4, WORKDIR=5.
        assert_eq!((app.first_index, app.total), (4, 5));
        assert_eq!(app.line, 23);
        assert!(app.instruction.starts_with("RUN --mount=type=bind,source=iopaint"));
    }

    #[test]
    fn a_copy_of_the_app_counts_and_stage_from_copies_do_not() {
        let text = "FROM python AS runtime\nCOPY --from=builder /iopaint /x\nWORKDIR /app\nCOPY ./iopaint/ /app/iopaint/\nRUN pip install /app\n";
        let app = find_app_layers(&Dockerfile::parse(text).unwrap(), "iopaint/cli.py").unwrap();
        assert_eq!((app.first_index, app.total, app.line), (4, 5, 4));
        let whole = "FROM python\nRUN true\nCOPY . /src\n";
        let app = find_app_layers(&Dockerfile::parse(whole).unwrap(), "iopaint/cli.py").unwrap();
        assert_eq!((app.stage.as_str(), app.first_index), ("stage-0", 3));
        let none = "FROM python AS runtime\nCOPY iopaint/pyproject.toml /x/\n";
        let err = find_app_layers(&Dockerfile::parse(none).unwrap(), "iopaint/cli.py").unwrap_err();
        assert!(err.to_string().contains("would not contain the app"), "{err}");
    }

    #[test]
    fn sources_cover_files_like_copy_does() {
        for source in [".", "./", "iopaint", "iopaint/", "./iopaint", "/iopaint/cli.py", "iopaint/*.py", "io*", "iopaint/cl?.py"] {
            assert!(covers(source, "iopaint/cli.py"), "{source}");
        }
        for source in ["iopaint/pyproject.toml", "web_app/", "iopaint/*.toml", "*.py", "iopaint2"] {
            assert!(!covers(source, "iopaint/cli.py"), "{source}");
        }
    }

    fn step(stage: &str, index: u32, total: u32, cached: bool) -> StepRun {
        StepRun { stage: stage.into(), index, total, instruction: format!("RUN step{index}"), cached }
    }

    fn all_cached_but(ran: &[(&str, u32)]) -> Vec<StepRun> {
        let mut steps = Vec::new();
        for (stage, total) in [("frontend-builder", 6), ("python-builder", 5), ("runtime", 5)] {
            for i in 2..=total {
                steps.push(step(stage, i, total, !ran.contains(&(stage, i))));
            }
        }
        steps
    }

    #[test]
    fn python_touch_passes_when_only_app_layers_run() {
        let verdict = check_python_touch(&all_cached_but(&[("runtime", 4), ("runtime", 5)]), &app(), "iopaint/cli.py");
        assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
        let labels: Vec<&str> = verdict.stages.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["frontend-builder", "python-builder", "runtime before app", "runtime app layers (≥4)"]);
        assert_eq!(verdict.stages[3].ran.len(), 2);
    }

    #[test]
    fn python_touch_fails_when_dependencies_rerun() {
        let steps = all_cached_but(&[("python-builder", 4), ("python-builder", 5), ("runtime", 3), ("runtime", 4)]);
        let verdict = check_python_touch(&steps, &app(), "iopaint/cli.py");
        assert_eq!(verdict.problems.len(), 2, "{:?}", verdict.problems);
        assert!(verdict.problems[0].starts_with("python-builder steps re-ran after touching iopaint/cli.py: 4/5 `RUN step4`, 5/5"));
        assert!(verdict.problems[1].starts_with("runtime steps before the app layers re-ran"));
    }

    #[test]
    fn a_touch_that_runs_nothing_fails() {
        let verdict = check_python_touch(&all_cached_but(&[]), &app(), "iopaint/cli.py");
        assert!(verdict.problems.iter().any(|p| p.contains("never reached the image")), "{:?}", verdict.problems);
        let verdict = check_frontend_touch(&all_cached_but(&[]), &app(), "web_app/src/main.tsx");
        assert!(verdict.problems.iter().any(|p| p.contains("re-ran nothing")), "{:?}", verdict.problems);
    }

    #[test]
    fn frontend_touch_only_cares_about_python_builder() {
        let ok = all_cached_but(&[("frontend-builder", 5), ("frontend-builder", 6), ("runtime", 4)]);
        assert!(check_frontend_touch(&ok, &app(), "web_app/src/main.tsx").problems.is_empty());
        let bad = all_cached_but(&[("frontend-builder", 5), ("python-builder", 5), ("runtime", 3)]);
        let verdict = check_frontend_touch(&bad, &app(), "web_app/src/main.tsx");
        assert_eq!(verdict.problems.len(), 1, "{:?}", verdict.problems);
        assert!(verdict.problems[0].starts_with("python-builder steps re-ran after touching web_app/src/main.tsx"));
        assert_eq!(verdict.notes.len(), 1);
    }

    #[test]
    fn step_counts_must_agree_with_the_dockerfile() {
        let mut steps = all_cached_but(&[("runtime", 4)]);
        steps.push(step("runtime", 6, 6, false));
        for s in steps.iter_mut().filter(|s| s.stage == "runtime") {
            s.total = 6;
        }
        let verdict = check_python_touch(&steps, &app(), "iopaint/cli.py");
        assert!(verdict.problems[0].contains("BuildKit counts 6 steps in stage runtime"), "{:?}", verdict.problems);
    }

    /// Recorded from engine 20.10 (`--progress=plain`) after touching iopaint/cli.py; trimmed.
    const PY_TOUCH_LOG: &str = "#5 [python-builder 1/7] FROM docker.io/iopaint-standin/python:3.11-bookworm
#5 DONE 0.0s

#11 [python-builder 5/5] RUN --mount=type=cache,id=iopaint-pip,target=/root/.cache/pip     pip install --no-build-isolation /build/iopaint
#11 CACHED

#10 [python-builder 4/5] COPY iopaint/pyproject.toml /build/iopaint/pyproject.toml
#10 CACHED

#6 [runtime 2/5] RUN useradd --system --uid 10001 --create-home --home-dir /home/iopaint iopaint
#6 CACHED

#7 [python-builder 2/5] RUN python3 -m venv /opt/venv
#7 CACHED

#8 [python-builder 3/5] RUN echo torch
#8 CACHED

#12 [runtime 3/5] COPY --from=python-builder /opt/venv /opt/venv
#12 CACHED

#17 [frontend-builder 5/6] COPY web_app/ ./
#17 CACHED

#14 [frontend-builder 2/6] WORKDIR /build/web_app
#14 CACHED

#18 [frontend-builder 6/6] RUN npm run build
#18 CACHED

#15 [frontend-builder 3/6] COPY web_app/package.json web_app/package-lock.json ./
#15 CACHED

#16 [frontend-builder 4/6] RUN npm ci --no-audit --no-fund --loglevel=error
#16 CACHED

#19 [runtime 4/5] RUN --mount=type=bind,source=iopaint,target=/tmp/iopaint-src,rw     pip install /tmp/iopaint-src
#19 sha256:93f3fb796f73dc008ae9d546ea1962a1502e3db956fe31faed89f177e13b1d7e
#19 1.234 Successfully installed iopaint-0.1.0
#19 DONE 5.6s

#20 [runtime 5/5] WORKDIR /app
#20 DONE 0.1s

#21 exporting to image
#21 DONE 0.2s
";

    #[test]
    fn a_recorded_python_touch_passes() {
        let steps = step_runs(&BuildLog::from_plain(PY_TOUCH_LOG));
        assert_eq!(steps.len(), 13);
        let verdict = check_python_touch(&steps, &app(), "iopaint/cli.py");
        assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
        let app_line = verdict.stages.last().unwrap();
        assert_eq!(app_line.ran.iter().map(|s| s.index).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(verdict.stages.iter().map(|s| s.cached).sum::<usize>(), 11);
    }

    #[test]
    fn the_planted_fault_copies_the_app_into_python_builder() {
        let planted = plant_app_copy_before_deps(CPU_LIKE).unwrap();
        let dockerfile = Dockerfile::parse(&planted).unwrap();
        let builder = dockerfile.stage("python-builder").unwrap();
        assert_eq!(builder.instructions[1].keyword, "COPY");
        assert_eq!(builder.copies[0].sources, ["iopaint/"]);
        // Still a valid file whose runtime is unchanged.
        assert_eq!(find_app_layers(&dockerfile, "iopaint/cli.py").unwrap().first_index, 4);
    }

    fn scratch(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-cache-test-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn old_mtime(path: &Path) -> SystemTime {
        let mtime = UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
        set_mtime(path, mtime).unwrap();
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn touch_and_restore_give_back_bytes_and_mtime() {
        let dir = scratch("restore");
        let file = dir.join("cli.py");
        std::fs::write(&file, b"print('x')  # uncommitted edit").unwrap(); // no final newline
        let mtime = old_mtime(&file);
        let touch = Touch::prepare(&file, "iopaint/cli.py", "#", "m1", &dir.join("backup")).unwrap();
        touch.apply().unwrap();
        let touched = std::fs::read(&file).unwrap();
        assert!(touched.starts_with(b"print('x')  # uncommitted edit\n# xtask cache-test m1"));
        assert!(touch.backup_meta.is_file() && touch.backup_bytes.is_file());
        assert_eq!(touch.restore().unwrap(), Restored::Exact);
        assert_eq!(std::fs::read(&file).unwrap(), b"print('x')  # uncommitted edit");
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        assert!(!touch.backup_meta.exists() && !touch.backup_bytes.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn someone_elses_edit_during_the_test_survives() {
        let dir = scratch("coworker");
        let file = dir.join("main.tsx");
        std::fs::write(&file, "a\n").unwrap();
        let touch = Touch::prepare(&file, "web_app/src/main.tsx", "//", "m2", &dir.join("backup")).unwrap();
        touch.apply().unwrap();
        let mut edited = std::fs::read_to_string(&file).unwrap();
        edited.insert_str(0, "b\n");
        std::fs::write(&file, &edited).unwrap();
        assert_eq!(touch.restore().unwrap(), Restored::OurLineRemoved);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "b\na\n");
        std::fs::write(&file, "rewritten\n").unwrap();
        assert_eq!(touch.restore().unwrap(), Restored::LeftAlone);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "rewritten\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn leftovers_of_a_killed_run_are_restored() {
        let dir = scratch("leftover");
        let file = dir.join("cli.py");
        std::fs::write(&file, "x = 1\n").unwrap();
        let mtime = old_mtime(&file);
        let backup = dir.join("backup");
        let touch = Touch::prepare(&file, "iopaint/cli.py", "#", "m3", &backup).unwrap();
        touch.apply().unwrap();
        // Pretend the run was killed: the metadata names a pid that is gone.
        let mut meta: Value = serde_json::from_slice(&std::fs::read(&touch.backup_meta).unwrap()).unwrap();
        meta["pid"] = json!(u32::MAX - 1);
        std::fs::write(&touch.backup_meta, meta.to_string()).unwrap();
        let lines = recover_leftovers(&backup).unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("was killed while iopaint/cli.py was touched: restored it"), "{}", lines[0]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x = 1\n");
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        assert!(recover_leftovers(&backup).unwrap().is_empty());
        assert!(recover_leftovers(&dir.join("nothing-here")).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_guard_restores_on_drop_and_on_panic() {
        let dir = scratch("guard");
        let file = dir.join("cli.py");
        std::fs::write(&file, "y = 2\n").unwrap();
        let mtime = old_mtime(&file);
        let backup = dir.join("backup");
        let result = std::panic::catch_unwind(|| {
            let _guard = begin_touch(&file, "iopaint/cli.py", "#", "m4", &backup).unwrap();
            assert_ne!(std::fs::read_to_string(&file).unwrap(), "y = 2\n");
            panic!("boom");
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "y = 2\n");
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        assert!(lock(&ACTIVE).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
