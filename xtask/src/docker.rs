//! The only place that builds `docker` and compose command lines.
//!
//! The client honours `DOCKER_HOST`, `DOCKER_CONTEXT` and `docker context use`
//! by itself, so every task drives a remote engine the same way: we never
//! override the environment, we only add to it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::ui;

/// How a client runs BuildKit builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildFrontend {
    /// `docker buildx build --load`: any client with the buildx plugin.
    Buildx,
    /// `DOCKER_BUILDKIT=1 docker build`: clients before 23.0 carry BuildKit's
    /// client themselves (Debian's 20.10 does); later ones need buildx.
    Builtin,
}

impl BuildFrontend {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildFrontend::Buildx => "buildx",
            BuildFrontend::Builtin => "builtin",
        }
    }
}

/// Which compose tool the host has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compose {
    /// `docker compose` (v2 plugin).
    V2,
    /// A standalone `docker-compose` (Debian's is 1.29).
    V1(PathBuf),
}

/// A docker client that can reach an engine and build with BuildKit.
pub struct Docker {
    pub bin: PathBuf,
    pub frontend: BuildFrontend,
    sh: Shell,
}

/// PIDs of build/run children, so a signal handler can stop them
/// (see cache_test: Ctrl-C must not leave a build running on the old bytes).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn kill_children() {
    let pids: Vec<u32> = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    for pid in pids {
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
}

/// What probing one `docker` binary found.
pub enum Probe {
    Usable(BuildFrontend),
    Rejected(String),
}

/// Every `docker` binary worth trying: `$DOCKER` first, then each one on PATH.
pub fn client_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(explicit) = std::env::var_os("DOCKER") {
        let p = PathBuf::from(explicit);
        let resolved = which::which(&p).unwrap_or(p);
        out.push(resolved);
        return out;
    }
    if let Ok(all) = which::which_all("docker") {
        for p in all {
            // /bin and /usr/bin are often the same directory: probe each file once.
            let canon = std::fs::canonicalize(&p).unwrap_or(p.clone());
            if !out.iter().any(|q: &PathBuf| std::fs::canonicalize(q).unwrap_or(q.clone()) == canon) {
                out.push(p);
            }
        }
    }
    out
}

/// Decides whether `bin` can build with BuildKit, without needing an engine.
pub fn probe_client(sh: &Shell, bin: &Path) -> Probe {
    if cmd!(sh, "{bin} buildx version").quiet().ignore_stderr().ignore_stdout().run().is_ok() {
        return Probe::Usable(BuildFrontend::Buildx);
    }
    let format = "{{.Client.Version}}";
    let version = match cmd!(sh, "{bin} version --format {format}")
        .quiet()
        .ignore_stderr()
        .ignore_status()
        .read()
    {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => return Probe::Rejected("does not answer `docker version`".into()),
    };
    match client_major(&version) {
        Some(major) if major < 23 => Probe::Usable(BuildFrontend::Builtin),
        _ => Probe::Rejected(format!(
            "client {version} has no buildx plugin, and clients from 23.0 on build with BuildKit only through buildx"
        )),
    }
}

/// "20.10.24+dfsg1" -> 20.
pub fn client_major(version: &str) -> Option<u32> {
    version.trim().split('.').next()?.parse().ok()
}

impl Docker {
    pub fn new(bin: PathBuf, frontend: BuildFrontend) -> Result<Docker> {
        let sh = Shell::new()?;
        if frontend == BuildFrontend::Builtin {
            sh.set_var("DOCKER_BUILDKIT", "1");
        }
        // compose v1 builds through the docker CLI only with these set.
        sh.set_var("COMPOSE_DOCKER_CLI_BUILD", "1");
        Ok(Docker { bin, frontend, sh })
    }

    /// The engine's version, or an error when no engine answers.
    pub fn server_version(&self) -> Result<String> {
        let bin = &self.bin;
        let format = "{{.Server.Version}}";
        let out = cmd!(self.sh, "{bin} version --format {format}")
            .quiet()
            .ignore_status()
            .output()?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || version.is_empty() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("{}", err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no engine answered").trim());
        }
        Ok(version)
    }

    pub fn info_field(&self, template: &str) -> Result<String> {
        let bin = &self.bin;
        Ok(cmd!(self.sh, "{bin} info --format {template}").quiet().read()?.trim().to_string())
    }

