//! `cargo xtask setup`: makes this host able to build the images, idempotently.
//!
//! Every other task calls [`ensure`] first, so a fresh machine needs no manual step:
//! find a client that builds with BuildKit, start (or, as root on Debian, install)
//! an engine, find compose, make the base images available (pulled, or stand-ins
//! built from Debian's packages when no registry answers), and find a CA bundle.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xshell::{cmd, Shell};

use crate::docker::{self, BuildFrontend, BuildRequest, Compose, Docker, Probe};
use crate::flavor::Flavor;
use crate::{project, ui};

/// A base image a Dockerfile takes as a build arg, and our stand-in for it.
struct BaseImage {
    arg: &'static str,
    default: &'static str,
    standin: &'static str,
    flavors: &'static [Flavor],
}

const BASE_IMAGES: &[BaseImage] = &[
    BaseImage {
        arg: "NODE_IMAGE",
        default: "node:18-alpine",
        standin: "iopaint-standin/node:18-bookworm",
        flavors: &[Flavor::Cpu, Flavor::Gpu],
    },
    BaseImage {
        arg: "PYTHON_IMAGE",
        default: "python:3.10-slim-bookworm",
        standin: "iopaint-standin/python:3.11-bookworm",
        flavors: &[Flavor::Cpu],
    },
    BaseImage {
        arg: "GPU_BASE_IMAGE",
        default: "python:3.10-slim-bookworm",
        standin: "iopaint-standin/python:3.11-bookworm",
        flavors: &[Flavor::Gpu],
    },
];

const STANDIN_DEBIAN: &str = "iopaint-standin/debian:bookworm";

/// Where CA bundles are looked for when `--ca-bundle` is not given, in order.
pub const CA_BUNDLE_ENV_VARS: &[&str] =
    &["SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"];

#[derive(Clone, Debug, Default)]
pub struct SetupOptions {
    pub ca_bundle: Option<PathBuf>,
}

/// What the tasks need to drive Docker on this host.
pub struct Env {
    pub docker: Docker,
    pub engine_version: String,
    pub compose: Option<Compose>,
    pub ca_bundle: Option<PathBuf>,
    /// Build args this host needs per flavor (base images, torch source).
    pub build_args: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// One line per decision, for the report ("NODE_IMAGE: stand-in (pull failed: ...)").
    pub notes: Vec<String>,
}

impl Env {
    pub fn build_args_for(&self, flavor: Flavor) -> BTreeMap<String, String> {
        self.build_args.get(flavor.name()).cloned().unwrap_or_default()
    }
}

/// The `setup` task: ensure, then print what was found.
pub fn run(opts: &SetupOptions, json_out: bool) -> Result<()> {
    let env = ensure(opts)?;
    let facts = env_json(&env);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&facts)?);
    } else {
        ui::ok(format!(
            "docker: {} ({}), engine {}",
            env.docker.bin.display(),
            env.docker.frontend.as_str(),
            env.engine_version
        ));
        match &env.compose {
            Some(Compose::V2) => ui::ok("compose: docker compose (v2)"),
            Some(Compose::V1(p)) => ui::ok(format!("compose: {} (v1)", p.display())),
            None => ui::warn("compose: none found; compose-up needs `docker compose` or Debian's docker-compose"),
        }
        match &env.ca_bundle {
            Some(p) => ui::ok(format!("CA bundle: {} (passed as BuildKit secret `ca_bundle`)", p.display())),
            None => ui::info("CA bundle: none (builds use the images' own CA roots)"),
        }
        for (flavor, args) in &env.build_args {
            let line = args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
            ui::ok(format!("build args for {flavor}: {line}"));
        }
        for note in &env.notes {
            ui::info(note);
        }
    }
    Ok(())
}

fn env_json(env: &Env) -> serde_json::Value {
    json!({
        "docker": env.docker.bin.display().to_string(),
        "frontend": env.docker.frontend.as_str(),
        "engine_version": env.engine_version,
        "compose": match &env.compose {
            Some(Compose::V2) => json!({"kind": "v2", "command": "docker compose"}),
            Some(Compose::V1(p)) => json!({"kind": "v1", "command": p.display().to_string()}),
            None => serde_json::Value::Null,
        },
        "ca_bundle": env.ca_bundle.as_ref().map(|p| p.display().to_string()),
        "build_args": env.build_args,
        "notes": env.notes,
    })
}

