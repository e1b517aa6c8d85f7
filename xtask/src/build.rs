//! `cargo xtask build cpu|gpu|all`: builds (and optionally pushes) the images.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use xshell::Shell;

use crate::docker::BuildRequest;
use crate::flavor::{Flavor, FlavorChoice};
use crate::report::Report;
use crate::setup::{self, Env, SetupOptions};
use crate::{buildkit, project, sizes, ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct BuildArgs {
    /// cpu, gpu or all.
    #[arg(value_enum)]
    pub flavor: FlavorChoice,
    /// Version tag (`iopaint:cpu-<v>`); default: the app's `__version__`.
    #[arg(long = "version", value_name = "V")]
    pub image_version: Option<String>,
    /// Push the tags to --registry after building.
    #[arg(long, requires = "registry")]
    pub push: bool,
    /// Registry host[:port][/namespace] to tag (and with --push, push) to.
    #[arg(long, value_name = "R")]
    pub registry: Option<String>,
    /// Build without Docker's layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Extra `--build-arg K=V` (repeatable); overrides what setup chose.
    #[arg(long = "build-arg", value_name = "K=V", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, String)>,
    /// CA bundle for the build's TLS (BuildKit secret); default from SSL_CERT_FILE etc.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputOpts,
}

/// `K=V` with a non-empty key.
pub fn parse_build_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

/// One image as built.
pub struct BuiltImage {
    pub flavor: Flavor,
    pub tags: Vec<String>,
    pub image_id: String,
    pub size: u64,
    pub layers: usize,
    pub elapsed: Duration,
    /// The parsed BuildKit progress: per-stage cached/executed steps.
    pub steps: buildkit::BuildLog,
    pub log: String,
}

impl BuiltImage {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "flavor": self.flavor.name(),
            "tags": self.tags,
            "image_id": self.image_id,
            "size_bytes": self.size,
            "layers": self.layers,
            "build_seconds": self.elapsed.as_secs_f64(),
            "steps_total": self.steps.cached_count().1,
            "steps_cached": self.steps.cached_count().0,
        })
    }
}

/// What to build, independent of the CLI (cache-test and bench reuse it).
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    pub echo: bool,
}

/// Build args for `flavor`: setup's choices, then the labels' values, then the user's.
pub fn flavor_build_args(env: &Env, flavor: Flavor, version: &str, overrides: &[(String, String)]) -> BTreeMap<String, String> {
    let sh = Shell::new().ok();
    let mut args = env.build_args_for(flavor);
    args.insert("VERSION".into(), version.to_string());
    if let Some(sh) = &sh {
        args.insert("REVISION".into(), project::git_revision(sh));
        args.insert("SOURCE".into(), project::git_source(sh));
    }
    for (k, v) in overrides {
        args.insert(k.clone(), v.clone());
    }
    args
}

