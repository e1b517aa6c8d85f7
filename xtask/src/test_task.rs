//! `cargo xtask test`: every test, from a fresh machine of ours.
//!
//! Installs what the tests need (the venv, npm packages, Debian's chromium, a
//! Docker engine through setup), then runs, in order: the xtask's unit tests,
//! pytest, vitest, the browser test against a real server, both image builds,
//! the CA-bundle-absence check, and every task's integration checks against the
//! real engine. Nothing is skipped: a missing engine is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use xshell::{cmd, Shell};

use crate::build::{self, ImageSpec};
use crate::flavor::Flavor;
use crate::setup::{self, Env, SetupOptions};
use crate::testkit::{IntegrationCheck, ScratchDir};
use crate::{bench, cache_test, ci, compose, dockerignore_check, project, pyenv, size_check, smoke, ui};

#[derive(Args, Clone, Debug)]
pub struct TestArgs {
    /// Run only the steps and integration checks whose name contains this.
    #[arg(long, value_name = "SUBSTR")]
    pub filter: Option<String>,
}

struct Outcome {
    name: String,
    passed: bool,
    elapsed: Duration,
    detail: String,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(project::root());
    let mut outcomes: Vec<Outcome> = Vec::new();
    let wanted = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));

    // Environment first: without it nothing below is meaningful, so these abort.
    let env = setup::ensure(&SetupOptions::default()).context("setting up Docker for the tests")?;
    pyenv::ensure_venv(&sh)?;
    ensure_host_tools(&sh)?;
    ensure_docker_disk(&sh, &env)?;
    ensure_node_modules(&sh)?;

    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<()>| {
        if !wanted(name) {
            return;
        }
        ui::info(format!("── {name}"));
        let started = Instant::now();
        let result = f();
        let elapsed = started.elapsed();
        match &result {
            Ok(()) => ui::ok(format!("{name} ({})", ui::fmt_duration(elapsed))),
            Err(e) => ui::error(format!("{name}: {e:#}")),
        }
        outcomes.push(Outcome {
            name: name.to_string(),
            passed: result.is_ok(),
            elapsed,
            detail: result.err().map(|e| format!("{e:#}")).unwrap_or_default(),
        });
    };

    step("xtask unit tests", &mut || {
        cmd!(sh, "cargo test --quiet -p xtask").run().context("cargo test -p xtask failed")?;
        Ok(())
    });
    step("pytest", &mut || {
        let python = pyenv::bin("python");
        cmd!(sh, "{python} -m pytest -q iopaint/tests")
            .env("IOPAINT_REQUIRE_TORCH", "1")
            .run()
            .context("pytest failed")?;
        Ok(())
    });
    step("vitest", &mut || {
        let _dir = sh.push_dir("web_app");
        cmd!(sh, "npm test --silent").run().context("vitest failed")?;
        Ok(())
    });
    step("browser test (web_app e2e against the dev server)", &mut || browser_test(&sh));
    step("build cpu image", &mut || build_flavor(&env, Flavor::Cpu));
    step("build gpu image", &mut || build_flavor(&env, Flavor::Gpu));
    step("docs: tested commands", &mut || docs_commands(&env));
    step("CA bundle absent from the cpu image's layers", &mut || ca_bundle_absent(&env, Flavor::Cpu));
    step("CA bundle absent from the gpu image's layers", &mut || ca_bundle_absent(&env, Flavor::Gpu));
    step("CA bundle check catches a bundle copied into a layer and deleted later", &mut || ca_check_catches_a_leak(&env));

    let groups: &[(&str, &[IntegrationCheck])] = &[
        ("build", build::INTEGRATION),
        ("dockerignore-check", dockerignore_check::INTEGRATION),
        ("size-check", size_check::INTEGRATION),
        ("cache-test", cache_test::INTEGRATION),
        ("smoke", smoke::INTEGRATION),
        ("compose-up", compose::INTEGRATION),
        ("ci", ci::INTEGRATION),
        ("bench", bench::INTEGRATION),
    ];
    for (group, checks) in groups {
        for check in *checks {
            let name = format!("{group}: {}", check.name);
            step(&name, &mut || (check.run)(&env));
        }
    }

    let passed = outcomes.iter().filter(|o| o.passed).count();
    let failed = outcomes.len() - passed;
    eprintln!();
    for o in &outcomes {
        let mark = if o.passed { "ok  " } else { "FAIL" };
        eprintln!("{mark} {:>8}  {}", ui::fmt_duration(o.elapsed), o.name);
        if !o.passed {
            eprintln!("             {}", o.detail.lines().next().unwrap_or(""));
        }
    }
    // The plain closing line CI reads.
    println!("xtask: {passed} passed, {failed} failed");
    if outcomes.is_empty() {
        bail!("no test matched --filter {:?}", args.filter.as_deref().unwrap_or(""));
    }
    if failed > 0 {
        bail!("{failed} of {} test steps failed", outcomes.len());
    }
    Ok(())
}

