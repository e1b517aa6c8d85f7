//! `cargo xtask compose-up`: bring docker-compose.yml up under a unique project name,
//! wait for every service's health check, run the smoke HTTP checks against it, show
//! `ps`, prove the named volumes keep a file across `down`/`up`, then `down -v`.
//!
//! Works with compose v2 (`docker compose`) and Debian's v1 1.29 (`docker-compose`),
//! so nothing here relies on `up --wait` (v2 only): health is polled with `docker inspect`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::docker::{Compose, Docker};
use crate::flavor::Flavor;
use crate::setup::{self, Env, SetupOptions};
use crate::smoke::{self, Checks, Cleanup, Http, HttpTarget, Leftover, Outputs};
use crate::testkit::{self, IntegrationCheck};
use crate::{project, ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct ComposeArgs {
    /// Also start the services of this profile (`gpu`; only when the host has an NVIDIA runtime).
    #[arg(long, value_name = "PROFILE", value_parser = ["gpu"])]
    pub profile: Option<String>,
    /// Leave the stack running at the end and print its URL.
    #[arg(long)]
    pub keep: bool,
    /// Seconds to wait for each service to report healthy.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub timeout: u64,
    #[command(flatten)]
    pub out: OutputOpts,
}

const CPU_SERVICE: &str = "iopaint-cpu";
/// A model every image can serve: `lama` would need big-lama.pt, which nothing downloads here.
const MODEL: &str = "cv2";
/// Written into the models volume to prove that volume persists too.
const MARKER: &str = "/app/models/.xtask-persist";

/// A service's running container.
#[derive(Clone, Debug)]
pub struct Service {
    pub service: String,
    pub id: String,
    pub name: String,
}

/// One compose project on docker-compose.yml.
pub struct Stack<'a> {
    docker: &'a Docker,
    compose: Compose,
    pub file: PathBuf,
    pub project: String,
    pub env: BTreeMap<String, String>,
    pub profiles: Vec<String>,
}

impl<'a> Stack<'a> {
    /// A new project with free ports, MODEL=cv2 and the given images.
    pub fn new(env: &'a Env, profiles: Vec<String>, cpu_image: &str, gpu_image: &str) -> Result<Stack<'a>> {
        let compose = env.compose.clone().ok_or_else(|| {
            anyhow!(
                "no compose tool found: install the compose v2 plugin (`docker compose`) or Debian's \
                 `apt-get install docker-compose` (1.29), then run `cargo xtask setup`"
            )
        })?;
        let file = project::root().join("docker-compose.yml");
        if !file.is_file() {
            bail!("{} is missing", file.display());
        }
        let mut vars = BTreeMap::new();
        // Loopback only, whatever the caller's environment says.
        vars.insert("IOPAINT_BIND".to_string(), "127.0.0.1".to_string());
        vars.insert("IOPAINT_PORT".to_string(), smoke::free_port()?.to_string());
        vars.insert("IOPAINT_GPU_PORT".to_string(), smoke::free_port()?.to_string());
        vars.insert("MODEL".to_string(), MODEL.to_string());
        vars.insert("IOPAINT_CPU_IMAGE".to_string(), cpu_image.to_string());
        vars.insert("IOPAINT_GPU_IMAGE".to_string(), gpu_image.to_string());
        Ok(Stack { docker: &env.docker, compose, file, project: smoke::unique_name("iopaint-xt"), env: vars, profiles })
    }

    pub fn tool(&self) -> String {
        match &self.compose {
            Compose::V2 => format!("{} compose (v2)", self.docker.bin.display()),
            Compose::V1(p) => format!("{} (v1)", p.display()),
        }
    }

    /// What `down -v` needs, for the cleanup guard and the signal handler.
    pub fn leftover(&self) -> Leftover {
        Leftover::Compose {
            compose: self.compose.clone(),
            file: self.file.clone(),
            project: self.project.clone(),
            env: self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            profiles: self.profiles.clone(),
        }
    }

    /// Runs `compose [--profile P] ARGS`; the error carries the tool's last lines.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut full: Vec<&str> = Vec::new();
        for p in &self.profiles {
            full.push("--profile");
            full.push(p);
        }
        full.extend(args);
        let (ok, out) = self.docker.compose(&self.compose, &self.file, &self.project, &self.env, &full)?;
        if !ok {
            bail!("`compose {}` failed:\n{}", full.join(" "), testkit::tail(out.trim_end(), 20));
        }
        Ok(out)
    }

    /// `up -d --no-build`: images come from `cargo xtask build`, never built here by surprise.
    pub fn up(&self) -> Result<()> {
        self.run(&["up", "--detach", "--no-build"]).map(|_| ())
    }

