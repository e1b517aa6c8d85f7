//! `cargo xtask size-check cpu|gpu|all`: image sizes against budgets, and
//! where the bytes are.
//!
//! Size is `docker image inspect .Size` (decimal units, like Docker). The
//! per-layer table comes from `docker history`, oldest layer first, each
//! marked `base` or `ours`. The base's layers are found by comparing with
//! the history of the runtime stage's base image (from the Dockerfile's
//! `FROM`, with setup's build args, e.g. `iopaint-standin/python:3.11-bookworm`):
//! when its rows (size and created-by) are the bottom rows of ours, those are
//! the base. When that image is not here (or differs), the fallback is the
//! layers below the first row made by the runtime stage's first instruction
//! (e.g. `ARG DEFAULT_MODEL=lama`). The table says which method it used.
//!
//! The last size per image tag is kept in `target/xtask/sizes.json`
//! (bytes, date, image id, and the record before it), so the report shows the
//! change since the previous image, and rerunning on the same image keeps
//! showing that change rather than +0.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::dockerfile::Dockerfile;
use crate::flavor::{Flavor, FlavorChoice};
use crate::report::{Cell, Report};
use crate::setup::{self, Env, SetupOptions};
use crate::sizes::{self, Layer};
use crate::testkit::{self, IntegrationCheck};
use crate::{project, ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct SizeArgs {
    /// cpu, gpu or all.
    #[arg(value_enum)]
    pub flavor: FlavorChoice,
    /// Budget for a flavor, e.g. `cpu=2.5GB` (decimal units like Docker; repeatable).
    /// Defaults: cpu=3GB, gpu=5GB.
    #[arg(long = "max-size", value_name = "FLAVOR=SIZE")]
    pub max_size: Vec<String>,
    /// Check this image instead of `iopaint:<flavor>-latest` (needs cpu or gpu).
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    #[command(flatten)]
    pub out: OutputOpts,
}

/// How many of the largest layers the report lists.
const LARGEST: usize = 5;

pub fn run(args: &SizeArgs) -> Result<()> {
    // Bad input fails before any Docker work, in one line.
    let budgets = parse_budgets(&args.max_size)?;
    let flavors = args.flavor.flavors();
    if args.image.is_some() && flavors.len() > 1 {
        bail!("--image names one image: use it with cpu or gpu, not all");
    }
    let env = setup::ensure(&SetupOptions::default())?;
    let history_path = project::state_dir()?.join("sizes.json");
    let mut history: Value = std::fs::read(&history_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);

    let names: Vec<&str> = flavors.iter().map(|f| f.name()).collect();
    let mut report = Report::with_headers(format!("size-check {}", names.join(", ")), &["image", "#", "layer", "size", "share", "from"]);
    let mut images = Vec::new();
    for flavor in flavors {
        let image = args.image.clone().unwrap_or_else(|| flavor.latest_tag());
        let budget = budgets[flavor.name()];
        let measured = measure(&env, flavor, &image)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // When this very image was measured before: since when.
        let seen_since = sizes::last_record(&history, &image)
            .filter(|r| r.get("image_id").and_then(Value::as_str) == Some(measured.image_id.as_str()))
            .and_then(|r| r.get("date").and_then(Value::as_str).map(str::to_string));
        let (baseline, updated) = compare_with_record(&history, &image, measured.size, &measured.image_id, now);
        if let Some(updated) = updated {
            history = updated;
        }
        add_image(&mut report, flavor, &image, budget, &measured, baseline.as_ref(), seen_since.as_deref());
        images.push(image_json(flavor, &image, budget, &measured, baseline.as_ref()));
    }
    std::fs::write(&history_path, serde_json::to_string_pretty(&history)? + "\n")
        .with_context(|| format!("writing {}", history_path.display()))?;
    report.fact("budgets_bytes", json!(budgets));
    report.fact("images", Value::Array(images));
    report.fact("sizes_file", history_path.display().to_string());
    report.finish(&args.out)
}

/// Defaults (cpu 3 GB, gpu 5 GB) overridden by each `--max-size FLAVOR=SIZE`.
pub fn parse_budgets(texts: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut budgets: BTreeMap<String, u64> =
        [Flavor::Cpu, Flavor::Gpu].iter().map(|f| (f.name().to_string(), f.default_budget())).collect();
    for text in texts {
        let (flavor, bytes) = sizes::parse_budget(text).map_err(|e| {
            let why = e.root_cause().to_string();
            if why.starts_with("--max-size") {
                anyhow::anyhow!("{why}")
            } else {
                anyhow::anyhow!("--max-size {text:?}: {why}")
            }
        })?;
        if !budgets.contains_key(&flavor) {
            bail!("--max-size {text:?}: unknown flavor {flavor:?} (use cpu or gpu, e.g. cpu=2.5GB)");
        }
        budgets.insert(flavor, bytes);
    }
    Ok(budgets)
}

/// One image as measured.
pub struct Measured {
    pub size: u64,
    pub image_id: String,
    /// Newest first, as `docker history` prints them; `from_base` set.
    pub layers: Vec<Layer>,
    pub base_image: String,
    pub base_method: String,
    /// Inside the directory the largest COPY brought in, when there is one.
    pub breakdown: Option<Breakdown>,
}

/// Where the bytes of the biggest COPY'd directory are, in the final image.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// e.g. `/opt/venv`.
    pub dir: String,
    /// The layer's row number in the table (oldest first).
    pub layer_n: usize,
    pub total: u64,
    /// (path relative to `dir`, bytes), largest first.
    pub items: Vec<(String, u64)>,
    /// Why there is no breakdown (du failed...), when `items` is empty.
    pub error: Option<String>,
}