/// Debian packages the tests drive, by a program each one provides: chromium for
/// the browser test (never a downloaded browser), docker-registry for the push
/// test, iproute2 for the second engine's bridge.
const HOST_TOOLS: &[(&str, &str)] = &[("chromium", "chromium"), ("docker-registry", "docker-registry"), ("ip", "iproute2")];

fn ensure_host_tools(sh: &Shell) -> Result<()> {
    let missing: Vec<&str> = HOST_TOOLS
        .iter()
        .filter(|(program, _)| which::which(program).is_err())
        .filter(|(program, _)| !(*program == "chromium" && std::env::var_os("CHROMIUM_PATH").is_some()))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !setup::is_root() || !setup::is_debian() {
        bail!("the tests need Debian's {}: install them (apt-get install ...) and run this again", missing.join(" "));
    }
    setup::apt_install(sh, &missing)
}

/// Below this much free space under the engine's data root, the tests make room.
const MIN_FREE_FOR_TESTS: u64 = 15_000_000_000;

/// Rebuilding the GPU image leaves ~10 GB of build cache each time its venv
/// changes; on a long-lived CI machine that fills the disk. When space runs low,
/// trim BuildKit's cache (least recently used first) and say so.
fn ensure_docker_disk(sh: &Shell, env: &Env) -> Result<()> {
    let Ok(root) = env.docker.info_field("{{.DockerRootDir}}") else { return Ok(()) };
    if !std::path::Path::new(&root).exists() {
        return Ok(()); // a remote engine: its disk is not ours to measure
    }
    let avail = cmd!(sh, "df -B1 --output=avail {root}").quiet().read()?;
    let free: u64 = avail.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(u64::MAX);
    if free >= MIN_FREE_FOR_TESTS {
        return Ok(());
    }
    ui::warn(format!(
        "only {} free under {root}: trimming Docker's build cache to 10 GB (least recently used first)",
        ui::fmt_bytes(free)
    ));
    env.docker.prune_build_cache_to("10GB")
}

/// `npm ci` when the lockfile changed since the last install.
fn ensure_node_modules(sh: &Shell) -> Result<()> {
    let root = project::root();
    let lock = std::fs::read(root.join("web_app/package-lock.json")).context("reading web_app/package-lock.json")?;
    let stamp = root.join("web_app/node_modules/.xtask-stamp");
    let want = pyenv::fingerprint(&[&lock]);
    if std::fs::read_to_string(&stamp).map(|s| s.trim() == want).unwrap_or(false) {
        return Ok(());
    }
    let _dir = sh.push_dir(root.join("web_app"));
    let progress = ui::Progress::start("npm ci (web_app)");
    cmd!(sh, "npm ci --no-audit --no-fund --loglevel=error").quiet().run().context("npm ci failed in web_app/")?;
    progress.finish();
    std::fs::write(&stamp, want + "\n")?;
    Ok(())
}

