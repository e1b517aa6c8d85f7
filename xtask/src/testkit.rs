//! Integration checks that `cargo xtask test` runs against a real engine.
//!
//! Each task module lists its own checks (`pub const INTEGRATION: &[IntegrationCheck]`);
//! a check runs real builds/containers and returns an error saying what went wrong.
//! Planted-fault checks run this very binary as a subprocess (like a user would)
//! and assert that it fails with the expected reason.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::setup::Env;

pub type CheckFn = fn(&Env) -> Result<()>;

pub struct IntegrationCheck {
    pub name: &'static str,
    pub run: CheckFn,
}

/// What one `cargo xtask ...` subprocess did.
pub struct XtaskRun {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl XtaskRun {
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Fails unless the run failed and its output mentions `needle`.
    pub fn expect_failure_mentioning(&self, needle: &str) -> Result<()> {
        if self.success {
            bail!("expected a failure mentioning {needle:?}, but the task passed:\n{}", tail(&self.combined(), 20));
        }
        if !self.combined().contains(needle) {
            bail!("the task failed, but without mentioning {needle:?}:\n{}", tail(&self.combined(), 20));
        }
        Ok(())
    }

    pub fn expect_success(&self) -> Result<()> {
        if !self.success {
            bail!("expected success, got exit {:?}:\n{}", self.code, tail(&self.combined(), 30));
        }
        Ok(())
    }
}

/// Runs this xtask binary with `args` (output captured, NO_COLOR set).
pub fn xtask<I, S>(args: I) -> Result<XtaskRun>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    xtask_with_env(args, &[])
}

pub fn xtask_with_env<I, S>(args: I, env: &[(&str, &str)]) -> Result<XtaskRun>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(xtask_exe()?);
    command.args(args).env("NO_COLOR", "1").env_remove("GITHUB_STEP_SUMMARY").stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().context("running the xtask binary")?;
    Ok(XtaskRun {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    })
}

/// This binary's path. When cargo rebuilt it while we run (a developer's
/// `cargo xtask` elsewhere), /proc reports "<path> (deleted)": use the new one.
pub fn xtask_exe() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(live) => std::path::PathBuf::from(live),
        None => exe,
    })
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A fresh scratch directory under target/xtask/tmp, removed on drop.
pub struct ScratchDir(pub std::path::PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> Result<ScratchDir> {
        let base = crate::project::state_dir()?.join("tmp");
        std::fs::create_dir_all(&base)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!("{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