/// Directories above this share of the whole are split into their children.
const SPLIT_SHARE: f64 = 0.20;
/// How many entries the breakdown lists.
const BREAKDOWN_ITEMS: usize = 10;
/// `du` depth below the directory: deep enough for `lib/python3.x/site-packages/nvidia/cudnn`.
const DU_DEPTH: &str = "5";

fn measure(env: &Env, flavor: Flavor, image: &str) -> Result<Measured> {
    if !env.docker.image_exists(image) {
        bail!("image {image} not found: build it with `cargo xtask build {}` (or name one with --image)", flavor.name());
    }
    let size = env.docker.image_size(image)?;
    let image_id = env.docker.image_inspect(image, "{{.Id}}")?;
    let mut layers = sizes::parse_history(&env.docker.history(image)?)?;

    let dockerfile = Dockerfile::from_file(&flavor.dockerfile())?;
    let stage = dockerfile.stage("runtime").or_else(|| dockerfile.stages.last()).context("the Dockerfile has no FROM")?;
    let build_args: Vec<(String, String)> = env.build_args_for(flavor).into_iter().collect();
    let base_image = dockerfile.base_image(stage, &build_args);
    let base_history = if env.docker.image_exists(&base_image) {
        Some(sizes::parse_history(&env.docker.history(&base_image)?)?)
    } else {
        None
    };
    let first = stage.instructions.first().map(|i| format!("{} {}", i.keyword, i.arguments));
    let (count, base_method) = match base_history.as_deref().and_then(|b| base_rows_by_history(&layers, b)) {
        Some(n) => (Some(n), format!("rows matching the history of {base_image}")),
        None => match first.as_deref().and_then(|f| base_rows_below_instruction(&layers, f)) {
            Some(n) => (
                Some(n),
                format!(
                    "rows below the runtime stage's first instruction `{}` ({base_image} {})",
                    sizes::short_instruction(first.as_deref().unwrap_or(""), 40),
                    if base_history.is_some() { "has other layers" } else { "is not on this host" }
                ),
            ),
            None => (None, format!("unknown: {base_image} is not on this host and no row matches the runtime stage")),
        },
    };
    sizes::mark_base_layers(&mut layers, count.unwrap_or(0));
    let breakdown = breakdown_target(&layers, size).map(|(layer_n, dir)| {
        let timeout = std::time::Duration::from_secs(300);
        match env.docker.run_rm(image, "du", &["-x", "-b", "-d", DU_DEPTH, &dir], timeout) {
            Ok(out) => {
                let du = parse_du(&out);
                let total = du.get(dir.as_str()).copied().unwrap_or(0);
                let items = split_dir(&du, &dir, SPLIT_SHARE, BREAKDOWN_ITEMS);
                Breakdown { dir, layer_n, total, items, error: None }
            }
            Err(e) => Breakdown { dir, layer_n, total: 0, items: Vec::new(), error: Some(format!("{e:#}")) },
        }
    });
    Ok(Measured { size, image_id, layers, base_image, base_method, breakdown })
}

