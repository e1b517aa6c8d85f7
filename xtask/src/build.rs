//! `cargo xtask build cpu|gpu|all`: builds (and optionally pushes) the images.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use xshell::Shell;

use crate::docker::BuildRequest;
use crate::testkit::{self, IntegrationCheck, ScratchDir};
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
    /// `--network` for RUN steps, e.g. `host` on an engine that has no bridge network.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
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
            "stages": self.steps.stage_summaries().iter().map(|s| json!({
                "stage": s.stage,
                "all_cached": s.all_cached(),
                "cached": s.cached,
                "executed": s.executed,
            })).collect::<Vec<_>>(),
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
    pub network: Option<String>,
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
        network: spec.network.clone(),
        ..Default::default()
    };
    let outcome = env.docker.build(&req)?;
    let log_path = project::state_dir()?.join(format!("build-{}.log", flavor.name()));
    std::fs::write(&log_path, &outcome.log).ok();
    // Plain progress here; buildx's `rawjson` is accepted too if a client emits it.
    let parsed = buildkit::BuildLog::parse(&outcome.log).unwrap_or_else(|_| buildkit::BuildLog::from_plain(&outcome.log));
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
            network: args.network.clone(),
        };
        ui::info(format!("building {} from {}", tags[0], flavor.dockerfile_rel()));
        let image = build_image(&env, flavor, &spec)?;
        ui::ok(format!(
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
                ui::info(format!("pushing {tag}"));
                env.docker.push(tag)?;
                ui::ok(format!("pushed {tag}"));
            }
        }
        for stage in image.steps.stage_summaries() {
            let total = stage.cached.len() + stage.executed.len();
            let verdict = if stage.all_cached() { "all cached".to_string() } else { format!("{} ran", stage.executed.len()) };
            ui::info(format!("  {}: {}/{} steps cached ({verdict})", stage.stage, stage.cached.len(), total));
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

pub const INTEGRATION: &[IntegrationCheck] = &[
    IntegrationCheck { name: "a failing build names its stage and step", run: check_failure_names_the_step },
    IntegrationCheck { name: "--push to a registry on 127.0.0.1", run: check_push_to_local_registry },
    IntegrationCheck { name: "DOCKER_HOST drives a second engine", run: check_remote_engine },
];

/// A planted failing RUN in a named stage: the error must say where.
fn check_failure_names_the_step(env: &Env) -> Result<()> {
    let scratch = ScratchDir::new("failing-build")?;
    let dockerfile = scratch.path().join("Dockerfile");
    let base = env.build_args_for(Flavor::Cpu).get("PYTHON_IMAGE").cloned().unwrap_or("python:3.10-slim-bookworm".into());
    // Two stages: BuildKit names stages in its progress only in multistage builds.
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {base} AS doomed\nRUN echo fine\nRUN echo planted-failure-output && exit 3\n\
             FROM {base}\nCOPY --from=doomed /etc/hostname /tmp/never\n"
        ),
    )?;
    let spec = ImageSpec {
        dockerfile,
        context: scratch.path().to_path_buf(),
        tags: vec!["iopaint-test/failing:latest".into()],
        ..Default::default()
    };
    let err = match build_image(env, Flavor::Cpu, &spec) {
        Ok(_) => bail!("a Dockerfile whose RUN exits 3 built successfully"),
        Err(e) => format!("{e:#}"),
    };
    for needle in ["stage doomed", "step 3/3", "planted-failure-output"] {
        if !err.contains(needle) {
            bail!("the build error does not mention {needle:?}:\n{err}");
        }
    }
    Ok(())
}