/// Builds one image; on failure the error names the stage and step that failed.
pub fn build_image(env: &Env, flavor: Flavor, spec: &ImageSpec) -> Result<BuiltImage> {
    let iidfile = project::state_dir()?.join(format!("{}.iid", flavor.name()));
    let req = BuildRequest {
        dockerfile: spec.dockerfile.clone(),
        context: spec.context.clone(),
        tags: spec.tags.clone(),
        build_args: spec.build_args.clone(),
        ca_bundle: env.ca_bundle.clone(),
        no_cache: spec.no_cache,
        iidfile,
        echo: spec.echo,
        ..Default::default()
    };
    let outcome = env.docker.build(&req)?;
    let log_path = project::state_dir()?.join(format!("build-{}.log", flavor.name()));
    std::fs::write(&log_path, &outcome.log).ok();
    let parsed = buildkit::BuildLog::from_plain(&outcome.log);
    if !outcome.success {
        let why = match parsed.failure(12) {
            Some(failure) => format!("the {} image failed to build: {}", flavor.name(), failure.describe()),
            None => format!(
                "the {} image failed to build:\n{}",
                flavor.name(),
                outcome.log.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        };
        bail!("{why}\n(full log: {})", log_path.display());
    }
    let image_id = outcome.image_id.clone().context("the build did not write an image id (--iidfile)")?;
    let size = env.docker.image_size(&image_id)?;
    let layers = sizes::parse_history(&env.docker.history(&image_id)?)?.len();
    Ok(BuiltImage {
        flavor,
        tags: spec.tags.clone(),
        image_id,
        size,
        layers,
        elapsed: outcome.elapsed,
        steps: parsed,
        log: outcome.log,
    })
}

pub fn run(args: &BuildArgs) -> Result<()> {
    let env = setup::ensure(&SetupOptions { ca_bundle: args.ca_bundle.clone() })?;
    let version = match &args.image_version {
        Some(v) => v.clone(),
        None => project::app_version()?,
    };
    validate_tag_part(&version)?;
    let mut report = Report::new("build");
    report.set_headers(&["image", "id", "size", "layers", "build time", "cached steps"]);
    let mut built = Vec::new();
    for flavor in args.flavor.flavors() {
        let mut tags = vec![flavor.version_tag(&version), flavor.latest_tag()];
        if let Some(registry) = &args.registry {
            let registry = registry.trim_end_matches('/');
            tags.push(format!("{registry}/{}", flavor.version_tag(&version)));
            tags.push(format!("{registry}/{}", flavor.latest_tag()));
        }
        let spec = ImageSpec {
            dockerfile: flavor.dockerfile(),
            context: project::root(),
            tags: tags.clone(),
            build_args: flavor_build_args(&env, flavor, &version, &args.build_args),
            no_cache: args.no_cache,
            echo: true,
        };
        ui::info(&format!("building {} from {}", tags[0], flavor.dockerfile_rel()));
        let image = build_image(&env, flavor, &spec)?;
        ui::ok(&format!(
            "{}: {}, {} layers, built in {}, {}/{} steps cached",
            image.tags[0],
            ui::fmt_bytes(image.size),
            image.layers,
            ui::fmt_duration(image.elapsed),
            image.steps.cached_count().0,
            image.steps.cached_count().1
        ));
        if args.push {
            for tag in tags.iter().filter(|t| args.registry.as_deref().is_some_and(|r| t.starts_with(r.trim_end_matches('/')))) {
                ui::info(&format!("pushing {tag}"));
                env.docker.push(tag)?;
                ui::ok(&format!("pushed {tag}"));
            }
        }
        report.add_row(vec![
            image.tags[0].clone(),
            short_id(&image.image_id),
            ui::fmt_bytes(image.size),
            image.layers.to_string(),
            ui::fmt_duration(image.elapsed),
            format!("{}/{}", image.steps.cached_count().0, image.steps.cached_count().1),
        ]);
        built.push(image);
    }
    report.set_json(json!({
        "version": version,
        "pushed": args.push,
        "images": built.iter().map(BuiltImage::to_json).collect::<Vec<_>>(),
    }));
    report.emit(&args.out)?;
    Ok(())
}

pub fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Docker tags allow `[A-Za-z0-9_.-]`, at most 128 characters, not starting with `.` or `-`.
pub fn validate_tag_part(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.len() <= 120
        && !version.starts_with(['.', '-'])
        && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!("--version {version:?} cannot be part of a Docker tag: use letters, digits, `_`, `.` and `-`");
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_need_a_key() {
        assert_eq!(parse_build_arg("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_build_arg("EMPTY="), Ok(("EMPTY".into(), "".into())));
        assert!(parse_build_arg("novalue").is_err());
        assert!(parse_build_arg("=x").is_err());
    }

    #[test]
    fn versions_must_fit_in_a_tag() {
        assert!(validate_tag_part("0.1.0").is_ok());
        assert!(validate_tag_part("1.0-rc1_x").is_ok());
        assert!(validate_tag_part("").is_err());
        assert!(validate_tag_part("-x").is_err());
        assert!(validate_tag_part("a/b").is_err());
        assert!(validate_tag_part("a b").is_err());
    }

    #[test]
    fn short_ids_drop_the_digest_prefix() {
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789ab");
    }
}

pub const INTEGRATION: &[crate::testkit::IntegrationCheck] = &[];