/// The directory worth looking inside: the destination of our largest layer
/// when it is a COPY/ADD to an absolute path holding at least 10% of the image.
/// Returns (row number oldest first, directory).
pub fn breakdown_target(layers: &[Layer], image_size: u64) -> Option<(usize, String)> {
    let (i, layer) = layers.iter().enumerate().filter(|(_, l)| !l.from_base).max_by_key(|(_, l)| l.size)?;
    if (layer.size as f64) < image_size as f64 * 0.10 {
        return None;
    }
    let instruction = layer.instruction(10_000);
    let mut words = instruction.split_whitespace();
    if !matches!(words.next(), Some("COPY" | "ADD")) {
        return None;
    }
    let dest = words.last()?.trim_end_matches('/');
    (dest.starts_with('/') && dest.len() > 1).then(|| (layers.len() - i, dest.to_string()))
}

/// `du -b` output (`bytes<TAB>path` per line) as path -> bytes.
pub fn parse_du(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (bytes, path) = line.split_once('\t')?;
            Some((path.trim_end_matches('/').to_string(), bytes.trim().parse().ok()?))
        })
        .collect()
}

/// Splits `root` into the entries that hold its bytes: any directory above
/// `share` of the total is replaced by its subdirectories (plus the files
/// directly in it), until none is left to split; the largest `max` entries.
pub fn split_dir(du: &BTreeMap<String, u64>, root: &str, share: f64, max: usize) -> Vec<(String, u64)> {
    let Some(&total) = du.get(root) else { return Vec::new() };
    let children = |parent: &str| -> Vec<(String, u64)> {
        du.iter()
            .filter(|(p, _)| p.rsplit_once('/').map(|(dir, _)| dir) == Some(parent))
            .map(|(p, b)| (p.clone(), *b))
            .collect()
    };
    let mut items: Vec<(String, u64)> = vec![(root.to_string(), total)];
    loop {
        let pick = items
            .iter()
            .enumerate()
            .filter(|(_, (p, b))| (p == root || *b as f64 > total as f64 * share) && !children(p).is_empty())
            .max_by_key(|(_, (_, b))| *b)
            .map(|(i, _)| i);
        let Some(i) = pick else { break };
        let (path, bytes) = items.remove(i);
        let kids = children(&path);
        let in_kids: u64 = kids.iter().map(|(_, b)| b).sum();
        items.extend(kids);
        if bytes > in_kids {
            items.push((format!("{path} (files directly in it)"), bytes - in_kids));
        }
    }
    let mut shown: Vec<(String, u64)> = items
        .into_iter()
        .map(|(p, b)| {
            let rel = p.strip_prefix(root).unwrap_or(&p).trim_start_matches('/').to_string();
            let rel = match rel.find("site-packages") {
                Some(at) => rel[at..].to_string(),
                None if rel.is_empty() => ".".to_string(),
                None => rel,
            };
            (rel, b)
        })
        .collect();
    shown.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    shown.truncate(max);
    shown
}

/// The base's rows are ours' bottom rows when size and created-by agree
/// (ids differ: BuildKit images record `<missing>` for parents).
pub fn base_rows_by_history(image: &[Layer], base: &[Layer]) -> Option<usize> {
    if base.is_empty() || base.len() > image.len() {
        return None;
    }
    let bottom = &image[image.len() - base.len()..];
    let same = bottom.iter().zip(base).all(|(a, b)| a.size == b.size && a.created_by.trim() == b.created_by.trim());
    same.then_some(base.len())
}

/// Rows below the oldest row that the runtime stage's first instruction made,
/// matched on keyword and first word (up to `=`): `ARG DEFAULT_MODEL=lama`
/// matches `ARG DEFAULT_MODEL=lama`, `ENV PATH=/opt/venv/bin:$PATH` matches
/// the expanded `ENV PATH=...`, `RUN --mount=... pip ...` matches `RUN pip ...`.
pub fn base_rows_below_instruction(image: &[Layer], instruction: &str) -> Option<usize> {
    let key = instruction_key(instruction)?;
    let position_from_bottom = image.iter().rev().position(|l| instruction_key(&sizes::short_instruction(&l.created_by, 400)) == Some(key.clone()))?;
    Some(position_from_bottom)
}

