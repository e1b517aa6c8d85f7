//! `cargo xtask lint`: hadolint over every Dockerfile we ship, with `docker/.hadolint.yaml`.

use anyhow::{bail, Result};
use clap::Args;
use serde_json::json;
use xshell::{cmd, Shell};

use crate::report::Report;
use crate::{project, pyenv, ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct LintArgs {
    #[command(flatten)]
    pub out: OutputOpts,
}

/// Every Dockerfile in the repository, relative to the root.
pub fn dockerfiles() -> Vec<String> {
    let root = project::root();
    let mut files = vec![
        "docker/CPUDockerfile.multistage".to_string(),
        "docker/GPUDockerfile.multistage".to_string(),
    ];
    for dir in ["docker/standin", "docker/baseline"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            let mut more: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.contains("Dockerfile"))
                .map(|n| format!("{dir}/{n}"))
                .collect();
            more.sort();
            files.extend(more);
        }
    }
    files
}

pub fn run(args: &LintArgs) -> Result<()> {
    let sh = Shell::new()?;
    pyenv::ensure_venv(&sh)?;
    let hadolint = pyenv::bin("hadolint");
    let root = project::root();
    sh.change_dir(&root);
    let config = root.join("docker/.hadolint.yaml");
    let mut report = Report::new("lint");
    report.set_headers(&["Dockerfile", "findings", "result"]);
    let mut failures = Vec::new();
    let mut details = Vec::new();
    for file in dockerfiles() {
        let out = cmd!(sh, "{hadolint} --no-color --config {config} {file}").quiet().ignore_status().output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let findings: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let passed = out.status.success();
        report.add_row(vec![
            file.clone(),
            findings.len().to_string(),
            if passed { "ok".into() } else { "FAIL".into() },
        ]);
        for f in &findings {
            ui::warn(f);
        }
        if !passed {
            failures.push(file.clone());
        }
        details.push(json!({"file": file, "passed": passed, "findings": findings}));
    }
    report.set_json(json!({"config": "docker/.hadolint.yaml", "files": details}));
    if !failures.is_empty() {
        report.fail(format!("hadolint findings in {}", failures.join(", ")));
    }
    report.emit(&args.out)?;
    if !failures.is_empty() {
        bail!("lint failed: hadolint findings in {} (fix them, or ignore the rule in docker/.hadolint.yaml with a one-line reason)", failures.join(", "));
    }
    Ok(())
}
