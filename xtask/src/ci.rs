//! `cargo xtask ci`: the pre-merge pipeline, one command.
//!
//! Runs each task as a child of this very binary (same flags a person would
//! type, output streamed live), stops at the first failure, and ends with one
//! table of every step, its time and its result.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use crate::flavor::FlavorChoice;
use crate::report::Report;
use crate::{ui, OutputOpts};

#[derive(Args, Clone, Debug)]
pub struct CiArgs {
    /// Which images to build and check.
    #[arg(long, value_enum, default_value = "cpu")]
    pub flavor: FlavorChoice,
    #[command(flatten)]
    pub out: OutputOpts,
}

/// The pipeline's steps for `flavor`, as command lines of this binary.
pub fn pipeline(flavor: FlavorChoice) -> Vec<Vec<String>> {
    let mut steps: Vec<Vec<&str>> = vec![vec!["setup"], vec!["lint"], vec!["dockerignore-check"]];
    let names: Vec<&str> = flavor.flavors().iter().map(|f| f.name()).collect();
    let all = match flavor {
        FlavorChoice::All => "all",
        FlavorChoice::Cpu => "cpu",
        FlavorChoice::Gpu => "gpu",
    };
    steps.push(vec!["build", all]);
    steps.push(vec!["size-check", all]);
    for name in &names {
        steps.push(vec!["cache-test", name]);
    }
    for name in &names {
        steps.push(vec!["smoke", name]);
    }
    steps.push(if flavor == FlavorChoice::Cpu { vec!["compose-up"] } else { vec!["compose-up", "--profile", "gpu"] });
    steps.into_iter().map(|s| s.into_iter().map(String::from).collect()).collect()
}

struct StepResult {
    command: String,
    elapsed: Duration,
    passed: Option<bool>,
}

pub fn run(args: &CiArgs) -> Result<()> {
    let exe = crate::testkit::xtask_exe()?;
    let steps = pipeline(args.flavor);
    let mut results: Vec<StepResult> = steps
        .iter()
        .map(|s| StepResult { command: s.join(" "), elapsed: Duration::ZERO, passed: None })
        .collect();
    let mut failed_at = None;
    for (i, step) in steps.iter().enumerate() {
        ui::info(format!("ci [{}/{}] cargo xtask {}", i + 1, steps.len(), step.join(" ")));
        let started = Instant::now();
        let status = Command::new(&exe)
            .args(step)
            .stdin(Stdio::null())
            // Children's stdout would mix with our --json: send it to stderr.
            .stdout(if args.out.json { Stdio::from(std::io::stderr().as_fd_owned()?) } else { Stdio::inherit() })
            .status()
            .with_context(|| format!("running cargo xtask {}", step.join(" ")))?;
        results[i].elapsed = started.elapsed();
        results[i].passed = Some(status.success());
        if !status.success() {
            failed_at = Some(i);
            break;
        }
    }
    let mut report = Report::new("ci");
    report.set_headers(&["step", "time", "result"]);
    for r in &results {
        report.add_row(vec![
            format!("cargo xtask {}", r.command),
            if r.passed.is_some() { ui::fmt_duration(r.elapsed) } else { "-".into() },
            match r.passed {
                Some(true) => "pass".into(),
                Some(false) => "FAIL".into(),
                None => "not run".into(),
            },
        ]);
    }
    report.set_json(json!({
        "flavor": format!("{:?}", args.flavor).to_lowercase(),
        "steps": results.iter().map(|r| json!({
            "command": format!("cargo xtask {}", r.command),
            "seconds": r.elapsed.as_secs_f64(),
            "result": match r.passed { Some(true) => "pass", Some(false) => "fail", None => "not run" },
        })).collect::<Vec<_>>(),
    }));
    if let Some(i) = failed_at {
        report.fail(format!("`cargo xtask {}` failed", results[i].command));
    }
    report.emit(&args.out)?;
    if let Some(i) = failed_at {
        bail!("ci stopped at `cargo xtask {}` (see its output above)", results[i].command);
    }
    Ok(())
}

/// An owned duplicate of stderr, so a child can write its stdout there.
trait AsFdOwned {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd>;
}

impl AsFdOwned for std::io::Stderr {
    fn as_fd_owned(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned()
    }
}

pub const INTEGRATION: &[crate::testkit::IntegrationCheck] = &[crate::testkit::IntegrationCheck {
    name: "the cpu pipeline passes and reports every step",
    run: check_cpu_pipeline,
}];

fn check_cpu_pipeline(_env: &crate::setup::Env) -> Result<()> {
    let run = crate::testkit::xtask(["ci", "--json"])?;
    run.expect_success()?;
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .with_context(|| format!("`ci --json` printed no JSON:\n{}", crate::testkit::tail(&run.stdout, 10)))?;
    let steps = report["facts"]["steps"].as_array().cloned().unwrap_or_default();
    if steps.len() != pipeline(FlavorChoice::Cpu).len() || steps.iter().any(|s| s["result"] != "pass") {
        bail!("`ci --json` did not report every step as passed: {report}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_pipeline_runs_every_check_once_in_order() {
        let steps: Vec<String> = pipeline(FlavorChoice::Cpu).iter().map(|s| s.join(" ")).collect();
        assert_eq!(
            steps,
            [
                "setup",
                "lint",
                "dockerignore-check",
                "build cpu",
                "size-check cpu",
                "cache-test cpu",
                "smoke cpu",
                "compose-up"
            ]
        );
    }

    #[test]
    fn all_pipeline_checks_both_images() {
        let steps: Vec<String> = pipeline(FlavorChoice::All).iter().map(|s| s.join(" ")).collect();
        assert!(steps.contains(&"cache-test gpu".to_string()));
        assert!(steps.contains(&"smoke gpu".to_string()));
        assert!(steps.contains(&"build all".to_string()));
        assert_eq!(steps.last().unwrap(), "compose-up --profile gpu");
    }
}