fn instruction_key(instruction: &str) -> Option<(String, String)> {
    let mut words = instruction.split_whitespace();
    let keyword = words.next()?.to_ascii_uppercase();
    let first = words.find(|w| !w.starts_with("--")).unwrap_or("");
    let first = first.split('=').next().unwrap_or("").to_string();
    Some((keyword, first))
}

/// Compares with the image's last record; returns the baseline to show the
/// change against, and the updated history when a new image was measured.
pub fn compare_with_record(history: &Value, image: &str, bytes: u64, image_id: &str, now_unix: u64) -> (Option<Value>, Option<Value>) {
    let previous = sizes::last_record(history, image).cloned();
    match previous {
        Some(record) if record.get("image_id").and_then(Value::as_str) == Some(image_id) => {
            (record.get("previous").filter(|p| p.is_object()).cloned(), None)
        }
        previous => {
            let baseline = previous.map(|mut p| {
                if let Some(map) = p.as_object_mut() {
                    map.remove("previous");
                }
                p
            });
            let mut record = sizes::size_record(image, bytes, now_unix);
            record["date"] = json!(rfc3339(now_unix));
            record["image_id"] = json!(image_id);
            if let Some(b) = &baseline {
                record["previous"] = b.clone();
            }
            (baseline, Some(sizes::with_record(history, image, record)))
        }
    }
}

fn add_image(
    report: &mut Report,
    flavor: Flavor,
    image: &str,
    budget: u64,
    m: &Measured,
    baseline: Option<&Value>,
    seen_since: Option<&str>,
) {
    let total = m.size;
    let mut hidden = 0;
    for (n, layer) in m.layers.iter().rev().enumerate() {
        if layer.size == 0 {
            hidden += 1;
            continue;
        }
        report.add_row(vec![
            Cell::from(flavor.name()),
            Cell::from((n + 1) as u64),
            Cell::from(layer.instruction(64)),
            Cell::bytes(layer.size),
            Cell::percent(sizes::share_percent(layer.size, total)),
            Cell::from(if layer.from_base { "base" } else { "ours" }),
        ]);
    }
    let (base, ours) = sizes::base_and_ours(&m.layers);
    report.note(format!(
        "{image} ({}): {} of its {} budget ({:.1}%); base {} {} ({:.1}%), ours {} ({:.1}%)",
        crate::build::short_id(&m.image_id),
        ui::fmt_bytes(total),
        ui::fmt_bytes(budget),
        sizes::share_percent(total, budget),
        m.base_image,
        ui::fmt_bytes(base),
        sizes::share_percent(base, total),
        ui::fmt_bytes(ours),
        sizes::share_percent(ours, total),
    ));
    report.note(format!("  base layers of {image}: {}", m.base_method));
    for (i, layer) in sizes::largest_layers(&m.layers, LARGEST).iter().enumerate() {
        report.note(format!(
            "  largest #{}: {} ({:.1}%, {}) {}",
            i + 1,
            ui::fmt_bytes(layer.size),
            sizes::share_percent(layer.size, total),
            if layer.from_base { "base" } else { "ours" },
            layer.instruction(70)
        ));
    }
    report.note(match baseline {
        Some(b) => format!(
            "  change since {} ({}, recorded {}): {}",
            b.get("image").and_then(Value::as_str).unwrap_or(image),
            crate::build::short_id(b.get("image_id").and_then(Value::as_str).unwrap_or("?")),
            b.get("date").and_then(Value::as_str).unwrap_or("?"),
            delta_text(b, total)
        ),
        None => match seen_since {
            Some(date) => format!("  change: same image as recorded {date}; no earlier image of {image} to compare with"),
            None => format!("  change: no earlier record of {image} in target/xtask/sizes.json (recorded now)"),
        },
    });
    if let Some(b) = &m.breakdown {
        match &b.error {
            Some(why) => report.note(format!("  could not look inside {} (layer #{}): {why}", b.dir, b.layer_n)),
            None => {
                report.note(format!(
                    "  inside {} (layer #{}; {} in the final image), largest entries:",
                    b.dir,
                    b.layer_n,
                    ui::fmt_bytes(b.total)
                ));
                for (path, bytes) in &b.items {
                    report.note(format!(
                        "    {:>10} {:>5.1}%  {path}",
                        ui::fmt_bytes(*bytes),
                        sizes::share_percent(*bytes, total)
                    ));
                }
            }
        }
    }
    if hidden > 0 {
        report.note(format!("  {hidden} metadata rows of 0 B not shown; # counts every docker history row, oldest first (--json lists them all)"));
    }
    if layer_sum_differs(m) {
        report.note(format!(
            "  the layers add up to {}, docker image inspect says {}",
            ui::fmt_bytes(sizes::total_size(&m.layers)),
            ui::fmt_bytes(total)
        ));
    }
    if total > budget {
        report.fail(format!(
            "{image} is {}, over its {} budget for {} by {} (--max-size {}=SIZE to change it)",
            ui::fmt_bytes(total),
            ui::fmt_bytes(budget),
            flavor.name(),
            ui::fmt_bytes(total - budget),
            flavor.name()
        ));
    }
}

