//! Where things are in the checkout, and facts read from it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

/// The repository root (the xtask crate lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// `<root>/target/xtask`: state files, logs and scratch space of the tasks.
pub fn state_dir() -> Result<PathBuf> {
    let dir = root().join("target").join("xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The app's version from `iopaint/__init__.py` (`__version__ = "x.y.z"`).
pub fn app_version() -> Result<String> {
    let path = root().join("iopaint").join("__init__.py");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_version(&text).with_context(|| format!("no `__version__ = \"...\"` line in {}", path.display()))
}

pub fn parse_version(init_py: &str) -> Option<String> {
    init_py.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("__version__")?.trim_start().strip_prefix('=')?.trim();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let inner = &rest[1..];
        Some(inner[..inner.find(quote)?].to_string())
    })
}

/// The checked-out commit, with `-dirty` when the tree has changes; "unknown" outside git.
pub fn git_revision(sh: &Shell) -> String {
    let root = root();
    let _dir = sh.push_dir(&root);
    let Ok(rev) = cmd!(sh, "git rev-parse --short=12 HEAD").quiet().ignore_stderr().read() else {
        return "unknown".into();
    };
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    if dirty { format!("{rev}-dirty") } else { rev }
}

/// The `origin` remote's URL, for the OCI source label.
pub fn git_source(sh: &Shell) -> String {
    let root = root();
    let _dir = sh.push_dir(&root);
    cmd!(sh, "git remote get-url origin").quiet().ignore_stderr().read().unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_init_py() {
        assert_eq!(parse_version("\"\"\"doc\"\"\"\n__version__ = \"0.1.0\"\n"), Some("0.1.0".into()));
        assert_eq!(parse_version("__version__='2.0'"), Some("2.0".into()));
        assert_eq!(parse_version("version = 1"), None);
    }
}