/// Kills the dev server on drop, pass or fail.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the UI, serves it with the app from the venv, drives it in Chromium.
fn browser_test(sh: &Shell) -> Result<()> {
    let root = project::root();
    {
        let _dir = sh.push_dir(root.join("web_app"));
        cmd!(sh, "npm run build --silent").quiet().run().context("npm run build failed in web_app/")?;
    }
    let port = crate::smoke::free_port()?;
    let outputs = ScratchDir::new("browser-outputs")?;
    let models = ScratchDir::new("browser-models")?;
    let log_path = project::state_dir()?.join("browser-test-server.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(pyenv::bin("python"))
        .args(["-m", "iopaint", "start", "--host", "127.0.0.1", "--port", &port.to_string(), "--model", "cv2"])
        .arg("--model-dir")
        .arg(models.path())
        .arg("--output-dir")
        .arg(outputs.path())
        .env("IOPAINT_WEB_DIR", root.join("web_app/dist"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the app server")?;
    let _guard = ServerGuard(child);
    let url = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{url}/api/v1/server-config"), Duration::from_secs(60))
        .with_context(|| format!("the app server did not come up; see {}", log_path.display()))?;
    let screenshot = project::state_dir()?.join("browser-test.png");
    let _dir = sh.push_dir(root.join("web_app"));
    cmd!(sh, "node e2e/browser-test.mjs --url {url} --screenshot {screenshot}")
        .run()
        .context("the browser test failed")?;
    ui::info(format!("screenshot: {}", screenshot.display()));
    Ok(())
}

pub fn wait_http_ok(url: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(resp) = ureq::get(url).timeout(Duration::from_secs(2)).call() {
            if resp.status() == 200 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer 200 within {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn build_flavor(env: &Env, flavor: Flavor) -> Result<()> {
    let version = project::app_version()?;
    let spec = ImageSpec {
        dockerfile: flavor.dockerfile(),
        context: project::root(),
        tags: vec![flavor.version_tag(&version), flavor.latest_tag()],
        build_args: build::flavor_build_args(env, flavor, &version, &[]),
        no_cache: false,
        echo: false,
        network: None,
    };
    let image = build::build_image(env, flavor, &spec)?;
    ui::info(format!(
        "{}: {}, {} layers, built in {}",
        flavor.latest_tag(),
        ui::fmt_bytes(image.size),
        image.layers,
        ui::fmt_duration(image.elapsed)
    ));
    Ok(())
}

/// The CA bundle is passed as a secret: no layer may hold a file with its
/// exact bytes, and no history entry may hold a certificate. The same pass must
/// find the image's own /etc/os-release, or the scan itself is broken.
fn ca_bundle_absent(env: &Env, flavor: Flavor) -> Result<()> {
    ca_bundle_absent_from(env, &flavor.latest_tag())
}

fn ca_bundle_absent_from(env: &Env, image: &str) -> Result<()> {
    let image = image.to_string();
    let Some(bundle) = env.ca_bundle.clone() else {
        bail!("no CA bundle was found on this host, so its absence cannot be checked: set SSL_CERT_FILE");
    };
    let history = env.docker.history(&image)?;
    if history.contains("BEGIN CERTIFICATE") {
        bail!("`docker history {image}` contains a certificate");
    }
    let bundle_bytes = std::fs::read(&bundle)?;
    let control = env.docker.run_rm(&image, "cat", &["/usr/lib/os-release"], Duration::from_secs(60))?.into_bytes();
    let mut child = env.docker.save_stream(&image)?;
    let mut stdout = child.stdout.take().context("docker save has no stdout")?;
    let found = crate::tarscan::find_in_layers(&mut stdout, &[&bundle_bytes, &control]);
    drop(stdout);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("docker save {image} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let found = found.with_context(|| format!("reading the layers of {image}"))?;
    if found[1].is_empty() {
        bail!("the layer scan of {image} did not find its own /usr/lib/os-release: the scan is broken");
    }
    if !found[0].is_empty() {
        bail!("{image} holds the CA bundle {} in its layers: {}", bundle.display(), found[0].join(", "));
    }
    Ok(())
}

/// Planted fault: an image that COPYs the bundle and deletes it in a later layer.
fn ca_check_catches_a_leak(env: &Env) -> Result<()> {
    let bundle = env.ca_bundle.clone().context("no CA bundle on this host: set SSL_CERT_FILE")?;
    let base = env
        .build_args_for(Flavor::Cpu)
        .get("PYTHON_IMAGE")
        .cloned()
        .unwrap_or_else(|| "python:3.10-slim-bookworm".into());
    let scratch = ScratchDir::new("leaky")?;
    std::fs::copy(&bundle, scratch.path().join("ca.pem"))?;
    std::fs::write(scratch.path().join("Dockerfile"), format!("FROM {base}\nCOPY ca.pem /tmp/ca.pem\nRUN rm /tmp/ca.pem\n"))?;
    let tag = "iopaint-test/leaky-ca:latest";
    let outcome = env.docker.build(&crate::docker::BuildRequest {
        dockerfile: scratch.path().join("Dockerfile"),
        context: scratch.path().to_path_buf(),
        tags: vec![tag.to_string()],
        iidfile: scratch.path().join("iid"),
        ..Default::default()
    })?;
    let verdict = if outcome.success { ca_bundle_absent_from(env, tag) } else { Ok(()) };
    env.docker.remove_image(tag);
    if !outcome.success {
        bail!("building the leaky fixture image failed:\n{}", crate::testkit::tail(&outcome.log, 10));
    }
    match verdict {
        Ok(()) => bail!("the CA-bundle check passed an image that has the bundle in a layer"),
        Err(e) if format!("{e:#}").contains("holds the CA bundle") => Ok(()),
        Err(e) => bail!("the CA-bundle check failed for another reason: {e:#}"),
    }
}

/// The fenced blocks marked ```` ```sh tested ```` in README.md and docs/*.md, in order.
pub fn tested_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None if trimmed.starts_with("```") => {
                let info: Vec<&str> = trimmed.trim_start_matches('`').split_whitespace().collect();
                if info.first().is_some_and(|l| matches!(*l, "sh" | "bash" | "shell")) && info.contains(&"tested") {
                    current = Some(String::new());
                }
            }
            Some(block) if trimmed.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Runs every tested block of the docs with bash (`set -euo pipefail`) from the
/// repository root, with `docker` resolving to the client setup chose.
fn docs_commands(env: &Env) -> Result<()> {
    let root = project::root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let shim = ScratchDir::new("docs-bin")?;
    std::os::unix::fs::symlink(&env.docker.bin, shim.path().join("docker"))?;
    let path = format!("{}:{}", shim.path().display(), std::env::var("PATH").unwrap_or_default());
    let mut ran = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for (i, block) in tested_blocks(&text).into_iter().enumerate() {
            let name = format!("{} block {}", file.strip_prefix(&root).unwrap_or(&file).display(), i + 1);
            ui::info(format!("running {name}"));
            let status = Command::new("bash")
                .arg("-c")
                .arg(format!("set -euo pipefail\n{block}"))
                .current_dir(&root)
                .env("PATH", &path)
                .env("DOCKER_BUILDKIT", "1")
                .stdin(Stdio::null())
                .status()
                .with_context(|| format!("running {name}"))?;
            if !status.success() {
                bail!("{name} failed ({status}):\n{block}");
            }
            ran += 1;
        }
    }
    if ran == 0 {
        bail!("no ```sh tested block found in README.md or docs/");
    }
    ui::info(format!("{ran} tested doc blocks passed"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blocks_marked_tested_are_run() {
        let md = "text\n```sh tested\necho a\necho b\n```\n```sh\necho no\n```\n```bash tested\necho c\n```\n";
        assert_eq!(tested_blocks(md), vec!["echo a\necho b\n".to_string(), "echo c\n".to_string()]);
        assert!(tested_blocks("```sh\nx\n```\n").is_empty());
    }
}