/// Kills a background process and removes its scratch dir on drop.
struct Daemon {
    child: std::process::Child,
    _scratch: ScratchDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `docker-registry` on 127.0.0.1, then `build cpu --push --registry`.
fn check_push_to_local_registry(env: &Env) -> Result<()> {
    let registry_bin = which::which("docker-registry")
        .context("Debian's docker-registry is not installed (`apt-get install docker-registry`)")?;
    let scratch = ScratchDir::new("registry")?;
    let port = crate::smoke::free_port()?;
    let config = scratch.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            scratch.path().join("data").display()
        ),
    )?;
    let child = std::process::Command::new(registry_bin)
        .arg("serve")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting docker-registry")?;
    let _registry = Daemon { child, _scratch: scratch };
    let registry = format!("127.0.0.1:{port}");
    crate::test_task::wait_http_ok(&format!("http://{registry}/v2/"), Duration::from_secs(30))?;
    let version = project::app_version()?;
    let run = testkit::xtask(["build", "cpu", "--push", "--registry", registry.as_str()])?;
    let pushed = [format!("{registry}/{}", Flavor::Cpu.version_tag(&version)), format!("{registry}/{}", Flavor::Cpu.latest_tag())];
    for tag in &pushed {
        env.docker.remove_image(tag);
    }
    run.expect_success()?;
    let tags: serde_json::Value = ureq::get(&format!("http://{registry}/v2/{}/tags/list", crate::flavor::IMAGE_REPO))
        .call()
        .context("asking the registry for its tags")?
        .into_json()?;
    for want in [format!("cpu-{version}"), "cpu-latest".to_string()] {
        if !tags["tags"].as_array().is_some_and(|t| t.iter().any(|x| x == want.as_str())) {
            bail!("the registry does not list tag {want}: {tags}");
        }
    }
    Ok(())
}

/// Deletes the second engine's bridge on drop (after the engine has stopped).
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "delete", &self.0]).status();
    }
}

/// A second dockerd on its own socket, data root and bridge (no NAT, so builds
/// use `--network host`): `DOCKER_HOST=... cargo xtask build cpu` must build there.
/// Its own bridge matters: `--bridge none` would make it delete the first engine's docker0.
fn check_remote_engine(env: &Env) -> Result<()> {
    let dockerd = which::which("dockerd").context("dockerd not found")?;
    // Short paths: unix socket paths are limited to ~100 bytes.
    let scratch = ScratchDir::new("d2")?;
    let dir = scratch.path().to_path_buf();
    let socket = dir.join("docker.sock");
    let host = format!("unix://{}", socket.display());
    let bridge_name = format!("iopd2-{}", std::process::id() % 100_000);
    let sh = xshell::Shell::new()?;
    xshell::cmd!(sh, "ip link add {bridge_name} type bridge").quiet().run().context("creating a bridge for the second engine (needs root and iproute2)")?;
    let _bridge = Bridge(bridge_name.clone());
    xshell::cmd!(sh, "ip link set {bridge_name} up").quiet().run()?;
    let log = std::fs::File::create(dir.join("dockerd.log"))?;
    let child = std::process::Command::new(dockerd)
        .arg("--host")
        .arg(&host)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .args(["--bridge", &bridge_name, "--iptables=false", "--ip-masq=false"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting a second dockerd")?;
    // Declared after `_bridge`, so dropped first: the engine stops, then its bridge goes.
    let _engine = Daemon { child, _scratch: scratch };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !env.docker.engine_answers_on(&host) {
        if std::time::Instant::now() > deadline {
            bail!("the second dockerd did not come up; see {}", dir.join("dockerd.log").display());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The base images travel by `docker save | load`: no registry here.
    let bases: Vec<String> = env.build_args_for(Flavor::Cpu).iter()
        .filter(|(k, _)| k.ends_with("_IMAGE"))
        .map(|(_, v)| v.clone())
        .collect();
    let tar = dir.join("bases.tar");
    env.docker.save(&bases.iter().map(String::as_str).collect::<Vec<_>>(), &tar)?;
    env.docker.load_into(&host, &tar)?;
    std::fs::remove_file(&tar).ok();
    let run = testkit::xtask_with_env(["build", "cpu", "--network", "host"], &[("DOCKER_HOST", host.as_str())])?;
    run.expect_success()?;
    if !env.docker.image_exists_on(&host, &Flavor::Cpu.latest_tag()) {
        bail!("`DOCKER_HOST={host} cargo xtask build cpu` passed, but the second engine has no {}", Flavor::Cpu.latest_tag());
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