fn layer_sum_differs(m: &Measured) -> bool {
    sizes::total_size(&m.layers) != m.size
}

fn delta_bytes(baseline: &Value, now: u64) -> Option<i64> {
    sizes::size_delta(baseline, &json!({ "bytes": now }))
}

fn delta_text(baseline: &Value, now: u64) -> String {
    match delta_bytes(baseline, now) {
        Some(0) => "no change".to_string(),
        Some(d) => {
            let before = baseline.get("bytes").and_then(Value::as_u64).unwrap_or(0);
            format!("{} ({:+.1}%)", ui::fmt_bytes_delta(d), if before == 0 { 0.0 } else { d as f64 * 100.0 / before as f64 })
        }
        None => "unknown".to_string(),
    }
}

fn image_json(flavor: Flavor, image: &str, budget: u64, m: &Measured, baseline: Option<&Value>) -> Value {
    let total = m.size;
    let (base, ours) = sizes::base_and_ours(&m.layers);
    let layer_json = |n: usize, l: &Layer| {
        json!({
            "n": n,
            "id": l.id,
            "size_bytes": l.size,
            "share_percent": (sizes::share_percent(l.size, total) * 10.0).round() / 10.0,
            "from": if l.from_base { "base" } else { "ours" },
            "instruction": l.instruction(200),
            "created_by": l.created_by,
        })
    };
    let count = m.layers.len();
    json!({
        "flavor": flavor.name(),
        "image": image,
        "image_id": m.image_id,
        "size_bytes": total,
        "budget_bytes": budget,
        "within_budget": total <= budget,
        "base_image": m.base_image,
        "base_method": m.base_method,
        "base_bytes": base,
        "our_bytes": ours,
        // Oldest first, numbered as in the table.
        "layers": m.layers.iter().rev().enumerate().map(|(i, l)| layer_json(i + 1, l)).collect::<Vec<_>>(),
        "largest": sizes::largest_layers(&m.layers, LARGEST)
            .into_iter()
            .map(|l| {
                let n = count - m.layers.iter().position(|x| std::ptr::eq(x, l)).unwrap_or(0);
                layer_json(n, l)
            })
            .collect::<Vec<_>>(),
        "breakdown": m.breakdown.as_ref().map(|b| json!({
            "dir": b.dir,
            "layer": b.layer_n,
            "bytes": b.total,
            "error": b.error,
            "entries": b.items.iter().map(|(p, bytes)| json!({"path": p, "bytes": bytes, "share_percent": (sizes::share_percent(*bytes, total) * 10.0).round() / 10.0})).collect::<Vec<_>>(),
        })),
        "previous": baseline.cloned(),
        "delta_bytes": baseline.and_then(|b| delta_bytes(b, total)),
    })
}