    pub fn down(&self, volumes: bool) -> Result<()> {
        let mut args = vec!["down", "--remove-orphans"];
        if volumes {
            args.push("--volumes");
        }
        self.run(&args).map(|_| ())
    }

    pub fn ps(&self) -> Result<String> {
        self.run(&["ps"])
    }

    /// The project's containers with their service names.
    pub fn services(&self) -> Result<Vec<Service>> {
        let ids = self.run(&["ps", "-q"])?;
        let mut out = Vec::new();
        for id in ids.lines().map(str::trim).filter(|l| is_container_id(l)) {
            let info = self
                .docker
                .container_inspect(id, "{{index .Config.Labels \"com.docker.compose.service\"}}|{{.Name}}")?;
            let (service, name) = info.split_once('|').unwrap_or((info.as_str(), id));
            out.push(Service {
                service: service.to_string(),
                id: id.to_string(),
                name: name.trim_start_matches('/').to_string(),
            });
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    pub fn service(&self, service: &str) -> Result<Service> {
        self.services()?
            .into_iter()
            .find(|s| s.service == service)
            .ok_or_else(|| anyhow!("compose started no {service} container"))
    }

    /// `http://127.0.0.1:PORT` of a service's port 8080, from `compose port`.
    pub fn url(&self, service: &str) -> Result<String> {
        let out = self.run(&["port", service, "8080"])?;
        let addr = parse_port_line(&out).ok_or_else(|| anyhow!("`compose port {service} 8080` said {out:?}"))?;
        Ok(format!("http://{addr}"))
    }

    /// Waits until every started container is healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<Vec<(Service, Duration)>> {
        let services = self.services()?;
        if services.is_empty() {
            bail!("`compose up` started no container");
        }
        let mut out = Vec::new();
        for s in services {
            let took = smoke::wait_healthy(self.docker, &s.name, timeout)?;
            out.push((s, took));
        }
        Ok(out)
    }
}

/// Compose v1 prints 64-hex ids; v2 too. Other lines (warnings) are skipped.
fn is_container_id(line: &str) -> bool {
    line.len() >= 12 && line.chars().all(|c| c.is_ascii_hexdigit())
}

/// `127.0.0.1:49153` (possibly after warnings) -> "127.0.0.1:49153"; `0.0.0.0:P` -> loopback.
pub fn parse_port_line(out: &str) -> Option<String> {
    let line = out.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    let (host, port) = line.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = match host {
        "0.0.0.0" | "" | "[::]" | "::" => "127.0.0.1",
        h => h,
    };
    Some(format!("{host}:{port}"))
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// What a down/up cycle kept.
#[derive(Debug)]
pub struct Persistence {
    pub file: String,
    pub old_container: String,
    pub new_container: String,
    pub output_kept: bool,
    pub marker_kept: bool,
}

/// Inpaint (writes into the outputs volume) and a marker in the models volume, then
/// `down` (with `-v` when `remove_volumes`), `up`, and look for both in the new container.
pub fn persistence_cycle(stack: &Stack, remove_volumes: bool, timeout: Duration) -> Result<Persistence> {
    let docker = stack.docker;
    let before = stack.service(CPU_SERVICE)?;
    let http = Http::new(&stack.url(CPU_SERVICE)?);
    let result = smoke::inpaint_test_image(&http).context("inpaint before the down/up cycle")?;
    let file =
        result.output_file.ok_or_else(|| anyhow!("the server did not save the result (no X-Output-File header)"))?;
    docker.exec(&before.name, &["sh", "-c", &format!("echo persisted > {MARKER}")])?;
    stack.down(remove_volumes)?;
    if docker.container_exists(&before.id) {
        bail!("`down` left container {} behind, so the cycle would prove nothing", before.name);
    }
    stack.up()?;
    stack.wait_healthy(timeout)?;
    let after = stack.service(CPU_SERVICE)?;
    if after.id == before.id {
        bail!("`up` reused container {}: the cycle proves nothing", before.name);
    }
    let listing = docker.exec(&after.name, &["ls", "-1", "/app/outputs"])?;
    let output_kept = listing.lines().any(|l| l.trim() == file);
    let marker_kept = docker.exec(&after.name, &["cat", MARKER]).is_ok();
    Ok(Persistence {
        file,
        old_container: short(&before.id),
        new_container: short(&after.id),
        output_kept,
        marker_kept,
    })
}

pub fn run(args: &ComposeArgs) -> Result<()> {
    let env = setup::ensure(&SetupOptions::default())?;
    let docker = &env.docker;
    let cpu_image = std::env::var("IOPAINT_CPU_IMAGE").unwrap_or_else(|_| Flavor::Cpu.latest_tag());
    let gpu_image = std::env::var("IOPAINT_GPU_IMAGE").unwrap_or_else(|_| Flavor::Gpu.latest_tag());
    if !docker.image_exists(&cpu_image) {
        bail!("image {cpu_image} not found: build it first with `cargo xtask build cpu`");
    }

    let mut checks = Checks::default();
    let mut profiles = Vec::new();
    let mut notes = Vec::new();
    if args.profile.as_deref() == Some("gpu") {
        if !docker.has_nvidia_runtime() {
            let why =
                "the engine has no NVIDIA runtime (install the NVIDIA container toolkit); only the CPU service runs";
            checks.skip("gpu profile", why);
            notes.push(format!("gpu profile skipped: {why}"));
        } else if !docker.image_exists(&gpu_image) {
            bail!("image {gpu_image} not found: build it first with `cargo xtask build gpu`");
        } else {
            profiles.push("gpu".to_string());
        }
    }

    let stack = Stack::new(&env, profiles.clone(), &cpu_image, &gpu_image)?;
    ui::info(format!(
        "compose project {} with {} (IOPAINT_PORT={}, MODEL={MODEL}{})",
        stack.project,
        stack.tool(),
        stack.env["IOPAINT_PORT"],
        if profiles.is_empty() { String::new() } else { format!(", profiles {}", profiles.join(",")) }
    ));
    let started = Instant::now();
    let mut cleanup = Cleanup::new(docker);
    let leftover = stack.leftover();
    cleanup.add(leftover.clone());

    let timeout = Duration::from_secs(args.timeout);
    let mut ps_text = String::new();
    let mut urls: Vec<(String, String)> = Vec::new();
    let up = checks.run("up -d", || {
        stack.up()?;
        let names: Vec<String> = stack.services()?.into_iter().map(|s| s.service).collect();
        Ok(format!("started {}", names.join(", ")))
    });
    let mut healthy = Vec::new();
    if up {
        match stack.services() {
            Ok(services) => {
                for s in services {
                    let ok = checks.run(&format!("{}: healthy", s.service), || {
                        let took = smoke::wait_healthy(docker, &s.name, timeout)?;
                        Ok(format!("{} healthy after {}", s.name, ui::fmt_duration(took)))
                    });
                    if ok {
                        healthy.push(s);
                    }
                }
            }
            Err(err) => {
                checks.run("containers listed", || Err(err));
            }
        }
    }
    for s in &healthy {
        let url = match stack.url(&s.service) {
            Ok(url) => url,
            Err(err) => {
                checks.run(&format!("{}: published port", s.service), || Err(err));
                continue;
            }
        };
        urls.push((s.service.clone(), url.clone()));
        checks.extend(smoke::http_checks(&HttpTarget {
            base_url: url,
            expected_model: MODEL.to_string(),
            outputs: Outputs::Container { docker, container: &s.name },
            label: format!("{}: ", s.service),
        }));
        checks.run(&format!("{}: no traceback in logs", s.service), || {
            let logs = docker.logs(&s.name, 100_000)?;
            match smoke::find_traceback(&logs) {
                Some(tb) => bail!("the logs hold a traceback:\n{tb}"),
                None => Ok(format!("{} log lines", logs.lines().count())),
            }
        });
    }
    if up {
        checks.run("ps", || {
            ps_text = stack.ps()?;
            for line in ps_text.lines() {
                ui::progress_line(line);
            }
            let up = ps_text.lines().filter(|l| l.contains(" Up ") || l.contains("running")).count();
            Ok(format!(
                "{up} container(s) up: {}",
                healthy.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        });
    }
    if healthy.iter().any(|s| s.service == CPU_SERVICE) {
        checks.run("volumes persist across down/up", || {
            let p = persistence_cycle(&stack, false, timeout)?;
            if !p.output_kept || !p.marker_kept {
                bail!(
                    "after down/up the new container {} lacks {}{}",
                    p.new_container,
                    if p.output_kept { "" } else { "the output file (outputs volume) " },
                    if p.marker_kept { "" } else { "the marker in the models volume" }
                );
            }
            Ok(format!("{} and {MARKER} survived container {} -> {}", p.file, p.old_container, p.new_container))
        });
    }

    if args.keep {
        cleanup.forget(&leftover);
    } else {
        checks.run("down -v removes everything", || {
            stack.down(true)?;
            let left = docker.objects_with_label(&format!("com.docker.compose.project={}", stack.project))?;
            if !left.is_empty() {
                bail!("still there after down -v: {}", left.join(", "));
            }
            Ok("no container, network or volume left".into())
        });
    }
    let total = started.elapsed();

    let mut report = smoke::checks_report(&format!("compose-up ({})", stack.project), &checks.results);
    report.fact("compose", stack.tool());
    report.fact("project", stack.project.clone());
    report.fact("profiles", profiles.clone());
    report.fact("model", MODEL);
    report.fact("urls", urls.iter().map(|(s, u)| json!({"service": s, "url": u})).collect::<Vec<_>>());
    report.fact("ps", ps_text.clone());
    report.fact("kept", args.keep);
    report.fact("seconds", (total.as_secs_f64() * 1000.0).round() / 1000.0);
    for note in notes {
        report.note(note);
    }
    report.emit(&args.out)?;
    if args.keep {
        for (service, url) in &urls {
            ui::ok(format!("{service} is up at {url}"));
        }
        ui::info(format!(
            "left running (--keep); remove it with: {} --file {} --project-name {} down --volumes",
            match &stack.compose {
                Compose::V2 => "docker compose".to_string(),
                Compose::V1(p) => p.display().to_string(),
            },
            stack.file.display(),
            stack.project
        ));
    }
    drop(cleanup);
    if let Some(reason) = smoke::failure_reason(&checks.results) {
        bail!("compose-up failed: {reason}");
    }
    ui::ok(format!("compose-up: {} checks passed in {}", checks.results.len(), ui::fmt_duration(total)));
    Ok(())
}

// ---------------------------------------------------------------------------
// Integration checks (real engine)

pub const INTEGRATION: &[IntegrationCheck] = &[
    IntegrationCheck { name: "compose-up passes and leaves nothing behind", run: compose_up_passes },
    IntegrationCheck {
        name: "compose volumes: down keeps a file, down -v loses it",
        run: volumes_persist_only_without_v,
    },
];

fn compose_up_passes(env: &Env) -> Result<()> {
    let run = testkit::xtask(["compose-up", "--json"])?;
    run.expect_success()?;
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("compose-up --json printed no JSON:\n{}", run.stdout))?;
    let project = report["facts"]["project"].as_str().ok_or_else(|| anyhow!("no project in the JSON report"))?;
    let checks = report["facts"]["checks"].as_array().cloned().unwrap_or_default();
    for needed in ["volumes persist across down/up", "iopaint-cpu: inpaint", "down -v removes everything"] {
        let found = checks.iter().any(|c| c["name"] == needed && c["status"] == "pass");
        if !found {
            bail!("the report has no passing {needed:?} check");
        }
    }
    let left = env.docker.objects_with_label(&format!("com.docker.compose.project={project}"))?;
    if !left.is_empty() {
        bail!("compose-up left behind: {}", left.join(", "));
    }
    Ok(())
}

/// The persistence check has teeth: the same cycle with `down -v` must lose the file.
fn volumes_persist_only_without_v(env: &Env) -> Result<()> {
    let image = Flavor::Cpu.latest_tag();
    if !env.docker.image_exists(&image) {
        bail!("{image} is missing: run `cargo xtask build cpu` first");
    }
    let timeout = Duration::from_secs(180);
    let stack = Stack::new(env, Vec::new(), &image, &Flavor::Gpu.latest_tag())?;
    let mut cleanup = Cleanup::new(&env.docker);
    cleanup.add(stack.leftover());
    stack.up()?;
    stack.wait_healthy(timeout)?;
    let kept = persistence_cycle(&stack, false, timeout)?;
    if !kept.output_kept || !kept.marker_kept {
        bail!("down/up lost data: {kept:?}");
    }
    let lost = persistence_cycle(&stack, true, timeout)?;
    if lost.output_kept || lost.marker_kept {
        bail!("down -v/up kept data, so the volumes are not what persists it: {lost:?}");
    }
    stack.down(true)?;
    let left = env.docker.objects_with_label(&format!("com.docker.compose.project={}", stack.project))?;
    drop(cleanup);
    if !left.is_empty() {
        bail!("down -v left behind: {}", left.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lines_from_both_compose_versions() {
        assert_eq!(parse_port_line("127.0.0.1:49153\n"), Some("127.0.0.1:49153".into()));
        assert_eq!(parse_port_line("WARNING: something\n0.0.0.0:8080\n"), Some("127.0.0.1:8080".into()));
        assert_eq!(parse_port_line(":8080"), Some("127.0.0.1:8080".into()));
        assert_eq!(parse_port_line(""), None);
        assert_eq!(parse_port_line("no port here"), None);
    }

    #[test]
    fn container_ids_are_told_from_warnings() {
        assert!(is_container_id("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
        assert!(!is_container_id("WARNING: The MODEL variable is not set."));
        assert!(!is_container_id(""));
    }
}