/// Makes the host ready (idempotent) and returns what tasks need.
pub fn ensure(opts: &SetupOptions) -> Result<Env> {
    let sh = Shell::new()?;
    let mut notes = Vec::new();

    let (bin, frontend) = find_client(&sh, &mut notes)?;
    let docker = Docker::new(bin, frontend)?;
    let engine_version = ensure_engine(&sh, &docker, &mut notes)?;
    let compose = find_compose(&docker);
    let ca_bundle = find_ca_bundle(opts.ca_bundle.as_deref())?;

    let mut build_args: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
    build_args.insert("cpu", BTreeMap::new());
    build_args.insert("gpu", BTreeMap::new());
    let mut standins_ready = false;
    // PYTHON_IMAGE and GPU_BASE_IMAGE share a default: ask the registry once per image.
    let mut pulls: BTreeMap<&str, std::result::Result<(), String>> = BTreeMap::new();
    for base in BASE_IMAGES {
        let pull = match pulls.get(base.default) {
            Some(earlier) => earlier.clone(),
            None if docker.image_exists(base.default) => Ok(()),
            None => {
                let outcome = docker.pull(base.default, Duration::from_secs(300)).map_err(|e| e.to_string());
                if outcome.is_ok() {
                    notes.push(format!("{}: pulled {}", base.arg, base.default));
                }
                pulls.insert(base.default, outcome.clone());
                outcome
            }
        };
        let chosen = match pull {
            Ok(()) => base.default.to_string(),
            Err(why) => {
                if !standins_ready {
                    build_standins(&sh, &docker, ca_bundle.as_deref(), &mut notes)?;
                    standins_ready = true;
                }
                notes.push(format!(
                    "{}: {} cannot be pulled ({why}); using the stand-in {}",
                    base.arg, base.default, base.standin
                ));
                base.standin.to_string()
            }
        };
        if chosen != base.default {
            for flavor in base.flavors {
                build_args.get_mut(flavor.name()).unwrap().insert(base.arg.to_string(), chosen.clone());
            }
        }
    }

    // PyTorch's own index is the default torch source; where it cannot be reached,
    // the CPU image leaves torch out and the GPU image takes PyPI's CUDA 12.1 wheels
    // (same versions).
    if !reachable("download.pytorch.org", 443) {
        notes.push(
            "download.pytorch.org unreachable: CPU image built without torch (serves cv2), \
             GPU image from PyPI's CUDA 12.1 wheels"
                .into(),
        );
        let cpu = build_args.get_mut("cpu").unwrap();
        cpu.insert("INSTALL_TORCH".into(), "0".into());
        cpu.insert("DEFAULT_MODEL".into(), "cv2".into());
        let gpu = build_args.get_mut("gpu").unwrap();
        gpu.insert("TORCH_INDEX_URL".into(), "https://pypi.org/simple".into());
    }

    let env = Env { docker, engine_version, compose, ca_bundle, build_args, notes };
    let state = project::state_dir()?.join("setup.json");
    std::fs::write(&state, serde_json::to_string_pretty(&env_json(&env))? + "\n")
        .with_context(|| format!("writing {}", state.display()))?;
    Ok(env)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn is_debian() -> bool {
    Path::new("/etc/debian_version").exists()
}

pub fn apt_install(sh: &Shell, packages: &[&str]) -> Result<()> {
    ui::info(format!("installing Debian's {} (we are root on Debian)", packages.join(" ")));
    cmd!(sh, "apt-get update -q")
        .quiet()
        .ignore_stdout()
        .run()
        .context("apt-get update failed: check the network or /etc/apt/sources.list")?;
    cmd!(sh, "apt-get install -y -q --no-install-recommends {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("apt-get install {} failed", packages.join(" ")))?;
    Ok(())
}

/// Picks the first `docker` that can build with BuildKit; installs Debian's when
/// there is none at all and we may.
fn find_client(sh: &Shell, notes: &mut Vec<String>) -> Result<(PathBuf, BuildFrontend)> {
    let mut rejected = Vec::new();
    for attempt in 0..2 {
        for bin in docker::client_candidates() {
            match docker::probe_client(sh, &bin) {
                Probe::Usable(frontend) => {
                    if !rejected.is_empty() {
                        notes.push(format!(
                            "docker client: {} ({}); skipped {}",
                            bin.display(),
                            frontend.as_str(),
                            rejected.join("; ")
                        ));
                    }
                    return Ok((bin, frontend));
                }
                Probe::Rejected(why) => {
                    let line = format!("{}: {why}", bin.display());
                    if !rejected.contains(&line) {
                        rejected.push(line);
                    }
                }
            }
        }
        let no_engine = which::which("dockerd").is_err();
        if attempt == 0 && std::env::var_os("DOCKER").is_none() && no_engine && is_root() && is_debian() {
            apt_install(sh, &["docker.io", "docker-compose"])?;
            notes.push("installed Debian's docker.io and docker-compose".into());
            continue;
        }
        break;
    }
    if rejected.is_empty() {
        bail!(
            "no `docker` client found on PATH: install Docker (Docker Desktop, or `apt-get install docker.io` on Debian), \
             or point DOCKER at a client"
        );
    }
    bail!(
        "no docker client here can build with BuildKit ({}); install the buildx plugin \
         (`apt-get install docker-buildx` or docker-buildx-plugin), or Debian's docker.io, whose 20.10 client has \
         BuildKit built in, and/or set DOCKER=/path/to/that/docker",
        rejected.join("; ")
    )
}

/// True when the client talks to the default local socket (so starting a local
/// `dockerd` can help); a remote `DOCKER_HOST` or a context must not be second-guessed.
fn uses_local_default_engine() -> bool {
    let host_ok = match std::env::var("DOCKER_HOST") {
        Ok(h) => h.is_empty() || h == "unix:///var/run/docker.sock",
        Err(_) => true,
    };
    host_ok && std::env::var_os("DOCKER_CONTEXT").is_none()
}

fn ensure_engine(sh: &Shell, docker: &Docker, notes: &mut Vec<String>) -> Result<String> {
    let first_error = match docker.server_version() {
        Ok(v) => return Ok(v),
        Err(e) => e.to_string(),
    };
    if !uses_local_default_engine() {
        bail!(
            "the Docker engine at {} does not answer ({first_error}); start it or unset DOCKER_HOST/DOCKER_CONTEXT",
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the current context".into())
        );
    }
    if !is_root() {
        bail!(
            "no Docker engine answers ({first_error}); start it (`sudo systemctl start docker`, or open Docker Desktop) \
             and run this again"
        );
    }
    if which::which("dockerd").is_err() {
        if !is_debian() {
            bail!("no Docker engine is installed; install Docker Engine and run this again");
        }
        apt_install(sh, &["docker.io", "docker-compose"])?;
        notes.push("installed Debian's docker.io and docker-compose".into());
    }
    let log = project::state_dir()?.join("dockerd.log");
    ui::info(format!("starting dockerd (log: {})", log.display()));
    let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    // setsid: the engine must outlive this task and not get our Ctrl-C.
    Command::new("setsid")
        .arg("dockerd")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context("starting dockerd (is util-linux's `setsid` installed?)")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(v) = docker.server_version() {
            notes.push(format!("started dockerd {v}"));
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("dockerd did not answer within 60 s; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn find_compose(docker: &Docker) -> Option<Compose> {
    if docker.has_compose_v2() {
        return Some(Compose::V2);
    }
    which::which("docker-compose").ok().map(Compose::V1)
}

/// `--ca-bundle`, else the first of [`CA_BUNDLE_ENV_VARS`] naming a file.
pub fn find_ca_bundle(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--ca-bundle {}: no such file", p.display());
        }
        return Ok(Some(p.to_path_buf()));
    }
    Ok(CA_BUNDLE_ENV_VARS
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .find(|p| p.is_file()))
}

fn reachable(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else { return false };
    addrs.into_iter().any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

/// Builds our Debian stand-ins for the official base images: a minimal
/// debootstrap'ed bookworm imported as an image, then python3 or nodejs on top.
fn build_standins(sh: &Shell, docker: &Docker, ca_bundle: Option<&Path>, notes: &mut Vec<String>) -> Result<()> {
    let root = project::root();
    if !docker.image_exists(STANDIN_DEBIAN) {
        if which::which("debootstrap").is_err() {
            if is_root() && is_debian() {
                apt_install(sh, &["debootstrap"])?;
            } else {
                bail!(
                    "base images cannot be pulled and `debootstrap` is missing: install it (`apt-get install debootstrap`) \
                     to build stand-ins, or make the registry reachable"
                );
            }
        }
        let scratch = project::state_dir()?.join("standin");
        let rootfs = scratch.join("rootfs");
        if rootfs.exists() {
            std::fs::remove_dir_all(&rootfs).with_context(|| format!("removing {}", rootfs.display()))?;
        }
        std::fs::create_dir_all(&scratch)?;
        let progress = ui::Progress::start("debootstrap --variant=minbase bookworm (about 30 s)");
        cmd!(sh, "debootstrap --variant=minbase bookworm {rootfs} http://deb.debian.org/debian")
            .quiet()
            .ignore_stdout()
            .run()
            .context("debootstrap failed: is Debian's archive reachable?")?;
        progress.finish();
        slim_rootfs(&rootfs)?;
        let tarball = scratch.join("rootfs.tar");
        cmd!(sh, "tar -C {rootfs} -cf {tarball} .").quiet().run()?;
        docker.import(&tarball, STANDIN_DEBIAN)?;
        std::fs::remove_file(&tarball).ok();
        std::fs::remove_dir_all(&rootfs).ok();
        notes.push(format!("built {STANDIN_DEBIAN} with debootstrap"));
    }
    for (file, image) in [
        ("python.Dockerfile", "iopaint-standin/python:3.11-bookworm"),
        ("node.Dockerfile", "iopaint-standin/node:18-bookworm"),
    ] {
        if docker.image_exists(image) {
            continue;
        }
        let progress = ui::Progress::start(format!("building stand-in {image}"));
        let req = BuildRequest {
            dockerfile: root.join("docker/standin").join(file),
            context: root.join("docker/standin"),
            tags: vec![image.to_string()],
            ca_bundle: ca_bundle.map(Path::to_path_buf),
            iidfile: project::state_dir()?.join("standin.iid"),
            echo: false,
            ..Default::default()
        };
        let outcome = docker.build(&req)?;
        progress.finish();
        if !outcome.success {
            let tail: Vec<&str> = outcome.log.lines().rev().take(15).collect();
            bail!(
                "building stand-in {image} failed:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        notes.push(format!("built stand-in {image}"));
    }
    Ok(())
}

/// Leaves out what the official slim images leave out (apt lists, caches, docs,
/// locales), and keeps apt from putting them back.
fn slim_rootfs(rootfs: &Path) -> Result<()> {
    for dir in ["var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info"] {
        let path = rootfs.join(dir);
        if path.exists() {
            for entry in std::fs::read_dir(&path)? {
                let p = entry?.path();
                if p.is_dir() { std::fs::remove_dir_all(&p)? } else { std::fs::remove_file(&p)? }
            }
        }
    }
    std::fs::create_dir_all(rootfs.join("etc/dpkg/dpkg.cfg.d"))?;
    std::fs::write(
        rootfs.join("etc/dpkg/dpkg.cfg.d/iopaint-slim"),
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\n\
         path-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n",
    )?;
    std::fs::write(
        rootfs.join("etc/apt/apt.conf.d/iopaint-clean"),
        "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true\"; };\n\
         APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true\"; };\n\
         Dir::Cache::pkgcache \"\"; Dir::Cache::srcpkgcache \"\";\n",
    )?;
    std::fs::write(
        rootfs.join("etc/apt/sources.list"),
        "deb http://deb.debian.org/debian bookworm main\n\
         deb http://deb.debian.org/debian bookworm-updates main\n\
         deb http://deb.debian.org/debian-security bookworm-security main\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_ca_bundle_must_exist() {
        let err = find_ca_bundle(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn every_flavor_gets_each_base_image_arg_once() {
        for flavor in [Flavor::Cpu, Flavor::Gpu] {
            let args: Vec<_> = BASE_IMAGES.iter().filter(|b| b.flavors.contains(&flavor)).map(|b| b.arg).collect();
            let mut dedup = args.clone();
            dedup.dedup();
            assert_eq!(args, dedup);
            assert!(args.contains(&"NODE_IMAGE"));
        }
    }
}