/// Unix seconds as `2026-12-04T15:40:00Z` (UTC; no date crate needed).
pub fn rfc3339(unix: u64) -> String {
    let t = ui::UtcTime::from_unix(unix);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

// ---------------------------------------------------------------------------
// Integration checks

pub const INTEGRATION: &[IntegrationCheck] = &[
    IntegrationCheck { name: "size-check cpu passes within the default budget", run: check_passes },
    IntegrationCheck { name: "size-check fails with a budget below the real size", run: check_budget_too_small },
    IntegrationCheck { name: "size-check rejects a bad --max-size in one line", run: check_bad_budget },
];

fn check_passes(_env: &Env) -> Result<()> {
    let run = testkit::xtask(["size-check", "cpu"])?;
    run.expect_success()?;
    if !run.stdout.contains("largest #1") || !run.stdout.contains("base") {
        bail!("the report lacks the layer table or the largest layers:\n{}", testkit::tail(&run.stdout, 30));
    }
    Ok(())
}

fn check_budget_too_small(_env: &Env) -> Result<()> {
    testkit::xtask(["size-check", "cpu", "--max-size", "cpu=1MB"])?
        .expect_failure_mentioning("over its 1 MB budget for cpu")
}

fn check_bad_budget(_env: &Env) -> Result<()> {
    for (value, needle) in [("cpu=abc", "--max-size \"cpu=abc\""), ("tpu=1GB", "unknown flavor \"tpu\"")] {
        let run = testkit::xtask(["size-check", "cpu", "--max-size", value])?;
        run.expect_failure_mentioning(needle)?;
        let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() != 1 {
            bail!("--max-size {value}: expected one error line, got {}:\n{}", lines.len(), run.stderr);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(size: u64, created_by: &str) -> Layer {
        Layer { id: "<missing>".into(), size, created_by: created_by.into(), from_base: false }
    }

    /// Recorded with `docker history` on engine 20.10 (iopaint:cpu-manual and its base), trimmed.
    fn image_rows() -> Vec<Layer> {
        vec![
            layer(0, "LABEL org.opencontainers.image.title=iopaint-cpu"),
            layer(0, "ARG VERSION=0.0.0"),
            layer(0, "WORKDIR /app"),
            layer(281_083, "RUN |1 DEFAULT_MODEL=cv2 /bin/sh -c pip install --no-deps /tmp/iopaint-src # buildkit"),
            layer(238_445_382, "COPY /opt/venv /opt/venv # buildkit"),
            layer(8_867, "RUN |1 DEFAULT_MODEL=cv2 /bin/sh -c useradd --system --uid 10001 iopaint # buildkit"),
            layer(0, "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONUNBUFFERED=1"),
            layer(0, "ARG DEFAULT_MODEL=lama"),
            layer(0, "CMD [\"python3\"]"),
            layer(51_683_129, "RUN /bin/sh -c apt-get update  && apt-get install -y python3"),
            layer(0, "ENV LANG=C.UTF-8"),
            layer(73_911_060, ""),
        ]
    }

    fn base_rows() -> Vec<Layer> {
        image_rows()[8..].to_vec()
    }

    #[test]
    fn base_layers_match_the_base_history() {
        let image = image_rows();
        assert_eq!(base_rows_by_history(&image, &base_rows()), Some(4));
        let mut other = base_rows();
        other[1].size += 1;
        assert_eq!(base_rows_by_history(&image, &other), None);
        assert_eq!(base_rows_by_history(&image[..3], &base_rows()), None);
        assert_eq!(base_rows_by_history(&image, &[]), None);
    }

    #[test]
    fn base_layers_fall_back_to_the_first_runtime_instruction() {
        let image = image_rows();
        assert_eq!(base_rows_below_instruction(&image, "ARG DEFAULT_MODEL=lama"), Some(4));
        assert_eq!(base_rows_below_instruction(&image, "ENV PATH=/opt/venv/bin:$PATH \\ X=1"), Some(5));
        assert_eq!(base_rows_below_instruction(&image, "RUN --mount=type=cache,target=/x useradd --system"), Some(6));
        assert_eq!(base_rows_below_instruction(&image, "HEALTHCHECK CMD true"), None);
        let mut marked = image.clone();
        sizes::mark_base_layers(&mut marked, 4);
        assert_eq!(sizes::base_and_ours(&marked), (125_594_189, 238_735_332));
    }

    #[test]
    fn budgets_parse_with_clear_errors() {
        let b = parse_budgets(&[]).unwrap();
        assert_eq!((b["cpu"], b["gpu"]), (3_000_000_000, 5_000_000_000));
        let b = parse_budgets(&["cpu=2.5GB".into(), "gpu=4.5GB".into()]).unwrap();
        assert_eq!((b["cpu"], b["gpu"]), (2_500_000_000, 4_500_000_000));
        let err = parse_budgets(&["cpu=abc".into()]).unwrap_err();
        assert_eq!(err.chain().count(), 1);
        assert!(err.to_string().starts_with("--max-size \"cpu=abc\": size \"abc\""), "{err}");
        let err = parse_budgets(&["tpu=1GB".into()]).unwrap_err();
        assert!(err.to_string().contains("unknown flavor \"tpu\""), "{err}");
        let err = parse_budgets(&["cpu".into()]).unwrap_err();
        assert_eq!(err.to_string(), "--max-size \"cpu\" should look like cpu=2.5GB");
    }

    #[test]
    fn records_keep_the_previous_image() {
        let (baseline, history) = compare_with_record(&Value::Null, "iopaint:cpu-latest", 1_000, "sha256:a", 0);
        assert!(baseline.is_none());
        let history = history.unwrap();
        assert_eq!(history["iopaint:cpu-latest"]["date"], "1970-01-01T00:00:00Z");
        // Same image again: nothing written, no earlier image to compare with.
        let (baseline, unchanged) = compare_with_record(&history, "iopaint:cpu-latest", 1_000, "sha256:a", 5);
        assert!(baseline.is_none() && unchanged.is_none());
        // A new image: compared with the old one, which is kept as `previous`.
        let (baseline, history) = compare_with_record(&history, "iopaint:cpu-latest", 1_500, "sha256:b", 10);
        let baseline = baseline.unwrap();
        assert_eq!(delta_bytes(&baseline, 1_500), Some(500));
        let history = history.unwrap();
        assert_eq!(history["iopaint:cpu-latest"]["previous"]["image_id"], "sha256:a");
        // Rerun on that new image: still shows the change from the old one.
        let (baseline, unchanged) = compare_with_record(&history, "iopaint:cpu-latest", 1_500, "sha256:b", 20);
        assert!(unchanged.is_none());
        assert_eq!(baseline.unwrap()["image_id"], "sha256:a");
        assert_eq!(delta_text(&json!({"bytes": 1_000}), 1_500), "+500 B (+50.0%)");
    }

    const DU: &str = "4411713112\t/opt/venv
4411704920\t/opt/venv/lib
4411700824\t/opt/venv/lib/python3.11
4411696728\t/opt/venv/lib/python3.11/site-packages
2903335584\t/opt/venv/lib/python3.11/site-packages/nvidia
1244794437\t/opt/venv/lib/python3.11/site-packages/torch
1201070608\t/opt/venv/lib/python3.11/site-packages/torch/lib
18834456\t/opt/venv/lib/python3.11/site-packages/torch/bin
1175932328\t/opt/venv/lib/python3.11/site-packages/nvidia/cudnn
622572424\t/opt/venv/lib/python3.11/site-packages/nvidia/cublas
268237856\t/opt/venv/lib/python3.11/site-packages/nvidia/nccl
187331194\t/opt/venv/lib/python3.11/site-packages/xformers
76234513\t/opt/venv/lib/python3.11/site-packages/cv2
4096\t/opt/venv/bin
";

    #[test]
    fn big_directories_are_split_where_the_bytes_are() {
        let du = parse_du(DU);
        assert_eq!(du["/opt/venv/lib/python3.11/site-packages/nvidia/cudnn"], 1_175_932_328);
        let items = split_dir(&du, "/opt/venv", 0.20, 6);
        let names: Vec<&str> = items.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "site-packages/torch/lib",
                "site-packages/nvidia/cudnn",
                "site-packages/nvidia (files directly in it)",
                "site-packages/nvidia/cublas",
                "site-packages/nvidia/nccl",
                "site-packages/xformers",
            ]
        );
        assert_eq!(items[2].1, 2_903_335_584 - 1_175_932_328 - 622_572_424 - 268_237_856);
        assert!(split_dir(&du, "/nope", 0.2, 5).is_empty());
    }

    #[test]
    fn the_largest_copy_of_ours_is_looked_into() {
        let mut image = image_rows();
        sizes::mark_base_layers(&mut image, 4);
        assert_eq!(breakdown_target(&image, 364_329_521), Some((8, "/opt/venv".to_string())));
        // A RUN as the largest layer: nothing to look into.
        image[4].created_by = "RUN /bin/sh -c pip install torch # buildkit".into();
        assert_eq!(breakdown_target(&image, 364_329_521), None);
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_398_245), "2026-12-04T15:30:45Z");
    }
}