    pub fn image_exists(&self, image: &str) -> bool {
        let bin = &self.bin;
        let format = "{{.Id}}";
        cmd!(self.sh, "{bin} image inspect --format {format} {image}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    }

    /// Pulls `image`; an error says why (no registry, unknown tag, timeout).
    pub fn pull(&self, image: &str, timeout: Duration) -> Result<()> {
        let mut command = Command::new(&self.bin);
        command.args(["pull", "--quiet", image]);
        let (status, stdout, stderr) = run_with_timeout(command, timeout)?;
        let _ = stdout;
        match status {
            Some(s) if s.success() => Ok(()),
            Some(_) => bail!("{}", first_line(&stderr)),
            None => bail!("no answer from the registry within {}s", timeout.as_secs()),
        }
    }

    /// `docker import TAR NAME`.
    pub fn import(&self, tarball: &Path, image: &str) -> Result<()> {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} import {tarball} {image}").quiet().ignore_stdout().run()?;
        Ok(())
    }

    /// Runs a BuildKit build, streaming its plain progress to stderr while
    /// keeping a copy for parsing.
    pub fn build(&self, req: &BuildRequest) -> Result<BuildOutcome> {
        // One build at a time per checkout: engine 20.10's BuildKit can panic
        // ("failed to get edge", moby/moby#42414) and take the daemon down when
        // concurrent builds share steps. Held until the image id has been read.
        let lock = build_lock()?;
        let iidfile = req.iidfile.clone();
        let _ = std::fs::remove_file(&iidfile);
        let mut command = Command::new(&self.bin);
        for (k, v) in self.sh_env() {
            command.env(k, v);
        }
        match self.frontend {
            BuildFrontend::Buildx => {
                command.args(["buildx", "build", "--load"]);
            }
            BuildFrontend::Builtin => {
                command.env("DOCKER_BUILDKIT", "1").arg("build");
            }
        }
        command.args(["--progress=plain", "--file"]).arg(&req.dockerfile);
        command.arg("--iidfile").arg(&iidfile);
        if let Some(target) = &req.target {
            command.args(["--target", target]);
        }
        for tag in &req.tags {
            command.args(["--tag", tag]);
        }
        for (k, v) in &req.build_args {
            command.arg("--build-arg").arg(format!("{k}={v}"));
        }
        for (k, v) in &req.labels {
            command.arg("--label").arg(format!("{k}={v}"));
        }
        if let Some(ca) = &req.ca_bundle {
            command.arg("--secret").arg(format!("id=ca_bundle,src={}", ca.display()));
        }
        if req.no_cache {
            command.arg("--no-cache");
        }
        if let Some(network) = &req.network {
            command.args(["--network", network]);
        }
        command.arg(&req.context);
        let started = Instant::now();
        let (success, log) = stream_and_capture(command, req.echo)?;
        let elapsed = started.elapsed();
        let image_id = std::fs::read_to_string(&iidfile).ok().map(|s| s.trim().to_string());
        drop(lock);
        Ok(BuildOutcome { success, log, elapsed, image_id })
    }

    pub fn image_size(&self, image: &str) -> Result<u64> {
        let bin = &self.bin;
        let format = "{{.Size}}";
        let out = cmd!(self.sh, "{bin} image inspect --format {format} {image}")
            .quiet()
            .read()
            .with_context(|| format!("image {image} not found: build it first with `cargo xtask build`"))?;
        out.trim().parse().with_context(|| format!("unexpected size {out:?} from docker image inspect"))
    }

    /// `docker image inspect --format TEMPLATE IMAGE`.
    pub fn image_inspect(&self, image: &str, template: &str) -> Result<String> {
        let bin = &self.bin;
        Ok(cmd!(self.sh, "{bin} image inspect --format {template} {image}")
            .quiet()
            .ignore_stderr()
            .read()
            .with_context(|| format!("image {image} not found: build it first with `cargo xtask build`"))?
            .trim()
            .to_string())
    }

    /// Raw `docker history` lines: ID, size in bytes, created-by.
    pub fn history(&self, image: &str) -> Result<String> {
        let bin = &self.bin;
        let format = "{{.ID}}\t{{.Size}}\t{{.CreatedBy}}";
        cmd!(self.sh, "{bin} history --no-trunc --human=false --format {format} {image}")
        .quiet()
        .read()
        .with_context(|| format!("reading the layers of {image}"))
    }

    /// `docker run --rm --network none --user 0 --entrypoint ENTRY IMAGE ARGS...`:
    /// a throwaway look inside an image (size-check runs `du` there); stdout.
    pub fn run_rm(&self, image: &str, entrypoint: &str, args: &[&str], timeout: Duration) -> Result<String> {
        let mut command = Command::new(&self.bin);
        command.args(["run", "--rm", "--network", "none", "--user", "0", "--entrypoint", entrypoint, image]).args(args);
        match run_with_timeout(command, timeout)? {
            (Some(status), stdout, _) if status.success() => Ok(stdout),
            (Some(_), _, stderr) => bail!("`{entrypoint}` in {image} failed: {}", first_line(&stderr)),
            (None, _, _) => bail!("`{entrypoint}` in {image} did not finish within {}s", timeout.as_secs()),
        }
    }

    /// `docker --host HOST load --input FILE`: copies images to another engine.
    pub fn load_into(&self, host: &str, file: &Path) -> Result<()> {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} --host {host} load --quiet --input {file}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("loading {} into the engine at {host}", file.display()))?;
        Ok(())
    }

    /// Does an engine answer at `host`?
    pub fn engine_answers_on(&self, host: &str) -> bool {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} --host {host} version").quiet().ignore_stdout().ignore_stderr().run().is_ok()
    }

    /// `docker --host HOST image inspect IMAGE` succeeded.
    pub fn image_exists_on(&self, host: &str, image: &str) -> bool {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} --host {host} image inspect {image}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
    }

    /// `docker builder prune --keep-storage SIZE`: drops least recently used cache.
    pub fn prune_build_cache_to(&self, keep: &str) -> Result<()> {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} builder prune --force --keep-storage {keep}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("trimming the build cache")?;
        Ok(())
    }

    /// `docker save IMAGE` with its tar stream on the child's stdout.
    pub fn save_stream(&self, image: &str) -> Result<std::process::Child> {
        Command::new(&self.bin)
            .args(["save", image])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting docker save {image}"))
    }

    /// `docker save IMAGE -o FILE`.
    pub fn save(&self, images: &[&str], file: &Path) -> Result<()> {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} save --output {file} {images...}").quiet().run().with_context(|| format!("saving {}", images.join(" ")))?;
        Ok(())
    }

    pub fn push(&self, image: &str) -> Result<()> {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} push {image}").quiet().run().with_context(|| format!("pushing {image}"))?;
        Ok(())
    }

    pub fn remove_image(&self, image: &str) {
        let bin = &self.bin;
        let _ = cmd!(self.sh, "{bin} image rm --force {image}").quiet().ignore_stdout().ignore_stderr().run();
    }

    /// The engine's build-cache records as JSON (`[{"ID", "Parent", "Description",
    /// "InUse", "Size", ...}]`), from `docker system df -v`.
    pub fn build_cache_records(&self) -> Result<String> {
        let bin = &self.bin;
        let format = "{{json .BuildCache}}";
        cmd!(self.sh, "{bin} system df -v --format {format}").quiet().read().context("listing the build cache")
    }

    /// Removes ONE build-cache record (`docker builder prune --all --filter id=ID`).
    /// The engine matches the id as a pattern, so an empty or partial id would
    /// prune much more: only whole record ids are accepted.
    pub fn prune_build_cache_record(&self, id: &str) -> Result<()> {
        if id.len() < 20 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            bail!("refusing to prune build cache with id filter {id:?}: not a whole record id");
        }
        let bin = &self.bin;
        let filter = format!("id={id}");
        cmd!(self.sh, "{bin} builder prune --all --force --filter {filter}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("pruning build-cache record {id}"))?;
        Ok(())
    }

    /// `docker run --detach`; returns the container id.
    pub fn run_detached(&self, spec: &RunSpec) -> Result<String> {
        let bin = &self.bin;
        let mut args: Vec<String> = vec!["run".into(), "--detach".into(), "--name".into(), spec.name.clone()];
        for (host, container) in &spec.ports {
            args.push("--publish".into());
            args.push(format!("{host}:{container}"));
        }
        for (host, container) in &spec.mounts {
            args.push("--volume".into());
            args.push(format!("{}:{container}", host));
        }
        for (k, v) in &spec.env {
            args.push("--env".into());
            args.push(format!("{k}={v}"));
        }
        for (k, v) in &spec.labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        if let Some(user) = &spec.user {
            args.push("--user".into());
            args.push(user.clone());
        }
        if spec.gpus {
            args.push("--gpus".into());
            args.push("all".into());
        }
        args.push(spec.image.clone());
        args.extend(spec.command.iter().cloned());
        let id = cmd!(self.sh, "{bin} {args...}")
            .quiet()
            .read()
            .with_context(|| format!("starting a container from {}", spec.image))?;
        Ok(id.trim().to_string())
    }

    /// Removes a container and its anonymous volumes; never fails.
    pub fn remove_container(&self, name: &str) {
        let bin = &self.bin;
        let _ = cmd!(self.sh, "{bin} rm --force --volumes {name}").quiet().ignore_stdout().ignore_stderr().run();
    }

    /// Does a container (any state) with this name or id exist? Quiet when it does not.
    pub fn container_exists(&self, name: &str) -> bool {
        let bin = &self.bin;
        let format = "{{.Id}}";
        cmd!(self.sh, "{bin} container inspect --format {format} {name}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    }

    pub fn container_inspect(&self, name: &str, template: &str) -> Result<String> {
        let bin = &self.bin;
        Ok(cmd!(self.sh, "{bin} inspect --format {template} {name}").quiet().read()?.trim().to_string())
    }

    pub fn logs(&self, name: &str, tail: usize) -> Result<String> {
        let bin = &self.bin;
        let tail = tail.to_string();
        let out = cmd!(self.sh, "{bin} logs --tail {tail} {name}").quiet().ignore_status().output()?;
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(text)
    }

    /// `docker exec NAME ARGS...`, stdout.
    pub fn exec(&self, name: &str, args: &[&str]) -> Result<String> {
        let bin = &self.bin;
        let out = cmd!(self.sh, "{bin} exec {name} {args...}").quiet().ignore_status().output()?;
        if !out.status.success() {
            bail!(
                "`docker exec {name} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Does the engine know an NVIDIA runtime (`--gpus` can work)?
    pub fn has_nvidia_runtime(&self) -> bool {
        self.info_field("{{json .Runtimes}}").map(|r| r.contains("nvidia")).unwrap_or(false)
    }

    /// Containers (any state), volumes and networks carrying `label` (`key=value`),
    /// as "container ID" / "volume NAME" / "network ID": what a run must not leave behind.
    pub fn objects_with_label(&self, label: &str) -> Result<Vec<String>> {
        let bin = &self.bin;
        let filter = format!("label={label}");
        let mut found = Vec::new();
        for (kind, args) in [
            ("container", &["container", "ls", "--all", "--quiet"][..]),
            ("volume", &["volume", "ls", "--quiet"][..]),
            ("network", &["network", "ls", "--quiet"][..]),
        ] {
            let out = cmd!(self.sh, "{bin} {args...} --filter {filter}")
                .quiet()
                .read()
                .with_context(|| format!("listing {kind}s labelled {label}"))?;
            found.extend(out.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{kind} {}", l.trim())));
        }
        Ok(found)
    }

    /// Runs a compose command for `project` with `file`; returns (success, stdout+stderr).
    pub fn compose(
        &self,
        compose: &Compose,
        file: &Path,
        project: &str,
        env: &BTreeMap<String, String>,
        args: &[&str],
    ) -> Result<(bool, String)> {
        let mut command = match compose {
            Compose::V2 => {
                let mut c = Command::new(&self.bin);
                c.arg("compose");
                c
            }
            Compose::V1(bin) => Command::new(bin),
        };
        command.arg("--file").arg(file).arg("--project-name").arg(project).args(args);
        for (k, v) in self.sh_env().into_iter().chain(env.clone()) {
            command.env(k, v);
        }
        // compose v1 finds `docker` on PATH for builds: make it ours.
        if let Some(dir) = self.bin.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", dir.display()));
        }
        let out = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running compose ({compose:?})"))?;
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    /// The engine endpoint of the current docker context (`unix:///var/run/docker.sock`);
    /// honours DOCKER_HOST and DOCKER_CONTEXT.
    pub fn endpoint(&self) -> Result<String> {
        let bin = &self.bin;
        let format = "{{.Endpoints.docker.Host}}";
        let host = cmd!(self.sh, "{bin} context inspect --format {format}")
            .quiet()
            .read()
            .context("reading the current docker context's endpoint (`docker context inspect`)")?;
        Ok(host.trim().to_string())
    }

    /// Builds `dockerfile` with `context` into the local directory `dest`
    /// (no image is stored) and returns (success, plain progress log).
    ///
    /// For dockerignore-check: BuildKit sends only what changed since the last
    /// build of the same directory by the same client (a "shared key" made of
    /// a node id kept in the client's state dir and the context path), so a
    /// repeated `transferring context:` shows a few hundred bytes. A fresh
    /// state dir gets a fresh node id and so a full transfer. With the built-in
    /// client the node id lives in DOCKER_CONFIG: we point that at `fresh_state`
    /// and pin DOCKER_HOST to the current endpoint so the same engine answers
    /// (a `FROM scratch` build needs no registry credentials). With buildx it
    /// lives in BUILDX_CONFIG and DOCKER_CONFIG stays untouched.
    pub fn build_to_dir(&self, dockerfile: &Path, context: &Path, dest: &Path, fresh_state: &Path) -> Result<(bool, String)> {
        let mut command = Command::new(&self.bin);
        for (k, v) in self.sh_env() {
            command.env(k, v);
        }
        match self.frontend {
            BuildFrontend::Buildx => {
                command.env("BUILDX_CONFIG", fresh_state).args(["buildx", "build"]);
            }
            BuildFrontend::Builtin => {
                let host = self.endpoint()?;
                command.env("DOCKER_CONFIG", fresh_state).env("DOCKER_HOST", host).env_remove("DOCKER_CONTEXT");
                command.arg("build");
            }
        }
        command.args(["--progress=plain", "--file"]).arg(dockerfile);
        command.arg("--output").arg(format!("type=local,dest={}", dest.display()));
        command.arg(context);
        stream_and_capture(command, false)
    }

    /// Is `docker compose` (v2) available through this client?
    pub fn has_compose_v2(&self) -> bool {
        let bin = &self.bin;
        cmd!(self.sh, "{bin} compose version").quiet().ignore_stdout().ignore_stderr().run().is_ok()
    }

    fn sh_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if self.frontend == BuildFrontend::Builtin {
            env.push(("DOCKER_BUILDKIT".to_string(), "1".to_string()));
        }
        env
    }
}

/// Everything one `docker build` needs.
#[derive(Clone, Debug, Default)]
pub struct BuildRequest {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub tags: Vec<String>,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub ca_bundle: Option<PathBuf>,
    pub no_cache: bool,
    pub iidfile: PathBuf,
    /// Echo progress lines to stderr as they come.
    pub echo: bool,
    /// `--network` for RUN steps (e.g. `host` on an engine without a bridge).
    pub network: Option<String>,
}

pub struct BuildOutcome {
    pub success: bool,
    /// stdout and stderr interleaved in arrival order (BuildKit writes progress to stderr).
    pub log: String,
    pub elapsed: Duration,
    pub image_id: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    pub name: String,
    pub image: String,
    /// ("127.0.0.1:PORT", "8080")
    pub ports: Vec<(String, String)>,
    /// (host path or volume name, container path)
    pub mounts: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub user: Option<String>,
    pub gpus: bool,
    pub command: Vec<String>,
}

/// Blocks until no other build from this checkout runs (a touched source file
/// must not be picked up by someone else's queued build), then lets go at once.
pub fn wait_for_builds() -> Result<()> {
    build_lock().map(drop)
}

fn build_lock() -> Result<std::fs::File> {
    let path = crate::project::state_dir()?.join("build.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        ui::info("waiting for another build from this checkout to finish");
        file.lock().with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// Spawns `command`, tees its stdout and stderr line by line to our stderr
/// (when `echo`) and into one log, registers it for signal handlers.
pub fn stream_and_capture(mut command: Command, echo: bool) -> Result<(bool, String)> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = format!("{:?}", command.get_program());
    let mut child = command.spawn().with_context(|| format!("starting {program}"))?;
    let pid = child.id();
    if let Ok(mut c) = CHILDREN.lock() {
        c.push(pid);
    }
    let log = std::sync::Arc::new(Mutex::new(String::new()));
    let mut threads = Vec::new();
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let log = log.clone();
        threads.push(std::thread::spawn(move || {
            let reader = BufReader::new(stream);
            for line in reader.split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).to_string();
                if echo {
                    ui::progress_line(&line);
                }
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        }));
    }
    let status = child.wait().with_context(|| format!("waiting for {program}"))?;
    for t in threads {
        let _ = t.join();
    }
    if let Ok(mut c) = CHILDREN.lock() {
        c.retain(|p| *p != pid);
    }
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
    Ok((status.success(), text))
}

/// Runs `command` to completion or until `timeout`; `None` status = timed out (killed).
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<(Option<std::process::ExitStatus>, String, String)> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().context("starting a command")?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_major_reads_debian_and_upstream_versions() {
        assert_eq!(client_major("20.10.24+dfsg1"), Some(20));
        assert_eq!(client_major("28.2.2"), Some(28));
        assert_eq!(client_major(""), None);
    }
}
